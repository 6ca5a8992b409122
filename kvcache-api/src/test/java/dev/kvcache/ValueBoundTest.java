package dev.kvcache;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Issue #12 (integrity): the KV value bound that keeps attention finite. */
class ValueBoundTest {

    private static void refused(Executable call, String... fragments) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), () -> "'" + f + "' missing from: " + e.getMessage());
        }
    }

    // ------------------------------------------------------------------ KvStore value bound

    @Test
    void maxAbsValueIsTheLargestFiniteHalfAndKeepsAttentionFinite() {
        assertEquals(Float.float16ToFloat((short) 0x7bff), KvStore.MAX_ABS_VALUE);
        double m = KvStore.MAX_ABS_VALUE;
        // |q . k| <= headDim * m^2 with headDim < Integer.MAX_VALUE (a block is at most that many bytes)
        assertTrue((double) Integer.MAX_VALUE * m * m < Float.MAX_VALUE);
        // sum of exp-weights (each <= 1) times values over at most Integer.MAX_VALUE positions
        assertTrue((double) Integer.MAX_VALUE * m < Float.MAX_VALUE);
        float[] worst = new float[1 << 12];
        java.util.Arrays.fill(worst, KvStore.MAX_ABS_VALUE);
        float dot = 0f;
        for (float x : worst) {
            dot += x * x;
        }
        assertTrue(Float.isFinite(dot));
    }

    @Test
    void checkValuesNamesLayerSlotKvIndexValueAndLimit() {
        float[] k = new float[64];
        float[] v = new float[64];
        k[3] = KvStore.MAX_ABS_VALUE;
        v[5] = -KvStore.MAX_ABS_VALUE;
        KvStore.checkValues(2, 77, k, v, 64);
        float[] bad = k.clone();
        bad[40] = 3e38f;
        refused(() -> KvStore.checkValues(2, 77, bad, v, 64), "layer 2", "slot 77", "k[40] = 3.0E38", "(K)",
                String.valueOf(KvStore.MAX_ABS_VALUE));
        float[] nan = v.clone();
        nan[63] = Float.NaN;
        refused(() -> KvStore.checkValues(1, 5, k, nan, 64), "layer 1", "slot 5", "v[63] = NaN", "not finite", "(V)");
        float[] inf = v.clone();
        inf[0] = Float.NEGATIVE_INFINITY;
        refused(() -> KvStore.checkValues(0, 0, k, inf, 64), "v[0] = -Infinity");
        float[] over = v.clone();
        over[7] = Math.nextUp(KvStore.MAX_ABS_VALUE);
        refused(() -> KvStore.checkValues(0, 9, k, over, 64), "v[7] = " + Math.nextUp(KvStore.MAX_ABS_VALUE));
        // only the first n are looked at
        KvStore.checkValues(0, 0, k, over, 7);
        float[] q = new float[8];
        q[6] = Float.POSITIVE_INFINITY;
        refused(() -> KvStore.checkQuery(q, 8), "q[6]", "Infinity", String.valueOf(KvStore.MAX_ABS_VALUE));
        KvStore.checkQuery(q, 6);
    }
}
