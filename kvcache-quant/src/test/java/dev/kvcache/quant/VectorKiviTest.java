package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BiConsumer;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The Vector API KIVI codecs (VectorKivi) against the scalar ones (KiviCodecs) and float64, on
 * fresh random inputs: dims 32/64/128/256, block tokens 1/7/16/17/32/33 (17 and 33 leave a short
 * last chunk of token lanes), counts 0, 1, rows-1, rows and a random one, 1/2/4/5/8 heads (the
 * group kernels take four heads at a time). Encoding must be byte-identical to the scalar encoder,
 * decode and decodeRow bit-identical to the scalar decode, the fused kernels within float64
 * tolerance of the decoded slice; bad input must be rejected with the scalar codec's exception and
 * message, changing nothing. Skipped when the Vector API provider is not available.
 */
class VectorKiviTest {

    static final long SEED = new SplittableRandom().nextLong();
    static final int[] DIMS = {32, 64, 128, 256};
    static final int[] ROWS = {1, 7, 16, 17, 32, 33};
    static final int[] HEADS = {1, 2, 4, 5, 8};

    static KernelProvider vector() {
        for (KernelProvider p : Quantizers.availableProviders()) {
            if (p != ScalarProvider.INSTANCE) {
                return p;
            }
        }
        Assumptions.abort("Vector API provider not available");
        return null;
    }

