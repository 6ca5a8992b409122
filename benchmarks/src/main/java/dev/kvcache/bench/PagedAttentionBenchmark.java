package dev.kvcache.bench;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.offheap.BatchDecoder;
import dev.kvcache.offheap.OffHeapKvStore;
import dev.kvcache.offheap.PagedAttention;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Blackhole;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.TimeUnit;

/**
 * One decode step of one layer (Llama-3-8B shape: 32 query heads, 8 KV heads, headDim 128) over
 * 1k / 8k / 32k tokens:
 * <ul>
 *   <li>{@code paged}: {@link PagedAttention#decode} over an {@link OffHeapKvStore} at F32, F16 or
 *       Q8_0 (blocks of 16 tokens, physical blocks in shuffled order, as after allocation churn);</li>
 *   <li>{@code pagedSplit2}: the same with {@link BatchDecoder#decodeSplit} on 2 threads;</li>
 *   <li>{@code contiguous}: the same attention over llama3.java-style {@code float[]} caches laid
 *       out {@code [position][kvDim]}, with llama3.java's loop structure (per head: scores for every
 *       position, softmax, weighted sum) - the baseline the paged layout must stay within 1.10x of;</li>
 *   <li>{@code contiguousVector}: that loop with Vector API FMA dot products and weighted sums
 *       (HEAD_DIM is a multiple of every species length), so layout and arithmetic can be told apart;</li>
 *   <li>{@code copy}: {@code MemorySegment.copy} of as many bytes as the F32 cache holds, for the
 *       machine's effective bandwidth ({@code bytes / time}) at that size;</li>
 *   <li>{@code copySplit2}: the same copy split in two halves on the {@link #SPLIT_THREADS} pool
 *       threads, the baseline for {@code pagedSplit2} (one core may not saturate the memory
 *       system).</li>
 * </ul>
 * Effective decode bandwidth = bytes of K and V read ({@code tokens * kvDim * 2 * bytesPerElement},
 * metadata included) / time. Quote results only as ratios within one run.
 *
 * <p>Run: {@code java -jar benchmarks/target/benchmarks.jar PagedAttentionBenchmark -wi 2 -i 3}
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector",
        "--enable-native-access=ALL-UNNAMED", "-Xmx3g"})
public class PagedAttentionBenchmark {

    static final int QUERY_HEADS = 32;
    static final int KV_HEADS = 8;
    static final int HEAD_DIM = 128;
    static final int KV_DIM = KV_HEADS * HEAD_DIM;
    static final int BLOCK_TOKENS = 16;
    /** Threads for {@code pagedSplit2}: the 2 cores of the VM these numbers come from. */
    static final int SPLIT_THREADS = 2;

    @State(Scope.Thread)
    public static class Paged {
        @Param({"1024", "8192", "32768"})
        public int tokens;

        @Param({"F32", "F16", "Q8_0"})
        public String format;

        OffHeapKvStore store;
        int[] table;
        float[] q;
        float[] out;
        ForkJoinPool pool;
        BatchDecoder decoder;

        @Setup(Level.Trial)
        public void setup() {
            KvFormat f = KvFormats.byName(format);
            KvLayout layout = new KvLayout(1, KV_HEADS, HEAD_DIM, BLOCK_TOKENS, f);
            int blocks = tokens / BLOCK_TOKENS;
            store = OffHeapKvStore.allocate(layout, blocks);
            SplittableRandom r = new SplittableRandom(42);
            table = new int[blocks];
            for (int i = 0; i < blocks; i++) {
                table[i] = i;
            }
            for (int i = blocks - 1; i > 0; i--) {
                int j = r.nextInt(i + 1);
                int t = table[i];
                table[i] = table[j];
                table[j] = t;
            }
            float[] k = new float[KV_DIM];
            float[] v = new float[KV_DIM];
            for (int p = 0; p < tokens; p++) {
                fill(r, k);
                fill(r, v);
                store.write(0, (long) table[p / BLOCK_TOKENS] * BLOCK_TOKENS + p % BLOCK_TOKENS, k, v);
            }
            q = new float[QUERY_HEADS * HEAD_DIM];
            fill(r, q);
            out = new float[QUERY_HEADS * HEAD_DIM];
            pool = new ForkJoinPool(SPLIT_THREADS);
            decoder = new BatchDecoder(pool);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            pool.shutdown();
            store.close();
        }
    }

    @State(Scope.Thread)
    public static class Contiguous {
        @Param({"1024", "8192", "32768"})
        public int tokens;

        float[] keyCache;
        float[] valueCache;
        float[] q;
        float[] att;
        float[] out;

        @Setup(Level.Trial)
        public void setup() {
            SplittableRandom r = new SplittableRandom(42);
            keyCache = new float[tokens * KV_DIM];
            valueCache = new float[tokens * KV_DIM];
            fill(r, keyCache);
            fill(r, valueCache);
            q = new float[QUERY_HEADS * HEAD_DIM];
            fill(r, q);
            att = new float[QUERY_HEADS * tokens];
            out = new float[QUERY_HEADS * HEAD_DIM];
        }
    }

    @State(Scope.Thread)
    public static class Copy {
        @Param({"1024", "8192", "32768"})
        public int tokens;

        Arena arena;
        MemorySegment src;
        MemorySegment dst;
        ForkJoinPool pool;
        java.util.concurrent.Callable<Void>[] halves;

        @SuppressWarnings("unchecked")
        @Setup(Level.Trial)
        public void setup() {
            pool = new ForkJoinPool(SPLIT_THREADS);
            halves = new java.util.concurrent.Callable[SPLIT_THREADS];
            for (int t = 0; t < SPLIT_THREADS; t++) {
                int part = t;
                halves[t] = () -> {
                    long size = src.byteSize();
                    long from = size * part / SPLIT_THREADS;
                    long to = size * (part + 1) / SPLIT_THREADS;
                    MemorySegment.copy(src, from, dst, from, to - from);
                    return null;
                };
            }
            arena = Arena.ofShared();
            long bytes = (long) tokens * KV_DIM * Float.BYTES * 2;
            src = arena.allocate(bytes, 64);
            dst = arena.allocate(bytes, 64);
            src.fill((byte) 1);
            dst.fill((byte) 2);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            pool.shutdown();
            arena.close();
        }
    }

    static void fill(SplittableRandom r, float[] a) {
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) (r.nextDouble() * 2 - 1);
        }
    }

    @Benchmark
    public void paged(Paged s, Blackhole bh) {
        PagedAttention.decode(s.store, 0, s.q, QUERY_HEADS, s.table, s.tokens, s.out);
        bh.consume(s.out);
    }

    /** The same step with the sequence's blocks split over {@link #SPLIT_THREADS} threads. */
    @Benchmark
    public void pagedSplit2(Paged s, Blackhole bh) {
        s.decoder.decodeSplit(s.store, 0, s.q, QUERY_HEADS, s.table, s.tokens, s.out);
        bh.consume(s.out);
    }

    /** llama3.java's attention loop (Llama.forward), over one layer's caches. */
    @Benchmark
    public void contiguous(Contiguous s, Blackhole bh) {
        final int kvMul = QUERY_HEADS / KV_HEADS;
        final int n = s.tokens;
        final float scale = (float) (1.0 / Math.sqrt(HEAD_DIM));
        float[] q = s.q;
        float[] kc = s.keyCache;
        float[] vc = s.valueCache;
        for (int h = 0; h < QUERY_HEADS; h++) {
            int qOff = h * HEAD_DIM;
            int attOff = h * n;
            int kvOff = (h / kvMul) * HEAD_DIM;
            for (int t = 0; t < n; t++) {
                int kOff = t * KV_DIM + kvOff;
                float score = 0f;
                for (int i = 0; i < HEAD_DIM; i++) {
                    score += q[qOff + i] * kc[kOff + i];
                }
                s.att[attOff + t] = score * scale;
            }
            float max = Float.NEGATIVE_INFINITY;
            for (int t = 0; t < n; t++) {
                max = Math.max(max, s.att[attOff + t]);
            }
            float sum = 0f;
            for (int t = 0; t < n; t++) {
                float e = (float) Math.exp(s.att[attOff + t] - max);
                s.att[attOff + t] = e;
                sum += e;
            }
            float inv = 1f / sum;
            int oOff = h * HEAD_DIM;
            java.util.Arrays.fill(s.out, oOff, oOff + HEAD_DIM, 0f);
            for (int t = 0; t < n; t++) {
                float a = s.att[attOff + t] * inv;
                int vOff = t * KV_DIM + kvOff;
                for (int i = 0; i < HEAD_DIM; i++) {
                    s.out[oOff + i] += a * vc[vOff + i];
                }
            }
        }
        bh.consume(s.out);
    }

    static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;

    /**
     * The same loop as {@link #contiguous} with Vector API dot products and weighted sums (FMA per
     * lane): separates what the contiguous layout costs from what scalar arithmetic costs.
     */
    @Benchmark
    public void contiguousVector(Contiguous s, Blackhole bh) {
        final int kvMul = QUERY_HEADS / KV_HEADS;
        final int n = s.tokens;
        final float scale = (float) (1.0 / Math.sqrt(HEAD_DIM));
        final int lanes = SPECIES.length();
        float[] q = s.q;
        float[] kc = s.keyCache;
        float[] vc = s.valueCache;
        for (int h = 0; h < QUERY_HEADS; h++) {
            int qOff = h * HEAD_DIM;
            int attOff = h * n;
            int kvOff = (h / kvMul) * HEAD_DIM;
            for (int t = 0; t < n; t++) {
                int kOff = t * KV_DIM + kvOff;
                FloatVector acc = FloatVector.zero(SPECIES);
                for (int i = 0; i < HEAD_DIM; i += lanes) {
                    acc = FloatVector.fromArray(SPECIES, q, qOff + i)
                            .fma(FloatVector.fromArray(SPECIES, kc, kOff + i), acc);
                }
                s.att[attOff + t] = acc.reduceLanes(VectorOperators.ADD) * scale;
            }
            float max = Float.NEGATIVE_INFINITY;
            for (int t = 0; t < n; t++) {
                max = Math.max(max, s.att[attOff + t]);
            }
            float sum = 0f;
            for (int t = 0; t < n; t++) {
                float e = (float) Math.exp(s.att[attOff + t] - max);
                s.att[attOff + t] = e;
                sum += e;
            }
            float inv = 1f / sum;
            int oOff = h * HEAD_DIM;
            java.util.Arrays.fill(s.out, oOff, oOff + HEAD_DIM, 0f);
            for (int t = 0; t < n; t++) {
                FloatVector a = FloatVector.broadcast(SPECIES, s.att[attOff + t] * inv);
                int vOff = t * KV_DIM + kvOff;
                for (int i = 0; i < HEAD_DIM; i += lanes) {
                    a.fma(FloatVector.fromArray(SPECIES, vc, vOff + i), FloatVector.fromArray(SPECIES, s.out, oOff + i))
                            .intoArray(s.out, oOff + i);
                }
            }
        }
        bh.consume(s.out);
    }

    @Benchmark
    public void copy(Copy s) {
        MemorySegment.copy(s.src, 0, s.dst, 0, s.src.byteSize());
    }

    /** {@link #copy} in {@link #SPLIT_THREADS} halves on as many threads. */
    @Benchmark
    public void copySplit2(Copy s) throws Exception {
        for (var f : s.pool.invokeAll(java.util.List.of(s.halves))) {
            f.get();
        }
    }
}
