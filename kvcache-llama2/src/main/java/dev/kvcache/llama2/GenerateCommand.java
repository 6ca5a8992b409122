package dev.kvcache.llama2;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code generate}: greedy decoding with a llama2.c checkpoint (temperature 0, from BOS unless a
 * prompt is given), run.c's loop. Prints token ids (there is no tokenizer).
 */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Greedy llama2.c decoding with the KV cache in kvcache; prints token ids.")
public final class GenerateCommand implements Callable<Integer> {

    /** A command with every option at its default; picocli sets the options given on the command line. */
    public GenerateCommand() {
    }

    @Spec
    CommandSpec spec;

    /** The checkpoint's file name, looked up under shared/models. */
    public static final String DEFAULT_MODEL = "stories260K.bin";

    @Option(names = "--model", paramLabel = "PATH",
            description = "llama2.c checkpoint (default: ../shared/models/" + DEFAULT_MODEL
                    + " resolved against the working directory and its parents)")
    Path model;

    @Option(names = "--kv-format", paramLabel = "F", defaultValue = "F32",
            description = "KV storage format: F32, F16, BF16, FP8_E4M3, FP8_E5M2, Q8_0, ... (default ${DEFAULT-VALUE})")
    String kvFormat;

    @Option(names = "--steps", paramLabel = "N", defaultValue = "256",
            description = "positions to run, prompt included, like run.c -n; 0 = seq_len (default ${DEFAULT-VALUE})")
    int steps;

    @Option(names = "--ids", description = "print only the generated ids on stdout, one line per sequence; the rest goes to stderr")
    boolean ids;

    @Option(names = "--prompt", paramLabel = "IDS", split = ",",
            description = "prompt token ids, comma-separated (default: 1, BOS)")
    int[] prompt;

    @Option(names = "--sequences", paramLabel = "K", defaultValue = "1",
            description = "sequences decoded concurrently after a shared prompt prefix (default ${DEFAULT-VALUE})")
    int sequences;

    @Option(names = "--prefix", paramLabel = "N", defaultValue = "33",
            description = "with --sequences > 1 and no --prompt: the shared prefix is BOS plus the model's greedy continuation, N tokens in all; with --prompt the prompt is the prefix. Sequence j then adds the j-th likeliest next token (default ${DEFAULT-VALUE})")
    int prefix;

    @Option(names = "--block-tokens", paramLabel = "B", defaultValue = "16",
            description = "tokens per KV block (default ${DEFAULT-VALUE})")
    int blockTokens;

    @Option(names = "--reference", description = "use the plain float32 run.c port with a contiguous cache instead of kvcache")
    boolean reference;

    /** Exit status for bad input (unknown format, unreadable or invalid checkpoint, sizes out of range). */
    public static final int EXIT_BAD_INPUT = 2;

    @Override
    public Integer call() throws Exception {
        try {
            return run();
        } catch (IllegalArgumentException | UnsupportedOperationException | IllegalStateException
                 | java.io.IOException e) {
            // one line naming the problem, not a stack trace
            PrintWriter err = spec.commandLine().getErr();
            String message = e instanceof java.nio.file.NoSuchFileException n ? "no such file: " + n.getFile()
                    : e.getMessage() != null ? e.getMessage().strip().replaceAll("\\s*\\R\\s*", "; ")
                    : e.getClass().getSimpleName();
            err.println("generate: " + message);
            err.flush();
            return EXIT_BAD_INPUT;
        }
    }

