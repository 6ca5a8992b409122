package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.quant.SliceKernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Interim scalar F32 slice kernels (little-endian float32 rows), used until kvcache-quant's
 * Quantizers is available. Plain loops; the quant module's kernels replace them.
 */
final class F32Kernels implements SliceKernels {

    static final F32Kernels INSTANCE = new F32Kernels();

    private static final ValueLayout.OfFloat LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private F32Kernels() {
    }

    @Override
    public KvFormat format() {
        return KvFormats.F32;
    }

    @Override
    public boolean rowIndependent() {
        return true;
    }

    @Override
    public long rowBytes(int dim) {
        return (long) dim * Float.BYTES;
    }

    @Override
    public void encodeRow(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
        MemorySegment.copy(src, srcOff, dst, LE, dstOff, dim);
    }

    @Override
    public void decodeRow(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
        MemorySegment.copy(src, LE, off + (long) row * dim * Float.BYTES, dst, dstOff, dim);
    }

    @Override
    public void dotRows(MemorySegment slice, long off, int rows, int count, int dim,
                        float[] q, int qOff, float scale, float[] scores, int sOff) {
        long p = off;
        for (int r = 0; r < count; r++) {
            float s = 0f;
            for (int i = 0; i < dim; i++) {
                s += q[qOff + i] * slice.get(LE, p + (long) i * Float.BYTES);
            }
            scores[sOff + r] = scale * s;
            p += (long) dim * Float.BYTES;
        }
    }

    @Override
    public void accumulateRows(MemorySegment slice, long off, int rows, int count, int dim,
                               float[] w, int wOff, float[] acc, int aOff) {
        long p = off;
        for (int r = 0; r < count; r++) {
            float wr = w[wOff + r];
            for (int i = 0; i < dim; i++) {
                acc[aOff + i] += wr * slice.get(LE, p + (long) i * Float.BYTES);
            }
            p += (long) dim * Float.BYTES;
        }
    }
}
