package dev.kvcache;

import java.lang.foreign.MemorySegment;

/**
 * Encodes rows of floats into a {@link KvFormat}'s bytes and back.
 *
 * <p>The input is {@code tokens} rows of {@code dim} floats, row-major ({@code [tokens][dim]}).
 * For formats whose metadata spans tokens (FP8's per-block scale, KIVI's per-channel key groups)
 * one call encodes one group of tokens; per-token formats encode each row on its own.
 * {@link #encodedBytes(int, int)} says exactly how many bytes {@code encode} writes, and encoding
 * never writes outside {@code [0, encodedBytes)} of {@code dst}.
 *
 * <p>Implementations are in {@code dev.kvcache.quant.Quantizers} (module {@code kvcache-quant}).
 */
public interface Quantizer {

    /**
     * The format this quantizer writes.
     *
     * @return the format this quantizer writes
     */
    KvFormat format();

    /**
     * Bytes that {@link #encode} writes for {@code tokens} rows of {@code dim} values; exact.
     * IllegalArgumentException naming the values and the limit for negative counts, a shape the
     * format cannot hold, or {@code tokens * dim} above {@link Integer#MAX_VALUE} (the rows are one
     * {@code float[]}, so no call could encode them).
     *
     * @param tokens rows
     * @param dim values per row
     * @return bytes that {@link #encode} writes for {@code tokens} rows of {@code dim} values; exact
     */
    long encodedBytes(int tokens, int dim);

    /**
     * Encodes {@code src[0 .. tokens*dim)} into {@code dst[0 .. encodedBytes(tokens, dim))}.
     *
     * @param src {@code tokens * dim} floats, row-major
     * @param tokens rows
     * @param dim values per row
     * @param dst at least {@link #encodedBytes} bytes
     */
    void encode(float[] src, int tokens, int dim, MemorySegment dst);

    /**
     * Decodes {@code tokens} rows of {@code dim} values from {@code src} into {@code dst[0 .. tokens*dim)}.
     *
     * @param src what {@link #encode} wrote
     * @param tokens rows
     * @param dim values per row
     * @param dst at least {@code tokens * dim} floats
     */
    void decode(MemorySegment src, int tokens, int dim, float[] dst);
}
