package dev.kvcache.quant;

import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.HexFormat;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Q8_0 / Q5_0 / Q4_0 bytes equal llama.cpp's block_q8_0 / block_q5_0 / block_q4_0 as written by
 * ggml's quantize_row_q8_0_ref / quantize_row_q5_0_ref / quantize_row_q4_0_ref (ggml-quants.c):
 * hand-derived blocks (ties, clamping, zero blocks, the qh bit order) and random rows against a
 * small independent re-implementation of those functions (its own fp16 rounding and roundf, no
 * code shared with the codecs), for every provider.
 */
class GgmlCompatTest {

    // ------------------------------------------------------------------ independent reference

    /** fp16 bits of x by search over the finite halves, ties to even, overflow to infinity (as ggml). */
    static short refF16(float x) {
        int sign = Float.floatToRawIntBits(x) < 0 ? 0x8000 : 0;
        double a = Math.abs((double) x);
        if (a >= 65520.0) {
            return (short) (sign | 0x7C00);
        }
        int lo = 0, hi = 0x7BFF;  // positive finite halves are monotonic in their bit patterns
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (halfValue(mid) <= a) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        int best = lo;
        if (lo < 0x7BFF) {
            double dl = a - halfValue(lo), dh = halfValue(lo + 1) - a;
            if (dh < dl || (dh == dl && (lo & 1) == 1)) {
                best = lo + 1;
            }
        }
        return (short) (sign | best);
    }

    static double halfValue(int bits) {
        int e = bits >> 10, m = bits & 0x3FF;
        return e == 0 ? m * Math.pow(2, -24) : (1024 + m) * Math.pow(2, e - 25);
    }

    /** C roundf: halves away from zero. */
    static int refRoundf(float x) {
        return new BigDecimal(x).setScale(0, RoundingMode.HALF_UP).intValueExact();
    }

