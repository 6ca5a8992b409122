package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The grouped-query kernels (dotRowsGroup, accumulateRowsGroup) of every codec of every provider
 * against float64 on the decoded slice, on fresh random inputs: heads 1..8 (the vector kernels
 * take four heads at a time, so 1..3 and 5..7 hit their head tails), dims with vector tails for
 * the dense formats, counts 0..rows, scores/weights {@code rows} apart per head (the
 * stride-less overloads) or a random stride of at least {@code count} (the strided ones, which
 * paged attention uses to gather several blocks' scores per head in one run), and sentinels
 * around and between every output range. (No bit-for-bit comparison with the single-head kernels: the Vector
 * API's lane reductions may sum in a different order once C2 intrinsifies them, so even two calls
 * of one kernel can differ in the last bit.)
 */
class GroupKernelsTest {

    static final long SEED = new SplittableRandom().nextLong();
    static final int[] ROWS = {1, 2, 3, 5, 16, 17};

    @ParameterizedTest(name = "{0} {1} keys={2}")
    @MethodSource("dev.kvcache.quant.KernelsTest#cases")
    void groupKernelsMatchFloat64(KernelProvider p, KvFormat f, boolean keys) {
        Codec c = KernelsTest.codecOrSkip(p, f, keys);
        SplittableRandom rnd = new SplittableRandom(SEED ^ f.name().hashCode() ^ (keys ? 3 : 4) ^ p.name().hashCode());
        for (int dim : KernelsTest.dims(f)) {
            for (int rows : ROWS) {
                for (int heads = 1; heads <= 8; heads++) {
                    checkOne(c, rnd, rows, dim, heads,
                            p.name() + " " + c + " dim=" + dim + " rows=" + rows + " heads=" + heads + " seed=" + SEED);
                }
            }
        }
    }

    private static void checkOne(Codec c, SplittableRandom rnd, int rows, int dim, int heads, String where) {
        float[] x = KernelsTest.randomInput(rnd, rows, dim);
        long off = rnd.nextInt(5);
        MemorySegment seg = MemorySegment.ofArray(new byte[(int) (off + c.sliceBytes(rows, dim))]);
        c.encode(x, 0, rows, dim, seg, off);
        float[] dec = new float[rows * dim];
        c.decode(seg, off, rows, dim, dec, 0);
        int count = rnd.nextInt(3) == 0 ? rows : rnd.nextInt(rows + 1);
        where += " count=" + count;
        float scale = (float) (1 / Math.sqrt(dim));

        // half the time the overloads with an explicit head stride, from count (runs back to back) up
        boolean strided = rnd.nextBoolean();
        int stride = strided ? count + rnd.nextInt(rows + 20) : rows;
        where += " stride=" + (strided ? stride : "rows");

        // dotRowsGroup: scores of head j at sOff + j*stride; everything else keeps its sentinel
        int qOff = rnd.nextInt(4);
        float[] q = new float[qOff + heads * dim + 2];
        for (int i = 0; i < q.length; i++) {
            q[i] = (float) KernelsTest.gaussian(rnd);
        }
        int sOff = 1 + rnd.nextInt(3);
        float[] scores = new float[sOff + heads * stride + rows + 2];
        java.util.Arrays.fill(scores, 42f);
        if (strided) {
            c.dotRowsGroup(seg, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, stride);
        } else {
            c.dotRowsGroup(seg, off, rows, count, dim, q, qOff, heads, scale, scores, sOff);
        }
        boolean[] written = new boolean[scores.length];
        for (int j = 0; j < heads; j++) {
            for (int r = 0; r < count; r++) {
                written[sOff + j * stride + r] = true;
                float got = scores[sOff + j * stride + r];
                double exact = 0, mag = 0;
                for (int i = 0; i < dim; i++) {
                    double t = (double) q[qOff + j * dim + i] * dec[r * dim + i];
                    exact += t;
                    mag += Math.abs(t);
                }
                exact *= scale;
                mag *= scale;
                double tol = 2e-6 * Math.sqrt(dim) * mag + 1e-37;
                if (Math.abs(got - exact) > tol) {
                    fail(where + ": dotRowsGroup head " + j + " row " + r + " = " + got + ", float64 " + exact
                            + ", tolerance " + tol);
                }
            }
        }
        for (int i = 0; i < scores.length; i++) {
            if (!written[i]) {
                assertEquals(42f, scores[i], where + ": dotRowsGroup wrote scores[" + i + "] (sOff " + sOff
                        + "), outside every head's first count entries");
            }
        }

        // accumulateRowsGroup: weights of head j at wOff + j*stride, acc of head j at aOff + j*dim
        int wOff = rnd.nextInt(3);
        float[] w = new float[wOff + heads * stride + rows];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) rnd.nextDouble();
        }
        int aOff = 1 + rnd.nextInt(3);
        float[] acc = new float[aOff + heads * dim + 2];
        for (int i = 0; i < acc.length; i++) {
            acc[i] = (float) KernelsTest.gaussian(rnd);
        }
        float[] before = acc.clone();
        if (strided) {
            c.accumulateRowsGroup(seg, off, rows, count, dim, w, wOff, stride, heads, acc, aOff);
        } else {
            c.accumulateRowsGroup(seg, off, rows, count, dim, w, wOff, heads, acc, aOff);
        }
        for (int i = 0; i < aOff; i++) {
            assertEquals(before[i], acc[i], where + ": wrote before aOff");
        }
        for (int i = aOff + heads * dim; i < acc.length; i++) {
            assertEquals(before[i], acc[i], where + ": wrote past the last head");
        }
        for (int j = 0; j < heads; j++) {
            for (int i = 0; i < dim; i++) {
                int a = aOff + j * dim + i;
                double exact = before[a], mag = Math.abs(before[a]);
                for (int r = 0; r < count; r++) {
                    double t = (double) w[wOff + j * stride + r] * dec[r * dim + i];
                    exact += t;
                    mag += Math.abs(t);
                }
                double tol = 4e-7 * (count + 2) * mag + 1e-37;
                if (Math.abs(acc[a] - exact) > tol) {
                    fail(where + ": accumulateRowsGroup head " + j + " [" + i + "] = " + acc[a] + ", float64 "
                            + exact + ", tolerance " + tol);
                }
            }
        }
    }

    @Test
    void badGroupArgumentsThrowAndChangeNothing() {
        for (KernelProvider p : Quantizers.availableProviders()) {
            Codec c = Quantizers.codec(p, dev.kvcache.KvFormats.F16, true);
            int rows = 16, dim = 64;
            MemorySegment seg = MemorySegment.ofArray(new byte[(int) c.sliceBytes(rows, dim)]);
            float[] q = new float[4 * dim];
            float[] scores = new float[3 * rows + 16];
            assertThrows(IllegalArgumentException.class,
                    () -> c.dotRowsGroup(seg, 0, rows, rows, dim, q, 0, 0, 1f, scores, 0));
            // needs (heads-1)*rows + count = 3*16 + 16 + 1 floats from offset 1
            float[] small = new float[3 * rows + 16];
            small[0] = 7f;
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> c.dotRowsGroup(seg, 0, rows, rows, dim, q, 0, 4, 1f, small, 1));
            assertEquals(true, e.getMessage().contains("scores"), e.getMessage());
            assertEquals(7f, small[0]);
            assertThrows(IllegalArgumentException.class,
                    () -> c.dotRowsGroup(seg, 0, rows, rows, dim, q, 1, 4, 1f, scores, 0)); // q too short
            float[] acc = new float[4 * dim];
            float[] w = new float[4 * rows];
            assertThrows(IllegalArgumentException.class,
                    () -> c.accumulateRowsGroup(seg, 0, rows, rows, dim, w, 1, 4, acc, 0));
            assertThrows(IllegalArgumentException.class,
                    () -> c.accumulateRowsGroup(seg, 0, rows, rows, dim, w, 0, 4, acc, 1));
            assertThrows(IllegalArgumentException.class,
                    () -> c.accumulateRowsGroup(seg, 0, rows, rows + 1, dim, w, 0, 4, acc, 0));
            // strides shorter than count would overlap the heads' runs
            IllegalArgumentException se = assertThrows(IllegalArgumentException.class,
                    () -> c.dotRowsGroup(seg, 0, rows, rows, dim, q, 0, 4, 1f, scores, 0, rows - 1));
            assertEquals(true, se.getMessage().contains("sStride") && se.getMessage().contains("15"), se.getMessage());
            se = assertThrows(IllegalArgumentException.class,
                    () -> c.accumulateRowsGroup(seg, 0, rows, rows, dim, w, 0, rows - 1, 4, acc, 0));
            assertEquals(true, se.getMessage().contains("wStride") && se.getMessage().contains("15"), se.getMessage());
            // (heads-1)*stride + count = 3*20 + 16 weights from 0: w has 64
            assertThrows(IllegalArgumentException.class,
                    () -> c.accumulateRowsGroup(seg, 0, rows, rows, dim, w, 0, 20, 4, acc, 0));
            for (float a : acc) {
                assertEquals(0f, a);
            }
            for (float x : scores) {
                assertEquals(0f, x);
            }
        }
    }
}
