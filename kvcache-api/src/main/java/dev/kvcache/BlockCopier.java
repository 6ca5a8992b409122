package dev.kvcache;

/**
 * Told by the block manager when copy-on-write needs a block's contents copied. With
 * {@link KvCacheManager.Builder#store(KvStore)} this is the store's {@link KvStore#copyBlock}; an
 * engine that keeps KV itself passes its own through {@link KvCacheManager.Builder#blockCopier}.
 * Called on the thread that called {@code append}, before {@code append} returns.
 */
@FunctionalInterface
public interface BlockCopier {
    /**
     * Copy every layer of {@code srcBlock} onto {@code dstBlock}.
     *
     * @param srcBlock the block to copy from
     * @param dstBlock the block to copy into
     */
    void copy(int srcBlock, int dstBlock);
}
