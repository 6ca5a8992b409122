package dev.kvcache.cuda;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.Quantizer;
import dev.kvcache.quant.Quantizers;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The device tests compare the kernels against {@link RefCodec}; this test (which needs no GPU)
 * pins RefCodec to kvcache-quant's quantizers, the CPU store's encoders, byte for byte, on random
 * rows spanning many magnitudes, zero groups, subnormal FP8 ranges and saturating values. So a
 * green device run means the CUDA store writes exactly the bytes the off-heap store writes.
 */
class RefCodecTest {

    static Iterable<KvFormat> formats() {
        return CudaBlockLayout.SUPPORTED;
    }

    /** Random values: per-group magnitudes from 1e-6 to 1e4, some exact zeros and zero groups. */
    static float[] values(Random rnd, int n, KvFormat f) {
        float[] x = new float[n];
        for (int g = 0; g < n; g += 32) {
            int kind = rnd.nextInt(8);
            float scale = (float) Math.pow(10, -6 + rnd.nextInt(11));
            for (int j = g; j < Math.min(n, g + 32); j++) {
                x[j] = kind == 0 ? 0f : (float) (rnd.nextGaussian() * scale);
                if (rnd.nextInt(16) == 0) {
                    x[j] = 0f;
                }
            }
        }
        if (f == KvFormats.F16 || f == KvFormats.BF16 || f == KvFormats.F32) {
            x[rnd.nextInt(n)] = 1e5f;   // beyond fp16's range: saturates
            x[rnd.nextInt(n)] = -3.3e38f;
        }
        if (f == KvFormats.F16) {
            x[rnd.nextInt(n)] = 65519f;  // rounds to 65504 either way
            x[rnd.nextInt(n)] = 1.0009765625f; // an exact fp16 halfway case (ties to even)
        }
        return x;
    }

    @ParameterizedTest
    @MethodSource("formats")
    void rowsAndSlicesMatchKvcacheQuant(KvFormat f) {
        Random rnd = new Random(42 + f.name().hashCode());
        Quantizer q = Quantizers.of(f);
        try (Arena arena = Arena.ofConfined()) {
            for (int iter = 0; iter < 200; iter++) {
                int dim = 32 * (1 + rnd.nextInt(6));
                int rows = 1 + rnd.nextInt(17);
                boolean fp8 = f == KvFormats.FP8_E4M3 || f == KvFormats.FP8_E5M2;
                float[] x = values(rnd, rows * dim, f);
                long size = q.encodedBytes(rows, dim);
                MemorySegment seg = arena.allocate(size);
                q.encode(x, rows, dim, seg);
                byte[] theirs = seg.toArray(ValueLayout.JAVA_BYTE);
                byte[] ours = new byte[(int) size];
                if (fp8) {
                    RefCodec.encodeFp8Slice(f, x, rows, dim, ours, 0);
                } else {
                    int off = 0;
                    for (int r = 0; r < rows; r++) {
                        off += RefCodec.encodeRow(f, x, r * dim, dim, ours, off);
                    }
                    assertEquals(size, off, "row bytes");
                }
                assertArrayEquals(theirs, ours, () -> f + " rows=" + rows + " dim=" + dim);
                float[] decoded = new float[rows * dim];
                q.decode(seg, rows, dim, decoded);
                for (int r = 0; r < rows; r++) {
                    for (int i = 0; i < dim; i++) {
                        float mine = RefCodec.decode(f, ours, 0, rows, r, i, dim);
                        assertEquals(decoded[r * dim + i], mine, 0f, f + " decode r=" + r + " i=" + i);
                    }
                }
            }
        }
    }
}
