package dev.kvcache;

/**
 * A consistent snapshot of a {@link KvCacheManager}. {@code usedBlocks + cachedBlocks + emptyBlocks
 * == totalBlocks} always holds.
 *
 * @param totalBlocks        blocks in the pool
 * @param usedBlocks         blocks held by at least one live sequence
 * @param cachedBlocks       blocks held by none whose content is reusable (a full block with a prefix hash)
 * @param emptyBlocks        blocks held by none without reusable content
 * @param liveSequences      sequences opened or forked and not yet freed
 * @param liveTokens         sum of the live sequences' lengths (active tokens x concurrency)
 * @param prefixQueryTokens  tokens of the appends that looked the prefix cache up
 * @param prefixHitTokens    of those, tokens served from the cache
 * @param allocationFailures appends refused for want of blocks
 * @param evictedBlocks      cached blocks whose content was dropped so the block could be reused
 */
public record KvCacheStats(int totalBlocks, int usedBlocks, int cachedBlocks, int emptyBlocks,
                           int liveSequences, long liveTokens,
                           long prefixQueryTokens, long prefixHitTokens,
                           long allocationFailures, long evictedBlocks) {

    /**
     * prefixHitTokens / prefixQueryTokens, or 0 before any query.
     *
     * @return prefixHitTokens / prefixQueryTokens, or 0 before any query
     */
    public double prefixHitRate() {
        return prefixQueryTokens == 0 ? 0.0 : (double) prefixHitTokens / prefixQueryTokens;
    }

    /**
     * Blocks a new append could get: empty plus cached.
     *
     * @return blocks a new append could get: empty plus cached
     */
    public int freeBlocks() {
        return emptyBlocks + cachedBlocks;
    }
}
