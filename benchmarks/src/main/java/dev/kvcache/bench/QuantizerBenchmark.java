package dev.kvcache.bench;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.quant.Quantizers;
import dev.kvcache.quant.SliceKernels;
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Quantizer throughput per format, Vector API vs scalar kernels, beside plain
 * {@code MemorySegment.copy} baselines in the same run: of the encoded bytes, and of the fp32
 * bytes a decode produces.
 *
 * <p>Data: {@code tokens} tokens of one head (headDim 128) in blocks of 16 tokens, Gaussian with
 * 10x outlier channels; one pass over all blocks per operation:
 * <ul>
 *   <li>{@code encode}: float[] to encoded slices (what a store does on write);</li>
 *   <li>{@code decode}: encoded slices to float[] (materializing dequantization);</li>
 *   <li>{@code dotRows} / {@code accumulateRows}: the fused attention primitives (scores of one
 *       query against every row; weighted sum of every row), reading the encoded bytes only;</li>
 *   <li>{@code copy}: {@code MemorySegment.copy} of the encoded bytes to another segment;</li>
 *   <li>{@code copyFp32}: {@code MemorySegment.copy} of {@code tokens * headDim * 4} bytes from an
 *       off-heap segment into the float[] that decode writes: the fp32 values, copied.</li>
 * </ul>
 * Bandwidth ratio of an operation = time(copy) / time(operation) for the same format and size (both
 * move the same encoded bytes once; decode also writes 4 bytes per element, the fused kernels write
 * almost nothing). Decode throughput in GB/s of fp32 values = tokens * headDim * 4 / time; its
 * ratio to copyFp32 (same bytes written, more read by the copy) is the decode target
 * (8-bit formats: >= 0.5). The small size measures compute (copy runs from L2); the large one the
 * memory-bound regime of a real KV cache. Quote results only as ratios within one run.
 *
 * <p>{@code role}: KIVI's key and value slices use different kernels ({@code keys}: per channel
 * across the block's tokens; {@code values}: per token); every other format ignores it.
 *
 * <p>Run: {@code java -jar benchmarks/target/benchmarks.jar QuantizerBenchmark -f 1 -wi 2 -w 1 -i 3 -r 1}
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector",
        "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
@State(Scope.Thread)
public class QuantizerBenchmark {

    static final int HEAD_DIM = 128;
    static final int BLOCK_TOKENS = 16;

    @Param({"F32", "F16", "BF16", "Q8_0", "Q5_0", "Q4_0", "FP8_E4M3", "FP8_E5M2", "KIVI_4", "KIVI_2"})
    public String format;

    /** {@code vector}: the active provider (Vector API when available); {@code scalar}: plain Java. */
    @Param({"vector", "scalar"})
    public String kernels;

    /** {@code keys} or {@code values}: which KIVI kernels (the same kernels for every other format). */
    @Param({"keys"})
    public String role;

    /** 2048 tokens: the slices stay in L2 (Q8_0: 278 KB); 131072: far beyond the caches (Q8_0: 17.8 MB). */
    @Param({"2048", "131072"})
    public int tokens;

    SliceKernels k;
    Arena arena;
    MemorySegment encoded;
    MemorySegment copyTarget;
    MemorySegment fp32Source;
    MemorySegment decodedSegment;
    long sliceBytes;
    int blocks;
    float[] src;
    float[] decoded;
    float[] q;
    float[] scores;
    float[] weights;
    float[] acc;

