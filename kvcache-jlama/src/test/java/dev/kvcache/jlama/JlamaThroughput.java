package dev.kvcache.jlama;

import com.github.tjake.jlama.model.AbstractModel;
import com.github.tjake.jlama.tensor.AbstractTensor;
import com.github.tjake.jlama.tensor.KvBufferCache;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.UUID;

/**
 * Throughput harness (issue #17): Jlama 0.8.4 decoding with its own {@code KvBufferCache} against
 * Jlama on kvcache ({@link PagedKvBufferCache#inPlace}) at blocks of 16, 64 and 256 with pages up to
 * {@link PagedKvBufferCache#DEFAULT_MAX_PAGE_TOKENS} (after issue #17), and at blocks of 16 with one
 * page per block (before), in one JVM.
 *
 * <h2>Lockstep</h2>
 * On a machine shared with other work, runs one after another see different load, so their ratio
 * mostly measures the scheduler. Here every configuration has its own session on the same model
 * and they advance in lockstep: step {@code t} is decoded by each configuration in turn (the order
 * rotating with {@code t}) before step {@code t + 1}, and each forward pass is timed on its own.
 * Load then falls on all configurations alike, and each one's sum of step times is its decode time
 * at the same contexts.
 *
 * <p>Model: random weights, dim 512, 8 heads of 64 (MHA), 4 layers, MLP 1536, vocabulary 512,
 * context 2048. A round: an 8-token prompt in one batch per configuration, then {@code steps}
 * single-token forward passes over fixed pseudo-random ids (teacher-forced, the same ids for
 * every configuration, so each does exactly the same arithmetic; a kvcache session admits its id
 * first, as an engine would). The report gives tokens/s over the whole decode and over its last
 * quarter (the longest contexts), per round and as a ratio to Jlama's own cache. One warm-up
 * round of 200 steps comes first.
 *
 * <p>Run (see kvcache-jlama/README.md): {@code java --add-modules jdk.incubator.vector
 * --enable-native-access=ALL-UNNAMED -cp <test classpath> dev.kvcache.jlama.JlamaThroughput [rounds] [steps] [threads]}.
 */
public final class JlamaThroughput {
    private static final int PROMPT = 8;

    private record Config(String name, int blockTokens, int maxPageTokens) {
        boolean own() {
            return blockTokens == 0;
        }
    }

    /** One configuration's open session for a round: a Jlama buffer and, on kvcache, the session and what it holds. */
    private static final class Run implements AutoCloseable {
        final Config config;
        final KvBufferCache.KvBuffer kv;
        final PagedSession session;
        private final AutoCloseable[] owned;
        long nanos;
        long lastQuarterNanos;

        Run(Config config, KvBufferCache.KvBuffer kv, PagedSession session, AutoCloseable... owned) {
            this.config = config;
            this.kv = kv;
            this.session = session;
            this.owned = owned;
        }

        @Override
        public void close() throws Exception {
            for (AutoCloseable c : owned) c.close();
        }
    }

    private JlamaThroughput() {}

