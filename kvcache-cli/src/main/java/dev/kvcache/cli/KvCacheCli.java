package dev.kvcache.cli;

import dev.kvcache.llama2.GenerateCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;

/**
 * Entry point of {@code bin/kvcache}: {@code plan}, {@code simulate}, {@code bench} and
 * {@code generate} (the llama2.c reference engine's {@link GenerateCommand}).
 *
 * <p>Errors in the user's input
 * ({@link IllegalArgumentException}, picocli's parameter errors) print one line naming the value,
 * exit code 2; anything else is a bug and prints its stack trace, exit code 1.
 */
@Command(name = "kvcache", mixinStandardHelpOptions = true, versionProvider = KvCacheCli.Version.class,
        description = "Paged, quantized, accounted KV-cache management for JVM LLM inference engines.",
        subcommands = {PlanCommand.class, SimulateCommand.class, BenchCommand.class, GenerateCommand.class,
                AccuracyCommand.class,
                CommandLine.HelpCommand.class})
public final class KvCacheCli implements Runnable {

    @Spec
    CommandSpec spec;

    public static void main(String[] args) {
        int code = commandLine().execute(args);
        System.exit(code);
    }

    /** The configured command line (tests call this with their own out/err writers). */
    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new KvCacheCli());
        // JMH's options (-prof gc, -f 3, -h) go through to JMH untouched
        cl.getSubcommands().get("bench").setUnmatchedOptionsArePositionalParams(true);
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            PrintWriter err = commandLine.getErr();
            if (ex instanceof IllegalArgumentException || ex instanceof ArithmeticException) {
                err.println("kvcache " + commandLine.getCommandName() + ": " + ex.getMessage());
                err.flush();
                return 2;
            }
            ex.printStackTrace(err);
            err.flush();
            return 1;
        });
        return cl;
    }

    @Override
    public void run() {
        // no subcommand: show what there is
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    /** The version from the jar manifest when packaged, else "dev". */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = KvCacheCli.class.getPackage().getImplementationVersion();
            return new String[] {"kvcache " + (v != null ? v : "0.1.0-SNAPSHOT (dev)")
                    + ", Java " + Runtime.version() + " (" + System.getProperty("java.vm.name") + ")"};
        }
    }
}
