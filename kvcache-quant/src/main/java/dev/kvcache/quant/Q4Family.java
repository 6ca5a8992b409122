package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;

import java.lang.foreign.MemorySegment;

import static dev.kvcache.quant.Bits.I16;
import static dev.kvcache.quant.Bits.I8;
import static dev.kvcache.quant.VectorProvider.B;
import static dev.kvcache.quant.VectorProvider.F;
import static dev.kvcache.quant.VectorProvider.L;
import static dev.kvcache.quant.VectorProvider.LE_ORDER;
import static jdk.incubator.vector.VectorOperators.EQ;
import static jdk.incubator.vector.VectorOperators.F2I;
import static jdk.incubator.vector.VectorOperators.I2B;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;

/*
 * The Q4_0 family: per row, d/32 llama.cpp block_q4_0 (18 bytes): fp16 d, then 16 bytes; byte j
 * holds element j in its low nibble and element j+16 in its high nibble; x = (nibble - 8) * d.
 * Encoding follows ggml's quantize_row_q4_0_ref operation by operation (no FMA):
 *   max = the first x of largest |x|; d = max / -8; id = d != 0 ? 1/d : 0;
 *   q = min(15, (int) (x * id + 8.5f))
 * Accepted input: finite values whose scale |max|/8 fits fp16 (block amax below about 5.24e5).
 * The Vector codec's fused kernels are the generated Q4Kernels.
 */
final class Q4Family {

    private Q4Family() {
    }

    static final int G = KvFormats.GROUP;
    static final int H = G / 2;
    static final long BLOCK = 18;

    static Codec scalar(KvFormat f, boolean keys) {
        return new Scalar(keys);
    }

    static Codec vector(KvFormat f, boolean keys) {
        return new Vector(keys);
    }

    static void checkBlock(float[] src, int off, float amax) {
        if (!(amax <= Float.MAX_VALUE)) {
            throw Checks.notFinite(src, Checks.firstNonFinite(src, off, G));
        }
        if (amax / 8f >= Bits.F16_OVERFLOW) {
            throw new IllegalArgumentException("Q4_0 block at src[" + off + "] has max |x| = " + amax
                    + "; its scale |max|/8 must stay below " + Bits.F16_OVERFLOW
                    + " (fp16 overflow), i.e. |x| < " + (Bits.F16_OVERFLOW * 8f));
        }
    }

    static final class Scalar extends RowCodec {
        Scalar(boolean keys) {
            super(KvFormats.Q4_0, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return (dim / G) * BLOCK;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            for (int b = 0; b < dim; b += G) {
                checkBlock(src, off + b, Q8Family.amax(src, off + b));
            }
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int b = 0; b < dim / G; b++) {
                int x = srcOff + b * G;
                long o = dstOff + b * BLOCK;
                // the signed value of the first element of largest magnitude (strictly greater wins)
                float amax = 0f;
                float max = 0f;
                for (int j = 0; j < G; j++) {
                    float a = Math.abs(src[x + j]);
                    if (amax < a) {
                        amax = a;
                        max = src[x + j];
                    }
                }
                float d = max / -8f;
                float id = d != 0f ? 1f / d : 0f;
                dst.set(I16, o, Bits.toF16(d));
                for (int j = 0; j < H; j++) {
                    int lo = Math.min(15, (int) (src[x + j] * id + 8.5f));
                    int hi = Math.min(15, (int) (src[x + H + j] * id + 8.5f));
                    dst.set(I8, o + 2 + j, (byte) (lo | (hi << 4)));
                }
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * BLOCK;
                float d = Bits.fromF16(src.get(I16, o));
                int base = dstOff + b * G;
                for (int j = 0; j < H; j++) {
                    int v = src.get(I8, o + 2 + j);
                    dst[base + j] = ((v & 0xF) - 8) * d;
                    dst[base + H + j] = (((v >> 4) & 0xF) - 8) * d;
                }
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float s = 0f;
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * BLOCK;
                int base = qOff + b * G;
                float blk = 0f;
                for (int j = 0; j < H; j++) {
                    int v = src.get(I8, o + 2 + j);
                    blk += q[base + j] * ((v & 0xF) - 8) + q[base + H + j] * (((v >> 4) & 0xF) - 8);
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
                int base = aOff + b * G;
                for (int j = 0; j < H; j++) {
                    int v = src.get(I8, o + 2 + j);
                    acc[base + j] += c * ((v & 0xF) - 8);
                    acc[base + H + j] += c * (((v >> 4) & 0xF) - 8);
                }
            }
        }
    }

    static final class Vector extends RowCodec {
        Vector(boolean keys) {
            super(KvFormats.Q4_0, keys);
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

        private static IntVector codes(FloatVector v, float id) {
            // ggml: MIN(15, (int8_t)(x*id + 8.5f)), a separate multiply and add (no FMA)
            return ((IntVector) v.mul(id).add(8.5f).convert(F2I, 0)).min(15);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int b = 0; b < dim / G; b++) {
                int x = srcOff + b * G;
                long o = dstOff + b * BLOCK;
                float amax = VectorProvider.amax32(src, x);
                float max = 0f;
                if (amax != 0f) {
                    // the first element of largest magnitude decides the sign, as in ggml's scan
                    for (int k = 0; k < G; k += L) {
                        VectorMask<Float> hit = FloatVector.fromArray(F, src, x + k).abs().compare(EQ, amax);
                        if (hit.anyTrue()) {
                            max = src[x + k + hit.firstTrue()];
                            break;
                        }
                    }
                }
                float d = max / -8f;
                float id = d != 0f ? 1f / d : 0f;
                dst.set(I16, o, Bits.toF16(d));
                for (int k = 0; k < H; k += L) {
                    IntVector lo = codes(FloatVector.fromArray(F, src, x + k), id);
                    IntVector hi = codes(FloatVector.fromArray(F, src, x + H + k), id);
                    lo.or(hi.lanewise(LSHL, 4)).convertShape(I2B, B, 0).intoMemorySegment(dst, o + 2 + k, LE_ORDER);
                }
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * BLOCK;
                float d = Bits.fromF16(src.get(I16, o));
                int base = dstOff + b * G;
                for (int k = 0; k < H; k += L) {
                    ByteVector v = ByteVector.fromMemorySegment(B, src, o + 2 + k, LE_ORDER);
                    VectorProvider.bytesToFloats(v.and((byte) 0x0F).sub((byte) 8)).mul(d).intoArray(dst, base + k);
                    VectorProvider.bytesToFloats(v.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8)).mul(d)
                            .intoArray(dst, base + H + k);
                }
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            return Q4Kernels.dotRow(src, off, dim, q, qOff);
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            Q4Kernels.axpyRow(src, off, dim, w, acc, aOff);
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            Q4Kernels.dotRows(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            Q4Kernels.accumulateRows(slice, off, rows, count, dim, w, wOff, acc, aOff);
        }

        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
            Q4Kernels.dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
        }

        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
            Q4Kernels.accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, wStride, heads, acc, aOff);
        }
    }
}
