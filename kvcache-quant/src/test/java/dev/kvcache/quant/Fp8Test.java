package dev.kvcache.quant;

import dev.kvcache.KvFormats;
import dev.kvcache.Quantizer;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** FP8 rounding against a brute-force nearest-code search, saturation, and the slice layout. */
class Fp8Test {

    /** Independent reference: scan every finite code for the nearest value; ties go to the even code. */
    static int bruteForce(Fp8Codec.Variant v, float x) {
        double best = Double.POSITIVE_INFINITY;
        int bestCode = -1;
        boolean neg = Float.floatToRawIntBits(x) < 0;
        for (int code = 0; code < 128; code++) {
            float val = v.table[code];
            if (!Float.isFinite(val)) {
                continue;
            }
            double err = Math.abs(Math.abs((double) x) - val);
            if (err < best || (err == best && (code & 1) == 0)) {
                best = err;
                bestCode = code;
            }
        }
        return bestCode | (neg ? 0x80 : 0);
    }

    @Test
    void e4m3AndE5m2Constants() {
        assertEquals(448f, Fp8Codec.E4M3.max);
        assertEquals(57344f, Fp8Codec.E5M2.max);
        assertEquals(0x1p-9f, Fp8Codec.E4M3.table[1]);
        assertEquals(0x1p-16f, Fp8Codec.E5M2.table[1]);
        assertTrue(Float.isNaN(Fp8Codec.E4M3.table[0x7F]));
        assertEquals(Float.POSITIVE_INFINITY, Fp8Codec.E5M2.table[0x7C]);
    }

    @Test
    void roundingMatchesBruteForceIncludingTiesAndSaturation() {
        SplittableRandom rnd = new SplittableRandom();
        for (Fp8Codec.Variant v : new Fp8Codec.Variant[] {Fp8Codec.E4M3, Fp8Codec.E5M2}) {
            // every midpoint between neighbouring codes (the ties), and the codes themselves
            for (int code = 0; code < 0x7F; code++) {
                float a = v.table[code], b = v.table[code + 1];
                if (!Float.isFinite(a) || !Float.isFinite(b)) {
                    continue;
                }
                for (float x : new float[] {a, (float) ((a + (double) b) / 2), -a, -(float) ((a + (double) b) / 2)}) {
                    assertEquals(bruteForce(v, x), v.encode(x), "x=" + x);
                }
            }
            for (int i = 0; i < 200_000; i++) {
                float x = (float) (rnd.nextDouble(-1, 1) * Math.pow(2, rnd.nextInt(-30, 30)));
                assertEquals(bruteForce(v, x), v.encode(x), "x=" + x);
            }
            // saturation: finite input never becomes NaN or infinity
            for (float x : new float[] {v.max * 1.01f, 1e30f, Float.MAX_VALUE, -Float.MAX_VALUE}) {
                int code = v.encode(x);
                assertEquals(x > 0 ? v.maxCode : v.maxCode | 0x80, code, "x=" + x);
                assertTrue(Float.isFinite(v.table[code]));
            }
        }
    }

    @Test
    void everyProviderEncodesTiesAndRandomValuesLikeBruteForce() {
        SplittableRandom rnd = new SplittableRandom();
        for (var f : new dev.kvcache.KvFormat[] {KvFormats.FP8_E4M3, KvFormats.FP8_E5M2}) {
            Fp8Codec.Variant v = f == KvFormats.FP8_E4M3 ? Fp8Codec.E4M3 : Fp8Codec.E5M2;
            // element 0 = max, so the slice scale is exactly 1 and x / s = x
            java.util.List<Float> xs = new java.util.ArrayList<>();
            xs.add(v.max);
            for (int code = 0; code < 0x7E; code++) {
                float a = v.table[code], b = v.table[code + 1];
                if (Float.isFinite(a) && Float.isFinite(b)) {
                    float mid = (float) ((a + (double) b) / 2);
                    xs.add(a);
                    xs.add(mid);
                    xs.add(-mid);
                }
            }
            while (xs.size() % 16 != 5) {
                xs.add((float) (rnd.nextDouble(-1, 1) * Math.pow(2, rnd.nextInt(-20, 9))));
            }
            float[] x = new float[xs.size()];
            for (int i = 0; i < x.length; i++) {
                x[i] = xs.get(i);
            }
            for (KernelProvider p : Quantizers.availableProviders()) {
                Codec c = Quantizers.codec(p, f, true);
                byte[] out = new byte[(int) c.encodedBytes(1, x.length)];
                c.encode(x, 1, x.length, MemorySegment.ofArray(out));
                assertEquals(1f, ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).getFloat(0));
                for (int i = 0; i < x.length; i++) {
                    assertEquals((byte) bruteForce(v, x[i]), out[4 + i], p.name() + " " + f + " x=" + x[i]);
                }
            }
        }
    }

    @Test
    void sliceStartsWithLittleEndianScaleThenRowMajorCodes() {
        for (var f : new dev.kvcache.KvFormat[] {KvFormats.FP8_E4M3, KvFormats.FP8_E5M2}) {
            Quantizer q = Quantizers.of(f);
            int rows = 3, dim = 8;
            float[] x = new float[rows * dim];
            for (int i = 0; i < x.length; i++) {
                x[i] = (i - 11) * 0.37f;
            }
            x[5] = -1e30f;  // huge but finite: the scale absorbs it, nothing overflows
            byte[] bytes = new byte[(int) q.encodedBytes(rows, dim)];
            assertEquals(rows * dim + 4, bytes.length);
            q.encode(x, rows, dim, MemorySegment.ofArray(bytes));
            float fmax = f == KvFormats.FP8_E4M3 ? 448f : 57344f;
            float scale = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getFloat(0);
            assertEquals(1e30f / fmax, scale);
            Fp8Codec.Variant v = f == KvFormats.FP8_E4M3 ? Fp8Codec.E4M3 : Fp8Codec.E5M2;
            for (int i = 0; i < x.length; i++) {
                assertEquals((byte) v.encode(x[i] / scale), bytes[4 + i], "element " + i);
            }
            assertEquals((byte) (v.maxCode | 0x80), bytes[4 + 5]);
            float[] back = new float[x.length];
            q.decode(MemorySegment.ofArray(bytes), rows, dim, back);
            for (float b : back) {
                assertTrue(Float.isFinite(b));
            }
            assertEquals(-fmax * scale, back[5]);
        }
    }

    @Test
    void allZeroSliceStoresZeroScale() {
        Quantizer q = Quantizers.of(KvFormats.FP8_E4M3);
        byte[] bytes = new byte[(int) q.encodedBytes(2, 4)];
        java.util.Arrays.fill(bytes, (byte) 7);
        q.encode(new float[8], 2, 4, MemorySegment.ofArray(bytes));
        for (byte b : bytes) {
            assertEquals(0, b);
        }
    }
}
