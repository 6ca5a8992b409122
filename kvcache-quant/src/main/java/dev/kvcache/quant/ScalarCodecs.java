package dev.kvcache.quant;

import dev.kvcache.KvFormats;

import java.lang.foreign.MemorySegment;

import static dev.kvcache.quant.Bits.F32;
import static dev.kvcache.quant.Bits.I16;
import static dev.kvcache.quant.Bits.I8;

/*
 * Plain-Java row codecs: the reference every Vector API kernel is tested against, and the
 * implementation used when jdk.incubator.vector is absent or disabled (-Dkvcache.vector=false).
 *
 * Row layouts (d = dim, all little-endian):
 *   F32   d x binary32
 *   F16   d x binary16, round to nearest even, saturating at +-65504 (never infinity)
 *   BF16  d x bfloat16 (upper half of binary32), round to nearest even, saturating at +-3.3895e38
 *   Q8_0  d/32 blocks of llama.cpp block_q8_0: fp16 d, then 32 x int8 qs;  x = qs[j] * d
 *   Q4_0  d/32 blocks of llama.cpp block_q4_0: fp16 d, then 16 bytes; byte j holds element j in its
 *         low nibble and element j+16 in its high nibble;  x = (nibble - 8) * d
 *
 * Q8_0/Q4_0 encoding follows ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref operation by
 * operation in float arithmetic (no fused multiply-add), so the bytes equal llama.cpp's:
 *   Q8_0: amax = max |x|; d = amax / 127; id = d != 0 ? 1/d : 0; qs = roundf(x * id)
 *   Q4_0: max = the first x of largest |x|; d = max / -8; id = d != 0 ? 1/d : 0;
 *         q = min(15, (int) (x * id + 8.5f))
 * Accepted input: finite values whose block scale d fits fp16 (|d| < 65520, i.e. block amax below
 * about 8.32e6 for Q8_0 and 5.24e5 for Q4_0); anything else is rejected before a byte is written.
 */
final class ScalarCodecs {

    private ScalarCodecs() {
    }

    static final int G = KvFormats.GROUP;

    /** Q8_0 accepts a block when its scale amax/127 stays below this (fp16 overflow threshold). */
    static final float Q_SCALE_LIMIT = Bits.F16_OVERFLOW;

    static void checkQ8Block(float[] src, int off, float amax) {
        if (!(amax <= Float.MAX_VALUE)) {
            throw Checks.notFinite(src, Checks.firstNonFinite(src, off, G));
        }
        if (amax / 127f >= Q_SCALE_LIMIT) {
            throw new IllegalArgumentException("Q8_0 block at src[" + off + "] has max |x| = " + amax
                    + "; its scale amax/127 must stay below " + Q_SCALE_LIMIT
                    + " (fp16 overflow), i.e. |x| < " + (Q_SCALE_LIMIT * 127f));
        }
    }

    static void checkQ4Block(float[] src, int off, float amax) {
        if (!(amax <= Float.MAX_VALUE)) {
            throw Checks.notFinite(src, Checks.firstNonFinite(src, off, G));
        }
        if (amax / 8f >= Q_SCALE_LIMIT) {
            throw new IllegalArgumentException("Q4_0 block at src[" + off + "] has max |x| = " + amax
                    + "; its scale |max|/8 must stay below " + Q_SCALE_LIMIT
                    + " (fp16 overflow), i.e. |x| < " + (Q_SCALE_LIMIT * 8f));
        }
    }

    /** NaN-propagating max |x| of one group (Math.max propagates NaN, so NaN fails the check). */
    static float amax(float[] src, int off) {
        float amax = 0f;
        for (int j = 0; j < G; j++) {
            amax = Math.max(amax, Math.abs(src[off + j]));
        }
        return amax;
    }

    // ================================================================== F32

