package dev.kvcache;

/**
 * What one stored K or V element costs in a given encoding, metadata included.
 *
 * <p>A format sizes one <em>block slice</em>: the keys (or values) of one KV head in one layer for
 * the tokens of one block. Formats whose metadata spans tokens (a per-block scale, KIVI's
 * per-channel key groups) can only be sized per block, which is why the questions take a token
 * count. {@link KvLayout} multiplies the slice by layers and KV heads.
 *
 * <p>Implementations are immutable and compare by identity; the standard ones are constants of
 * {@link KvFormats}.
 */
public interface KvFormat {

    /**
     * Stable upper-case name, e.g. {@code "Q8_0"}; {@link KvFormats#byName(String)} reverses it.
     *
     * @return the format's stable upper-case name
     */
    String name();

    /**
     * Bytes of the keys of {@code tokens} tokens of one KV head ({@code headDim} values each).
     *
     * @param tokens tokens of one KV head
     * @param headDim values per head
     * @return bytes of the keys of {@code tokens} tokens of one KV head ({@code headDim} values each)
     */
    long keyBytes(int tokens, int headDim);

    /**
     * Bytes of the values of {@code tokens} tokens of one KV head ({@code headDim} values each).
     *
     * @param tokens tokens of one KV head
     * @param headDim values per head
     * @return bytes of the values of {@code tokens} tokens of one KV head ({@code headDim} values each)
     */
    long valueBytes(int tokens, int headDim);

    /**
     * Throws {@link IllegalArgumentException} naming the value and the limit when this format
     * cannot store heads of {@code headDim} values in blocks of {@code blockTokens} tokens
     * (for example Q8_0 needs {@code headDim % 32 == 0}).
     *
     * @param headDim values per head
     * @param blockTokens tokens per block
     */
    default void checkShape(int headDim, int blockTokens) {
        if (headDim <= 0) {
            throw new IllegalArgumentException("headDim must be > 0, got " + headDim);
        }
        if (blockTokens <= 0) {
            throw new IllegalArgumentException("blockTokens must be > 0, got " + blockTokens);
        }
    }

    /**
     * Average stored bits per element of a full block, K and V together, metadata included.
     *
     * @param headDim values per head
     * @param blockTokens tokens per block
     * @return average stored bits per element of a full block, K and V together, metadata included
     */
    default double bitsPerElement(int headDim, int blockTokens) {
        long bytes = keyBytes(blockTokens, headDim) + valueBytes(blockTokens, headDim);
        return bytes * 8.0 / (2.0 * blockTokens * headDim);
    }
}
