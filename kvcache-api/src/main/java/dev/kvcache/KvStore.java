package dev.kvcache;

/**
 * Physical KV memory addressed by the block manager's slots: slot = block * blockTokens + offset.
 *
 * <p>The block manager decides <em>where</em> a token's KV goes; a store holds the bytes, in the
 * layout's format (quantized on write). The CPU implementation is
 * {@code dev.kvcache.offheap.OffHeapKvStore}; {@code dev.kvcache.cuda.CudaKvStore} keeps the same
 * contract in device memory.
 *
 * <p>Every method throws {@link IllegalArgumentException} naming the value and its limit for a
 * layer, slot, block or array length out of range, and {@link IllegalStateException} after
 * {@link #close()}.
 */
public interface KvStore extends AutoCloseable {

    /** The layout every block follows. */
    KvLayout layout();

    /** Number of blocks, ids 0 to blocks()-1. */
    int blocks();

    /** Stores one token's keys and values ({@code kvHeads*headDim} floats each) at {@code slot} of {@code layer}. */
    void write(int layer, long slot, float[] k, float[] v);

    /** Reads one token's keys, dequantized, into {@code out} ({@code kvHeads*headDim} floats). */
    void readKey(int layer, long slot, float[] out);

    /** Reads one token's values, dequantized, into {@code out} ({@code kvHeads*headDim} floats). */
    void readValue(int layer, long slot, float[] out);

    /** Copies every layer of block {@code srcBlock} onto {@code dstBlock} (copy-on-write). */
    void copyBlock(int srcBlock, int dstBlock);

    /**
     * Called by {@link KvCacheManager} when block {@code block} returns to its free pool: its last
     * reference is gone and it is not kept for prefix reuse, so its contents are dead until the
     * block is written again. Stores drop per-block side state here (the off-heap store gives back
     * the full-precision staging rows of a partially written block of a block format, which would
     * otherwise be held until the block is reused). Called under the manager's lock: it must be
     * cheap and must not call back into the manager. Default: nothing. After {@link #close()} it
     * does nothing.
     */
    default void blockReleased(int block) {
    }

    /** Releases the memory; later calls fail with IllegalStateException. Idempotent. */
    @Override
    void close();
}
