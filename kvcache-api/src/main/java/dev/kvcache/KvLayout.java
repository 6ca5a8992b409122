package dev.kvcache;

import java.util.Objects;

/**
 * The shape of a model's KV cache: how many layers and KV heads, the head size, how many tokens
 * one block holds and how elements are stored.
 *
 * <p>{@link #bytesPerBlock()} is exact (the off-heap store allocates exactly that much per
 * block). {@link #bytesPerToken()} is the block size divided by {@code blockTokens}, rounded up; it
 * is exact for every format whose metadata does not span tokens (F32, F16, BF16, Q8_0, Q4_0).
 *
 * @param layers      transformer layers, at least 1
 * @param kvHeads     key/value heads per layer (fewer than query heads under grouped-query attention)
 * @param headDim     values per head
 * @param blockTokens tokens per block (vLLM's block size; 16 is the usual choice)
 * @param format      how one element is stored
 */
public record KvLayout(int layers, int kvHeads, int headDim, int blockTokens, KvFormat format) {

    /** Block sizes above this are refused: the block manager keeps token ids per block on heap. */
    public static final int MAX_BLOCK_TOKENS = 1 << 16;

    public KvLayout {
        Objects.requireNonNull(format, "format");
        if (layers <= 0) {
            throw new IllegalArgumentException("layers must be > 0, got " + layers);
        }
        if (kvHeads <= 0) {
            throw new IllegalArgumentException("kvHeads must be > 0, got " + kvHeads);
        }
        if (headDim <= 0) {
            throw new IllegalArgumentException("headDim must be > 0, got " + headDim);
        }
        if (blockTokens <= 0 || blockTokens > MAX_BLOCK_TOKENS) {
            throw new IllegalArgumentException(
                    "blockTokens must be in 1.." + MAX_BLOCK_TOKENS + ", got " + blockTokens);
        }
        format.checkShape(headDim, blockTokens);
        long perBlock = rawBytesPerBlock(layers, kvHeads, headDim, blockTokens, format);
        if (perBlock <= 0 || perBlock > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("one block would take " + perBlock
                    + " bytes; the limit is " + Integer.MAX_VALUE + " (fewer blockTokens?)");
        }
    }

    /** The same layout at blockTokens 16 (the common default). */
    public static KvLayout of(int layers, int kvHeads, int headDim, KvFormat format) {
        return new KvLayout(layers, kvHeads, headDim, 16, format);
    }

    private static long rawBytesPerBlock(int layers, int kvHeads, int headDim, int blockTokens,
                                         KvFormat format) {
        long slice = format.keyBytes(blockTokens, headDim) + format.valueBytes(blockTokens, headDim);
        return (long) layers * kvHeads * slice;
    }

    /** K and V of all layers for one token, metadata included (block size / blockTokens, rounded up). */
    public long bytesPerToken() {
        long block = bytesPerBlock();
        return (block + blockTokens - 1) / blockTokens;
    }

    /** K and V of all layers for {@code blockTokens} tokens, metadata included. */
    public long bytesPerBlock() {
        return rawBytesPerBlock(layers, kvHeads, headDim, blockTokens, format);
    }

    /** Values in one token's keys (or values) of one layer: {@code kvHeads * headDim}. */
    public int kvDim() {
        return kvHeads * headDim;
    }

    /** Blocks needed to hold {@code tokens} tokens (rounded up). */
    public long blocksFor(long tokens) {
        if (tokens < 0) {
            throw new IllegalArgumentException("tokens must be >= 0, got " + tokens);
        }
        return (tokens + blockTokens - 1) / blockTokens;
    }

    /** This layout with another format. */
    public KvLayout withFormat(KvFormat f) {
        return new KvLayout(layers, kvHeads, headDim, blockTokens, f);
    }

    /** This layout with another block size. */
    public KvLayout withBlockTokens(int tokens) {
        return new KvLayout(layers, kvHeads, headDim, tokens, format);
    }
}
