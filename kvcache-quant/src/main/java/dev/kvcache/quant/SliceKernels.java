package dev.kvcache.quant;

import dev.kvcache.KvFormat;

import java.lang.foreign.MemorySegment;

/**
 * Kernels over one encoded <em>block slice</em>: {@code rows} tokens x {@code dim} values of one
 * KV head, laid out exactly as {@link dev.kvcache.Quantizer#encode} lays out {@code [rows][dim]}.
 * These are the primitives the paged attention kernels call, so dequantization is fused into the
 * dot products and the weighted sums and no dequantized copy of a sequence is ever made.
 *
 * <p>Two kinds of format:
 * <ul>
 *   <li><b>row formats</b> ({@link #rowIndependent()} true: F32, F16, BF16, Q8_0, Q4_0, and KIVI
 *       <em>values</em>) encode each row on its own at byte offset {@code r * rowBytes(dim)}, so a
 *       store can write one token;</li>
 *   <li><b>block formats</b> (FP8 with a scale per block and head, KIVI <em>keys</em> grouped per
 *       channel across the block's tokens) encode a whole block at once; a store keeps the block's
 *       rows in full precision (the residual window) until it fills, then encodes it with
 *       {@link #encode(float[], int, int, int, MemorySegment, long) encode(rows = blockTokens)}.
 *       Their single-row methods {@link #rowBytes} and {@link #encodeRow} throw
 *       UnsupportedOperationException; {@link #decodeRow}, {@link #dotRows} and
 *       {@link #accumulateRows} work on the encoded block.</li>
 * </ul>
 *
 * <p>KIVI keys and values use different kernels: get them from {@link Quantizers#keyKernels} and
 * {@link Quantizers#valueKernels}; for every other format both return the same object.
 *
 * <p>Offsets are byte offsets into the segment; array offsets index floats. Every method checks its
 * arguments (shape, offsets, array and segment sizes, finite input) before touching memory and
 * throws IllegalArgumentException naming the value and the limit, so a failed call changes
 * nothing. Implementations are stateless and thread-safe. {@link Quantizers#kernels} returns the Vector API implementation when
 * {@code jdk.incubator.vector} is present and the scalar one otherwise.
 */
public interface SliceKernels {

    /**
     * The format these kernels read and write.
     *
     * @return the KV format of every slice these kernels encode and decode
     */
    KvFormat format();

    /**
     * True when every row is encoded on its own, {@link #rowBytes} apart.
     *
     * @return true for a row format (single rows can be written with {@link #encodeRow}), false for
     *         a block format
     */
    boolean rowIndependent();

    /**
     * Bytes of one encoded row of {@code dim} values; only for row formats.
     *
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @return the size in bytes of one encoded row, metadata included; row {@code r} of a slice
     *         starts {@code r * rowBytes(dim)} bytes after the slice
     * @throws UnsupportedOperationException for a block format ({@link #rowIndependent()} false)
     * @throws IllegalArgumentException if {@code dim} is not a shape the format accepts
     */
    long rowBytes(int dim);

    /**
     * Encodes {@code src[srcOff .. srcOff+dim)} as one row at {@code dst[dstOff ..)}; row formats only.
     *
     * @param src the values to encode; the {@code dim} values read must be finite
     * @param srcOff index in {@code src} of the row's first value
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param dst the writable segment the encoded row is written to
     * @param dstOff byte offset in {@code dst} where the row's {@link #rowBytes rowBytes(dim)} bytes go
     * @throws UnsupportedOperationException for a block format ({@link #rowIndependent()} false)
     * @throws IllegalArgumentException if the shape, an offset or a size is out of range, {@code dst}
     *         is read-only, or a value is not finite (or out of the format's range); nothing is written
     * @throws NullPointerException if {@code src} or {@code dst} is null
     */
    void encodeRow(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff);

    /**
     * Decodes row {@code row} of a slice of {@code rows} rows at {@code src[off ..)} into {@code dst[dstOff .. dstOff+dim)}.
     *
     * @param src the segment holding the encoded slice
     * @param off byte offset of the slice in {@code src}
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param row the row to decode, in {@code [0, rows)}
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param dst receives the {@code dim} decoded values
     * @param dstOff index in {@code dst} of the first decoded value
     * @throws IllegalArgumentException if the shape, {@code row}, an offset or a size is out of range
     * @throws NullPointerException if {@code src} or {@code dst} is null
     */
    void decodeRow(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff);