    static final class F32Codec extends RowCodec {
        F32Codec(boolean keys) {
            super(KvFormats.F32, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return 4L * dim;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            Checks.finite(src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int i = 0; i < dim; i++) {
                dst.set(F32, dstOff + 4L * i, src[srcOff + i]);
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int i = 0; i < dim; i++) {
                dst[dstOff + i] = src.get(F32, off + 4L * i);
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float s = 0f;
            for (int i = 0; i < dim; i++) {
                s += q[qOff + i] * src.get(F32, off + 4L * i);
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int i = 0; i < dim; i++) {
                acc[aOff + i] += w * src.get(F32, off + 4L * i);
            }
        }
    }

    // ================================================================== F16

    static final class F16Codec extends RowCodec {
        F16Codec(boolean keys) {
            super(KvFormats.F16, keys);
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
                dst.set(I16, dstOff + 2L * i, Bits.toF16Saturating(src[srcOff + i]));
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int i = 0; i < dim; i++) {
                dst[dstOff + i] = Bits.fromF16(src.get(I16, off + 2L * i));
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float s = 0f;
            for (int i = 0; i < dim; i++) {
                s += q[qOff + i] * Bits.fromF16(src.get(I16, off + 2L * i));
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int i = 0; i < dim; i++) {
                acc[aOff + i] += w * Bits.fromF16(src.get(I16, off + 2L * i));
            }
        }
    }

    // ================================================================== BF16

    static final class BF16Codec extends RowCodec {
        BF16Codec(boolean keys) {
            super(KvFormats.BF16, keys);
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
                dst.set(I16, dstOff + 2L * i, Bits.toBf16Saturating(src[srcOff + i]));
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int i = 0; i < dim; i++) {
                dst[dstOff + i] = Bits.fromBf16(src.get(I16, off + 2L * i));
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float s = 0f;
            for (int i = 0; i < dim; i++) {
                s += q[qOff + i] * Bits.fromBf16(src.get(I16, off + 2L * i));
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int i = 0; i < dim; i++) {
                acc[aOff + i] += w * Bits.fromBf16(src.get(I16, off + 2L * i));
            }
        }
    }

    // ================================================================== Q8_0

    static final class Q8Codec extends RowCodec {
        Q8Codec(boolean keys) {
            super(KvFormats.Q8_0, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return (dim / G) * 34L;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            for (int b = 0; b < dim; b += G) {
                checkQ8Block(src, off + b, amax(src, off + b));
            }
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int b = 0; b < dim / G; b++) {
                int x = srcOff + b * G;
                long o = dstOff + b * 34L;
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
                long o = off + b * 34L;
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
                long o = off + b * 34L;
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
                long o = off + b * 34L;
                float c = w * Bits.fromF16(src.get(I16, o));
                for (int j = 0; j < G; j++) {
                    acc[aOff + b * G + j] += c * src.get(I8, o + 2 + j);
                }
            }
        }
    }

    // ================================================================== Q4_0

    static final class Q4Codec extends RowCodec {
        Q4Codec(boolean keys) {
            super(KvFormats.Q4_0, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return (dim / G) * 18L;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            for (int b = 0; b < dim; b += G) {
                checkQ4Block(src, off + b, amax(src, off + b));
            }
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int b = 0; b < dim / G; b++) {
                int x = srcOff + b * G;
                long o = dstOff + b * 18L;
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
                for (int j = 0; j < G / 2; j++) {
                    int lo = Math.min(15, (int) (src[x + j] * id + 8.5f));
                    int hi = Math.min(15, (int) (src[x + G / 2 + j] * id + 8.5f));
                    dst.set(I8, o + 2 + j, (byte) (lo | (hi << 4)));
                }
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 18L;
                float d = Bits.fromF16(src.get(I16, o));
                int base = dstOff + b * G;
                for (int j = 0; j < G / 2; j++) {
                    int v = src.get(I8, o + 2 + j);
                    dst[base + j] = ((v & 0xF) - 8) * d;
                    dst[base + G / 2 + j] = (((v >> 4) & 0xF) - 8) * d;
                }
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float s = 0f;
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 18L;
                int base = qOff + b * G;
                float blk = 0f;
                for (int j = 0; j < G / 2; j++) {
                    int v = src.get(I8, o + 2 + j);
                    blk += q[base + j] * ((v & 0xF) - 8) + q[base + G / 2 + j] * (((v >> 4) & 0xF) - 8);
                }
                s += blk * Bits.fromF16(src.get(I16, o));
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 18L;
                float c = w * Bits.fromF16(src.get(I16, o));
                int base = aOff + b * G;
                for (int j = 0; j < G / 2; j++) {
                    int v = src.get(I8, o + 2 + j);
                    acc[base + j] += c * ((v & 0xF) - 8);
                    acc[base + G / 2 + j] += c * (((v >> 4) & 0xF) - 8);
                }
            }
        }
    }
}
