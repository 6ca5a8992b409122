package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import java.lang.foreign.MemorySegment;

import static dev.kvcache.quant.Bits.F32;
import static dev.kvcache.quant.Bits.I8;

/*
 * FP8 block codec (OCP OFP8 E4M3 "FN" and E5M2) with one float32 scale per slice.
 *
 * Slice layout (t rows of d values; keyBytes = valueBytes = t*d + 4):
 *   bytes [0, 4)            scale s, binary32 little-endian
 *   bytes [4 + r*d + c]     FP8 code of element (r, c), row-major
 * Element value = decode(code) * s.
 *
 * Encoding: s = amax / FMAX over the whole slice (FMAX = 448 for E4M3, 57344 for E5M2), so the
 * largest element maps to the largest finite code; each x / s is rounded to the nearest FP8 value
 * (ties to even mantissa) and saturated to +-FMAX, so finite input never produces NaN or infinity.
 * An all-zero slice stores s = 0 and zero codes. NaN and infinities are rejected before writing.
 *
 * Code points: E4M3 bias 7, 3 mantissa bits, subnormals m * 2^-9, 0x7F/0xFF are NaN, no
 * infinities; E5M2 bias 15, 2 mantissa bits, subnormals m * 2^-16, exponent 31 is inf/NaN (never
 * written). Decoding is a 256-entry table lookup here; VectorProvider.Fp8 overrides encoding
 * and the read kernels with branch-free bit manipulation (same bytes and values).
 */
class Fp8Codec extends BlockCodec {

    /** One FP8 variant: bit split, bias, largest finite value and code, and the decode table. */
    static final class Variant {
        final int mbits;
        final int bias;
        final float max;
        final int maxCode;
        final float[] table = new float[256];
        final boolean e4m3;

        Variant(int ebits, int mbits, int bias, int maxCode, boolean e4m3) {
            this.mbits = mbits;
            this.bias = bias;
            this.maxCode = maxCode;
            this.e4m3 = e4m3;
            for (int code = 0; code < 256; code++) {
                table[code] = value(code, ebits);
            }
            this.max = table[maxCode];
        }

        private float value(int code, int ebits) {
            int sign = code >> 7;
            int e = (code >> mbits) & ((1 << ebits) - 1);
            int m = code & ((1 << mbits) - 1);
            double v;
            if (e4m3 && (code & 0x7F) == 0x7F) {
                v = Double.NaN;
            } else if (!e4m3 && e == (1 << ebits) - 1) {
                v = m == 0 ? Double.POSITIVE_INFINITY : Double.NaN;
            } else if (e == 0) {
                v = Math.scalb((double) m, 1 - bias - mbits);
            } else {
                v = Math.scalb((double) ((1 << mbits) + m), e - bias - mbits);
            }
            return (float) (sign == 1 ? -v : v);
        }

        /** Nearest code to a finite x (ties to even), saturating at +-max. */
        int encode(float x) {
            int sign = Float.floatToRawIntBits(x) < 0 ? 0x80 : 0;
            double a = Math.abs((double) x);
            if (a >= max) {
                return sign | maxCode;
            }
            int e = Math.getExponent(a);
            int code;
            if (e < 1 - bias) {
                // subnormal range: multiples of 2^(1-bias-mbits); rounding up to 2^mbits gives the min normal code
                code = (int) Math.rint(Math.scalb(a, bias - 1 + mbits));
            } else {
                int m = (int) Math.rint(Math.scalb(a, mbits - e));   // in [2^mbits, 2^(mbits+1)]
                int ee = e + bias;
                if (m == 1 << (mbits + 1)) {
                    ee++;
                    m = 1 << mbits;
                }
                code = (ee << mbits) | (m - (1 << mbits));
            }
            return sign | Math.min(code, maxCode);
        }
    }

    static final Variant E4M3 = new Variant(4, 3, 7, 0x7E, true);
    static final Variant E5M2 = new Variant(5, 2, 15, 0x7B, false);

    final Variant v;

    Fp8Codec(KvFormat format, boolean keys) {
        super(format, keys);
        if (format == KvFormats.FP8_E4M3) {
            v = E4M3;
        } else if (format == KvFormats.FP8_E5M2) {
            v = E5M2;
        } else {
            throw new IllegalArgumentException("not an FP8 format: " + format);
        }
    }

    @Override
    long sliceBytes0(int rows, int dim) {
        return (long) rows * dim + 4;
    }

    @Override
    void validate(float[] src, int off, int rows, int dim) {
        Checks.finite(src, off, rows * dim);
    }

    /** The slice scale of {@code src}: amax / FMAX. */
    float scaleOf(float[] src, int off, int n) {
        float amax = 0f;
        for (int i = off; i < off + n; i++) {
            amax = Math.max(amax, Math.abs(src[i]));
        }
        return amax / v.max;
    }

    @Override
    void encode0(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
        int n = rows * dim;
        float s = scaleOf(src, srcOff, n);
        dst.set(F32, dstOff, s);
        long o = dstOff + 4;
        if (s == 0f) {
            dst.asSlice(o, n).fill((byte) 0);
            return;
        }
        for (int i = 0; i < n; i++) {
            dst.set(I8, o + i, (byte) v.encode(src[srcOff + i] / s));
        }
    }

    @Override
    void decodeRow0(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
        float s = src.get(F32, off);
        long o = off + 4 + (long) row * dim;
        float[] t = v.table;
        for (int j = 0; j < dim; j++) {
            dst[dstOff + j] = t[src.get(I8, o + j) & 0xFF] * s;
        }
    }

    @Override
    void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                  float[] q, int qOff, float scale, float[] scores, int sOff) {
        float k = scale * slice.get(F32, off);
        float[] t = v.table;
        for (int r = 0; r < count; r++) {
            long o = off + 4 + (long) r * dim;
            float sum = 0f;
            for (int j = 0; j < dim; j++) {
                sum += q[qOff + j] * t[slice.get(I8, o + j) & 0xFF];
            }
            scores[sOff + r] = k * sum;
        }
    }

    @Override
    void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                         float[] w, int wOff, float[] acc, int aOff) {
        float s = slice.get(F32, off);
        float[] t = v.table;
        for (int r = 0; r < count; r++) {
            long o = off + 4 + (long) r * dim;
            float c = w[wOff + r] * s;
            for (int j = 0; j < dim; j++) {
                acc[aOff + j] += c * t[slice.get(I8, o + j) & 0xFF];
            }
        }
    }
}
