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

    /** The format these kernels read and write. */
    KvFormat format();

    /** True when every row is encoded on its own, {@link #rowBytes} apart. */
    boolean rowIndependent();

    /** Bytes of one encoded row of {@code dim} values; only for row formats (else UnsupportedOperationException). */
    long rowBytes(int dim);

    /** Encodes {@code src[srcOff .. srcOff+dim)} as one row at {@code dst[dstOff ..)}; row formats only. */
    void encodeRow(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff);

    /** Decodes row {@code row} of a slice of {@code rows} rows at {@code src[off ..)} into {@code dst[dstOff .. dstOff+dim)}. */
    void decodeRow(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff);

    /**
     * {@code scores[sOff + r] = scale * dot(q[qOff .. qOff+dim), row r)} for {@code r < count}, over
     * the first {@code count} rows of a slice of {@code rows} rows at {@code slice[off ..)}.
     */
    void dotRows(MemorySegment slice, long off, int rows, int count, int dim,
                 float[] q, int qOff, float scale, float[] scores, int sOff);

    /**
     * {@code acc[aOff .. aOff+dim) += sum over r < count of w[wOff + r] * row r}, over the first
     * {@code count} rows of a slice of {@code rows} rows at {@code slice[off ..)}.
     */
    void accumulateRows(MemorySegment slice, long off, int rows, int count, int dim,
                        float[] w, int wOff, float[] acc, int aOff);

    /**
     * {@link #dotRows} for {@code heads} query heads that share this slice (grouped-query
     * attention): for {@code j < heads}, the query at {@code q[qOff + j*dim ..)} gives
     * {@code scores[sOff + j*rows + r]} for {@code r < count} (head j's scores start {@code j*rows}
     * after head 0's). Vector implementations read and dequantize each row once for all heads;
     * this default calls {@link #dotRows} once per head.
     */
    default void dotRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                              float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
        if (heads < 1) {
            throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        }
        for (int j = 0; j < heads; j++) {
            dotRows(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * rows);
        }
    }

    /**
     * {@link #accumulateRows} for {@code heads} query heads that share this slice:
     * {@code acc[aOff + j*dim + i] += sum over r < count of w[wOff + j*rows + r] * row r[i]}.
     * Vector implementations read and dequantize each row once for all heads; this default calls
     * {@link #accumulateRows} once per head.
     */
    default void accumulateRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,
                                     float[] w, int wOff, int heads, float[] acc, int aOff) {
        if (heads < 1) {
            throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        }
        for (int j = 0; j < heads; j++) {
            accumulateRows(slice, off, rows, count, dim, w, wOff + j * rows, acc, aOff + j * dim);
        }
    }

    /**
     * Bytes of an encoded slice of {@code rows} rows of {@code dim} values, metadata included;
     * equals {@code KvFormat.keyBytes} (key kernels) or {@code valueBytes} (value kernels).
     */
    long sliceBytes(int rows, int dim);

    /**
     * Encodes {@code src[srcOff .. srcOff + rows*dim)} ({@code [rows][dim]}) as one slice at
     * {@code dst[dstOff .. dstOff + sliceBytes(rows, dim))}. Works for every format; for block formats
     * this is how a full block is written. Checks everything before writing: on an exception
     * nothing was written.
     */
    void encode(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff);

    /** Decodes a whole slice of {@code rows} rows at {@code src[off ..)} into {@code dst[dstOff .. dstOff + rows*dim)}. */
    void decode(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff);
}
