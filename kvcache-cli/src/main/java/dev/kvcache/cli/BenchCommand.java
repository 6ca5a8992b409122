package dev.kvcache.cli;

import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.CommandLineOptionException;
import org.openjdk.jmh.runner.options.CommandLineOptions;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;
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
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code kvcache bench}: JMH with short defaults ({@code -f 1 -wi 2 -i 3 -w 1s -r 1s}); every other
 * argument goes to JMH unchanged, and an option given there replaces its default.
 *
 * <h2>Reports</h2>
 * {@code --attention-report} and {@code --quantizer-report} run JMH in this JVM through its Java
 * API: the arguments are parsed by JMH's own {@link CommandLineOptions}, the defaults are added
 * with an {@link OptionsBuilder} where the user gave none, {@link Runner#run()} returns the
 * {@link RunResult}s and {@link #scores} turns their primary results into the rows the report
 * tables read. The benchmark classes and JMH's generated {@code META-INF/BenchmarkList} are on this
 * command's own class path (kvcache-cli depends on kvcache-benchmarks), so the forked JVMs, which
 * JMH starts with the host's class path, find them too; the benchmarks' {@code @Fork} adds the
 * Vector API module and native access.
 *
 * <h2>Plain runs</h2>
 * Without a report flag the JMH uber-jar {@code benchmarks/target/benchmarks.jar} runs as a child
 * process, so JMH's own command line ({@code -l}, {@code -h}, profilers, result files) works as
 * documented. The jar is found under the repository root: the {@code kvcache.home} system property
 * ({@code bin/kvcache} sets it), else two levels above this jar, else the working directory. When
 * it is missing it is built with {@code mvn -B -ntp -q -pl benchmarks -am package -DskipTests}.
 * The child JVM is the one running this command, with the Vector API module and native access
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

    /**
     * One primary JMH result of a benchmark class: the method's simple name, its parameters by name,
     * and the score in microseconds per operation.
     */
    record Score(String method, Map<String, String> params, double micros) {
        /** The parameter's value, "" when the benchmark has no such parameter. */
        String param(String name) {
            return params.getOrDefault(name, "");
        }
    }

    @Override
    public Integer call() throws IOException, InterruptedException {
        if (jmhArgs.contains("--help")) {
            // -h is JMH's; --help is this command's
            spec.commandLine().usage(spec.commandLine().getOut());
            return 0;
        }
        PrintWriter err = spec.commandLine().getErr();
        if (attentionReport && quantizerReport) {
            err.println("kvcache bench: --attention-report and --quantizer-report are separate runs; give one");
            return 2;
        }
        if (attentionReport || quantizerReport) {
            return report(err);
        }
        Path root = KvCacheHome.root();
        Path jar = root.resolve("benchmarks/target/benchmarks.jar");
        if (!Files.isRegularFile(jar)) {
            err.println("kvcache bench: " + jar + " is missing; building it (mvn -pl benchmarks -am package -DskipTests)");
            err.flush();
            int rc = LauncherWatch.runToEnd(new ProcessBuilder("mvn", "-B", "-ntp", "-q", "-pl", "benchmarks", "-am", "package",
                    "-DskipTests").directory(root.toFile()).inheritIO());
            if (rc != 0 || !Files.isRegularFile(jar)) {
                err.println("kvcache bench: building the benchmarks failed (exit " + rc + ")");
                return 1;
            }
        }
        return LauncherWatch.runToEnd(new ProcessBuilder(command(javaBinary(), jar, jmhArgs)).inheritIO());
    }

    /** A report run through JMH's Runner; the table goes to this command's output. */
    private int report(PrintWriter err) {
        String benchmark = attentionReport ? "PagedAttentionBenchmark" : "QuantizerBenchmark";
        Options options;
        try {
            options = reportOptions(benchmark, new CommandLineOptions(jmhArgs.toArray(String[]::new)));
        } catch (CommandLineOptionException e) {
            err.println("kvcache bench: " + e.getMessage());
            return 2;
        }
        List<Score> scores;
        try {
            scores = scores(new Runner(options).run(), benchmark);
        } catch (RunnerException e) {
            err.println("kvcache bench: JMH failed: " + e.getMessage());
            return 1;
        } catch (IllegalArgumentException e) {
            err.println("kvcache bench: " + e.getMessage());
            return 2;
        }
        if (scores.isEmpty()) {
            err.println("kvcache bench: JMH ran no " + benchmark + " benchmark (arguments " + jmhArgs + ")");
            return 1;
        }
        PrintWriter out = spec.commandLine().getOut();
        out.println();
        if (attentionReport) {
            out.println("Share of copy = (K+V bytes of the format / time) / (F32 K+V bytes / copy time), same run;"
                    + " shape: " + AttentionReport.KV_HEADS + " KV heads x " + AttentionReport.HEAD_DIM + ", "
                    + AttentionReport.BLOCK_TOKENS + "-token blocks");
            out.print(AttentionReport.table(AttentionReport.micros(scores)));
        } else {
            out.print(QuantizerReport.table(scores));
        }
        out.flush();
        return 0;
    }

    /**
     * JMH options for a report run: the user's (parsed by JMH), {@code benchmark} included unless an
     * include names it, and the short defaults for whatever the user did not set.
     */
    static Options reportOptions(String benchmark, CommandLineOptions user) {
        ChainedOptionsBuilder b = new OptionsBuilder().parent(user);
        if (user.getIncludes().stream().noneMatch(r -> r.contains(benchmark))) {
            b.include(benchmark);
        }
        if (!user.getForkCount().hasValue()) {
            b.forks(1);
        }
        if (!user.getWarmupIterations().hasValue()) {
            b.warmupIterations(2);
        }
        if (!user.getMeasurementIterations().hasValue()) {
            b.measurementIterations(3);
        }
        if (!user.getWarmupTime().hasValue()) {
            b.warmupTime(TimeValue.seconds(1));
        }
        if (!user.getMeasurementTime().hasValue()) {
            b.measurementTime(TimeValue.seconds(1));
        }
        return b.build();
    }

    /**
     * The primary results of benchmark class {@code className} (simple name; nested classes'
     * methods included) in {@code results}; other classes' results are skipped. Scores in other
     * time-per-operation units are converted; a throughput unit is refused (IllegalArgumentException).
     */
    static List<Score> scores(Collection<RunResult> results, String className) {
        List<Score> out = new ArrayList<>();
        for (RunResult r : results) {
            var p = r.getParams();
            String bench = p.getBenchmark();
            if (!bench.contains("." + className + ".")) {
                continue;
            }
            Map<String, String> params = new LinkedHashMap<>();
            for (String key : p.getParamsKeys()) {
                params.put(key, p.getParam(key));
            }
            var primary = r.getPrimaryResult();
            out.add(new Score(bench.substring(bench.lastIndexOf('.') + 1), params,
                    primary.getScore() * microsPer(primary.getScoreUnit())));
        }
        return out;
    }

    /** Microseconds in one unit of a JMH time-per-operation score. */
    static double microsPer(String unit) {
        return switch (unit) {
            case "ns/op" -> 1e-3;
            case "us/op" -> 1.0;
            case "ms/op" -> 1e3;
            case "s/op" -> 1e6;
            default -> throw new IllegalArgumentException("unit " + unit + " is not a time per operation"
                    + " (run the report with the benchmark's average-time mode, without -bm)");
        };
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
