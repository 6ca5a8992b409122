package dev.kvcache.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code kvcache bench}: runs the JMH uber-jar {@code benchmarks/target/benchmarks.jar} with short
 * defaults ({@code -f 1 -wi 2 -i 3 -w 1s -r 1s}); every other argument goes to JMH unchanged, and
 * an option given there replaces its default (JMH refuses an option given twice).
 *
 * <p>The jar is found under the repository root: the {@code kvcache.home} system property
 * ({@code bin/kvcache} sets it), else two levels above this jar, else the working directory. When
 * it is missing it is built with {@code mvn -B -ntp -q -pl benchmarks -am package -DskipTests}.
 * The forked JVM is the one running this command, with the Vector API module and native access
 * enabled.
 */
@Command(name = "bench", mixinStandardHelpOptions = false,
        description = {"Run the JMH benchmarks with short defaults (-f 1 -wi 2 -i 3 -w 1s -r 1s).",
                "Runs benchmarks/target/benchmarks.jar (built if missing); all arguments go to JMH, e.g.",
                "  kvcache bench BlockManagerBenchmark -prof gc",
                "  kvcache bench -l            (list benchmarks)",
                "  kvcache bench -h            (JMH's own options)",
                "  kvcache bench --attention-report -p tokens=32768   (decode bandwidth vs copy)",
                "  kvcache bench --quantizer-report -p tokens=131072 -p format=Q8_0",
                "  kvcache bench --help        (this help)"})
final class BenchCommand implements Callable<Integer> {

    /** Defaults as (option, value) pairs. */
    static final List<String[]> DEFAULTS = List.of(
            new String[] {"-f", "1"}, new String[] {"-wi", "2"}, new String[] {"-i", "3"},
            new String[] {"-w", "1s"}, new String[] {"-r", "1s"});

    @Spec
    CommandSpec spec;

    @Parameters(paramLabel = "JMH_ARGS", arity = "0..*", description = "arguments for JMH (regexp, -prof gc, -p param=v, ...)")
    List<String> jmhArgs = new ArrayList<>();

    @Option(names = "--attention-report", description = "Run PagedAttentionBenchmark (unless the arguments name it), "
            + "then print each size and format's KV bandwidth as a share of the copy measured in the same run, "
            + "and paged time against the contiguous baselines.")
    boolean attentionReport;

    @Option(names = "--quantizer-report", description = "Run QuantizerBenchmark (unless the arguments name it; "
            + "narrow it with -p, e.g. -p tokens=131072 -p format=Q8_0,FP8_E4M3), then print GB/s per format, "
            + "decode against a copy of the same fp32 bytes, and vector/scalar speedups.")
    boolean quantizerReport;

    @Override
    public Integer call() throws IOException, InterruptedException {
        if (jmhArgs.contains("--help")) {
            // -h is JMH's; --help is this command's
            spec.commandLine().usage(spec.commandLine().getOut());
            return 0;
        }
        PrintWriter err = spec.commandLine().getErr();
        Path root = KvCacheHome.root();
        Path jar = root.resolve("benchmarks/target/benchmarks.jar");
        if (!Files.isRegularFile(jar)) {
            err.println("kvcache bench: " + jar + " is missing; building it (mvn -pl benchmarks -am package -DskipTests)");
            err.flush();
            int rc = new ProcessBuilder("mvn", "-B", "-ntp", "-q", "-pl", "benchmarks", "-am", "package", "-DskipTests")
                    .directory(root.toFile()).inheritIO().start().waitFor();
            if (rc != 0 || !Files.isRegularFile(jar)) {
                err.println("kvcache bench: building the benchmarks failed (exit " + rc + ")");
                return 1;
            }
        }
        if (attentionReport && quantizerReport) {
            err.println("kvcache bench: --attention-report and --quantizer-report are separate runs; give one");
            return 2;
        }
        if (!attentionReport && !quantizerReport) {
            return new ProcessBuilder(command(javaBinary(), jar, jmhArgs)).inheritIO().start().waitFor();
        }
        String benchmark = attentionReport ? "PagedAttentionBenchmark" : "QuantizerBenchmark";
        Path csv = Files.createTempFile("kvcache-report", ".csv");
        try {
            List<String> args = reportArgs(benchmark, jmhArgs, csv);
            int rc = new ProcessBuilder(command(javaBinary(), jar, args)).inheritIO().start().waitFor();
            if (rc != 0) {
                return rc;
            }
            List<String> lines = Files.readAllLines(csv);
            PrintWriter out = spec.commandLine().getOut();
            out.println();
            if (attentionReport) {
                out.println("Share of copy = (K+V bytes of the format / time) / (F32 K+V bytes / copy time), same run;"
                        + " shape: " + AttentionReport.KV_HEADS + " KV heads x " + AttentionReport.HEAD_DIM + ", "
                        + AttentionReport.BLOCK_TOKENS + "-token blocks");
                out.print(AttentionReport.table(AttentionReport.parse(lines)));
            } else {
                out.print(QuantizerReport.table(JmhCsv.parse(lines, benchmark)));
            }
            out.flush();
            return 0;
        } finally {
            Files.deleteIfExists(csv);
        }
    }

    /** The user's JMH arguments for a report run: {@code benchmark} unless named, CSV results to {@code csv}. */
    static List<String> reportArgs(String benchmark, List<String> userArgs, Path csv) {
        List<String> args = new ArrayList<>();
        if (userArgs.stream().noneMatch(a -> a.contains(benchmark))) {
            args.add(benchmark);
        }
        args.addAll(userArgs);
        args.addAll(List.of("-rf", "csv", "-rff", csv.toString()));
        return args;
    }

    /** The full command line: java, JVM flags, -jar, the defaults not overridden, then the user's arguments. */
    static List<String> command(String java, Path jar, List<String> userArgs) {
        List<String> cmd = new ArrayList<>(List.of(java, "--add-modules", "jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED", "-jar", jar.toString()));
        boolean passThroughOnly = userArgs.contains("-h") || userArgs.contains("-l") || userArgs.contains("-lp")
                || userArgs.contains("-lprof") || userArgs.contains("-lrf");
        if (!passThroughOnly) {
            for (String[] d : DEFAULTS) {
                if (!given(userArgs, d[0])) {
                    cmd.add(d[0]);
                    cmd.add(d[1]);
                }
            }
        }
        cmd.addAll(userArgs);
        return cmd;
    }

    /** True when {@code option} appears in {@code args} as "-f", or glued to its value as "-f3". */
    static boolean given(List<String> args, String option) {
        for (String a : args) {
            if (a.equals(option)) {
                return true;
            }
            if (a.startsWith(option) && a.length() > option.length() && Character.isDigit(a.charAt(option.length()))) {
                return true;
            }
        }
        return false;
    }

    private static String javaBinary() {
        return ProcessHandle.current().info().command()
                .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    }
}
