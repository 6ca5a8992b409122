package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import java.lang.foreign.MemorySegment;

import static dev.kvcache.quant.Bits.I16;
import static dev.kvcache.quant.VectorProvider.F;
import static dev.kvcache.quant.VectorProvider.I;
import static dev.kvcache.quant.VectorProvider.L;
import static dev.kvcache.quant.VectorProvider.LE_ORDER;
import static dev.kvcache.quant.VectorProvider.S;
import static jdk.incubator.vector.VectorOperators.I2S;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.S2I;

/*
 * The half-precision family: F16 (IEEE binary16) and BF16 (upper half of binary32), d x 2 bytes
 * per row, little-endian, both rounding to nearest even and saturating (F16 at +-65504, never
 * infinity; BF16 at +-3.3895e38).
 *
 * One scalar codec serves both (the conversion is the only difference); the Vector codecs encode
 * with branch-free bit manipulation of clamped values and take their fused kernels from the
 * generated F16Kernels / BF16Kernels.
 */
final class HalfFamily {

    private HalfFamily() {
    }

    static Codec scalar(KvFormat f, boolean keys) {
        return new Scalar(f, keys);
    }

    static Codec vector(KvFormat f, boolean keys) {
        return f == KvFormats.F16 ? new F16Vector(keys) : new BF16Vector(keys);
    }

    static final class Scalar extends RowCodec {
        private final boolean f16;

        Scalar(KvFormat f, boolean keys) {
            super(f, keys);
            if (f != KvFormats.F16 && f != KvFormats.BF16) {
                throw new IllegalArgumentException("not a half-precision format: " + f);
            }
            f16 = f == KvFormats.F16;
        }

        private float load(MemorySegment src, long o) {
            short h = src.get(I16, o);
            return f16 ? Bits.fromF16(h) : Bits.fromBf16(h);
        }

        @Override
        long rowBytes0(int dim) {
            return 2L * dim;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            Checks.finite(src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int i = 0; i < dim; i++) {
                float x = src[srcOff + i];
                dst.set(I16, dstOff + 2L * i, f16 ? Bits.toF16Saturating(x) : Bits.toBf16Saturating(x));
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int i = 0; i < dim; i++) {
                dst[dstOff + i] = load(src, off + 2L * i);
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float s = 0f;
            for (int i = 0; i < dim; i++) {
                s += q[qOff + i] * load(src, off + 2L * i);
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int i = 0; i < dim; i++) {
                acc[aOff + i] += w * load(src, off + 2L * i);
            }
        }
    }

    static final class F16Vector extends RowCodec {
        F16Vector(boolean keys) {
            super(KvFormats.F16, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return 2L * dim;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            VectorProvider.finite(src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                FloatVector v = FloatVector.fromArray(F, src, srcOff + i).max(-Bits.F16_MAX).min(Bits.F16_MAX);
                VectorProvider.floatToHalf(v).intoMemorySegment(dst, dstOff + 2L * i, LE_ORDER);
            }
            for (; i < dim; i++) {
                dst.set(I16, dstOff + 2L * i, Bits.toF16Saturating(src[srcOff + i]));
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                VectorProvider.halfToFloat(ShortVector.fromMemorySegment(S, src, off + 2L * i, LE_ORDER))
                        .intoArray(dst, dstOff + i);
            }
            for (; i < dim; i++) {
                dst[dstOff + i] = Bits.fromF16(src.get(I16, off + 2L * i));
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            return F16Kernels.dotRow(src, off, dim, q, qOff);
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            F16Kernels.axpyRow(src, off, dim, w, acc, aOff);
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            F16Kernels.dotRows(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            F16Kernels.accumulateRows(slice, off, rows, count, dim, w, wOff, acc, aOff);
        }

        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
            F16Kernels.dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
        }

        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
            F16Kernels.accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, wStride, heads, acc, aOff);
        }
    }

    static final class BF16Vector extends RowCodec {
        BF16Vector(boolean keys) {
            super(KvFormats.BF16, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return 2L * dim;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            VectorProvider.finite(src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                IntVector b = FloatVector.fromArray(F, src, srcOff + i).max(-Bits.BF16_MAX).min(Bits.BF16_MAX)
                        .reinterpretAsInts();
                IntVector r = b.add(0x7FFF).add(b.lanewise(LSHR, 16).and(1)).lanewise(LSHR, 16);
                r.convertShape(I2S, S, 0).intoMemorySegment(dst, dstOff + 2L * i, LE_ORDER);
            }
            for (; i < dim; i++) {
                dst.set(I16, dstOff + 2L * i, Bits.toBf16Saturating(src[srcOff + i]));
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                ShortVector h = ShortVector.fromMemorySegment(S, src, off + 2L * i, LE_ORDER);
                ((IntVector) h.convertShape(S2I, I, 0)).lanewise(LSHL, 16).reinterpretAsFloats().intoArray(dst, dstOff + i);
            }
            for (; i < dim; i++) {
                dst[dstOff + i] = Bits.fromBf16(src.get(I16, off + 2L * i));
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            return BF16Kernels.dotRow(src, off, dim, q, qOff);
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            BF16Kernels.axpyRow(src, off, dim, w, acc, aOff);
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            BF16Kernels.dotRows(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            BF16Kernels.accumulateRows(slice, off, rows, count, dim, w, wOff, acc, aOff);
        }

        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
            BF16Kernels.dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
        }

        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
            BF16Kernels.accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, wStride, heads, acc, aOff);
        }
    }
}
