package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

import static dev.kvcache.quant.Bits.F32;
import static dev.kvcache.quant.Bits.I8;
import static dev.kvcache.quant.VectorProvider.B;
import static dev.kvcache.quant.VectorProvider.F;
import static dev.kvcache.quant.VectorProvider.I;
import static dev.kvcache.quant.VectorProvider.L;
import static dev.kvcache.quant.VectorProvider.LE_ORDER;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.EQ;
import static jdk.incubator.vector.VectorOperators.GT;
import static jdk.incubator.vector.VectorOperators.I2B;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.LT;
import static jdk.incubator.vector.VectorOperators.MAX;

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
 * written). Decoding is a 256-entry table lookup here; Fp8Codec.Vector overrides encoding
 * and the read kernels with branch-free bit manipulation (same bytes and values).
 */
class Fp8Codec extends BlockCodec {

    static Codec scalar(KvFormat f, boolean keys) {
        return new Fp8Codec(f, keys);
    }

    static Codec vector(KvFormat f, boolean keys) {
        return new Vector(f, keys);
    }

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

    // ================================================================== Vector API

    /*
     * FP8 codes to float without the table: place the 7 exponent+mantissa bits in a float's
     * exponent/mantissa fields and add the bias difference to the exponent (exact for normals);
     * subnormal codes (exponent 0) are m * 2^(1-bias-mbits) via an int-to-float conversion, which
     * avoids denormal float arithmetic; NaN/infinity codes are patched in; then the sign. The fused
     * kernels are the generated Fp8E4m3Kernels / Fp8E5m2Kernels (one class per variant, so no
     * branch on the variant inside a loop).
     */
    static final class Vector extends Fp8Codec {
        private final boolean e4m3;

        Vector(KvFormat f, boolean keys) {
            super(f, keys);
            e4m3 = f == KvFormats.FP8_E4M3;
        }

        private FloatVector load(MemorySegment src, long off) {
            IntVector x = (IntVector) ByteVector.fromMemorySegment(B, src, off, LE_ORDER).convertShape(B2I, I, 0);
            IntVector em = x.and(0x7F);
            IntVector sign = x.and(0x80).lanewise(LSHL, 24);
            IntVector bits;
            if (e4m3) {
                bits = em.lanewise(LSHL, 20).add((127 - 7) << 23);
                IntVector sub = ((FloatVector) em.convert(I2F, 0)).mul(0x1p-9f).reinterpretAsInts();
                bits = bits.blend(sub, em.compare(LT, 8));
                bits = bits.blend(0x7FC00000, em.compare(EQ, 0x7F));
            } else {
                bits = em.lanewise(LSHL, 21).add((127 - 15) << 23);
                IntVector sub = ((FloatVector) em.convert(I2F, 0)).mul(0x1p-16f).reinterpretAsInts();
                bits = bits.blend(sub, em.compare(LT, 4));
                bits = bits.blend(0x7F800000, em.compare(EQ, 0x7C));
                bits = bits.blend(0x7FC00000, em.compare(GT, 0x7C));
            }
            return bits.or(sign).reinterpretAsFloats();
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
            float s = src.get(F32, off);
            long o = off + 4 + (long) row * dim;
            int j = 0;
            for (int bound = F.loopBound(dim); j < bound; j += L) {
                load(src, o + j).mul(s).intoArray(dst, dstOff + j);
            }
            for (; j < dim; j++) {
                dst[dstOff + j] = v.table[src.get(Bits.I8, o + j) & 0xFF] * s;
            }
        }

        @Override
        void validate(float[] src, int off, int rows, int dim) {
            VectorProvider.finite(src, off, rows * dim);
        }

        /*
         * Encode, branch-free round to nearest even with saturation (same bytes as Variant.encode):
         * y = clamp(x / s, +-max); below the smallest normal, adding a power of two whose ulp is the
         * subnormal step (2^14 for E4M3, 2^7 for E5M2) makes the FPU round to that step and the low
         * bits are the code; above it, the float's exponent and top mantissa bits are rounded with
         * the bias trick (add half-ulp-minus-one plus the lowest kept bit) and rebiased.
         */
        @Override
        void encode0(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
            int n = rows * dim;
            float amax = 0f;
            int j = 0;
            FloatVector m = FloatVector.zero(F);
            for (int bound = F.loopBound(n); j < bound; j += L) {
                m = m.max(FloatVector.fromArray(F, src, srcOff + j).abs());
            }
            amax = m.reduceLanes(MAX);
            for (; j < n; j++) {
                amax = Math.max(amax, Math.abs(src[srcOff + j]));
            }
            float s = amax / v.max;
            dst.set(F32, dstOff, s);
            long o = dstOff + 4;
            if (s == 0f) {
                dst.asSlice(o, n).fill((byte) 0);
                return;
            }
            int mbits = e4m3 ? 3 : 2;
            int bias = e4m3 ? 7 : 15;
            float magic = e4m3 ? 0x1p14f : 0x1p7f;              // ulp = 2^-9 resp. 2^-16, the subnormal step
            int magicBits = Float.floatToRawIntBits(magic);
            int minNormalBits = (127 + 1 - bias) << 23;
            int shift = 23 - mbits;
            j = 0;
            for (int bound = F.loopBound(n); j < bound; j += L) {
                FloatVector y = FloatVector.fromArray(F, src, srcOff + j).div(s).max(-v.max).min(v.max);
                IntVector u = y.reinterpretAsInts();
                IntVector a = u.and(0x7FFFFFFF);
                IntVector sub = a.reinterpretAsFloats().add(magic).reinterpretAsInts().sub(magicBits);
                IntVector odd = a.lanewise(LSHR, shift).and(1);
                IntVector nrm = a.add((1 << (shift - 1)) - 1).add(odd).lanewise(LSHR, shift).sub((127 - bias) << mbits);
                IntVector code = nrm.blend(sub, a.compare(LT, minNormalBits)).min(v.maxCode);
                code = code.or(u.lanewise(LSHR, 24).and(0x80));
                code.convertShape(I2B, B, 0).intoMemorySegment(dst, o + j, LE_ORDER);
            }
            for (; j < n; j++) {
                dst.set(Bits.I8, o + j, (byte) v.encode(src[srcOff + j] / s));
            }
        }

        /* The codes of a whole slice are contiguous: one flat loop. */
        @Override
        void decode0(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff) {
            float s = src.get(F32, off);
            int n = rows * dim;
            int j = 0;
            for (int bound = F.loopBound(n); j < bound; j += L) {
                load(src, off + 4 + j).mul(s).intoArray(dst, dstOff + j);
            }
            for (; j < n; j++) {
                dst[dstOff + j] = v.table[src.get(Bits.I8, off + 4 + j) & 0xFF] * s;
            }
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            if (e4m3) {
                Fp8E4m3Kernels.dotRows(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
            } else {
                Fp8E5m2Kernels.dotRows(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
            }
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            if (e4m3) {
                Fp8E4m3Kernels.accumulateRows(slice, off, rows, count, dim, w, wOff, acc, aOff);
            } else {
                Fp8E5m2Kernels.accumulateRows(slice, off, rows, count, dim, w, wOff, acc, aOff);
            }
        }

        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
            if (e4m3) {
                Fp8E4m3Kernels.dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
            } else {
                Fp8E5m2Kernels.dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
            }
        }

        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
            if (e4m3) {
                Fp8E4m3Kernels.accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, wStride, heads, acc, aOff);
            } else {
                Fp8E5m2Kernels.accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, wStride, heads, acc, aOff);
            }
        }
    }
}