    static byte[] refQ8(float[] x) {
        byte[] out = new byte[x.length / 32 * 34];
        for (int i = 0; i < x.length / 32; i++) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) {
                amax = Math.max(amax, Math.abs(x[i * 32 + j]));
            }
            float d = amax / 127;
            float id = d != 0 ? 1.0f / d : 0.0f;
            short h = refF16(d);
            out[i * 34] = (byte) h;
            out[i * 34 + 1] = (byte) (h >> 8);
            for (int j = 0; j < 32; j++) {
                out[i * 34 + 2 + j] = (byte) refRoundf(x[i * 32 + j] * id);
            }
        }
        return out;
    }

    static byte[] refQ4(float[] x) {
        byte[] out = new byte[x.length / 32 * 18];
        for (int i = 0; i < x.length / 32; i++) {
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < 32; j++) {
                float v = x[i * 32 + j];
                if (amax < Math.abs(v)) {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            float d = max / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            short h = refF16(d);
            out[i * 18] = (byte) h;
            out[i * 18 + 1] = (byte) (h >> 8);
            for (int j = 0; j < 16; j++) {
                float x0 = x[i * 32 + j] * id;
                float x1 = x[i * 32 + 16 + j] * id;
                int xi0 = Math.min(15, (byte) (x0 + 8.5f));   // C: MIN(15, (int8_t)(x0 + 8.5f))
                int xi1 = Math.min(15, (byte) (x1 + 8.5f));
                out[i * 18 + 2 + j] = (byte) (xi0 | (xi1 << 4));
            }
        }
        return out;
    }

    /** ggml quantize_row_q5_0_ref: d = max / -16, code = MIN(31, (int8_t)(x*id + 16.5f)), bit 4 of code j in qh bit j. */
    static byte[] refQ5(float[] x) {
        byte[] out = new byte[x.length / 32 * 22];
        for (int i = 0; i < x.length / 32; i++) {
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < 32; j++) {
                float v = x[i * 32 + j];
                if (amax < Math.abs(v)) {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            float d = max / -16;
            float id = d != 0 ? 1.0f / d : 0.0f;
            short h = refF16(d);
            out[i * 22] = (byte) h;
            out[i * 22 + 1] = (byte) (h >> 8);
            long qh = 0;
            for (int j = 0; j < 16; j++) {
                float x0 = x[i * 32 + j] * id;
                float x1 = x[i * 32 + 16 + j] * id;
                int xi0 = Math.min(31, (byte) (x0 + 16.5f));
                int xi1 = Math.min(31, (byte) (x1 + 16.5f));
                out[i * 22 + 6 + j] = (byte) ((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                qh |= (long) ((xi0 & 0x10) >> 4) << j;
                qh |= (long) ((xi1 & 0x10) >> 4) << (j + 16);
            }
            for (int b = 0; b < 4; b++) {   // memcpy of a uint32 on a little-endian machine
                out[i * 22 + 2 + b] = (byte) (qh >>> (8 * b));
            }
        }
        return out;
    }

    // ------------------------------------------------------------------ tests

    static byte[] encode(Codec c, float[] x) {
        byte[] out = new byte[(int) c.encodedBytes(1, x.length)];
        c.encode(x, 1, x.length, MemorySegment.ofArray(out));
        return out;
    }

    @Test
    void q8HandDerivedBlockWithTies() {
        // amax 127 -> d = 1.0 (fp16 0x3C00), id = 1: roundf(-2.5) = -3, roundf(2.5) = 3, roundf(-0.5) = -1,
        // roundf(0.49999997) = 0 (x + 0.5 would round to 1 in float).
        float[] x = new float[32];
        x[0] = 127f;
        x[1] = -2.5f;
        x[2] = 2.5f;
        x[3] = -0.5f;
        x[4] = 0.49999997f;
        x[5] = -127f;
        String expected = "003c" + "7ffd03ff0081" + "00".repeat(26);
        for (KernelProvider p : Quantizers.availableProviders()) {
            assertEquals(expected, HexFormat.of().formatHex(encode(Quantizers.codec(p, KvFormats.Q8_0, true), x)), p.name());
        }
        assertEquals(expected, HexFormat.of().formatHex(refQ8(x)));
    }

    @Test
    void q4HandDerivedBlockWithClampAndNibbleOrder() {
        // max = -8 (first of largest magnitude; +8 later does not replace it) -> d = 1.0, id = 1, q = (int)(x + 8.5):
        // x0=-8 -> 0, x16=8 -> 16 -> clamp 15: byte0 = 0xF0; x1=-0.5 -> 8, x17=0.5 -> 9: 0x98;
        // x2=3.2 -> 11, x18=-3.7 -> 4: 0x4B; zeros -> 8: 0x88.
        float[] x = new float[32];
        x[0] = -8f;
        x[16] = 8f;
        x[1] = -0.5f;
        x[17] = 0.5f;
        x[2] = 3.2f;
        x[18] = -3.7f;
        String expected = "003c" + "f0984b" + "88".repeat(13);
        for (KernelProvider p : Quantizers.availableProviders()) {
            assertEquals(expected, HexFormat.of().formatHex(encode(Quantizers.codec(p, KvFormats.Q4_0, true), x)), p.name());
        }
        assertEquals(expected, HexFormat.of().formatHex(refQ4(x)));
    }

    @Test
    void q5HandDerivedBlockWithClampAndHighBits() {
        // max = -16 (first of largest magnitude) -> d = 1.0, id = 1, code = (int)(x + 16.5):
        // x0=-16 -> 0, x16=16 -> 32 -> clamp 31 (nibble F, high bit 1): byte0 = 0xF0;
        // x1=-0.5 -> 16 (nibble 0, bit 1), x17=0.5 -> 17 (1, bit 1): 0x10; x2=3.2 -> 19 (3, bit 1),
        // x18=-3.7 -> 12 (C, bit 0): 0xC3; zeros -> 16 (0, bit 1).
        // qh: bits 0..15 = 0xFFFE (only x0's bit clear), bits 16..31 = 0xFFFB (x18's clear); little-endian.
        float[] x = new float[32];
        x[0] = -16f;
        x[16] = 16f;
        x[1] = -0.5f;
        x[17] = 0.5f;
        x[2] = 3.2f;
        x[18] = -3.7f;
        String expected = "003c" + "fefffbff" + "f010c3" + "00".repeat(13);
        for (KernelProvider p : Quantizers.availableProviders()) {
            assertEquals(expected, HexFormat.of().formatHex(encode(Quantizers.codec(p, KvFormats.Q5_0, true), x)), p.name());
        }
        assertEquals(expected, HexFormat.of().formatHex(refQ5(x)));
    }

    @Test
    void zeroBlocks() {
        float[] x = new float[32];
        x[7] = -0.0f;
        for (KernelProvider p : Quantizers.availableProviders()) {
            // Q8_0: d = 0; Q4_0: d = +0 / -8 = -0 -> fp16 0x8000, every code 8
            assertEquals("0000" + "00".repeat(32),
                    HexFormat.of().formatHex(encode(Quantizers.codec(p, KvFormats.Q8_0, true), x)), p.name());
            assertEquals("0080" + "88".repeat(16),
                    HexFormat.of().formatHex(encode(Quantizers.codec(p, KvFormats.Q4_0, true), x)), p.name());
            // Q5_0: d = -0 as Q4_0, every code 16: nibbles 0, every high bit set
            assertEquals("0080" + "ffffffff" + "00".repeat(16),
                    HexFormat.of().formatHex(encode(Quantizers.codec(p, KvFormats.Q5_0, true), x)), p.name());
        }
    }

    @Test
    void randomRowsMatchIndependentReference() {
        long seed = new SplittableRandom().nextLong();
        SplittableRandom rnd = new SplittableRandom(seed);
        for (KernelProvider p : Quantizers.availableProviders()) {
            Codec q8 = Quantizers.codec(p, KvFormats.Q8_0, true);
            Codec q4 = Quantizers.codec(p, KvFormats.Q4_0, true);
            Codec q5 = Quantizers.codec(p, KvFormats.Q5_0, true);
            for (int t = 0; t < 3000; t++) {
                int dim = 32 * rnd.nextInt(1, 9);
                float[] x = new float[dim];
                double scale = Math.pow(2, rnd.nextInt(-20, 16));
                int mode = rnd.nextInt(4);
                for (int i = 0; i < dim; i++) {
                    x[i] = switch (mode) {
                        case 0 -> (float) (rnd.nextGaussian() * scale);
                        // small integers and halves: many exact ties for roundf and for x*id + 8.5
                        case 1 -> rnd.nextInt(-16, 17) * 0.5f;
                        // equal magnitudes of both signs: the first one decides Q4_0's sign
                        case 2 -> (rnd.nextBoolean() ? 1 : -1) * (float) scale * rnd.nextInt(1, 4);
                        default -> (float) (rnd.nextDouble(-1, 1) * scale);
                    };
                }
                String where = p.name() + " seed=" + seed + " t=" + t;
                assertEquals(HexFormat.of().formatHex(refQ8(x)), HexFormat.of().formatHex(encode(q8, x)), where);
                assertEquals(HexFormat.of().formatHex(refQ4(x)), HexFormat.of().formatHex(encode(q4, x)), where);
                assertEquals(HexFormat.of().formatHex(refQ5(x)), HexFormat.of().formatHex(encode(q5, x)), where);
            }
        }
    }
}
