package dev.kvcache;

import java.util.Arrays;

/**
 * What a {@link KvCacheListener} is told: enough for a cache-aware router to mirror which prefixes
 * a worker holds (the same three events vLLM publishes).
 */
public sealed interface KvCacheEvent {

    /**
     * A full block was published under a prefix hash; {@code parentHash} is the hash of the block
     * before it ({@link KvCacheManager#ROOT_HASH} for the first), {@code tokenIds} its tokens.
     */
    record BlockStored(int block, long hash, long parentHash, long cacheSalt, int[] tokenIds)
            implements KvCacheEvent {
        @Override
        public String toString() {
            return "BlockStored[block=" + block + ", hash=" + Long.toHexString(hash) + ", parent="
                    + Long.toHexString(parentHash) + ", salt=" + cacheSalt + ", tokens="
                    + Arrays.toString(tokenIds) + "]";
        }
    }

    /** Block {@code block} no longer holds the content published under {@code hash}. */
    record BlockRemoved(int block, long hash) implements KvCacheEvent {
    }

    /** Every published hash was dropped ({@link KvCacheManager#resetPrefixCache()}). */
    record AllBlocksCleared() implements KvCacheEvent {
    }
}