    /**
     * Runs the harness.
     *
     * @param args rounds (default 2), decode steps (default 1500) and Jlama threads (default 1: on a
     *             shared 2-core machine one thread keeps a parallel loop from waiting on a descheduled one)
     * @throws Exception when the model cannot be written or loaded
     */
    public static void main(String[] args) throws Exception {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 2;
        int steps = args.length > 1 ? Integer.parseInt(args[1]) : 1500;
        int threads = args.length > 2 ? Integer.parseInt(args[2]) : 1;
        com.github.tjake.jlama.util.PhysicalCoreExecutor.overrideThreadCount(threads);
        AbstractModel model = RandomLlama.load(512, 1536, 4, 8, 8, 512, 2048, 42);
        Random r = new Random(1);
        int[] tokens = new int[PROMPT + steps];
        for (int i = 0; i < tokens.length; i++) tokens[i] = 3 + r.nextInt(509);

        List<Config> configs = new ArrayList<>();
        configs.add(new Config("jlama-own-cache", 0, 0));
        // before issue #17: one page per block (blocks of 16 were the slow case; 64 and 256 were not slower)
        configs.add(new Config("kvcache-b16-page-per-block", 16, 16));
        for (int b : new int[] {16, 64, 256}) {
            configs.add(new Config("kvcache-b" + b + "-long-pages", b, PagedKvBufferCache.DEFAULT_MAX_PAGE_TOKENS));
        }
        System.out.printf("# JlamaThroughput (lockstep): %s; java %s; %d cores, Jlama threads %d; rounds %d; prompt %d,"
                        + " decode steps %d%n", java.time.Instant.now(), Runtime.version(),
                Runtime.getRuntime().availableProcessors(), threads, rounds, PROMPT, steps);
        System.out.println("# model: random weights, dim 512, 8 heads x 64 (kv heads 8), 4 layers, MLP 1536, vocab 512, ctx 2048, F32");

        round(model, configs, Arrays.copyOf(tokens, PROMPT + Math.min(200, steps))); // warm-up

        int n = configs.size();
        double[][] all = new double[n][rounds], last = new double[n][rounds];
        for (int round = 0; round < rounds; round++) {
            double[][] tps = round(model, configs, tokens);
            for (int i = 0; i < n; i++) {
                all[i][round] = tps[i][0];
                last[i][round] = tps[i][1];
                System.out.printf("round %d %-30s %7.1f tok/s (last quarter %7.1f tok/s)   vs own %.3fx (last quarter %.3fx)%n",
                        round, configs.get(i).name(), tps[i][0], tps[i][1], tps[i][0] / tps[0][0], tps[i][1] / tps[0][1]);
            }
        }
        System.out.println();
        System.out.printf("%-30s %12s %9s %22s %9s   (median over %d rounds; ratios per round, then median)%n",
                "configuration", "tok/s", "vs own", "last-quarter tok/s", "vs own", rounds);
        int quarter = PROMPT + steps - steps / 4;
        for (int i = 0; i < n; i++) {
            double[] ratio = new double[rounds], ratioLast = new double[rounds];
            for (int round = 0; round < rounds; round++) {
                ratio[round] = all[i][round] / all[0][round];
                ratioLast[round] = last[i][round] / last[0][round];
            }
            System.out.printf("%-30s %12.1f %8.3fx %22.1f %8.3fx%n", configs.get(i).name(), median(all[i]), median(ratio),
                    median(last[i]), median(ratioLast));
        }
        System.out.printf("# last quarter: decode steps at context %d..%d%n", quarter, PROMPT + steps - 1);
        model.close();
    }

    private static double median(double[] a) {
        double[] s = a.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    /** One lockstep round over {@code tokens}; per configuration {whole-decode tok/s, last-quarter tok/s}. */
    private static double[][] round(AbstractModel model, List<Config> configs, int[] tokens) throws Exception {
        List<Run> runs = new ArrayList<>();
        try {
            for (Config c : configs) runs.add(open(model, c, tokens.length));
            for (Run run : runs) {
                if (run.session != null) run.session.admit(Arrays.copyOf(tokens, PROMPT));
                model.batchForward(Arrays.copyOf(tokens, PROMPT), 0, run.kv).close();
            }
            int steps = tokens.length - PROMPT;
            int quarter = PROMPT + steps - steps / 4;
            for (int pos = PROMPT; pos < tokens.length; pos++) {
                for (int j = 0; j < runs.size(); j++) {
                    Run run = runs.get((j + pos) % runs.size());
                    long t0 = System.nanoTime();
                    if (run.session != null) run.session.admit(tokens[pos]);
                    AbstractTensor o = model.forward(tokens[pos], pos, run.kv, Optional.empty());
                    o.close();
                    long dt = System.nanoTime() - t0;
                    run.nanos += dt;
                    if (pos >= quarter) run.lastQuarterNanos += dt;
                }
            }
            double[][] out = new double[runs.size()][];
            for (int i = 0; i < runs.size(); i++) {
                Run run = runs.get(i);
                out[i] = new double[] {steps * 1e9 / run.nanos, (tokens.length - quarter) * 1e9 / run.lastQuarterNanos};
            }
            return out;
        } finally {
            for (Run run : runs) run.close();
        }
    }

    private static Run open(AbstractModel model, Config c, int length) {
        if (c.own()) {
            KvBufferCache cache = new KvBufferCache(model);
            return new Run(c, cache.getKvBuffer(UUID.randomUUID()), null, cache);
        }
        KvLayout layout = PagedKvBufferCache.layoutFor(model, c.blockTokens(), KvFormats.F32);
        int blocks = (length + c.blockTokens() - 1) / c.blockTokens() + 1;
        JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout, blocks);
        KvCacheManager manager = KvCacheManager.builder(layout).blocks(blocks).store(memory).build();
        PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory, c.maxPageTokens());
        PagedSession s = cache.session(UUID.randomUUID());
        // closed in this order: the cache (releases the session), the manager, the memory
        return new Run(c, s.kvBuffer(), s, cache, manager, memory);
    }
}
