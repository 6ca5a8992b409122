package dev.kvcache.llama2;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintStream;
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
            description = "with --sequences > 1 and no --prompt: the shared prefix is BOS plus the model's greedy continuation, N tokens in all (default ${DEFAULT-VALUE})")
    int prefix;

    @Option(names = "--block-tokens", paramLabel = "B", defaultValue = "16",
            description = "tokens per KV block (default ${DEFAULT-VALUE})")
    int blockTokens;

    @Option(names = "--reference", description = "use the plain float32 run.c port with a contiguous cache instead of kvcache")
    boolean reference;

    @Override
    public Integer call() throws Exception {
        PrintStream info = ids ? System.err : System.out;
        KvFormat format = KvFormats.byName(kvFormat);
        if (sequences < 1) {
            throw new CommandLine.ParameterException(new CommandLine(this),
                    "--sequences must be >= 1, got " + sequences);
        }
        Path path = model != null ? model : defaultModel();
        Llama2Model m = Llama2Model.load(path);
        info.println("model " + path + ": " + m.config());
        int[] base = prompt != null ? prompt : new int[] {Llama2Reference.BOS};

        long t0 = System.nanoTime();
        List<int[]> outputs = new ArrayList<>();
        if (reference) {
            if (sequences != 1) {
                throw new CommandLine.ParameterException(new CommandLine(this),
                        "--reference runs one sequence; got --sequences " + sequences);
            }
            outputs.add(new Llama2Reference(m).generate(base, steps));
            report(info, outputs, System.nanoTime() - t0, "reference (contiguous float32 cache)");
        } else {
            throw new UnsupportedOperationException("the paged engine is not wired yet; use --reference");
        }
        for (int[] out : outputs) {
            (ids ? System.out : info).println(join(out));
        }
        return 0;
    }

    private static void report(PrintStream info, List<int[]> outputs, long nanos, String what) {
        long tokens = 0;
        for (int[] o : outputs) {
            tokens += o.length;
        }
        info.printf("%s: %d sequence(s), %d tokens generated in %.3f s, %.1f tokens/s%n", what,
                outputs.size(), tokens, nanos / 1e9, tokens / (nanos / 1e9));
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

    public static void main(String[] args) {
        System.exit(new CommandLine(new GenerateCommand()).execute(args));
    }
}
