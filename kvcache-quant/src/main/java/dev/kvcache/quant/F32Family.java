package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;

import static dev.kvcache.quant.Bits.F32;
import static dev.kvcache.quant.VectorProvider.F;
import static dev.kvcache.quant.VectorProvider.L;
import static dev.kvcache.quant.VectorProvider.LE_ORDER;

/*
 * The F32 family: d x binary32 per row, little-endian.
 *
 * Scalar is the reference every vector kernel is tested against; Vector encodes with vector
 * stores, decodes with a bulk copy and takes its fused kernels from the generated F32Kernels.
 * accumulateRowsGroup stays the per-head default for F32: accumulateRows holds a whole 128-value
 * row (eight chunks) in registers and so reads a slice streamed from DRAM in address order; a
 * four-head kernel cannot hold 4 x 8 chunks, and with two-chunk passes paged decode at 32768 tokens
 * got ~1.1x slower (kvcache-offheap/bench-results/group-kernels-2026-11-25.txt).
 */
final class F32Family {

    private F32Family() {
    }

    static Codec scalar(KvFormat f, boolean keys) {
        return new Scalar(keys);
    }

    static Codec vector(KvFormat f, boolean keys) {
        return new Vector(keys);
    }

    static final class Scalar extends RowCodec {
        Scalar(boolean keys) {
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

    static final class Vector extends RowCodec {
        Vector(boolean keys) {
            super(KvFormats.F32, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return 4L * dim;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            VectorProvider.finite(src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                FloatVector.fromArray(F, src, srcOff + i).intoMemorySegment(dst, dstOff + 4L * i, LE_ORDER);
            }
            for (; i < dim; i++) {
                dst.set(F32, dstOff + 4L * i, src[srcOff + i]);
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            // a bulk copy: faster than vector loads and stores (QuantizerBenchmark: the F32 decode
            // ran at 0.63x of copyFp32 as a vector loop, 2026-11-25)
            MemorySegment.copy(src, F32, off, dst, dstOff, dim);
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            return F32Kernels.dotRow(src, off, dim, q, qOff);
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            F32Kernels.axpyRow(src, off, dim, w, acc, aOff);
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            F32Kernels.dotRows(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            F32Kernels.accumulateRows(slice, off, rows, count, dim, w, wOff, acc, aOff);
        }

        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
            F32Kernels.dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
        }
    }
}
