package dev.kvcache.quant;

import dev.kvcache.KvFormats;
import dev.kvcache.Quantizer;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HadamardRotationTest {

    /** Sylvester construction, entry (i, j) = (-1)^popcount(i & j) / sqrt(d): an independent reference. */
    static double entry(int i, int j, int d) {
        return ((Integer.bitCount(i & j) & 1) == 0 ? 1 : -1) / Math.sqrt(d);
    }

    @Test
    void matchesTheSylvesterMatrixAndIsOrthogonal() {
        SplittableRandom rnd = new SplittableRandom();
        for (int d : new int[] {1, 2, 8, 32, 128, 256}) {
            float[] x = new float[d + 3];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) rnd.nextGaussian();
            }
            float[] y = x.clone();
            HadamardRotation.rotate(y, 3, d);
            assertEquals(x[0], y[0]);
            double nx = 0, ny = 0;
            for (int i = 0; i < d; i++) {
                double e = 0;
                for (int j = 0; j < d; j++) {
                    e += entry(i, j, d) * x[3 + j];
                }
                assertEquals(e, y[3 + i], 1e-5 * Math.sqrt(d), "d=" + d + " i=" + i);
                nx += (double) x[3 + i] * x[3 + i];
                ny += (double) y[3 + i] * y[3 + i];
            }
            assertEquals(nx, ny, 1e-5 * nx, "norm preserved, d=" + d);
            HadamardRotation.rotate(y, 3, d);   // involution
            for (int i = 0; i < d; i++) {
                assertEquals(x[3 + i], y[3 + i], 1e-5, "H(Hx) = x, d=" + d);
            }
        }
    }

    @Test
    void rejectsNonPowerOfTwo() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> HadamardRotation.rotate(new float[96], 0, 96));
        assertTrue(e.getMessage().contains("96"), e.getMessage());
    }

    @Test
    void cutsQ4ErrorOnOutlierKeys() {
        SplittableRandom rnd = new SplittableRandom(42);
        int dim = 128, tokens = 64;
        float[] k = new float[tokens * dim];
        for (int t = 0; t < tokens; t++) {
            for (int c = 0; c < dim; c++) {
                double g = rnd.nextGaussian();
                k[t * dim + c] = (float) (c == 3 || c == 40 || c == 77 || c == 100 ? 10 * g + 5 : g);
            }
        }
        double plain = relError(Quantizers.of(KvFormats.Q4_0), k, tokens, dim);
        double rotated = relError(HadamardRotation.rotated(Quantizers.of(KvFormats.Q4_0)), k, tokens, dim);
        assertTrue(rotated < 0.7 * plain, "rotated " + rotated + " vs plain " + plain);
    }

    static double relError(Quantizer q, float[] x, int tokens, int dim) {
        MemorySegment seg = MemorySegment.ofArray(new byte[(int) q.encodedBytes(tokens, dim)]);
        q.encode(x, tokens, dim, seg);
        float[] back = new float[x.length];
        q.decode(seg, tokens, dim, back);
        double num = 0, den = 0;
        for (int i = 0; i < x.length; i++) {
            num += (back[i] - (double) x[i]) * (back[i] - (double) x[i]);
            den += (double) x[i] * x[i];
        }
        return Math.sqrt(num / den);
    }
}