    /**
     * {@code scores[sOff + r] = scale * dot(q[qOff .. qOff+dim), row r)} for {@code r < count}, over
     * the first {@code count} rows of a slice of {@code rows} rows at {@code slice[off ..)}.
     *
     * @param slice the segment holding the encoded slice
     * @param off byte offset of the slice in {@code slice}
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param count rows to use, the first {@code count} of the slice, in {@code [0, rows]}
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param q the query; {@code q[qOff .. qOff+dim)} is read
     * @param qOff index in {@code q} of the query's first value
     * @param scale factor applied to every dot product (typically {@code 1/sqrt(dim)})
     * @param scores receives the {@code count} scaled dot products
     * @param sOff index in {@code scores} of row 0's score
     * @throws IllegalArgumentException if the shape, {@code count}, an offset or a size is out of range
     * @throws NullPointerException if a segment or an array is null
     */
    void dotRows(MemorySegment slice, long off, int rows, int count, int dim,
                 float[] q, int qOff, float scale, float[] scores, int sOff);

    /**
     * {@code acc[aOff .. aOff+dim) += sum over r < count of w[wOff + r] * row r}, over the first
     * {@code count} rows of a slice of {@code rows} rows at {@code slice[off ..)}.
     *
     * @param slice the segment holding the encoded slice
     * @param off byte offset of the slice in {@code slice}
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param count rows to use, the first {@code count} of the slice, in {@code [0, rows]}
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param w the weights (typically softmax probabilities); {@code w[wOff .. wOff+count)} is read
     * @param wOff index in {@code w} of row 0's weight
     * @param acc the accumulator; {@code acc[aOff .. aOff+dim)} is added to
     * @param aOff index in {@code acc} of the accumulator's first value
     * @throws IllegalArgumentException if the shape, {@code count}, an offset or a size is out of range
     * @throws NullPointerException if a segment or an array is null
     */
    void accumulateRows(MemorySegment slice, long off, int rows, int count, int dim,
                        float[] w, int wOff, float[] acc, int aOff);

