package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.Quantizer;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Issue #12 (integrity): a quantizer's sizes are exact or refused naming tokens, dim and the limit. */
class SizeBoundsTest {

    static List<KvFormat> formats() {
        return KvFormats.all();
    }

    private static void refused(Executable call, String... fragments) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), () -> "'" + f + "' missing from: " + e.getMessage());
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void encodedBytesNeverWraps(KvFormat f) {
        for (Quantizer q : List.of(Quantizers.of(f), Quantizers.values(f), Quantizers.keys(f))) {
            String max = String.valueOf(Integer.MAX_VALUE);
            // the probe: came out negative
            refused(() -> q.encodedBytes(Integer.MAX_VALUE, Integer.MAX_VALUE), "rows (tokens) x dim", max);
            refused(() -> q.encodedBytes(Integer.MAX_VALUE, 64), max, "64", "the limit is " + max);
            refused(() -> q.encodedBytes(-1, 32), "tokens", "-1");
            refused(() -> q.encodedBytes(16, -32), "dim", "-32");
            refused(() -> q.encodedBytes(16, 0), "dim", "0");
            // the largest input that fits one float[] is sized exactly, as the format says
            int dim = 1 << 10;
            int tokens = Integer.MAX_VALUE / dim;
            long want = q == Quantizers.values(f) ? f.valueBytes(tokens, dim) : f.keyBytes(tokens, dim);
            assertEquals(want, q.encodedBytes(tokens, dim), q.toString());
            assertTrue(want > 0);
        }
    }

    /**
     * A store accepts every value within KvStore.MAX_ABS_VALUE and may seal a staged block of them
     * later, so every codec of every provider must encode a slice of them without refusing.
     */
    @ParameterizedTest
    @MethodSource("formats")
    void everyCodecEncodesValuesAtTheStoreBound(KvFormat f) {
        float max = dev.kvcache.KvStore.MAX_ABS_VALUE;
        int rows = 16, dim = 64;
        float[] x = new float[rows * dim];
        for (int i = 0; i < x.length; i++) {
            x[i] = (i % 3 == 0) ? max : (i % 3 == 1) ? -max : (float) Math.sin(i);
        }
        for (KernelProvider p : Quantizers.availableProviders()) {
            for (boolean keys : new boolean[] {true, false}) {
                Codec c = Quantizers.codec(p, f, keys);
                java.lang.foreign.MemorySegment seg = java.lang.foreign.MemorySegment.ofArray(new byte[(int) c.sliceBytes(rows, dim)]);
                c.encode(x, 0, rows, dim, seg, 0);
                float[] back = new float[x.length];
                c.decode(seg, 0, rows, dim, back, 0);
                for (float b : back) {
                    assertTrue(Float.isFinite(b) && Math.abs(b) <= max * 1.01f, c + ": decoded " + b);
                }
            }
        }
    }
}
