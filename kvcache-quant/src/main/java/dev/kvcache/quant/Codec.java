package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.Quantizer;

import java.lang.foreign.MemorySegment;

/*
 * Base of every codec: one object is both the Quantizer (whole slices at offset 0) and the
 * SliceKernels (slices at any offset, single rows, fused dot products and weighted sums) of one
 * format, one role (keys or values) and one provider (scalar or Vector API).
 *
 * The public methods are final: they check shapes, bounds and the input values, and only then call
 * the unchecked *0 methods that subclasses implement. Checking everything first is what makes a
 * failed call change nothing: a NaN in row 7 is found before row 0 is written.
 */
abstract class Codec implements Quantizer, SliceKernels {

    private final KvFormat format;
    private final boolean keys;

    Codec(KvFormat format, boolean keys) {
        this.format = format;
        this.keys = keys;
    }

    @Override
    public final KvFormat format() {
        return format;
    }

    /** True for the key codec (matters only for KIVI, whose keys and values differ). */
    final boolean keys() {
        return keys;
    }

    @Override
    public String toString() {
        boolean split = Formats.splitRoles(format);
        return getClass().getSimpleName() + "[" + format.name() + (split ? (keys ? ", keys" : ", values") : "") + "]";
    }

    // ------------------------------------------------------------------ what subclasses provide

    /** Exact slice size; dims already checked. */
    abstract long sliceBytes0(int rows, int dim);

    /** Throws IllegalArgumentException naming the value and the limit if src cannot be encoded. */
    abstract void validate(float[] src, int off, int rows, int dim);

    abstract void encode0(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff);

    abstract void decode0(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff);

    abstract void decodeRow0(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff);

    abstract void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, float scale, float[] scores, int sOff);

    abstract void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, float[] acc, int aOff);

    /** dotRows0 for {@code heads} query heads (scores {@code sStride} apart); arguments checked. Default: one head at a time. */
    void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                       float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
        for (int j = 0; j < heads; j++) {
            dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * sStride);
        }
    }

    /** accumulateRows0 for {@code heads} query heads (weights {@code wStride} apart); arguments checked. Default: one head at a time. */
    void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                              float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
        for (int j = 0; j < heads; j++) {
            accumulateRows0(slice, off, rows, count, dim, w, wOff + j * wStride, acc, aOff + j * dim);
        }
    }

    /** Bytes a kernel touches when reading the first {@code count} rows of a {@code rows}-row slice. */
    long bytesRead(int rows, int count, int dim) {
        return sliceBytes0(rows, dim);
    }

    // ------------------------------------------------------------------ checks

    /** Smallest row count a slice may have (block formats need at least one token). */
    int minRows() {
        return 1;
    }

    final void checkDims(int rows, int dim) {
        Checks.rows("rows (tokens)", rows, minRows());
        Checks.rows("dim", dim, 1);
        // the rows are one float[], so rows * dim fits an int; every size and index below relies on it
        Checks.values(rows, dim);
        format.checkShape(dim, Math.max(rows, 1));
    }

    // ------------------------------------------------------------------ Quantizer

    @Override
    public final long encodedBytes(int tokens, int dim) {
        checkDims(tokens, dim);
        return sliceBytes0(tokens, dim);
    }

    @Override
    public final void encode(float[] src, int tokens, int dim, MemorySegment dst) {
        encode(src, 0, tokens, dim, dst, 0);
    }

    @Override
    public final void decode(MemorySegment src, int tokens, int dim, float[] dst) {
        decode(src, 0, tokens, dim, dst, 0);
    }

    // ------------------------------------------------------------------ SliceKernels

    @Override
    public final long sliceBytes(int rows, int dim) {
        return encodedBytes(rows, dim);
    }

    @Override
    public final void encode(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
        checkDims(rows, dim);
        Checks.array("src", src, srcOff, (long) rows * dim);
        Checks.segment("dst", dst, dstOff, sliceBytes0(rows, dim), true);
        validate(src, srcOff, rows, dim);
        encode0(src, srcOff, rows, dim, dst, dstOff);
    }

    @Override
    public final void decode(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff) {
        checkDims(rows, dim);
        Checks.segment("src", src, off, sliceBytes0(rows, dim), false);
        Checks.array("dst", dst, dstOff, (long) rows * dim);
        decode0(src, off, rows, dim, dst, dstOff);
    }

    @Override
    public final void decodeRow(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
        checkDims(rows, dim);
        Checks.row(row, rows);
        Checks.segment("src", src, off, bytesRead(rows, row + 1, dim), false);
        Checks.array("dst", dst, dstOff, dim);
        decodeRow0(src, off, rows, row, dim, dst, dstOff);
    }

    @Override
    public final void dotRows(MemorySegment slice, long off, int rows, int count, int dim,
                              float[] q, int qOff, float scale, float[] scores, int sOff) {
        checkDims(rows, dim);
        Checks.count(count, rows);
        Checks.segment("slice", slice, off, bytesRead(rows, count, dim), false);
        Checks.array("q", q, qOff, dim);
        Checks.array("scores", scores, sOff, count);
        if (count > 0) {
            dotRows0(slice, off, rows, count, dim, q, qOff, scale, scores, sOff);
        }
    }

    @Override
    public final void accumulateRows(MemorySegment slice, long off, int rows, int count, int dim,
                                     float[] w, int wOff, float[] acc, int aOff) {
        checkDims(rows, dim);
        Checks.count(count, rows);
        Checks.segment("slice", slice, off, bytesRead(rows, count, dim), false);
        Checks.array("w", w, wOff, count);
        Checks.array("acc", acc, aOff, dim);
        if (count > 0) {
            accumulateRows0(slice, off, rows, count, dim, w, wOff, acc, aOff);
        }
    }

    @Override
    public final void dotRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                                   float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
        dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, rows);
    }

    @Override
    public final void dotRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                                   float[] q, int qOff, int heads, float scale, float[] scores, int sOff,
                                   int sStride) {
        checkDims(rows, dim);
        Checks.count(count, rows);
        Checks.rows("heads", heads, 1);
        Checks.stride("sStride", sStride, count);
        Checks.segment("slice", slice, off, bytesRead(rows, count, dim), false);
        Checks.array("q", q, qOff, (long) heads * dim);
        Checks.array("scores", scores, sOff, (long) (heads - 1) * sStride + count);
        if (count > 0) {
            dotRowsGroup0(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, sStride);
        }
    }

    @Override
    public final void accumulateRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                                          float[] w, int wOff, int heads, float[] acc, int aOff) {
        accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, rows, heads, acc, aOff);
    }

    @Override
    public final void accumulateRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                                          float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
        checkDims(rows, dim);
        Checks.count(count, rows);
        Checks.rows("heads", heads, 1);
        Checks.stride("wStride", wStride, count);
        Checks.segment("slice", slice, off, bytesRead(rows, count, dim), false);
        Checks.array("w", w, wOff, (long) (heads - 1) * wStride + count);
        Checks.array("acc", acc, aOff, (long) heads * dim);
        if (count > 0) {
            accumulateRowsGroup0(slice, off, rows, count, dim, w, wOff, wStride, heads, acc, aOff);
        }
    }
}