    /**
     * {@link #dotRows} for {@code heads} query heads that share this slice (grouped-query
     * attention): for {@code j < heads}, the query at {@code q[qOff + j*dim ..)} gives
     * {@code scores[sOff + j*rows + r]} for {@code r < count} (head j's scores start {@code j*rows}
     * after head 0's). Vector implementations read and dequantize each row once for all heads;
     * this default calls {@link #dotRows} once per head.
     *
     * @param slice the segment holding the encoded slice
     * @param off byte offset of the slice in {@code slice}
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param count rows to use, the first {@code count} of the slice, in {@code [0, rows]}
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param q the {@code heads} queries, {@code dim} values each, back to back from {@code qOff}
     * @param qOff index in {@code q} of head 0's first value
     * @param heads query heads sharing this KV head, at least 1
     * @param scale factor applied to every dot product (typically {@code 1/sqrt(dim)})
     * @param scores receives head {@code j}'s {@code count} scores at {@code sOff + j*rows}
     * @param sOff index in {@code scores} of head 0's first score
     * @throws IllegalArgumentException if {@code heads < 1}, or the shape, {@code count}, an offset or a
     *         size is out of range
     * @throws NullPointerException if a segment or an array is null
     */
    default void dotRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                              float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
        dotRowsGroup(slice, off, rows, count, dim, q, qOff, heads, scale, scores, sOff, rows);
    }

    /**
     * {@link #dotRowsGroup(MemorySegment, long, int, int, int, float[], int, int, float, float[], int)}
     * with head {@code j}'s scores at {@code sOff + j*sStride} instead of {@code j*rows}: a caller
     * that gathers several slices' scores per head in one run (paged attention scoring a few blocks
     * before one softmax) passes the run's length.
     *
     * @param slice the segment holding the encoded slice
     * @param off byte offset of the slice in {@code slice}
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param count rows to use, the first {@code count} of the slice, in {@code [0, rows]}
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param q the {@code heads} queries, {@code dim} values each, back to back from {@code qOff}
     * @param qOff index in {@code q} of head 0's first value
     * @param heads query heads sharing this KV head, at least 1
     * @param scale factor applied to every dot product (typically {@code 1/sqrt(dim)})
     * @param scores receives head {@code j}'s {@code count} scores at {@code sOff + j*sStride}
     * @param sOff index in {@code scores} of head 0's first score
     * @param sStride distance in {@code scores} from one head's first score to the next's, at least
     *                {@code count}
     * @throws IllegalArgumentException if {@code heads < 1}, {@code sStride < count}, or the shape,
     *         {@code count}, an offset or a size is out of range
     * @throws NullPointerException if a segment or an array is null
     */
    default void dotRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                              float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
        Checks.rows("heads", heads, 1);
        Checks.stride("sStride", sStride, count);
        for (int j = 0; j < heads; j++) {
            dotRows(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * sStride);
        }
    }

    /**
     * {@link #accumulateRows} for {@code heads} query heads that share this slice:
     * {@code acc[aOff + j*dim + i] += sum over r < count of w[wOff + j*rows + r] * row r[i]}.
     * Vector implementations read and dequantize each row once for all heads; this default calls
     * {@link #accumulateRows} once per head.
     *
     * @param slice the segment holding the encoded slice
     * @param off byte offset of the slice in {@code slice}
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param count rows to use, the first {@code count} of the slice, in {@code [0, rows]}
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param w the weights: head {@code j}'s {@code count} weights start at {@code wOff + j*rows}
     * @param wOff index in {@code w} of head 0's first weight
     * @param heads query heads sharing this KV head, at least 1
     * @param acc the {@code heads} accumulators, {@code dim} values each, back to back from {@code aOff}
     * @param aOff index in {@code acc} of head 0's accumulator
     * @throws IllegalArgumentException if {@code heads < 1}, or the shape, {@code count}, an offset or a
     *         size is out of range
     * @throws NullPointerException if a segment or an array is null
     */
    default void accumulateRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                                     float[] w, int wOff, int heads, float[] acc, int aOff) {
        accumulateRowsGroup(slice, off, rows, count, dim, w, wOff, rows, heads, acc, aOff);
    }

    /**
     * {@link #accumulateRowsGroup(MemorySegment, long, int, int, int, float[], int, int, float[], int)}
     * with head {@code j}'s weights at {@code wOff + j*wStride} instead of {@code j*rows} (see
     * {@link #dotRowsGroup(MemorySegment, long, int, int, int, float[], int, int, float, float[], int, int)}).
     *
     * @param slice the segment holding the encoded slice
     * @param off byte offset of the slice in {@code slice}
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param count rows to use, the first {@code count} of the slice, in {@code [0, rows]}
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param w the weights: head {@code j}'s {@code count} weights start at {@code wOff + j*wStride}
     * @param wOff index in {@code w} of head 0's first weight
     * @param wStride distance in {@code w} from one head's first weight to the next's, at least
     *                {@code count}
     * @param heads query heads sharing this KV head, at least 1
     * @param acc the {@code heads} accumulators, {@code dim} values each, back to back from {@code aOff}
     * @param aOff index in {@code acc} of head 0's accumulator
     * @throws IllegalArgumentException if {@code heads < 1}, {@code wStride < count}, or the shape,
     *         {@code count}, an offset or a size is out of range
     * @throws NullPointerException if a segment or an array is null
     */
    default void accumulateRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                                     float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
        Checks.rows("heads", heads, 1);
        Checks.stride("wStride", wStride, count);
        for (int j = 0; j < heads; j++) {
            accumulateRows(slice, off, rows, count, dim, w, wOff + j * wStride, acc, aOff + j * dim);
        }
    }

    /**
     * Bytes of an encoded slice of {@code rows} rows of {@code dim} values, metadata included;
     * equals {@code KvFormat.keyBytes} (key kernels) or {@code valueBytes} (value kernels).
     *
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @return the size in bytes of the encoded slice, metadata included
     * @throws IllegalArgumentException if the shape is out of range
     */
    long sliceBytes(int rows, int dim);

    /**
     * Encodes {@code src[srcOff .. srcOff + rows*dim)} ({@code [rows][dim]}) as one slice at
     * {@code dst[dstOff .. dstOff + sliceBytes(rows, dim))}. Works for every format; for block formats
     * this is how a full block is written. Checks everything before writing: on an exception
     * nothing was written.
     *
     * @param src the values, {@code [rows][dim]} row-major; the {@code rows*dim} values read must be finite
     * @param srcOff index in {@code src} of row 0's first value
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param dst the writable segment the slice is written to
     * @param dstOff byte offset in {@code dst} where the slice's {@link #sliceBytes} bytes go
     * @throws IllegalArgumentException if the shape, an offset or a size is out of range, {@code dst}
     *         is read-only, or a value is not finite (or out of the format's range)
     * @throws NullPointerException if {@code src} or {@code dst} is null
     */
    void encode(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff);

    /**
     * Decodes a whole slice of {@code rows} rows at {@code src[off ..)} into {@code dst[dstOff .. dstOff + rows*dim)}.
     *
     * @param src the segment holding the encoded slice
     * @param off byte offset of the slice in {@code src}
     * @param rows tokens in the slice (its {@code [rows][dim]} shape), at least 1 (row formats: 0)
     * @param dim values per row (the head dimension), at least 1 and of a shape the format accepts
     *            ({@link KvFormat#checkShape})
     * @param dst receives the {@code rows*dim} decoded values, {@code [rows][dim]} row-major
     * @param dstOff index in {@code dst} of row 0's first value
     * @throws IllegalArgumentException if the shape, an offset or a size is out of range
     * @throws NullPointerException if {@code src} or {@code dst} is null
     */
    void decode(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff);
}