    static List<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (KvFormat f : List.of(KvFormats.KIVI_4, KvFormats.KIVI_2)) {
            out.add(Arguments.of(f, true));
            out.add(Arguments.of(f, false));
        }
        return out;
    }

    @Test
    void vectorProviderServesVectorKivi() {
        KernelProvider p = vector();
        for (KvFormat f : List.of(KvFormats.KIVI_4, KvFormats.KIVI_2)) {
            assertInstanceOf(VectorKivi.Keys.class, Quantizers.codec(p, f, true));
            assertInstanceOf(VectorKiviValues.class, Quantizers.codec(p, f, false));
            assertInstanceOf(KiviCodecs.Keys.class, Quantizers.codec(ScalarProvider.INSTANCE, f, true));
            assertInstanceOf(KiviCodecs.Values.class, Quantizers.codec(ScalarProvider.INSTANCE, f, false));
        }
        if (Quantizers.vectorized()) {
            assertInstanceOf(VectorKivi.Keys.class, Quantizers.keyKernels(KvFormats.KIVI_4));
            assertInstanceOf(VectorKiviValues.class, Quantizers.valueKernels(KvFormats.KIVI_2));
        }
    }

    /**
     * Inputs that hit the encoder's edges: Gaussian at a random scale with outlier channels, plus
     * per case one of: signed zeros, constant channels/groups (scale 0), values at +-65504, values
     * on exact rounding ties (min + (k + 1/2) * scale with scale a power of two), tiny values
     * (fp16 subnormal scales), a large offset (min far from zero, values near it).
     */
    static float[] input(SplittableRandom rnd, int rows, int dim) {
        float[] x = KernelsTest.randomInput(rnd, rows, dim);
        switch (rnd.nextInt(7)) {
            case 0 -> {
                for (int i = 0; i < x.length; i++) {
                    if (rnd.nextInt(4) == 0) {
                        x[i] = rnd.nextBoolean() ? -0f : 0f;
                    }
                }
            }
            case 1 -> {
                int c = rnd.nextInt(dim);
                float v = (float) KernelsTest.gaussian(rnd);
                for (int r = 0; r < rows; r++) {
                    x[r * dim + c] = v;                           // a constant key channel
                }
                Arrays.fill(x, 0, Math.min(32, x.length), v);     // a constant value group
            }
            case 2 -> {
                for (int i = 0; i < x.length; i++) {
                    if (rnd.nextInt(8) == 0) {
                        x[i] = rnd.nextBoolean() ? Bits.F16_MAX : -Bits.F16_MAX;
                    }
                }
            }
            case 3 -> {
                // min 0 and max 15 * 2^e in every channel and group: scale 2^e exactly, the others on ties
                float step = (float) Math.pow(2, rnd.nextInt(-6, 4));
                for (int i = 0; i < x.length; i++) {
                    x[i] = (rnd.nextInt(15) + 0.5f) * step;
                }
                for (int i = 0; i < x.length; i += 32) {
                    x[i] = 0f;
                    x[Math.min(i + 1, x.length - 1)] = 15 * step;
                }
                for (int c = 0; c < dim; c++) {
                    x[c] = 0f;
                    x[(rows - 1) * dim + c] = rows > 1 ? 15 * step : 0f;
                }
            }
            case 4 -> {
                for (int i = 0; i < x.length; i++) {
                    x[i] *= 1e-7f;
                }
            }
            case 5 -> {
                for (int i = 0; i < x.length; i++) {
                    x[i] = -1000f + Math.abs(x[i]) * 1e-3f;
                }
            }
            default -> {
            }
        }
        return x;
    }

    @ParameterizedTest(name = "{0} keys={1}")
    @MethodSource("cases")
    void matchesScalarAndFloat64(KvFormat f, boolean keys) {
        Codec v = Quantizers.codec(vector(), f, keys);
        Codec s = Quantizers.codec(ScalarProvider.INSTANCE, f, keys);
        SplittableRandom rnd = new SplittableRandom(SEED ^ f.name().hashCode() ^ (keys ? 11 : 13));
        try (Arena arena = Arena.ofConfined()) {
            for (int dim : DIMS) {
                for (int rows : ROWS) {
                    for (int rep = 0; rep < 2; rep++) {
                        checkOne(v, s, rnd, arena, rows, dim, v + " dim=" + dim + " rows=" + rows + " seed=" + SEED);
                    }
                }
            }
        }
    }

    private static void checkOne(Codec v, Codec s, SplittableRandom rnd, Arena arena, int rows, int dim, String where) {
        float[] x = input(rnd, rows, dim);
        long bytes = v.sliceBytes(rows, dim);
        assertEquals(s.sliceBytes(rows, dim), bytes, where);

        // encode at an odd offset between sentinels, native or heap: the same bytes as the scalar encoder
        long off = 1 + rnd.nextInt(7);
        MemorySegment seg = rnd.nextBoolean() ? arena.allocate(off + bytes + 9)
                : MemorySegment.ofArray(new byte[(int) (off + bytes + 9)]);
        seg.fill((byte) 0x5A);
        v.encode(x, 0, rows, dim, seg, off);
        MemorySegment ref = MemorySegment.ofArray(new byte[(int) bytes]);
        s.encode(x, 0, rows, dim, ref, 0);
        long mismatch = ref.mismatch(seg.asSlice(off, bytes));
        assertEquals(-1L, mismatch, where + ": encoded bytes differ from the scalar encoder at byte " + mismatch);
        for (long i = 0; i < off; i++) {
            assertEquals((byte) 0x5A, seg.get(Bits.I8, i), where + ": wrote before the slice");
        }
        for (long i = off + bytes; i < seg.byteSize(); i++) {
            assertEquals((byte) 0x5A, seg.get(Bits.I8, i), where + ": wrote after the slice");
        }
        if (v.rowIndependent()) {
            MemorySegment rowwise = MemorySegment.ofArray(new byte[(int) bytes]);
            for (int r = 0; r < rows; r++) {
                v.encodeRow(x, r * dim, dim, rowwise, r * v.rowBytes(dim));
            }
            assertEquals(-1L, ref.mismatch(rowwise), where + ": encodeRow differs from the scalar encode");
        }
        compareKernels(v, s, seg, off, rows, dim, rnd, where);
    }

    /** decode/decodeRow bit-identical to scalar; fused kernels of both providers against float64. */
    static void compareKernels(Codec v, Codec s, MemorySegment seg, long off, int rows, int dim,
                               SplittableRandom rnd, String where) {
        float[] dec = new float[rows * dim];
        s.decode(seg, off, rows, dim, dec, 0);
        float[] got = new float[rows * dim + 2];
        v.decode(seg, off, rows, dim, got, 1);
        assertEquals(0f, got[0], where);
        assertEquals(0f, got[rows * dim + 1], where);
        for (int i = 0; i < dec.length; i++) {
            if (Float.floatToIntBits(got[1 + i]) != Float.floatToIntBits(dec[i])) {
                fail(where + ": decode[" + i + "] = " + got[1 + i] + ", scalar " + dec[i]);
            }
        }
        float[] row = new float[dim + 2];
        for (int r = 0; r < rows; r++) {
            v.decodeRow(seg, off, rows, r, dim, row, 1);
            for (int j = 0; j < dim; j++) {
                if (Float.floatToIntBits(row[1 + j]) != Float.floatToIntBits(dec[r * dim + j])) {
                    fail(where + ": decodeRow(" + r + ")[" + j + "] = " + row[1 + j] + ", scalar " + dec[r * dim + j]);
                }
            }
            assertEquals(0f, row[0], where);
            assertEquals(0f, row[dim + 1], where);
        }
        int[] counts = {0, 1, rows - 1, rows, rnd.nextInt(rows + 1)};
        for (int count : counts) {
            for (int heads : HEADS) {
                String w = where + " count=" + count + " heads=" + heads;
                for (Codec c : List.of(v, s)) {
                    fused(c, seg, off, rows, count, dim, heads, dec, rnd, w + " " + c.getClass().getName());
                }
            }
        }
    }

    /** dotRows(Group) and accumulateRows(Group) of one codec against float64 on the decoded slice. */
    private static void fused(Codec c, MemorySegment seg, long off, int rows, int count, int dim, int heads,
                              float[] dec, SplittableRandom rnd, String where) {
        int qOff = rnd.nextInt(3);
        float[] q = new float[qOff + heads * dim + 1];
        for (int i = 0; i < q.length; i++) {
            q[i] = (float) KernelsTest.gaussian(rnd);
        }
        float scale = (float) (1 / Math.sqrt(dim));
        int sOff = 1 + rnd.nextInt(3);
        float[] scores = new float[sOff + heads * rows + 1];
        Arrays.fill(scores, 42f);
        if (heads == 1) {
            c.dotRows(seg, off, rows, count, dim, q, qOff, scale, scores, sOff);
        } else {
            c.dotRowsGroup(seg, off, rows, count, dim, q, qOff, heads, scale, scores, sOff);
        }
        for (int i = 0; i < scores.length; i++) {
            int j = (i - sOff) / rows, r = (i - sOff) % rows;
            if (i < sOff || j >= heads || r >= count) {
                assertEquals(42f, scores[i], where + ": dot wrote scores[" + i + "] outside the rows < count of a head");
                continue;
            }
            double exact = 0, mag = 0;
            for (int e = 0; e < dim; e++) {
                double t = (double) q[qOff + j * dim + e] * dec[r * dim + e];
                exact += t;
                mag += Math.abs(t);
            }
            exact *= scale;
            mag *= scale;
            double tol = 2e-6 * Math.sqrt(dim) * mag + 1e-37;
            if (!(Math.abs(scores[i] - exact) <= tol)) {
                fail(where + ": dot head " + j + " row " + r + " = " + scores[i] + ", float64 " + exact + ", tolerance " + tol);
            }
        }

        int wOff = rnd.nextInt(3);
        float[] wt = new float[wOff + heads * rows];
        for (int i = 0; i < wt.length; i++) {
            wt[i] = (float) rnd.nextDouble();
        }
        int aOff = 1 + rnd.nextInt(3);
        float[] acc = new float[aOff + heads * dim + 1];
        for (int i = 0; i < acc.length; i++) {
            acc[i] = (float) KernelsTest.gaussian(rnd);
        }
        float[] before = acc.clone();
        if (heads == 1) {
            c.accumulateRows(seg, off, rows, count, dim, wt, wOff, acc, aOff);
        } else {
            c.accumulateRowsGroup(seg, off, rows, count, dim, wt, wOff, heads, acc, aOff);
        }
        for (int i = 0; i < acc.length; i++) {
            int j = (i - aOff) / dim, e = (i - aOff) % dim;
            if (i < aOff || j >= heads) {
                assertEquals(before[i], acc[i], where + ": accumulate wrote acc[" + i + "] outside the heads");
                continue;
            }
            double exact = before[i], mag = Math.abs(before[i]);
            for (int r = 0; r < count; r++) {
                double t = (double) wt[wOff + j * rows + r] * dec[r * dim + e];
                exact += t;
                mag += Math.abs(t);
            }
            double tol = 4e-7 * (count + 2) * mag + 1e-37;
            if (!(Math.abs(acc[i] - exact) <= tol)) {
                fail(where + ": accumulate head " + j + " [" + e + "] = " + acc[i] + ", float64 " + exact + ", tolerance " + tol);
            }
        }
    }

    /**
     * Raw bytes, not from the encoder: fp16 metadata of any finite value up to 65504 and any codes.
     * Then fp16 metadata with infinities and NaNs: the vector kernels must give the scalar kernels'
     * NaN / infinity wherever those do (tokens past count must not leak a 0 * infinity into a sum).
     */
    @ParameterizedTest(name = "{0} keys={1}")
    @MethodSource("cases")
    void rawBytes(KvFormat f, boolean keys) {
        Codec v = Quantizers.codec(vector(), f, keys);
        Codec s = Quantizers.codec(ScalarProvider.INSTANCE, f, keys);
        SplittableRandom rnd = new SplittableRandom(SEED ^ f.name().hashCode() ^ (keys ? 17 : 19));
        for (int dim : DIMS) {
            for (int rows : ROWS) {
                long bytes = v.sliceBytes(rows, dim);
                byte[] raw = new byte[(int) bytes];
                rnd.nextBytes(raw);
                MemorySegment seg = MemorySegment.ofArray(raw);
                // metadata: keys' scales and minimums lead the slice; values' lead each group
                forEachMeta(v, rows, dim, at -> seg.set(Bits.I16, at, (short) (rnd.nextInt(0x7C00) | (rnd.nextBoolean() ? 0x8000 : 0))));
                compareKernels(v, s, seg, 0, rows, dim, rnd, v + " raw dim=" + dim + " rows=" + rows + " seed=" + SEED);

                forEachMeta(v, rows, dim, at -> {
                    if (rnd.nextInt(8) == 0) {
                        seg.set(Bits.I16, at, (short) (0x7C00 | (rnd.nextInt(4) == 0 ? rnd.nextInt(1, 0x400) : 0)
                                | (rnd.nextBoolean() ? 0x8000 : 0)));
                    }
                });
                specials(v, s, seg, rows, dim, rnd, v + " specials dim=" + dim + " rows=" + rows + " seed=" + SEED);
            }
        }
    }

    private static void forEachMeta(Codec c, int rows, int dim, Consumer<Long> at) {
        if (c.keys()) {
            for (long i = 0; i < 4L * dim; i += 2) {
                at.accept(i);
            }
        } else {
            long rb = c.rowBytes(dim), gb = rb / (dim / 32);
            for (int r = 0; r < rows; r++) {
                for (long g = 0; g < dim / 32; g++) {
                    at.accept(r * rb + g * gb);
                    at.accept(r * rb + g * gb + 2);
                }
            }
        }
    }

    private static void specials(Codec v, Codec s, MemorySegment seg, int rows, int dim, SplittableRandom rnd, String where) {
        int count = rnd.nextInt(rows + 1);
        float[] q = new float[dim];
        float[] w = new float[rows];
        for (int i = 0; i < dim; i++) {
            q[i] = (float) KernelsTest.gaussian(rnd);
        }
        for (int i = 0; i < rows; i++) {
            w[i] = (float) rnd.nextDouble();
        }
        float[] sv = new float[rows], ss = new float[rows];
        v.dotRows(seg, 0, rows, count, dim, q, 0, 0.5f, sv, 0);
        s.dotRows(seg, 0, rows, count, dim, q, 0, 0.5f, ss, 0);
        float[] av = new float[dim], as = new float[dim];
        v.accumulateRows(seg, 0, rows, count, dim, w, 0, av, 0);
        s.accumulateRows(seg, 0, rows, count, dim, w, 0, as, 0);
        for (int r = 0; r < rows; r++) {
            sameClass(ss[r], sv[r], where + " count=" + count + ": dotRows[" + r + "]");
        }
        for (int i = 0; i < dim; i++) {
            sameClass(as[i], av[i], where + " count=" + count + ": accumulateRows[" + i + "]");
        }
    }

    /** Same NaN-ness and, when infinite, the same infinity; finite values are checked elsewhere. */
    private static void sameClass(float expected, float got, String where) {
        if (Float.isNaN(expected) || Float.isInfinite(expected)) {
            assertEquals(Float.valueOf(expected), Float.valueOf(got), where);
        } else {
            assertTrue(Float.isFinite(got), where + ": " + got + ", scalar " + expected);
        }
    }

    /** Every rejected call: the scalar codec's exception type and message, nothing changed. */
    @ParameterizedTest(name = "{0} keys={1}")
    @MethodSource("cases")
    void badInputRejectedLikeScalar(KvFormat f, boolean keys) {
        Codec v = Quantizers.codec(vector(), f, keys);
        Codec s = Quantizers.codec(ScalarProvider.INSTANCE, f, keys);
        int rows = 16, dim = 64;
        long bytes = s.sliceBytes(rows, dim);
        float[] good = new float[rows * dim];
        for (int i = 0; i < good.length; i++) {
            good[i] = (float) Math.sin(i);
        }
        for (float bad : new float[] {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 65505f, -70000f}) {
            for (int at : new int[] {0, 17, rows * dim - 1}) {
                float[] x = good.clone();
                x[at] = bad;
                same(v, s, bytes, (c, seg) -> c.encode(x, 0, rows, dim, seg, 0));
                if (!keys) {
                    same(v, s, bytes, (c, seg) -> c.encodeRow(x, at / dim * dim, dim, seg, 0));
                }
            }
        }
        same(v, s, bytes, (c, seg) -> c.encode(good, 0, rows, 48, seg, 0));                 // dim % 32 != 0
        same(v, s, bytes, (c, seg) -> c.encode(good, 1, rows, dim, seg, 0));                // src too short
        same(v, s, bytes, (c, seg) -> c.encode(good, 0, rows, dim, seg, 1));                // dst too short
        same(v, s, bytes, (c, seg) -> c.encode(good, 0, rows, dim, seg.asReadOnly(), 0));
        same(v, s, bytes, (c, seg) -> c.dotRows(seg, 0, rows, rows + 1, dim, new float[dim], 0, 1f, new float[rows + 1], 0));
        same(v, s, bytes, (c, seg) -> c.dotRows(seg, 1, rows, rows, dim, new float[dim], 0, 1f, new float[rows], 0));
        same(v, s, bytes, (c, seg) -> c.dotRowsGroup(seg, 0, rows, rows, dim, new float[4 * dim], 1, 4, 1f, new float[4 * rows], 0));
        same(v, s, bytes, (c, seg) -> c.dotRowsGroup(seg, 0, rows, rows, dim, new float[4 * dim], 0, 0, 1f, new float[4 * rows], 0));
        same(v, s, bytes, (c, seg) -> c.accumulateRows(seg, 0, rows, rows, dim, new float[rows], 1, new float[dim], 0));
        same(v, s, bytes, (c, seg) -> c.accumulateRowsGroup(seg, 0, rows, rows, dim, new float[4 * rows], 0, 4, new float[4 * dim], 1));
        same(v, s, bytes, (c, seg) -> c.decodeRow(seg, 0, rows, rows, dim, new float[dim], 0));
        same(v, s, bytes, (c, seg) -> c.decode(seg, 0, rows, dim, new float[rows * dim - 1], 0));
        if (keys) {
            same(v, s, bytes, (c, seg) -> c.encode(good, 0, 0, dim, seg, 0));                 // no tokens
            assertThrows(UnsupportedOperationException.class, () -> v.rowBytes(dim));
            assertThrows(UnsupportedOperationException.class, () -> v.encodeRow(good, 0, dim, MemorySegment.ofArray(new byte[4096]), 0));
        }
    }

    /** Runs call on both codecs over identical sentinel-filled segments: same exception, same message, no change. */
    private static void same(Codec v, Codec s, long bytes, BiConsumer<Codec, MemorySegment> call) {
        String[] messages = new String[2];
        Class<?>[] types = new Class<?>[2];
        Codec[] codecs = {s, v};
        for (int i = 0; i < 2; i++) {
            MemorySegment seg = MemorySegment.ofArray(new byte[(int) bytes]);
            seg.fill((byte) 0x33);
            Codec c = codecs[i];
            RuntimeException e = assertThrows(RuntimeException.class, () -> call.accept(c, seg), c.toString());
            types[i] = e.getClass();
            messages[i] = e.getMessage();
            for (long b = 0; b < bytes; b++) {
                assertEquals((byte) 0x33, seg.get(Bits.I8, b), c + ": a rejected call changed byte " + b);
            }
        }
        assertEquals(types[0], types[1], "exception type: scalar " + messages[0] + " / vector " + messages[1]);
        assertEquals(IllegalArgumentException.class, types[0], messages[0]);
        assertEquals(messages[0], messages[1]);
    }
}
