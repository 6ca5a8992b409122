package dev.kvcache.quant;

import dev.kvcache.KvFormat;

import java.lang.foreign.MemorySegment;

/*
 * A row format: row r of a slice lives at byte offset r * rowBytes(dim) and is encoded on its own,
 * so a store can write one token at a time. Subclasses implement four per-row primitives; the
 * slice-level loops are here.
 */
abstract class RowCodec extends Codec {

    RowCodec(KvFormat format, boolean keys) {
        super(format, keys);
    }

    /** Bytes of one encoded row; dim already checked. */
    abstract long rowBytes0(int dim);

    /** Throws if {@code src[off .. off+dim)} cannot be encoded. */
    abstract void validateRow(float[] src, int off, int dim);

    abstract void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff);

    abstract void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff);

    /** dot(q[qOff ..), row at off), accumulated in float. */
    abstract float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff);

    /** acc[aOff ..) += w * row at off. */
    abstract void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff);

    @Override
    int minRows() {
        return 0;
    }

    @Override
    final long sliceBytes0(int rows, int dim) {
        return rows * rowBytes0(dim);
    }

    @Override
    final long bytesRead(int rows, int count, int dim) {
        return count * rowBytes0(dim);
    }

    @Override
    public final boolean rowIndependent() {
        return true;
    }

    @Override
    public final long rowBytes(int dim) {
        checkDims(1, dim);
        return rowBytes0(dim);
    }

    @Override
    public final void encodeRow(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
        checkDims(1, dim);
        Checks.array("src", src, srcOff, dim);
        Checks.segment("dst", dst, dstOff, rowBytes0(dim), true);
        validateRow(src, srcOff, dim);
        encodeRow0(src, srcOff, dim, dst, dstOff);
    }

    @Override
    final void validate(float[] src, int off, int rows, int dim) {
        for (int r = 0; r < rows; r++) {
            validateRow(src, off + r * dim, dim);
        }
    }

    @Override
    final void encode0(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
        long rb = rowBytes0(dim);
        for (int r = 0; r < rows; r++) {
            encodeRow0(src, srcOff + r * dim, dim, dst, dstOff + r * rb);
        }
    }

    @Override
    final void decode0(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff) {
        long rb = rowBytes0(dim);
        for (int r = 0; r < rows; r++) {
            decodeRow0(src, off + r * rb, dim, dst, dstOff + r * dim);
        }
    }

    @Override
    final void decodeRow0(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
        decodeRow0(src, off + row * rowBytes0(dim), dim, dst, dstOff);
    }

    @Override
    void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                        float[] q, int qOff, float scale, float[] scores, int sOff) {
        long rb = rowBytes0(dim);
        for (int r = 0; r < count; r++) {
            scores[sOff + r] = scale * dotRow0(slice, off + r * rb, dim, q, qOff);
        }
    }

    @Override
    void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                               float[] w, int wOff, float[] acc, int aOff) {
        long rb = rowBytes0(dim);
        for (int r = 0; r < count; r++) {
            axpyRow0(slice, off + r * rb, dim, w[wOff + r], acc, aOff);
        }
    }
}
