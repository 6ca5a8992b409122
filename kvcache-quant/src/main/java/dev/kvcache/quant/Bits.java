package dev.kvcache.quant;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/*
 * Scalar number conversions shared by every codec, and the byte layouts they use.
 *
 * All stored multi-byte values are little-endian and may sit at any byte offset (Q8_0 rows are
 * 34 bytes apart, heap segments over byte[] have alignment 1), so every layout is the UNALIGNED
 * variant with an explicit byte order: the bytes are the same on every platform.
 *
 * fp16 uses Float.floatToFloat16 / float16ToFloat (IEEE round to nearest even, intrinsified on
 * x86 with F16C), which is exactly what ggml's GGML_FP32_TO_FP16 does, so llama.cpp block scales
 * match bit for bit.
 */
final class Bits {

    private Bits() {
    }

    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfByte I8 = ValueLayout.JAVA_BYTE;

    /** Largest finite fp16 value. */
    static final float F16_MAX = 65504f;
    /** Smallest float whose fp16 rounding (nearest even) overflows to infinity. */
    static final float F16_OVERFLOW = 65520f;
    /** Largest finite bfloat16 value (0x7F7F). */
    static final float BF16_MAX = Float.intBitsToFloat(0x7F7F0000);

    static short toF16(float x) {
        return Float.floatToFloat16(x);
    }

    static float fromF16(short h) {
        return Float.float16ToFloat(h);
    }

    /** fp16 with saturation to +-65504 instead of overflow to infinity; x must not be NaN. */
    static short toF16Saturating(float x) {
        return Float.floatToFloat16(Math.max(-F16_MAX, Math.min(F16_MAX, x)));
    }

    /** bfloat16, round to nearest even, saturating to +-BF16_MAX; x must not be NaN. */
    static short toBf16Saturating(float x) {
        int b = Float.floatToRawIntBits(Math.max(-BF16_MAX, Math.min(BF16_MAX, x)));
        return (short) ((b + 0x7FFF + ((b >>> 16) & 1)) >>> 16);
    }

    static float fromBf16(short h) {
        return Float.intBitsToFloat(h << 16);
    }

    /**
     * C's roundf: nearest integer, halfway cases away from zero (Math.round rounds them up, which
     * differs for negative halves). {@code a - floor(a)} is exact in float, so no double rounding.
     */
    static float roundf(float x) {
        float a = Math.abs(x);
        float t = (float) Math.floor(a);
        if (a - t >= 0.5f) {
            t += 1f;
        }
        return Math.copySign(t, x);
    }
}
