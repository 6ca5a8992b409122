package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import java.lang.foreign.MemorySegment;

import static dev.kvcache.quant.Bits.I16;
import static dev.kvcache.quant.Bits.I32;
import static dev.kvcache.quant.Bits.I8;

/*
 * The Q5_0 family (added by following "Adding a format" in the README): per row, d/32 llama.cpp
 * block_q5_0 (22 bytes, ggml-common.h):
 *   bytes [0, 2)   fp16 d
 *   bytes [2, 6)   qh, uint32 little-endian: bit j is bit 4 of value j's code
 *   bytes [6, 22)  qs: byte j holds the low 4 bits of value j (low nibble) and of value j+16 (high)
 *   x = (code - 16) * d, code in [0, 31]
 * Encoding is ggml's quantize_row_q5_0_ref operation by operation (float arithmetic, no FMA):
 *   max = the first x of largest |x|; d = max / -16; id = d != 0 ? 1/d : 0;
 *   code = min(31, (int) (x * id + 16.5f))
 * so the bytes equal llama.cpp's (GgmlCompatTest compares with an independent port of the
 * reference). Accepted input: finite values whose scale |max|/16 fits fp16 (block amax below
 * about 1.05e6).
 *
 * The Vector codec encodes and decodes with the scalar code (encode runs once per token; the
 * decode kernels that matter are fused) and takes its fused kernels from the generated Q5Kernels.
 */
final class Q5Family {

    private Q5Family() {
    }

    static final int G = KvFormats.GROUP;
    static final int H = G / 2;
    static final long BLOCK = 22;

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
        if (amax / 16f >= Bits.F16_OVERFLOW) {
            throw new IllegalArgumentException("Q5_0 block at src[" + off + "] has max |x| = " + amax
                    + "; its scale |max|/16 must stay below " + Bits.F16_OVERFLOW
                    + " (fp16 overflow), i.e. |x| < " + (Bits.F16_OVERFLOW * 16f));
        }
    }

    static void encodeBlocks(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
        for (int b = 0; b < dim / G; b++) {
            int x = srcOff + b * G;
            long o = dstOff + b * BLOCK;
            float amax = 0f;
            float max = 0f;
            for (int j = 0; j < G; j++) {
                float a = Math.abs(src[x + j]);
                if (amax < a) {
                    amax = a;
                    max = src[x + j];
                }
            }
            float d = max / -16f;
            float id = d != 0f ? 1f / d : 0f;
            dst.set(I16, o, Bits.toF16(d));
            int qh = 0;
            for (int j = 0; j < H; j++) {
                int lo = Math.min(31, (int) (src[x + j] * id + 16.5f));
                int hi = Math.min(31, (int) (src[x + H + j] * id + 16.5f));
                dst.set(I8, o + 6 + j, (byte) ((lo & 0x0F) | ((hi & 0x0F) << 4)));
                qh |= ((lo & 0x10) >>> 4) << j;
                qh |= ((hi & 0x10) >>> 4) << (j + H);
            }
            dst.set(I32, o + 2, qh);
        }
    }

    /** Code of value j (0..31) of the block at o, in [0, 31]. */
    static int code(MemorySegment src, long o, int qh, int j) {
        int v = src.get(I8, o + 6 + (j & 15)) & 0xFF;
        int nib = j < H ? v & 0x0F : v >>> 4;
        return nib | (((qh >>> j) & 1) << 4);
    }

    static void decodeBlocks(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
        for (int b = 0; b < dim / G; b++) {
            long o = off + b * BLOCK;
            float d = Bits.fromF16(src.get(I16, o));
            int qh = src.get(I32, o + 2);
            for (int j = 0; j < G; j++) {
                dst[dstOff + b * G + j] = (code(src, o, qh, j) - 16) * d;
            }
        }
    }

    static final class Scalar extends RowCodec {
        Scalar(boolean keys) {
            super(KvFormats.Q5_0, keys);
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
            encodeBlocks(src, srcOff, dim, dst, dstOff);
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            decodeBlocks(src, off, dim, dst, dstOff);
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float s = 0f;
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * BLOCK;
                int qh = src.get(I32, o + 2);
                float blk = 0f;
                for (int j = 0; j < G; j++) {
                    blk += q[qOff + b * G + j] * (code(src, o, qh, j) - 16);
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
                int qh = src.get(I32, o + 2);
                for (int j = 0; j < G; j++) {
                    acc[aOff + b * G + j] += c * (code(src, o, qh, j) - 16);
                }
            }
        }
    }

    static final class Vector extends RowCodec {
        Vector(boolean keys) {
            super(KvFormats.Q5_0, keys);
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
            encodeBlocks(src, srcOff, dim, dst, dstOff);
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            decodeBlocks(src, off, dim, dst, dstOff);
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            return Q5Kernels.dotRow(src, off, dim, q, qOff);
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            Q5Kernels.axpyRow(src, off, dim, w, acc, aOff);
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            Q5Kernels.dotRows(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            Q5Kernels.accumulateRows(slice, off, rows, count, dim, w, wOff, acc, aOff);
        }

        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
            Q5Kernels.dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
        }

        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
            Q5Kernels.accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, wStride, heads, acc, aOff);
        }
    }
}
