package dev.kvcache.bench;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.offheap.BatchDecoder;
import dev.kvcache.offheap.OffHeapKvStore;
import dev.kvcache.offheap.PagedAttention;
import dev.kvcache.quant.Quantizers;
import dev.kvcache.quant.SliceKernels;
import dev.kvcache.quant.SoftmaxKernels;
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
 *   <li>{@code pagedHot}: {@code paged} with the table cycling over {@link #HOT_BLOCKS} physical
 *       blocks, K and V cache-resident: each format's arithmetic floor;</li>
 *   <li>{@code contiguous}: the same attention over llama3.java-style {@code float[]} caches laid
 *       out {@code [position][kvDim]}, with llama3.java's scalar loop (per head: scores for every
 *       position, softmax, weighted sum): a <em>floor</em> only, no engine that cares runs this;</li>
 *   <li>{@code contiguousVector}: the per-head Vector API loop in the style of llama3.java /
 *       Jlama: one query head at a time over the {@code [position][kvDim]} F32 caches, FMA dot
 *       products and weighted sums, so K and V are read once per <em>query</em> head;</li>
 *   <li>the three Vector API baselines below and above compute the softmax in two passes with
 *       kvcache-quant's vectorized exponentials (see {@link #softmax}), so they differ from
 *       {@code paged} in layout and loop structure, not in the exp;</li>
 *   <li>{@code contiguousGrouped}: the grouped contiguous Vector API loop a reader would write for
 *       grouped-query attention: per KV head, each K row read once for the group's four query
 *       heads, a two-pass softmax per head, each V row read once for the four heads (F32,
 *       {@code [position][kvDim]});</li>
 *   <li>{@code contiguousKernels}: the same grouped loop over a <em>contiguous</em> cache in the
 *       benchmark's format, each KV head's K and V one slice of {@code tokens} rows, through
 *       kvcache-quant's own {@code dotRowsGroup} / {@code accumulateRowsGroup} over the whole
 *       slice and a two-pass softmax: what {@code paged} costs over a contiguous layout in the
 *       same format (row formats only: block formats - FP8, KIVI - have no contiguous slice of
 *       more than one block, and are skipped);</li>
 *   <li>{@code copy}: {@code MemorySegment.copy} of as many bytes as the F32 cache holds, for the
 *       machine's effective bandwidth ({@code bytes / time}) at that size;</li>
 *   <li>{@code copySplit2}: the same copy split in two halves on the {@link #SPLIT_THREADS} pool
 *       threads, the baseline for {@code pagedSplit2} (one core may not saturate the memory
 *       system).</li>
 * </ul>
 * Effective decode bandwidth = bytes of K and V read ({@code tokens * kvDim * 2 * bytesPerElement},
 * metadata included) / time. Quote results only as ratios within one run. The grouped loops assume
 * four query heads per KV head (Llama-3-8B) and a head dimension of a multiple of two vectors.
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
    /**
     * Physical blocks {@code pagedHot} reads: 2 blocks of 16 tokens x 8 KV heads, K and V, 256 KiB
     * at F32, so every read hits the caches.
     */
    static final int HOT_BLOCKS = 2;
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
        /** {@code pagedHot}'s table: logical block i reads physical block {@code table[i % HOT_BLOCKS]}. */
        int[] hotTable;
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
            hotTable = new int[blocks];
            for (int i = 0; i < blocks; i++) {
                hotTable[i] = table[i % HOT_BLOCKS];
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

    /** A contiguous cache in the benchmark's format: per KV head one K and one V slice of {@code tokens} rows. */
    @State(Scope.Thread)
    public static class ContiguousFormat {
        @Param({"1024", "8192", "32768"})
        public int tokens;

        @Param({"F32", "F16", "Q8_0"})
        public String format;

        Arena arena;
        MemorySegment keys;
        MemorySegment values;
        long sliceBytes;
        SliceKernels kk;
        SliceKernels vk;
        float[] q;
        float[] att;
        float[] out;

        @Setup(Level.Trial)
        public void setup() {
            KvFormat f = KvFormats.byName(format);
            kk = Quantizers.keyKernels(f);
            vk = Quantizers.valueKernels(f);
            if (!kk.rowIndependent() || !vk.rowIndependent()) {
                throw new IllegalArgumentException(format + " is a block format: no contiguous slice of "
                        + tokens + " rows (contiguousKernels runs row formats only)");
            }
            sliceBytes = kk.sliceBytes(tokens, HEAD_DIM);
            arena = Arena.ofShared();
            keys = arena.allocate(sliceBytes * KV_HEADS, 64);
            values = arena.allocate(sliceBytes * KV_HEADS, 64);
            SplittableRandom r = new SplittableRandom(42);
            float[] rows = new float[tokens * HEAD_DIM];
            for (int g = 0; g < KV_HEADS; g++) {
                fill(r, rows);
                kk.encode(rows, 0, tokens, HEAD_DIM, keys, g * sliceBytes);
                fill(r, rows);
                vk.encode(rows, 0, tokens, HEAD_DIM, values, g * sliceBytes);
            }
            q = new float[QUERY_HEADS * HEAD_DIM];
            fill(r, q);
            att = new float[QUERY_HEADS / KV_HEADS * tokens];
            out = new float[QUERY_HEADS * HEAD_DIM];
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            arena.close();
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

    /**
     * The arithmetic floor of {@code paged}: the same step, the same number of positions and the
     * same kernels, with every logical block mapped onto one of {@link #HOT_BLOCKS} physical blocks,
     * so K and V come from the caches instead of DRAM. What is left is each format's compute
     * (widening, FMAs, reductions, the softmax): a quantized format cannot decode faster than
     * this, whatever its bytes.
     */
    @Benchmark
    public void pagedHot(Paged s, Blackhole bh) {
        PagedAttention.decode(s.store, 0, s.q, QUERY_HEADS, s.hotTable, s.tokens, s.out);
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
            softmax(s.att, attOff, n);
            int oOff = h * HEAD_DIM;
            java.util.Arrays.fill(s.out, oOff, oOff + HEAD_DIM, 0f);
            for (int t = 0; t < n; t++) {
                FloatVector a = FloatVector.broadcast(SPECIES, s.att[attOff + t]);
                int vOff = t * KV_DIM + kvOff;
                for (int i = 0; i < HEAD_DIM; i += lanes) {
                    a.fma(FloatVector.fromArray(SPECIES, vc, vOff + i), FloatVector.fromArray(SPECIES, s.out, oOff + i))
                            .intoArray(s.out, oOff + i);
                }
            }
        }
        bh.consume(s.out);
    }

    /**
     * The contiguous Vector API baselines' softmax: two passes over {@code att[off .. off+n)} with
     * kvcache-quant's vectorized exponentials ({@link Quantizers#softmaxKernels()}, the arithmetic
     * paged decode uses), so those loops differ from {@code paged} in layout and loop structure
     * only, not in how exp is computed.
     */
    static void softmax(float[] att, int off, int n) {
        float max = SOFTMAX.max(att, off, n);
        float sum = SOFTMAX.expSum(att, off, n, max);
        SOFTMAX.scale(att, off, n, 1f / sum);
    }

    static final SoftmaxKernels SOFTMAX = Quantizers.softmaxKernels();

    /**
     * The grouped contiguous Vector API loop (see the class comment): per KV head, K row t is loaded
     * once per chunk and FMA'd into the four query heads' accumulators; V row t once per chunk for
     * the four heads' outputs, held in registers across the rows (two chunks at a time).
     */
    @Benchmark
    public void contiguousGrouped(Contiguous s, Blackhole bh) {
        final int group = QUERY_HEADS / KV_HEADS;
        final int n = s.tokens;
        final float scale = (float) (1.0 / Math.sqrt(HEAD_DIM));
        final int lanes = SPECIES.length();
        float[] q = s.q;
        float[] kc = s.keyCache;
        float[] vc = s.valueCache;
        float[] att = s.att;
        float[] out = s.out;
        for (int g = 0; g < KV_HEADS; g++) {
            int kvOff = g * HEAD_DIM;
            int q0 = g * group * HEAD_DIM, q1 = q0 + HEAD_DIM, q2 = q1 + HEAD_DIM, q3 = q2 + HEAD_DIM;
            int a0 = 0, a1 = n, a2 = 2 * n, a3 = 3 * n;
            for (int t = 0; t < n; t++) {
                int kOff = t * KV_DIM + kvOff;
                FloatVector x0 = FloatVector.zero(SPECIES), x1 = x0, x2 = x0, x3 = x0;
                for (int i = 0; i < HEAD_DIM; i += lanes) {
                    FloatVector k = FloatVector.fromArray(SPECIES, kc, kOff + i);
                    x0 = k.fma(FloatVector.fromArray(SPECIES, q, q0 + i), x0);
                    x1 = k.fma(FloatVector.fromArray(SPECIES, q, q1 + i), x1);
                    x2 = k.fma(FloatVector.fromArray(SPECIES, q, q2 + i), x2);
                    x3 = k.fma(FloatVector.fromArray(SPECIES, q, q3 + i), x3);
                }
                att[a0 + t] = x0.reduceLanes(VectorOperators.ADD) * scale;
                att[a1 + t] = x1.reduceLanes(VectorOperators.ADD) * scale;
                att[a2 + t] = x2.reduceLanes(VectorOperators.ADD) * scale;
                att[a3 + t] = x3.reduceLanes(VectorOperators.ADD) * scale;
            }
            for (int j = 0; j < group; j++) {
                softmax(att, j * n, n);
            }
            for (int i = 0; i < HEAD_DIM; i += 2 * lanes) {
                FloatVector y0 = FloatVector.zero(SPECIES), y1 = y0, y2 = y0, y3 = y0;
                FloatVector z0 = y0, z1 = y0, z2 = y0, z3 = y0;
                for (int t = 0; t < n; t++) {
                    int vOff = t * KV_DIM + kvOff + i;
                    FloatVector va = FloatVector.fromArray(SPECIES, vc, vOff);
                    FloatVector vb = FloatVector.fromArray(SPECIES, vc, vOff + lanes);
                    FloatVector w = FloatVector.broadcast(SPECIES, att[a0 + t]);
                    y0 = va.fma(w, y0);
                    z0 = vb.fma(w, z0);
                    w = FloatVector.broadcast(SPECIES, att[a1 + t]);
                    y1 = va.fma(w, y1);
                    z1 = vb.fma(w, z1);
                    w = FloatVector.broadcast(SPECIES, att[a2 + t]);
                    y2 = va.fma(w, y2);
                    z2 = vb.fma(w, z2);
                    w = FloatVector.broadcast(SPECIES, att[a3 + t]);
                    y3 = va.fma(w, y3);
                    z3 = vb.fma(w, z3);
                }
                y0.intoArray(out, q0 + i);
                z0.intoArray(out, q0 + i + lanes);
                y1.intoArray(out, q1 + i);
                z1.intoArray(out, q1 + i + lanes);
                y2.intoArray(out, q2 + i);
                z2.intoArray(out, q2 + i + lanes);
                y3.intoArray(out, q3 + i);
                z3.intoArray(out, q3 + i + lanes);
            }
        }
        bh.consume(out);
    }

    /** The grouped loop over a contiguous cache in the benchmark's format, through kvcache-quant's kernels. */
    @Benchmark
    public void contiguousKernels(ContiguousFormat s, Blackhole bh) {
        final int group = QUERY_HEADS / KV_HEADS;
        final int n = s.tokens;
        final float scale = (float) (1.0 / Math.sqrt(HEAD_DIM));
        java.util.Arrays.fill(s.out, 0f);
        for (int g = 0; g < KV_HEADS; g++) {
            long off = g * s.sliceBytes;
            s.kk.dotRowsGroup(s.keys, off, n, n, HEAD_DIM, s.q, g * group * HEAD_DIM, group, scale, s.att, 0);
            for (int j = 0; j < group; j++) {
                softmax(s.att, j * n, n);
            }
            s.vk.accumulateRowsGroup(s.values, off, n, n, HEAD_DIM, s.att, 0, group, s.out, g * group * HEAD_DIM);
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