    @Setup(Level.Trial)
    public void setup() {
        KvFormat f = KvFormats.byName(format);
        boolean values = switch (role) {
            case "keys" -> false;
            case "values" -> true;
            default -> throw new IllegalArgumentException("role must be keys or values, got " + role);
        };
        k = kernels.equals("scalar")
                ? (values ? Quantizers.scalarValueKernels(f) : Quantizers.scalarKeyKernels(f))
                : (values ? Quantizers.valueKernels(f) : Quantizers.keyKernels(f));
        if (kernels.equals("vector") && !Quantizers.vectorized()) {
            throw new IllegalStateException("Vector API provider not active: " + Quantizers.provider());
        }
        blocks = tokens / BLOCK_TOKENS;
        sliceBytes = k.sliceBytes(BLOCK_TOKENS, HEAD_DIM);
        arena = Arena.ofShared();
        encoded = arena.allocate(sliceBytes * blocks, 64);
        copyTarget = arena.allocate(sliceBytes * blocks, 64);
        SplittableRandom r = new SplittableRandom(42);
        src = new float[tokens * HEAD_DIM];
        for (int i = 0; i < src.length; i++) {
            double g = r.nextGaussian();
            src[i] = (float) (i % HEAD_DIM % 37 == 3 ? 10 * g : g);
        }
        decoded = new float[src.length];
        decodedSegment = MemorySegment.ofArray(decoded);
        fp32Source = arena.allocate(4L * src.length, 64);
        MemorySegment.copy(MemorySegment.ofArray(src), 0, fp32Source, 0, 4L * src.length);
        q = new float[HEAD_DIM];
        for (int i = 0; i < HEAD_DIM; i++) {
            q[i] = (float) r.nextGaussian();
        }
        scores = new float[tokens];
        weights = new float[tokens];
        java.util.Arrays.fill(weights, 1f / tokens);
        acc = new float[HEAD_DIM];
        encode();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public MemorySegment encode() {
        for (int b = 0; b < blocks; b++) {
            k.encode(src, b * BLOCK_TOKENS * HEAD_DIM, BLOCK_TOKENS, HEAD_DIM, encoded, b * sliceBytes);
        }
        return encoded;
    }

    @Benchmark
    public float[] decode() {
        for (int b = 0; b < blocks; b++) {
            k.decode(encoded, b * sliceBytes, BLOCK_TOKENS, HEAD_DIM, decoded, b * BLOCK_TOKENS * HEAD_DIM);
        }
        return decoded;
    }

    @Benchmark
    public float[] dotRows() {
        for (int b = 0; b < blocks; b++) {
            k.dotRows(encoded, b * sliceBytes, BLOCK_TOKENS, BLOCK_TOKENS, HEAD_DIM, q, 0, 0.088f, scores,
                    b * BLOCK_TOKENS);
        }
        return scores;
    }

    @Benchmark
    public float[] accumulateRows() {
        for (int b = 0; b < blocks; b++) {
            k.accumulateRows(encoded, b * sliceBytes, BLOCK_TOKENS, BLOCK_TOKENS, HEAD_DIM, weights,
                    b * BLOCK_TOKENS, acc, 0);
        }
        return acc;
    }

    /** Baseline: the same encoded bytes, copied once (independent of {@code kernels}). */
    @Benchmark
    public void copy(Blackhole bh) {
        MemorySegment.copy(encoded, 0, copyTarget, 0, sliceBytes * blocks);
        bh.consume(copyTarget);
    }

    /**
     * Baseline for decode: the {@code tokens * HEAD_DIM} fp32 values, copied from off-heap memory
     * into the float[] decode writes (independent of {@code kernels}).
     */
    @Benchmark
    public float[] copyFp32() {
        MemorySegment.copy(fp32Source, 0, decodedSegment, 0, 4L * decoded.length);
        return decoded;
    }

    /**
     * Integer-domain decode dot products against the float kernels, same slices, same run (issue
     * #17): llama.cpp's CPU path quantizes the query to 8 bits per 32-value block once per decode
     * step and takes one integer dot product per block against Q8_0 / Q4_0 keys, scaling once per
     * block. One operation = one decode step of one KV head and its four query heads (Llama-3-8B
     * grouping) over {@code tokens} keys in 16-token slices:
     * <ul>
     *   <li>{@code groupDotFloat}: {@code Quantizers.keyKernels(f).dotRowsGroup} per slice (the
     *       kernel paged decode calls: codes widened to floats once per row, scaled, FMA'd into the
     *       four heads);</li>
     *   <li>{@code groupDotInt}: the query quantized once per operation (per head and 32-value
     *       block: d = amax / 127, codes roundf(x / d), kept as shorts), then per slice, row, block
     *       and head the Vector API integer dot the way Lucene's int8 dot product widens: codes
     *       widened B2S, one short multiply (Q8_0: |product| <= 16129; Q4_0: low and high nibble
     *       products added, <= 2032), S2I and add into ints, I2F, one FMA by d_k * d_q. No argument
     *       checks (the float path pays Codec's), so the comparison favours the integer kernel.</li>
     * </ul>
     * Written for 512-bit vectors (ByteVector.SPECIES_256 widened to 32 shorts); the setup refuses
     * narrower machines. The Vector API has no pmaddwd / vpdpbusd, so every block pays two S2I
     * widenings and one I2F per head where the float kernel pays one B2F widening per row shared
     * by the four heads.
     */
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    @Warmup(iterations = 2, time = 1)
    @Measurement(iterations = 3, time = 1)
    @Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector",
            "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
    @State(Scope.Thread)
    public static class IntegerDot {
        static final int HEADS = 4;
        static final jdk.incubator.vector.VectorSpecies<Byte> B256 = jdk.incubator.vector.ByteVector.SPECIES_256;
        static final jdk.incubator.vector.VectorSpecies<Byte> B128 = jdk.incubator.vector.ByteVector.SPECIES_128;
        static final jdk.incubator.vector.VectorSpecies<Short> S512 = jdk.incubator.vector.ShortVector.SPECIES_512;
        static final jdk.incubator.vector.VectorSpecies<Short> S256 = jdk.incubator.vector.ShortVector.SPECIES_256;
        static final jdk.incubator.vector.VectorSpecies<Integer> I512 = jdk.incubator.vector.IntVector.SPECIES_512;
        static final jdk.incubator.vector.VectorSpecies<Float> F512 = jdk.incubator.vector.FloatVector.SPECIES_512;
        static final java.nio.ByteOrder LE = java.nio.ByteOrder.LITTLE_ENDIAN;

        @Param({"Q8_0", "Q4_0"})
        public String format;

        @Param({"32768"})
        public int tokens;

        SliceKernels k;
        Arena arena;
        MemorySegment keys;
        long sliceBytes;
        int blocks;
        float[] q;
        short[] qq;
        float[] qd;
        float[] scores;
        boolean q8;

        @Setup(Level.Trial)
        public void setup() {
            if (jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.vectorBitSize() < 512) {
                throw new IllegalStateException("IntegerDot is written for 512-bit vectors");
            }
            KvFormat f = KvFormats.byName(format);
            if (f != KvFormats.Q8_0 && f != KvFormats.Q4_0) {
                throw new IllegalArgumentException("IntegerDot runs Q8_0 and Q4_0, got " + format);
            }
            q8 = f == KvFormats.Q8_0;
            k = Quantizers.keyKernels(f);
            blocks = tokens / BLOCK_TOKENS;
            sliceBytes = k.sliceBytes(BLOCK_TOKENS, HEAD_DIM);
            arena = Arena.ofShared();
            keys = arena.allocate(sliceBytes * blocks, 64);
            SplittableRandom r = new SplittableRandom(42);
            float[] rows = new float[BLOCK_TOKENS * HEAD_DIM];
            for (int b = 0; b < blocks; b++) {
                for (int i = 0; i < rows.length; i++) {
                    double g = r.nextGaussian();
                    rows[i] = (float) (i % HEAD_DIM % 37 == 3 ? 10 * g : g);
                }
                k.encode(rows, 0, BLOCK_TOKENS, HEAD_DIM, keys, b * sliceBytes);
            }
            q = new float[HEADS * HEAD_DIM];
            for (int i = 0; i < q.length; i++) {
                q[i] = (float) r.nextGaussian();
            }
            qq = new short[q.length];
            qd = new float[q.length / 32];
            scores = new float[HEADS * BLOCK_TOKENS * blocks];
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            arena.close();
        }

        @Benchmark
        public float[] groupDotFloat() {
            float scale = 0.0883883f;
            for (int b = 0; b < blocks; b++) {
                k.dotRowsGroup(keys, b * sliceBytes, BLOCK_TOKENS, BLOCK_TOKENS, HEAD_DIM, q, 0, HEADS, scale,
                        scores, b * HEADS * BLOCK_TOKENS);
            }
            return scores;
        }

        /** q8 quantization of the query, once per step: d = amax/127 per 32 values, codes roundf(x/d). */
        static void quantizeQuery(float[] q, short[] qq, float[] qd) {
            for (int b = 0; b < qd.length; b++) {
                float amax = 0f;
                for (int j = 0; j < 32; j++) {
                    amax = Math.max(amax, Math.abs(q[b * 32 + j]));
                }
                float d = amax / 127f;
                float id = d != 0f ? 1f / d : 0f;
                qd[b] = d;
                for (int j = 0; j < 32; j++) {
                    qq[b * 32 + j] = (short) Math.round(q[b * 32 + j] * id);
                }
            }
        }

        @Benchmark
        public float[] groupDotInt() {
            float scale = 0.0883883f;
            quantizeQuery(q, qq, qd);
            for (int b = 0; b < blocks; b++) {
                long off = b * sliceBytes;
                int so = b * HEADS * BLOCK_TOKENS;
                if (q8) {
                    q8Slice(keys, off, qq, qd, scale, scores, so);
                } else {
                    q4Slice(keys, off, qq, qd, scale, scores, so);
                }
            }
            return scores;
        }

        static void q8Slice(MemorySegment s, long off, short[] qq, float[] qd, float scale, float[] scores, int so) {
            for (int r = 0; r < BLOCK_TOKENS; r++) {
                long o = off + r * 4L * 34;
                jdk.incubator.vector.FloatVector a0 = jdk.incubator.vector.FloatVector.zero(F512), a1 = a0, a2 = a0, a3 = a0;
                for (int b = 0; b < HEAD_DIM / 32; b++) {
                    long g = o + b * 34L;
                    float d = Float.float16ToFloat(s.get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, g));
                    jdk.incubator.vector.ShortVector kv = (jdk.incubator.vector.ShortVector) jdk.incubator.vector.ByteVector
                            .fromMemorySegment(B256, s, g + 2, LE).convertShape(jdk.incubator.vector.VectorOperators.B2S, S512, 0);
                    jdk.incubator.vector.ShortVector p = kv.mul(jdk.incubator.vector.ShortVector.fromArray(S512, qq, b * 32));
                    jdk.incubator.vector.IntVector t = ((jdk.incubator.vector.IntVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2I, I512, 0))
                            .add((jdk.incubator.vector.IntVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2I, I512, 1));
                    a0 = ((jdk.incubator.vector.FloatVector) t.convert(jdk.incubator.vector.VectorOperators.I2F, 0)).fma(jdk.incubator.vector.FloatVector.broadcast(F512, d * qd[b]), a0);
                    p = kv.mul(jdk.incubator.vector.ShortVector.fromArray(S512, qq, HEAD_DIM + b * 32));
                    t = ((jdk.incubator.vector.IntVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2I, I512, 0))
                            .add((jdk.incubator.vector.IntVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2I, I512, 1));
                    a1 = ((jdk.incubator.vector.FloatVector) t.convert(jdk.incubator.vector.VectorOperators.I2F, 0)).fma(jdk.incubator.vector.FloatVector.broadcast(F512, d * qd[4 + b]), a1);
                    p = kv.mul(jdk.incubator.vector.ShortVector.fromArray(S512, qq, 2 * HEAD_DIM + b * 32));
                    t = ((jdk.incubator.vector.IntVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2I, I512, 0))
                            .add((jdk.incubator.vector.IntVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2I, I512, 1));
                    a2 = ((jdk.incubator.vector.FloatVector) t.convert(jdk.incubator.vector.VectorOperators.I2F, 0)).fma(jdk.incubator.vector.FloatVector.broadcast(F512, d * qd[8 + b]), a2);
                    p = kv.mul(jdk.incubator.vector.ShortVector.fromArray(S512, qq, 3 * HEAD_DIM + b * 32));
                    t = ((jdk.incubator.vector.IntVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2I, I512, 0))
                            .add((jdk.incubator.vector.IntVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2I, I512, 1));
                    a3 = ((jdk.incubator.vector.FloatVector) t.convert(jdk.incubator.vector.VectorOperators.I2F, 0)).fma(jdk.incubator.vector.FloatVector.broadcast(F512, d * qd[12 + b]), a3);
                }
                scores[so + r] = scale * a0.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
                scores[so + BLOCK_TOKENS + r] = scale * a1.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
                scores[so + 2 * BLOCK_TOKENS + r] = scale * a2.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
                scores[so + 3 * BLOCK_TOKENS + r] = scale * a3.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
            }
        }

        static void q4Slice(MemorySegment s, long off, short[] qq, float[] qd, float scale, float[] scores, int so) {
            for (int r = 0; r < BLOCK_TOKENS; r++) {
                long o = off + r * 4L * 18;
                jdk.incubator.vector.FloatVector a0 = jdk.incubator.vector.FloatVector.zero(F512), a1 = a0, a2 = a0, a3 = a0;
                for (int b = 0; b < HEAD_DIM / 32; b++) {
                    long g = o + b * 18L;
                    float d = Float.float16ToFloat(s.get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, g));
                    jdk.incubator.vector.ByteVector v = jdk.incubator.vector.ByteVector.fromMemorySegment(B128, s, g + 2, LE);
                    jdk.incubator.vector.ShortVector lo = (jdk.incubator.vector.ShortVector) v.and((byte) 0x0F).sub((byte) 8)
                            .convertShape(jdk.incubator.vector.VectorOperators.B2S, S256, 0);
                    jdk.incubator.vector.ShortVector hi = (jdk.incubator.vector.ShortVector) v.lanewise(jdk.incubator.vector.VectorOperators.LSHR, 4)
                            .and((byte) 0x0F).sub((byte) 8).convertShape(jdk.incubator.vector.VectorOperators.B2S, S256, 0);
                    int e = b * 32;
                    jdk.incubator.vector.ShortVector p = lo.mul(jdk.incubator.vector.ShortVector.fromArray(S256, qq, e))
                            .add(hi.mul(jdk.incubator.vector.ShortVector.fromArray(S256, qq, e + 16)));
                    a0 = ((jdk.incubator.vector.FloatVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2F, F512, 0)).fma(jdk.incubator.vector.FloatVector.broadcast(F512, d * qd[b]), a0);
                    e += HEAD_DIM;
                    p = lo.mul(jdk.incubator.vector.ShortVector.fromArray(S256, qq, e))
                            .add(hi.mul(jdk.incubator.vector.ShortVector.fromArray(S256, qq, e + 16)));
                    a1 = ((jdk.incubator.vector.FloatVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2F, F512, 0)).fma(jdk.incubator.vector.FloatVector.broadcast(F512, d * qd[4 + b]), a1);
                    e += HEAD_DIM;
                    p = lo.mul(jdk.incubator.vector.ShortVector.fromArray(S256, qq, e))
                            .add(hi.mul(jdk.incubator.vector.ShortVector.fromArray(S256, qq, e + 16)));
                    a2 = ((jdk.incubator.vector.FloatVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2F, F512, 0)).fma(jdk.incubator.vector.FloatVector.broadcast(F512, d * qd[8 + b]), a2);
                    e += HEAD_DIM;
                    p = lo.mul(jdk.incubator.vector.ShortVector.fromArray(S256, qq, e))
                            .add(hi.mul(jdk.incubator.vector.ShortVector.fromArray(S256, qq, e + 16)));
                    a3 = ((jdk.incubator.vector.FloatVector) p.convertShape(jdk.incubator.vector.VectorOperators.S2F, F512, 0)).fma(jdk.incubator.vector.FloatVector.broadcast(F512, d * qd[12 + b]), a3);
                }
                scores[so + r] = scale * a0.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
                scores[so + BLOCK_TOKENS + r] = scale * a1.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
                scores[so + 2 * BLOCK_TOKENS + r] = scale * a2.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
                scores[so + 3 * BLOCK_TOKENS + r] = scale * a3.reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
            }
        }
    }
}