    private int run() throws java.io.IOException {
        PrintWriter stdout = spec.commandLine().getOut();
        PrintWriter info = ids ? spec.commandLine().getErr() : stdout;
        KvFormat format = KvFormats.byName(kvFormat);
        if (sequences < 1) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "--sequences must be >= 1, got " + sequences);
        }
        if (steps < 0) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "--steps must be >= 0 (0 = seq_len), got " + steps);
        }
        if (prefix < 1) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "--prefix must be >= 1 (BOS counts as one), got " + prefix);
        }
        if (blockTokens < 1) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "--block-tokens must be >= 1, got " + blockTokens);
        }
        Path path = model != null ? model : defaultModel();
        Llama2Model m = Llama2Model.load(path);
        info.println("model " + path + ": " + m.config());
        int[] base = prompt != null ? prompt : new int[] {Llama2Reference.BOS};

        List<int[]> outputs = new ArrayList<>();
        if (reference) {
            if (sequences != 1) {
                throw new CommandLine.ParameterException(spec.commandLine(),
                        "--reference runs one sequence; got --sequences " + sequences);
            }
            long t0 = System.nanoTime();
            outputs.add(new Llama2Reference(m).generate(base, steps));
            long nanos = System.nanoTime() - t0;
            info.printf("reference (run.c port, contiguous float32 cache): %d tokens in %.3f s, %.1f tokens/s%n",
                    outputs.get(0).length, nanos / 1e9, outputs.get(0).length / (nanos / 1e9));
        } else {
            if (sequences > 1 && sequences > m.config().vocabSize()) {
                // sequence j branches on the j-th likeliest token: there are only vocab_size of them
                throw new CommandLine.ParameterException(spec.commandLine(), "--sequences " + sequences
                        + " exceeds the model's vocabulary of " + m.config().vocabSize()
                        + " (sequence j branches on the j-th likeliest next token)");
            }
            int blocks = Llama2Engine.blocksFor(m, blockTokens, sequences + 1);
            Llama2Engine created;
            try {
                created = Llama2Engine.create(m, format, blockTokens, blocks, true);
            } catch (OutOfMemoryError e) {
                // the pool is one off-heap allocation: nothing else was allocated when it failed
                throw new CommandLine.ParameterException(spec.commandLine(), "--sequences " + sequences
                        + " needs a KV pool of " + blocks + " blocks of " + blockTokens
                        + " tokens, which could not be allocated (" + e.getMessage() + ")");
            }
            try (Llama2Engine engine = created) {
                info.printf("KV %s, %d blocks of %d tokens, %d bytes per token, %d bytes per block, pool %d bytes%n",
                        format.name(), blocks, blockTokens, engine.layout().bytesPerToken(),
                        engine.layout().bytesPerBlock(), engine.ledger().totalBytes());
                int[][] prompts;
                if (sequences == 1) {
                    prompts = new int[][] {base};
                } else {
                    prompts = engine.branchingPrompts(base, prompt != null ? base.length : Math.max(prefix, base.length), sequences);
                    info.printf("%d sequences share a %d-token prefix; sequence j adds the j-th likeliest next token%n",
                            sequences, prompts[0].length - 1);
                }
                long computedBefore = engine.computedTokens();
                long t0 = System.nanoTime();
                List<Llama2Engine.Generation> gens = engine.generateConcurrently("seq-", prompts, steps);
                long nanos = System.nanoTime() - t0;
                long generated = 0;
                for (Llama2Engine.Generation g : gens) {
                    outputs.add(g.ids());
                    generated += g.ids().length;
                    info.printf("%s: prompt %d tokens, %d prefix hits, %d generated%n",
                            g.id(), g.prompt().length, g.hits(), g.ids().length);
                }
                var ledger = engine.ledger();
                var stats = ledger.stats();
                long computed = engine.computedTokens() - computedBefore;
                info.printf("%d tokens generated, %d positions computed in %.3f s: %.1f generated tokens/s, %.1f positions/s%n",
                        generated, computed, nanos / 1e9, generated / (nanos / 1e9), computed / (nanos / 1e9));
                info.printf("prefix cache: %d of %d prompt tokens hit (%.1f%%), %d bytes of KV not recomputed%n",
                        stats.prefixHitTokens(), stats.prefixQueryTokens(), 100 * stats.prefixHitRate(),
                        ledger.prefixHitBytes());
                info.printf("KV bytes: peak used %d, cached now %d, pool %d (blocks: peak %d used of %d)%n",
                        ledger.peakUsedBytes(), ledger.cachedBytes(), ledger.totalBytes(),
                        ledger.peakUsedBlocks(), stats.totalBlocks());
            }
        }
        for (int[] out : outputs) {
            stdout.println(join(out));
        }
        stdout.flush();
        info.flush();
        return 0;
    }

    static String join(int[] ids) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < ids.length; i++) {
            if (i > 0) {
                sb.append(' ');
            }
            sb.append(ids[i]);
        }
        return sb.toString();
    }

    /**
     * The default checkpoint: shared/models/stories260K.bin next to the repository, found from the
     * working directory (the repository root, a module directory, or the shared folder's sibling).
     *
     * @return the first {@code shared/models/}{@value #DEFAULT_MODEL} that is a regular file, in or
     *         beside the working directory and then its parents (six candidates at most)
     * @throws IllegalArgumentException naming the paths tried when none exists
     */
    public static Path defaultModel() {
        Path cwd = Path.of("").toAbsolutePath();
        List<Path> tried = new ArrayList<>();
        for (Path dir = cwd; dir != null; dir = dir.getParent()) {
            for (Path base : new Path[] {dir.resolve("shared"), dir.resolveSibling("shared")}) {
                if (base == null) {
                    continue;
                }
                Path p = base.resolve("models").resolve(DEFAULT_MODEL).normalize();
                if (Files.isRegularFile(p)) {
                    return p;
                }
                tried.add(p);
            }
            if (tried.size() >= 6) {
                break;
            }
        }
        throw new IllegalArgumentException("no --model given and " + DEFAULT_MODEL
                + " not found; tried " + tried);
    }

    /**
     * Runs {@code generate} and exits the JVM with its status: 0 on success,
     * {@value #EXIT_BAD_INPUT} for bad input (one line on stderr, no stack trace).
     *
     * @param args the command line, as {@code generate --help} describes it
     */
    public static void main(String[] args) {
        System.exit(new CommandLine(new GenerateCommand()).execute(args));
    }
}
