package dev.kvcache.bench;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.SequenceOptions;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;

/**
 * The block manager's hot paths against in-run baselines: a plain {@code int[]} store (the least
 * any token bookkeeping can cost), the same store under an uncontended {@code StampedLock} write
 * lock (what every manager mutation pays first) and one {@code System.nanoTime()} (the manager's
 * default clock, read on every append for idle leases). Measured:
 * <ul>
 *   <li>{@code decodeToken}: {@code append(seq, token)}, one decode step; a block is allocated
 *       every 16th call and, prefix caching on, the block the call before it filled is hashed and
 *       published by that same call (the manager publishes a block at the sequence's next append,
 *       once the engine has written its KV): one allocation and one publication per 16 calls, as
 *       before publish-after-write;</li>
 *   <li>{@code appendBlock16}: {@code append(seq, int[16])}, one whole block per call (each call
 *       publishes the block the previous one filled);</li>
 *   <li>{@code blockAllocFree}: blocks of one token under a one-token sliding window, prefix caching
 *       off: every call allocates exactly one block and releases exactly one (the block
 *       allocate+free pair, through the public API);</li>
 *   <li>{@code windowBlock16}: the same with 16-token blocks and a 16-token window;</li>
 *   <li>{@code forkFree}: fork a 100-token sequence (7 blocks, the last partial) and free the child;</li>
 *   <li>{@code openAppendFree}: the lifecycle of a one-block request: open, append 16, free (which
 *       publishes the block);</li>
 *   <li>{@code cachedPrefixLength}: a router's lookup of a cached 1,024-token prompt (64 blocks).</li>
 * </ul>
 * The appending states run one sequence up to {@value #CAP} tokens, then free it and open another
 * (with {@code expectedTokens = CAP}, so appends never grow arrays). Each reopen allocates the
 * sequence's token-id array (4 bytes a token) and block table once, which {@code -prof gc} shows
 * amortized as about 4 B per appended token; the append path itself allocates nothing.
 *
 * <p>Run: {@code bin/kvcache bench BlockManagerBenchmark -prof gc} (or
 * {@code java -jar benchmarks/target/benchmarks.jar BlockManagerBenchmark -prof gc}). Quote results
 * only as ratios to {@code baselineIntArray} from the same run.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
        "-Xmx2g"})
public class BlockManagerBenchmark {

    /** Tokens a benchmark sequence reaches before it is freed and reopened. */
    static final int CAP = 1 << 20;

    /** Llama-3-8B's KV shape; only the block count matters to the manager. */
    static KvLayout layout(int blockTokens) {
        return new KvLayout(32, 8, 128, blockTokens, KvFormats.F16);
    }

    /** One sequence appended to until CAP tokens, then replaced. */
    @State(Scope.Thread)
    public static class Appending {
        KvCacheManager m;
        Sequence seq;
        int next;
        final int[] block = new int[16];

        KvCacheManager build(int blockTokens, boolean prefix, int window) {
            KvCacheManager.Builder b = KvCacheManager.builder(layout(blockTokens))
                    .blocks(CAP / blockTokens + 64)
                    .prefixCaching(prefix);
            if (window > 0) {
                b.slidingWindow(0, window);
            }
            return b.build();
        }

        void reopen() {
            if (seq != null) {
                m.free(seq);
            }
            seq = m.open("s", SequenceOptions.DEFAULT.withExpectedTokens(CAP));
        }

        /** Token ids that never repeat within a sequence, so every full block publishes fresh content. */
        int token() {
            return next++ & 0x7FFF_FFFF;
        }

        @TearDown(Level.Trial)
        public void close() {
            m.free(seq);
            m.close();
        }
    }

    public static class DecodeState extends Appending {
        @Setup(Level.Trial)
        public void setup() {
            m = build(16, true, 0);
            reopen();
        }
    }

    public static class Block16State extends Appending {
        @Setup(Level.Trial)
        public void setup() {
            m = build(16, true, 0);
            reopen();
        }
    }

    public static class AllocFreeState extends Appending {
        @Setup(Level.Trial)
        public void setup() {
            m = KvCacheManager.builder(layout(1)).blocks(64).prefixCaching(false).slidingWindow(0, 1).build();
            reopen();
        }
    }

    public static class Window16State extends Appending {
        @Setup(Level.Trial)
        public void setup() {
            m = KvCacheManager.builder(layout(16)).blocks(64).prefixCaching(false).slidingWindow(0, 16).build();
            reopen();
        }
    }

    @State(Scope.Thread)
    public static class ForkState {
        KvCacheManager m;
        Sequence parent;

        @Setup(Level.Trial)
        public void setup() {
            m = KvCacheManager.builder(layout(16)).blocks(256).build();
            parent = m.open("parent");
            int[] t = new int[100];
            for (int i = 0; i < t.length; i++) {
                t[i] = i + 1;
            }
            m.append(parent, t);
            // its KV counts as written: publish its 6 full blocks now, as the old append did, so that
            // each child's free has nothing left to publish and forkFree measures fork + free alone
            m.commit(parent);
        }

        @TearDown(Level.Trial)
        public void close() {
            m.free(parent);
            m.close();
        }
    }

    @State(Scope.Thread)
    public static class LifecycleState {
        KvCacheManager m;
        final int[] tokens = new int[16];
        int next;

        @Setup(Level.Trial)
        public void setup() {
            m = KvCacheManager.builder(layout(16)).blocks(256).build();
        }

        @TearDown(Level.Trial)
        public void close() {
            m.close();
        }
    }

    @State(Scope.Thread)
    public static class LookupState {
        KvCacheManager m;
        final int[] prompt = new int[1024];

        @Setup(Level.Trial)
        public void setup() {
            m = KvCacheManager.builder(layout(16)).blocks(256).build();
            for (int i = 0; i < prompt.length; i++) {
                prompt[i] = 7 * i + 3;
            }
            Sequence s = m.open("prompt");
            m.append(s, prompt);
            m.free(s); // publishes its 64 full blocks (its KV counts as written), which stay cached
            if (m.cachedPrefixLength(prompt) != prompt.length) {
                throw new IllegalStateException("prompt not cached: " + m.cachedPrefixLength(prompt));
            }
        }

        @TearDown(Level.Trial)
        public void close() {
            m.close();
        }
    }

    @State(Scope.Thread)
    public static class Baseline {
        final int[] tokens = new int[CAP];
        final java.util.concurrent.locks.StampedLock lock = new java.util.concurrent.locks.StampedLock();
        int n;
    }

    // ------------------------------------------------------------------ benchmarks

    /** A plain array store of one token id: the floor for per-token bookkeeping. */
    @Benchmark
    public int baselineIntArray(Baseline b) {
        int i = b.n++ & (CAP - 1);
        b.tokens[i] = i;
        return i;
    }

    /** The same store under an uncontended StampedLock write lock, as every manager mutation takes one. */
    @Benchmark
    public int baselineLockedIntArray(Baseline b) {
        long st = b.lock.writeLock();
        try {
            int i = b.n++ & (CAP - 1);
            b.tokens[i] = i;
            return i;
        } finally {
            b.lock.unlockWrite(st);
        }
    }

    /** One clock read: the manager stamps every append with its clock for idle leases. */
    @Benchmark
    public long baselineNanoTime() {
        return System.nanoTime();
    }

    @Benchmark
    public int decodeToken(DecodeState s) {
        if (s.seq.length() == CAP) {
            s.reopen();
        }
        return s.m.append(s.seq, s.token());
    }

    @Benchmark
    public int appendBlock16(Block16State s) {
        if (s.seq.length() == CAP) {
            s.reopen();
        }
        int[] b = s.block;
        for (int i = 0; i < 16; i++) {
            b[i] = s.token();
        }
        return s.m.append(s.seq, b);
    }

    @Benchmark
    public int blockAllocFree(AllocFreeState s) {
        if (s.seq.length() == CAP) {
            s.reopen();
        }
        return s.m.append(s.seq, s.token());
    }

    @Benchmark
    public int windowBlock16(Window16State s) {
        if (s.seq.length() == CAP) {
            s.reopen();
        }
        int[] b = s.block;
        for (int i = 0; i < 16; i++) {
            b[i] = s.token();
        }
        return s.m.append(s.seq, b);
    }

    @Benchmark
    public int forkFree(ForkState s) {
        Sequence child = s.m.fork(s.parent, "child");
        int n = child.heldBlocks();
        s.m.free(child);
        return n;
    }

    @Benchmark
    public int openAppendFree(LifecycleState s) {
        Sequence q = s.m.open("req");
        int[] t = s.tokens;
        for (int i = 0; i < 16; i++) {
            t[i] = s.next++ & 0x7FFF_FFFF;
        }
        int r = s.m.append(q, t);
        s.m.free(q);
        return r;
    }

    @Benchmark
    public int cachedPrefixLength(LookupState s) {
        return s.m.cachedPrefixLength(s.prompt);
    }
}
