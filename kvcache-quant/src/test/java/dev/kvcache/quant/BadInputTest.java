package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Bad input, for every codec of every provider: each call throws IllegalArgumentException (or
 * UnsupportedOperationException for row calls on block formats) naming the offending value and
 * the limit, and leaves every byte of the destination and every float of the outputs unchanged.
 */
class BadInputTest {

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

    static void rejects(String mustContain, MemorySegment seg, Executable call) {
        MemorySegment before = MemorySegment.ofArray(seg.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(mustContain), "message '" + e.getMessage() + "' lacks '" + mustContain + "'");
        assertEquals(-1L, before.mismatch(seg), "a rejected call changed the destination");
    }

    @ParameterizedTest(name = "{0} {1} keys={2}")
    @MethodSource("cases")
    void rejectsAndChangesNothing(KernelProvider p, KvFormat f, boolean keys) {
        Codec c = Quantizers.codec(p, f, keys);
        int rows = 16, dim = 128;
        long bytes = c.sliceBytes(rows, dim);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(bytes + 8);
            seg.fill((byte) 0x33);
            float[] x = new float[rows * dim];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) Math.sin(i);
            }

            // NaN / infinities anywhere (last row, last element: found before row 0 is written)
            for (float bad : new float[] {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY}) {
                float[] y = x.clone();
                y[y.length - 1] = bad;
                rejects("src[" + (y.length - 1) + "] = " + bad, seg, () -> c.encode(y, 0, rows, dim, seg, 0));
                rejects("not finite", seg, () -> c.encode(y, rows, dim, seg));
            }

            // dims the format cannot hold
            if (f != KvFormats.F32 && f != KvFormats.F16 && f != KvFormats.BF16
                    && f != KvFormats.FP8_E4M3 && f != KvFormats.FP8_E5M2) {
                rejects("100", seg, () -> c.encode(x, 0, 1, 100, seg, 0));
                rejects("multiple of 32", seg, () -> c.encode(x, 0, 1, 100, seg, 0));
                assertThrows(IllegalArgumentException.class, () -> c.encodedBytes(1, 48));
            }
            rejects("0", seg, () -> c.encode(x, 0, 1, 0, seg, 0));
            rejects("-1", seg, () -> c.encode(x, 0, -1, dim, seg, 0));

            // undersized destination / source, bad offsets
            rejects(String.valueOf(bytes), seg, () -> c.encode(x, 0, rows, dim, seg.asSlice(0, bytes - 1), 0));
            rejects(String.valueOf(bytes + 8), seg, () -> c.encode(x, 0, rows, dim, seg, 9));
            rejects("-1", seg, () -> c.encode(x, 0, rows, dim, seg, -1));
            rejects(String.valueOf(x.length), seg, () -> c.encode(x, 1, rows, dim, seg, 0));
            rejects("read-only", seg, () -> c.encode(x, 0, rows, dim, seg.asReadOnly(), 0));

            // kernels: undersized slice, q, scores, acc, count beyond rows
            c.encode(x, 0, rows, dim, seg, 0);
            MemorySegment enc = arena.allocate(bytes + 8);
            MemorySegment.copy(seg, 0, enc, 0, bytes + 8);
            float[] q = new float[dim], scores = new float[rows], w = new float[rows], acc = new float[dim];
            java.util.Arrays.fill(scores, 7f);
            java.util.Arrays.fill(acc, 7f);
            MemorySegment shortSlice = enc.asSlice(0, bytes - 1);
            long need = c.rowIndependent() ? bytes : bytes;
            rejects(String.valueOf(need), enc, () -> c.dotRows(shortSlice, 0, rows, rows, dim, q, 0, 1f, scores, 0));
            rejects("q has " + (dim - 1), enc, () -> c.dotRows(enc, 0, rows, rows, dim, new float[dim - 1], 0, 1f, scores, 0));
            rejects("scores has " + (rows - 1), enc, () -> c.dotRows(enc, 0, rows, rows, dim, q, 0, 1f, new float[rows - 1], 0));
            rejects("count must be in [0, rows=" + rows + "], got 17", enc,
                    () -> c.dotRows(enc, 0, rows, 17, dim, q, 0, 1f, scores, 0));
            rejects("acc has " + (dim - 1), enc, () -> c.accumulateRows(enc, 0, rows, rows, dim, w, 0, new float[dim - 1], 0));
            rejects("w has " + (rows - 1), enc, () -> c.accumulateRows(enc, 0, rows, rows, dim, new float[rows - 1], 0, acc, 0));
            rejects("row must be in [0, rows=" + rows + "), got 16", enc,
                    () -> c.decodeRow(enc, 0, rows, 16, dim, new float[dim], 0));
            rejects("dst has " + (rows * dim - 1), enc, () -> c.decode(enc, 0, rows, dim, new float[rows * dim - 1], 0));
            for (float s : scores) {
                assertEquals(7f, s, "a rejected dotRows wrote scores");
            }
            for (float a : acc) {
                assertEquals(7f, a, "a rejected accumulateRows wrote acc");
            }

            // row calls on block formats
            if (!c.rowIndependent()) {
                UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                        () -> c.encodeRow(x, 0, dim, seg, 0));
                assertTrue(e.getMessage().contains("block format"), e.getMessage());
                assertThrows(UnsupportedOperationException.class, () -> c.rowBytes(dim));
            } else {
                rejects(String.valueOf(c.rowBytes(dim)), seg, () -> c.encodeRow(x, 0, dim, seg.asSlice(0, c.rowBytes(dim) - 1), 0));
            }
        }
    }

    @ParameterizedTest(name = "{0} {1} keys={2}")
    @MethodSource("cases")
    void metadataOverflowIsRejectedNamingTheLimit(KernelProvider p, KvFormat f, boolean keys) {
        Codec c = Quantizers.codec(p, f, keys);
        int dim = 32, rows = 2;
        float[] x = new float[rows * dim];
        x[dim + 5] = 1e7f;   // fits float, FP8 (scaled) and F16/BF16 (saturated), not fp16 block metadata
        MemorySegment seg = MemorySegment.ofArray(new byte[(int) c.sliceBytes(rows, dim)]);
        if (f == KvFormats.Q8_0) {
            rejects("1.0E7; its scale amax/127 must stay below 65520.0 (fp16 overflow), i.e. |x| < 8321040", seg, () -> c.encode(x, rows, dim, seg));
        } else if (f == KvFormats.Q5_0) {
            rejects("1.0E7; its scale |max|/16 must stay below 65520.0 (fp16 overflow), i.e. |x| < 1048320", seg, () -> c.encode(x, rows, dim, seg));
        } else if (f == KvFormats.Q4_0) {
            rejects("1.0E7; its scale |max|/8 must stay below 65520.0 (fp16 overflow), i.e. |x| < 524160", seg, () -> c.encode(x, rows, dim, seg));
        } else if (f == KvFormats.KIVI_4 || f == KvFormats.KIVI_2) {
            rejects("65504", seg, () -> c.encode(x, rows, dim, seg));
        } else {
            c.encode(x, rows, dim, seg);   // saturating or scaled formats accept it and decode finite values
            float[] back = new float[rows * dim];
            c.decode(seg, rows, dim, back);
            for (float b : back) {
                assertTrue(Float.isFinite(b), f + " decoded a non-finite value");
            }
            if (f == KvFormats.F16) {
                assertEquals(65504f, back[dim + 5], "F16 saturates");
            }
        }
    }
}
