package dev.kvcache;

/**
 * What each mechanism of a {@link KvCacheManager} relieved and what it cost, in blocks, tokens and
 * bytes: the stats plus the counters behind them.
 *
 * @param stats                the same snapshot {@link KvCacheManager#stats()} gives
 * @param bytesPerBlock        KV bytes of one block under the manager's layout
 * @param blockTokens          tokens per block
 * @param forks                sequences created by fork (each shares its parent's blocks for free)
 * @param copyOnWrites         blocks copied because a sequence wrote into a shared partial block
 * @param windowReleasedBlocks blocks a sliding window released from live sequences
 * @param appendedTokens       tokens appended in all
 * @param publishedBlocks      blocks published to the prefix cache
 * @param peakUsedBlocks       the most blocks in use at once
 */
public record KvCacheLedger(KvCacheStats stats, long bytesPerBlock, int blockTokens, long forks,
                            long copyOnWrites, long windowReleasedBlocks, long appendedTokens,
                            long publishedBlocks, int peakUsedBlocks) {

    /** Bytes held by live sequences. */
    public long usedBytes() {
        return stats.usedBlocks() * bytesPerBlock;
    }

    /** Bytes held only by the prefix cache. */
    public long cachedBytes() {
        return stats.cachedBlocks() * bytesPerBlock;
    }

    /** Bytes of the whole pool. */
    public long totalBytes() {
        return stats.totalBlocks() * bytesPerBlock;
    }

    /** Peak bytes in use. */
    public long peakUsedBytes() {
        return peakUsedBlocks * bytesPerBlock;
    }

    /** Used bytes per live sequence (memory per active request), or 0 with none live. */
    public long bytesPerLiveSequence() {
        return stats.liveSequences() == 0 ? 0 : usedBytes() / stats.liveSequences();
    }

    /** Bytes the prefix cache saved from recomputation and duplicate storage: hit tokens times bytes per token. */
    public long prefixHitBytes() {
        return stats.prefixHitTokens() * bytesPerBlock / blockTokens;
    }

    /** Slots held but not (yet) filled, over slots held: the internal fragmentation of paging. */
    public double slotWaste() {
        long slots = (long) stats.usedBlocks() * blockTokens;
        return slots == 0 ? 0.0 : Math.max(0.0, 1.0 - (double) stats.liveTokens() / slots);
    }
}
