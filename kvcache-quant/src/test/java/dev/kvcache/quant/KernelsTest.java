package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Every codec of every provider against float64 references on fresh random inputs: the fused
 * kernels (dotRows, accumulateRows, decodeRow) must equal float64 math on the decoded slice, the
 * decoded slice must be within the format's error bound of the input, every provider must write
 * the same bytes as the scalar one, and nothing is written outside [off, off + sliceBytes).
 * Shapes: dims 32..256 (plus odd dims for the dense formats, which hit the vector tails), rows 1..17.
 */
class KernelsTest {

    static final long SEED = new Random().nextLong();

    static List<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (KernelProvider p : Quantizers.availableProviders()) {
            for (KvFormat f : KvFormats.all()) {
                out.add(Arguments.of(p, f, true));
                if (f == KvFormats.KIVI_4 || f == KvFormats.KIVI_2) {
                    out.add(Arguments.of(p, f, false));
                }
            }
        }
        return out;
    }

    static boolean dense(KvFormat f) {
        return f == KvFormats.F32 || f == KvFormats.F16 || f == KvFormats.BF16;
    }

    static int[] dims(KvFormat f) {
        return dense(f) ? new int[] {1, 7, 17, 32, 33, 64, 96, 100, 128, 160, 256}
                : new int[] {32, 64, 96, 128, 160, 256};
    }

    /** Gaussian values with a few channels ~10x larger (key-like outliers) and some exact zeros. */
    static float[] randomInput(SplittableRandom rnd, int rows, int dim) {
        float[] x = new float[rows * dim];
        int outlier = rnd.nextInt(dim);
        double scale = Math.pow(10, rnd.nextInt(-3, 3));
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < dim; c++) {
                double g = gaussian(rnd) * scale;
                if (c == outlier || c % 37 == 5) {
                    g *= 10;
                }
                x[r * dim + c] = rnd.nextInt(50) == 0 ? 0f : (float) g;
            }
        }
        return x;
    }

    static double gaussian(SplittableRandom rnd) {
        double u = rnd.nextDouble(), v = rnd.nextDouble();
        return Math.sqrt(-2 * Math.log(1 - u)) * Math.cos(2 * Math.PI * v);
    }

    @ParameterizedTest(name = "{0} {1} keys={2}")
    @MethodSource("cases")
    void kernelsMatchFloat64OnDecodedSlice(KernelProvider p, KvFormat f, boolean keys) {
        Codec c = codecOrSkip(p, f, keys);
        Codec ref = codecOrSkip(ScalarProvider.INSTANCE, f, keys);
        SplittableRandom rnd = new SplittableRandom(SEED ^ f.name().hashCode() ^ (keys ? 1 : 2) ^ p.name().hashCode());
        try (Arena arena = Arena.ofConfined()) {
            for (int dim : dims(f)) {
                for (int rows = 1; rows <= 17; rows++) {
                    String where = p.name() + " " + c + " dim=" + dim + " rows=" + rows + " seed=" + SEED;
                    checkOne(c, ref, f, keys, rnd, arena, rows, dim, where);
                }
            }
        }
    }

    private void checkOne(Codec c, Codec ref, KvFormat f, boolean keys, SplittableRandom rnd, Arena arena,
                          int rows, int dim, String where) {
        long bytes = c.sliceBytes(rows, dim);
        assertEquals(keys ? f.keyBytes(rows, dim) : f.valueBytes(rows, dim), bytes, where);
        float[] x = randomInput(rnd, rows, dim);
        int srcOff = rnd.nextInt(5);
        float[] src = new float[srcOff + x.length + 3];
        System.arraycopy(x, 0, src, srcOff, x.length);

        // encode at an odd offset of a segment filled with a sentinel; heap and native alternately
        long off = 1 + rnd.nextInt(7);
        MemorySegment seg = rnd.nextBoolean() ? arena.allocate(off + bytes + 16)
                : MemorySegment.ofArray(new byte[(int) (off + bytes + 16)]);
        seg.fill((byte) 0x5A);
        c.encode(src, srcOff, rows, dim, seg, off);
        for (long i = 0; i < off; i++) {
            assertEquals((byte) 0x5A, seg.get(Bits.I8, i), where + ": wrote before the slice");
        }
        for (long i = off + bytes; i < seg.byteSize(); i++) {
            assertEquals((byte) 0x5A, seg.get(Bits.I8, i), where + ": wrote after the slice");
        }

        // same bytes as the scalar reference
        MemorySegment refSeg = MemorySegment.ofArray(new byte[(int) bytes]);
        ref.encode(x, rows, dim, refSeg);
        long mismatch = refSeg.mismatch(seg.asSlice(off, bytes));
        assertEquals(-1L, mismatch, where + ": bytes differ from the scalar encoder at byte " + mismatch);

        // decode: this provider equals the scalar decode, and is within the format's error bound
        float[] dec = new float[rows * dim];
        c.decode(seg, off, rows, dim, dec, 0);
        float[] refDec = new float[rows * dim];
        ref.decode(refSeg, rows, dim, refDec);
        assertArrayEquals(refDec, dec, where + ": decode differs from scalar decode");
        ErrorBounds.check(f, keys, x, dec, rows, dim, where);

        // decodeRow equals the matching row of decode
        float[] row = new float[dim + 2];
        for (int r = 0; r < rows; r++) {
            c.decodeRow(seg, off, rows, r, dim, row, 1);
            for (int j = 0; j < dim; j++) {
                if (Float.floatToIntBits(row[1 + j]) != Float.floatToIntBits(dec[r * dim + j])) {
                    fail(where + ": decodeRow(" + r + ")[" + j + "] = " + row[1 + j] + " != decode " + dec[r * dim + j]);
                }
            }
        }

        // dotRows over the first count rows against float64 on the decoded values
        int count = rnd.nextInt(rows + 1);
        if (rnd.nextInt(3) == 0) {
            count = rows;
        }
        float[] q = new float[dim + 3];
        for (int i = 0; i < q.length; i++) {
            q[i] = (float) gaussian(rnd);
        }
        float scale = (float) (1 / Math.sqrt(dim));
        float[] scores = new float[count + 2];
        scores[count + 1] = 42f;
        c.dotRows(seg, off, rows, count, dim, q, 3, scale, scores, 1);
        assertEquals(42f, scores[count + 1], where + ": dotRows wrote past count");
        for (int r = 0; r < count; r++) {
            double exact = 0, mag = 0;
            for (int j = 0; j < dim; j++) {
                double t = (double) q[3 + j] * dec[r * dim + j];
                exact += t;
                mag += Math.abs(t);
            }
            exact *= scale;
            mag *= scale;
            double tol = 2e-6 * Math.sqrt(dim) * mag + 1e-37;
            if (Math.abs(scores[1 + r] - exact) > tol) {
                fail(where + " count=" + count + ": dotRows[" + r + "] = " + scores[1 + r] + ", float64 " + exact
                        + ", tolerance " + tol);
            }
        }

        // accumulateRows over the first count rows
        float[] w = new float[count + 1];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) rnd.nextDouble();
        }
        float[] acc = new float[dim + 4];
        for (int i = 0; i < acc.length; i++) {
            acc[i] = (float) gaussian(rnd);
        }
        float[] before = acc.clone();
        c.accumulateRows(seg, off, rows, count, dim, w, 1, acc, 2);
        assertEquals(before[0], acc[0], where);
        assertEquals(before[1], acc[1], where);
        assertEquals(before[dim + 2], acc[dim + 2], where);
        assertEquals(before[dim + 3], acc[dim + 3], where);
        for (int j = 0; j < dim; j++) {
            double exact = before[2 + j], mag = Math.abs(before[2 + j]);
            for (int r = 0; r < count; r++) {
                double t = (double) w[1 + r] * dec[r * dim + j];
                exact += t;
                mag += Math.abs(t);
            }
            double tol = 4e-7 * (count + 2) * mag + 1e-37;
            if (Math.abs(acc[2 + j] - exact) > tol) {
                fail(where + " count=" + count + ": accumulateRows[" + j + "] = " + acc[2 + j] + ", float64 "
                        + exact + ", tolerance " + tol);
            }
        }
    }

    static Codec codecOrSkip(KernelProvider p, KvFormat f, boolean keys) {
        Codec c = Quantizers.codec(p, f, keys);
        Assumptions.assumeTrue(c != null, f + " not implemented by " + p.name());
        return c;
    }

    @ParameterizedTest(name = "{0} {1} keys={2}")
    @MethodSource("cases")
    void quantizerViewMatchesKernels(KernelProvider p, KvFormat f, boolean keys) {
        Codec c = codecOrSkip(p, f, keys);
        SplittableRandom rnd = new SplittableRandom(SEED + 7);
        int dim = 128, rows = 16;
        float[] x = randomInput(rnd, rows, dim);
        MemorySegment a = MemorySegment.ofArray(new byte[(int) c.encodedBytes(rows, dim)]);
        MemorySegment b = MemorySegment.ofArray(new byte[(int) c.sliceBytes(rows, dim)]);
        c.encode(x, rows, dim, a);
        if (c.rowIndependent()) {
            for (int r = 0; r < rows; r++) {
                c.encodeRow(x, r * dim, dim, b, r * c.rowBytes(dim));
            }
            assertEquals(-1L, a.mismatch(b), "encodeRow per row must equal encode of the slice");
        }
        float[] d1 = new float[rows * dim];
        c.decode(a, rows, dim, d1);
        assertTrue(d1.length == rows * dim);
    }
}
