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

    @Param({"F32", "F16", "BF16", "Q8_0", "Q4_0", "FP8_E4M3", "FP8_E5M2", "KIVI_4", "KIVI_2"})
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
}
