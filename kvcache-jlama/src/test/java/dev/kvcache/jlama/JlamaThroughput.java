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
 * <p>Model: random weights, dim 512, 8 heads of 64 (MHA), 4 layers, MLP 1536, vocabulary 512,
 * context 2048. A run: an 8-token prompt in one batch, then {@code steps} single-token forward
 * passes over fixed pseudo-random ids (teacher-forced, the same ids for every configuration, so
 * each does exactly the same arithmetic), timing the whole decode and its last quarter (the
 * longest context). Rounds interleave the configurations in a rotating order after one warm-up
 * round; the report gives each one's median tokens/s and its median ratio to Jlama's own cache
 * within the same round, per second of wall-clock time and per second of the process's CPU time
 * (all threads: Jlama's pool, GC, JIT). On a machine shared with other work the wall-clock rate
 * mostly measures the scheduler; the CPU-time rate is what the configuration costs.
 *
 * <p>Run (see kvcache-jlama/README.md): {@code java --add-modules jdk.incubator.vector
 * --enable-native-access=ALL-UNNAMED -cp <test classpath> dev.kvcache.jlama.JlamaThroughput [rounds] [steps]}.
 */
public final class JlamaThroughput {
    private static final int PROMPT = 8;

    private record Config(String name, int blockTokens, int maxPageTokens) {
        boolean own() {
            return blockTokens == 0;
        }
    }

    /** Tokens per second of wall-clock time and per second of the process's CPU time, whole decode and last quarter. */
    private record Timing(double wall, double wallLast, double cpu, double cpuLast) {}

    /** CPU time of the whole process so far, in ns (java.base only: the test module reads no java.management). */
    private static long processCpuNanos() {
        return ProcessHandle.current().info().totalCpuDuration().orElseThrow(
                () -> new IllegalStateException("this platform reports no process CPU time")).toNanos();
    }

    private JlamaThroughput() {}

    /**
     * Runs the harness.
     *
     * @param args rounds (default 3), decode steps (default 1500) and Jlama threads (default 1: on a
     *             shared 2-core machine one thread keeps a parallel loop from waiting on a descheduled one)
     * @throws Exception when the model cannot be written or loaded
     */
    public static void main(String[] args) throws Exception {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 3;
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
        System.out.printf("# JlamaThroughput: %s; java %s; %d cores, Jlama threads %d; rounds %d; prompt %d, decode steps %d%n",
                java.time.Instant.now(), Runtime.version(), Runtime.getRuntime().availableProcessors(), threads, rounds, PROMPT,
                steps);
        System.out.println("# model: random weights, dim 512, 8 heads x 64 (kv heads 8), 4 layers, MLP 1536, vocab 512, ctx 2048, F32");

        // warm-up: every configuration once, 200 steps
        int[] warm = Arrays.copyOf(tokens, PROMPT + Math.min(200, steps));
        for (Config c : configs) run(model, c, warm);

        double[][][] rate = new double[4][configs.size()][rounds]; // wall, wall last quarter, cpu, cpu last quarter
        for (int round = 0; round < rounds; round++) {
            for (int j = 0; j < configs.size(); j++) {
                int i = (j + round) % configs.size();
                Timing t = run(model, configs.get(i), tokens);
                rate[0][i][round] = t.wall();
                rate[1][i][round] = t.wallLast();
                rate[2][i][round] = t.cpu();
                rate[3][i][round] = t.cpuLast();
                System.out.printf("round %d %-30s wall %7.1f tok/s (last quarter %7.1f)  cpu %7.1f tok/cpu-s (last quarter %7.1f)%n",
                        round, configs.get(i).name(), t.wall(), t.wallLast(), t.cpu(), t.cpuLast());
            }
        }
        String[] what = {"wall-clock tok/s, whole decode", "wall-clock tok/s, last quarter (context " + (PROMPT + steps * 3 / 4)
                + ".." + (PROMPT + steps) + ")", "tok per CPU-s, whole decode", "tok per CPU-s, last quarter"};
        for (int w = 0; w < 4; w++) {
            System.out.println();
            System.out.printf("%-30s %10s %10s   (%s; median of %d rounds, ratio per round)%n", "configuration", "median",
                    "vs own", what[w], rounds);
            for (int i = 0; i < configs.size(); i++) {
                double[] ratio = new double[rounds];
                for (int round = 0; round < rounds; round++) ratio[round] = rate[w][i][round] / rate[w][0][round];
                System.out.printf("%-30s %10.1f %9.3fx   min %.3fx max %.3fx%n", configs.get(i).name(), median(rate[w][i]),
                        median(ratio), Arrays.stream(ratio).min().orElse(0), Arrays.stream(ratio).max().orElse(0));
            }
        }
        model.close();
    }

    private static double median(double[] a) {
        double[] s = a.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    private static Timing run(AbstractModel model, Config c, int[] tokens) {
        if (c.own()) {
            KvBufferCache cache = new KvBufferCache(model);
            try {
                return decode(model, cache.getKvBuffer(UUID.randomUUID()), null, tokens);
            } finally {
                cache.close();
            }
        }
        KvLayout layout = PagedKvBufferCache.layoutFor(model, c.blockTokens(), KvFormats.F32);
        int blocks = (tokens.length + c.blockTokens() - 1) / c.blockTokens() + 1;
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout, blocks);
             KvCacheManager manager = KvCacheManager.builder(layout).blocks(blocks).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory, c.maxPageTokens());
            try {
                PagedSession s = cache.session(UUID.randomUUID());
                s.admit(Arrays.copyOf(tokens, PROMPT));
                return decode(model, s.kvBuffer(), s, tokens);
            } finally {
                cache.close();
            }
        }
    }

    private static Timing decode(AbstractModel model, KvBufferCache.KvBuffer kv, PagedSession s, int[] tokens) {
        AbstractTensor first = model.batchForward(Arrays.copyOf(tokens, PROMPT), 0, kv);
        first.close();
        int steps = tokens.length - PROMPT;
        int quarter = PROMPT + steps - steps / 4;
        long start = System.nanoTime(), lastStart = start;
        long cpuStart = processCpuNanos(), cpuLastStart = cpuStart;
        for (int pos = PROMPT; pos < tokens.length; pos++) {
            if (pos == quarter) {
                lastStart = System.nanoTime();
                cpuLastStart = processCpuNanos();
            }
            if (s != null) s.admit(tokens[pos]);
            AbstractTensor o = model.forward(tokens[pos], pos, kv, Optional.empty());
            o.close();
        }
        long end = System.nanoTime(), cpuEnd = processCpuNanos();
        int last = tokens.length - quarter;
        return new Timing(steps * 1e9 / (end - start), last * 1e9 / (end - lastStart),
                steps * 1e9 / (cpuEnd - cpuStart), last * 1e9 / (cpuEnd - cpuLastStart));
    }
}
