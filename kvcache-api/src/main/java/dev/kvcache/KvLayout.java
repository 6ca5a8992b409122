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
 * <p>The constructor refuses, with IllegalArgumentException naming the values and the limit, any
 * shape whose arithmetic would overflow: {@code kvHeads * headDim} above {@link Integer#MAX_VALUE}
 * (one token's keys are one {@code float[]}), or a block above {@link Integer#MAX_VALUE} bytes
 * (computed exactly, so a product that wraps around cannot slip through). Every size derived
 * from an accepted layout is therefore exact.
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

    /** Checks every count and that the format accepts the shape; see the class comment. */
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
        long kvDim = (long) kvHeads * headDim;
        if (kvDim > Integer.MAX_VALUE) {
            // one token's K (or V) of a layer is a float[] of kvDim: it must fit an array
            throw new IllegalArgumentException("kvHeads x headDim = " + kvHeads + " x " + headDim + " = "
                    + kvDim + " values per token and layer; the limit is " + Integer.MAX_VALUE);
        }
        long perBlock = exactBytesPerBlock(layers, kvHeads, headDim, blockTokens, format);
        if (perBlock <= 0 || perBlock > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("one block would take " + perBlock
                    + " bytes; the limit is " + Integer.MAX_VALUE + " (fewer blockTokens?)");
        }
    }

    /**
     * Bytes of one block, or IllegalArgumentException naming the shape when the product does not
     * fit a long (a wrapped product could even land back in range and pass the limit check).
     */
    private static long exactBytesPerBlock(int layers, int kvHeads, int headDim, int blockTokens,
                                           KvFormat format) {
        try {
            long slice = Math.addExact(format.keyBytes(blockTokens, headDim), format.valueBytes(blockTokens, headDim));
            return Math.multiplyExact(Math.multiplyExact((long) layers, (long) kvHeads), slice);
        } catch (ArithmeticException | IllegalArgumentException e) {
            throw new IllegalArgumentException("one block of " + layers + " layers x " + kvHeads + " KV heads x "
                    + blockTokens + " tokens x headDim " + headDim + " in " + format.name()
                    + " takes more than " + Long.MAX_VALUE + " bytes; the limit is " + Integer.MAX_VALUE, e);
        }
    }

    /**
     * The same layout at blockTokens 16 (the common default).
     *
     * @param layers transformer layers
     * @param kvHeads KV heads per layer
     * @param headDim values per head
     * @param format the element format
     * @return the same layout at blockTokens 16 (the common default)
     */
    public static KvLayout of(int layers, int kvHeads, int headDim, KvFormat format) {
        return new KvLayout(layers, kvHeads, headDim, 16, format);
    }

    /**
     * K and V of all layers for one token, metadata included (block size / blockTokens, rounded up).
     *
     * @return K and V of all layers for one token, metadata included (block size / blockTokens, rounded up)
     */
    public long bytesPerToken() {
        long block = bytesPerBlock();
        return (block + blockTokens - 1) / blockTokens;
    }

    /**
     * K and V of all layers for {@code blockTokens} tokens, metadata included.
     *
     * @return K and V of all layers for {@code blockTokens} tokens, metadata included
     */
    public long bytesPerBlock() {
        // the constructor checked that this product is exact and at most Integer.MAX_VALUE
        return (long) layers * kvHeads * (format.keyBytes(blockTokens, headDim) + format.valueBytes(blockTokens, headDim));
    }

    /**
     * Values in one token's keys (or values) of one layer: {@code kvHeads * headDim} (checked to fit an int).
     *
     * @return values in one token's keys (or values) of one layer: {@code kvHeads * headDim} (checked to fit an int)
     */
    public int kvDim() {
        return kvHeads * headDim;
    }

    /**
     * Blocks needed to hold {@code tokens} tokens (rounded up).
     *
     * @param tokens tokens to hold
     * @return blocks needed to hold {@code tokens} tokens (rounded up)
     */
    public long blocksFor(long tokens) {
        if (tokens < 0) {
            throw new IllegalArgumentException("tokens must be >= 0, got " + tokens);
        }
        // ceil without forming tokens + blockTokens - 1, which overflows near Long.MAX_VALUE
        return tokens / blockTokens + (tokens % blockTokens == 0 ? 0 : 1);
    }

    /**
     * This layout with another format.
     *
     * @param f the other format
     * @return this layout with another format
     */
    public KvLayout withFormat(KvFormat f) {
        return new KvLayout(layers, kvHeads, headDim, blockTokens, f);
    }

    /**
     * This layout with another block size.
     *
     * @param tokens the other block size in tokens
     * @return this layout with another block size
     */
    public KvLayout withBlockTokens(int tokens) {
        return new KvLayout(layers, kvHeads, headDim, tokens, format);
    }
}
