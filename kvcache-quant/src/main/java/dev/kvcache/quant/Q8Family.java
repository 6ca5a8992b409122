package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

import java.lang.foreign.MemorySegment;

import static dev.kvcache.quant.Bits.I16;
import static dev.kvcache.quant.Bits.I8;
import static dev.kvcache.quant.VectorProvider.B;
import static dev.kvcache.quant.VectorProvider.B32;
import static dev.kvcache.quant.VectorProvider.F;
import static dev.kvcache.quant.VectorProvider.I;
import static dev.kvcache.quant.VectorProvider.L;
import static dev.kvcache.quant.VectorProvider.LE_ORDER;
import static jdk.incubator.vector.VectorOperators.B2F;
import static jdk.incubator.vector.VectorOperators.F2I;
import static jdk.incubator.vector.VectorOperators.GE;
import static jdk.incubator.vector.VectorOperators.I2B;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LE;

/*
 * The Q8_0 family: per row, d/32 llama.cpp block_q8_0 (34 bytes): fp16 d, then 32 x int8 qs;
 * x = qs[j] * d. Encoding follows ggml's quantize_row_q8_0_ref operation by operation in float
 * arithmetic (no fused multiply-add), so the bytes equal llama.cpp's:
 *   amax = max |x|; d = amax / 127; id = d != 0 ? 1/d : 0; qs = roundf(x * id)
 * Accepted input: finite values whose scale amax/127 fits fp16 (block amax below about 8.32e6).
 *
 * The Vector codec does roundf as truncate-then-adjust on the exact fraction (same bytes, tested);
 * its fused kernels are the generated Q8Kernels.
 */
final class Q8Family {

    private Q8Family() {
    }

    static final int G = KvFormats.GROUP;
    static final long BLOCK = 34;

    static Codec scalar(KvFormat f, boolean keys) {
        return new Scalar(keys);
    }

    static Codec vector(KvFormat f, boolean keys) {
        return new Vector(keys);
    }

    /** NaN-propagating max |x| of one group (Math.max propagates NaN, so NaN fails the check). */
    static float amax(float[] src, int off) {
        float amax = 0f;
        for (int j = 0; j < G; j++) {
            amax = Math.max(amax, Math.abs(src[off + j]));
        }
        return amax;
    }

    static void checkBlock(float[] src, int off, float amax) {
        if (!(amax <= Float.MAX_VALUE)) {
            throw Checks.notFinite(src, Checks.firstNonFinite(src, off, G));
        }
        if (amax / 127f >= Bits.F16_OVERFLOW) {
            throw new IllegalArgumentException("Q8_0 block at src[" + off + "] has max |x| = " + amax
                    + "; its scale amax/127 must stay below " + Bits.F16_OVERFLOW
                    + " (fp16 overflow), i.e. |x| < " + (Bits.F16_OVERFLOW * 127f));
        }
    }

    static final class Scalar extends RowCodec {
        Scalar(boolean keys) {
            super(KvFormats.Q8_0, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return (dim / G) * BLOCK;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            for (int b = 0; b < dim; b += G) {
                checkBlock(src, off + b, amax(src, off + b));
            }
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int b = 0; b < dim / G; b++) {
                int x = srcOff + b * G;
                long o = dstOff + b * BLOCK;
                float d = amax(src, x) / 127f;
                float id = d != 0f ? 1f / d : 0f;
                dst.set(I16, o, Bits.toF16(d));
                for (int j = 0; j < G; j++) {
                    dst.set(I8, o + 2 + j, (byte) Bits.roundf(src[x + j] * id));
                }
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * BLOCK;
                float d = Bits.fromF16(src.get(I16, o));
                for (int j = 0; j < G; j++) {
                    dst[dstOff + b * G + j] = src.get(I8, o + 2 + j) * d;
                }
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float s = 0f;
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * BLOCK;
                float blk = 0f;
                for (int j = 0; j < G; j++) {
                    blk += q[qOff + b * G + j] * src.get(I8, o + 2 + j);
                }
                s += blk * Bits.fromF16(src.get(I16, o));
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * BLOCK;
                float c = w * Bits.fromF16(src.get(I16, o));
                for (int j = 0; j < G; j++) {
                    acc[aOff + b * G + j] += c * src.get(I8, o + 2 + j);
                }
            }
        }
    }

    static final class Vector extends RowCodec {
        Vector(boolean keys) {
            super(KvFormats.Q8_0, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return (dim / G) * BLOCK;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            for (int b = 0; b < dim; b += G) {
                checkBlock(src, off + b, VectorProvider.amax32(src, off + b));
            }
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int b = 0; b < dim / G; b++) {
                int x = srcOff + b * G;
                long o = dstOff + b * BLOCK;
                float d = VectorProvider.amax32(src, x) / 127f;
                float id = d != 0f ? 1f / d : 0f;
                dst.set(I16, o, Bits.toF16(d));
                for (int k = 0; k < G; k += L) {
                    FloatVector v = FloatVector.fromArray(F, src, x + k).mul(id);
                    // roundf: truncate, then step away from zero when the exact fraction is >= 1/2
                    IntVector t = (IntVector) v.convert(F2I, 0);
                    FloatVector frac = v.sub((FloatVector) t.convert(I2F, 0));
                    t = t.add(1, frac.compare(GE, 0.5f).cast(I)).sub(1, frac.compare(LE, -0.5f).cast(I));
                    t.convertShape(I2B, B, 0).intoMemorySegment(dst, o + 2 + k, LE_ORDER);
                }
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * BLOCK;
                float d = Bits.fromF16(src.get(I16, o));
                ByteVector codes = ByteVector.fromMemorySegment(B32, src, o + 2, LE_ORDER);
                for (int k = 0; k < G / L; k++) {
                    ((FloatVector) codes.convertShape(B2F, F, k)).mul(d).intoArray(dst, dstOff + b * G + k * L);
                }
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            return Q8Kernels.dotRow(src, off, dim, q, qOff);
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            Q8Kernels.axpyRow(src, off, dim, w, acc, aOff);
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            Q8Kernels.dotRows(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            Q8Kernels.accumulateRows(slice, off, rows, count, dim, w, wOff, acc, aOff);
        }

        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
            Q8Kernels.dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
        }

        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
            Q8Kernels.accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, wStride, heads, acc, aOff);
        }
    }
}
