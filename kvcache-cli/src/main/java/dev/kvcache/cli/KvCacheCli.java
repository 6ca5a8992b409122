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
 * <p>Errors in the user's input ({@link IllegalArgumentException}, picocli's parameter errors, a
 * file that cannot be read or written, a run too large for the heap) print one line naming the
 * value, with a {@code --help} hint on the same line and no usage after it, exit code 2; so does no
 * subcommand at all (the usage goes to stderr). Anything else is a bug and prints its stack trace,
 * exit code 1.
 */
@Command(name = "kvcache", mixinStandardHelpOptions = true, versionProvider = KvCacheCli.Version.class,
        description = "Paged, quantized, accounted KV-cache management for JVM LLM inference engines.",
        subcommands = {PlanCommand.class, SimulateCommand.class, BenchCommand.class, GenerateCommand.class,
                AccuracyCommand.class, ShareCommand.class,
                CommandLine.HelpCommand.class})
public final class KvCacheCli implements java.util.concurrent.Callable<Integer> {

    @Spec
    CommandSpec spec;

    /** Creates the top-level command; picocli sets its spec and runs it, or the subcommand named. */
    public KvCacheCli() {
    }

    /** Exit status of every user error: bad option, bad value, unreadable input, unwritable output. */
    static final int EXIT_USAGE = 2;

    /**
     * Runs {@code bin/kvcache} and exits the JVM with the command's status: 0 on success, 2 for a
     * user error (one line on stderr; also when the heap is too small for the sizes given), 1 for a
     * bug (stack trace), or the status a subcommand returns (e.g. {@code share}'s 1 when a check failed).
     *
     * @param args the subcommand and its options, as typed after {@code bin/kvcache}
     */
    public static void main(String[] args) {
        LauncherWatch.exitWhenGone(System.getProperty(LauncherWatch.PROPERTY));
        int code;
        try {
            code = commandLine().execute(args);
        } catch (OutOfMemoryError e) {
            // picocli lets Errors through; the sizes it is given are bounded, the heap may still be small
            System.err.println("kvcache: out of memory (" + e.getMessage() + ") with a heap of "
                    + Runtime.getRuntime().maxMemory() / (1024 * 1024) + " MiB; give smaller sizes or more heap,"
                    + " e.g. KVCACHE_JAVA_OPTS=-Xmx8g");
            code = EXIT_USAGE;
        }
        System.exit(code);
    }

    /** One line: the problem, then where the options are described. */
    static String oneLine(CommandLine commandLine, String message) {
        String name = commandLine.getCommandSpec().qualifiedName();
        String m = message == null ? "" : message.strip().replaceAll("\\s*\\R\\s*", "; ")
                // picocli quotes a converter's exception as "(java.lang.IllegalArgumentException: ...)"
                .replaceAll("\\b(?:[a-z]\\w*\\.)+[A-Z]\\w*(?:Exception|Error): ", "");
        return name + ": " + m + " (try '" + name + " --help')";
    }

    /** The configured command line (tests call this with their own out/err writers). */
    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new KvCacheCli());
        // JMH's options (-prof gc, -f 3, -h) go through to JMH untouched
        cl.getSubcommands().get("bench").setUnmatchedOptionsArePositionalParams(true);
        cl.setParameterExceptionHandler((ex, args) -> {
            CommandLine commandLine = ex.getCommandLine();
            String message = ex.getMessage();
            if (ex instanceof CommandLine.UnmatchedArgumentException u && !u.getSuggestions().isEmpty()) {
                message += "; did you mean " + String.join(" or ", u.getSuggestions()) + "?";
            }
            PrintWriter err = commandLine.getErr();
            err.println(oneLine(commandLine, message));
            err.flush();
            return EXIT_USAGE;
        });
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            PrintWriter err = commandLine.getErr();
            String message = null;
            if (ex instanceof IllegalArgumentException || ex instanceof ArithmeticException) {
                message = ex.getMessage();
            } else if (ex instanceof java.nio.file.NoSuchFileException e) {
                message = "no such file: " + e.getFile();
            } else if (ex instanceof java.nio.file.AccessDeniedException e) {
                message = "permission denied: " + e.getFile();
            } else if (ex instanceof java.io.IOException || ex instanceof java.io.UncheckedIOException) {
                message = "I/O error: " + ex.getMessage();
            }
            if (message != null) {
                err.println(oneLine(commandLine, message));
                err.flush();
                return EXIT_USAGE;
            }
            ex.printStackTrace(err);
            err.flush();
            return 1;
        });
        return cl;
    }

    @Override
    public Integer call() {
        // no subcommand is a user error: show what there is, on stderr
        spec.commandLine().usage(spec.commandLine().getErr());
        spec.commandLine().getErr().flush();
        return EXIT_USAGE;
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
