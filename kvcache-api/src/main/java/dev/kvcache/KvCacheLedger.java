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
 * @param reservedBlocks       blocks set aside for guaranteed sequences and not yet taken by them
 * @param watermarkRefusals    new sequences refused to keep the watermark free
 * @param reservationRefusals  appends refused because the free blocks are set aside for guaranteed sequences
 * @param quotaRefusals        appends refused for a tenant quota
 * @param preemptions          sequences preempted
 * @param recomputedTokens     tokens resumed sequences had to recompute (their prefix hits excluded)
 * @param swappedOutBytes      bytes copied to the swap space
 * @param swappedInBytes       bytes copied back from it
 * @param idleReleasedSequences sequences released idle
 * @param idleReleasedBlocks   blocks they held
 * @param idleHeldBlocks       blocks held now by sequences idle past their lease (sequences without a lease never count)
 * @param droppedTokens        tokens dropped by retention policies
 * @param retentionReleasedBlocks blocks released because all their tokens were dropped
 * @param abortedBlocks        full blocks never published because their sequence was aborted
 *                             ({@link KvCacheManager#abort}) before its KV was committed
 * @param copyFailures         copy-on-write copies that threw (their appends changed nothing)
 * @param swapFailures         swap-space calls that threw (a failed swap-in, an offload given up)
 * @param callbackErrors       listener and {@link KvStore#blockReleased} calls that threw (counted, logged once)
 * @param outstandingRecords   preemption records issued and not yet resumed or discarded
 * @param demotedBlocks        evicted published blocks copied to the first tier
 * @param promotedBlocks       blocks loaded from a tier instead of recomputed
 * @param tierHitTokens        prompt tokens served by promoted blocks (also counted in prefixHitTokens)
 * @param tierLoadMisses       tier lookups that found a key but could not load it (verification, error)
 * @param tierErrors           tier calls that threw (each a miss)
 * @param tiers                each tier's own stats, in order
 */
public record KvCacheLedger(KvCacheStats stats, long bytesPerBlock, int blockTokens, long forks,
                            long copyOnWrites, long windowReleasedBlocks, long appendedTokens,
                            long publishedBlocks, int peakUsedBlocks, int reservedBlocks,
                            long watermarkRefusals, long reservationRefusals, long quotaRefusals,
                            long preemptions, long recomputedTokens, long swappedOutBytes,
                            long swappedInBytes, long idleReleasedSequences, long idleReleasedBlocks,
                            int idleHeldBlocks, long droppedTokens, long retentionReleasedBlocks,
                            long abortedBlocks, long copyFailures, long swapFailures, long callbackErrors,
                            int outstandingRecords, long demotedBlocks, long promotedBlocks, long tierHitTokens,
                            long tierLoadMisses, long tierErrors, java.util.List<TierStats> tiers) {

    /**
     * Bytes held by live sequences.
     *
     * @return bytes held by live sequences
     */
    public long usedBytes() {
        return stats.usedBlocks() * bytesPerBlock;
    }

    /**
     * Bytes held only by the prefix cache.
     *
     * @return bytes held only by the prefix cache
     */
    public long cachedBytes() {
        return stats.cachedBlocks() * bytesPerBlock;
    }

    /**
     * Bytes of the whole pool.
     *
     * @return bytes of the whole pool
     */
    public long totalBytes() {
        return stats.totalBlocks() * bytesPerBlock;
    }

    /**
     * Bytes held now by sequences idle past their lease.
     *
     * @return bytes held now by sequences idle past their lease
     */
    public long idleHeldBytes() {
        return idleHeldBlocks * bytesPerBlock;
    }

    /**
     * Peak bytes in use.
     *
     * @return peak bytes in use
     */
    public long peakUsedBytes() {
        return peakUsedBlocks * bytesPerBlock;
    }

    /**
     * Used bytes per live sequence (memory per active request), or 0 with none live.
     *
     * @return used bytes per live sequence (memory per active request), or 0 with none live
     */
    public long bytesPerLiveSequence() {
        return stats.liveSequences() == 0 ? 0 : usedBytes() / stats.liveSequences();
    }

    /**
     * Bytes the prefix cache saved from recomputation and duplicate storage: hit tokens times bytes per token.
     *
     * @return bytes the prefix cache saved from recomputation and duplicate storage: hit tokens times bytes per token
     */
    public long prefixHitBytes() {
        return stats.prefixHitTokens() * bytesPerBlock / blockTokens;
    }

    /**
     * Slots held but not (yet) filled, over slots held: the internal fragmentation of paging.
     *
     * @return slots held but not (yet) filled, over slots held: the internal fragmentation of paging
     */
    public double slotWaste() {
        long slots = (long) stats.usedBlocks() * blockTokens;
        return slots == 0 ? 0.0 : Math.max(0.0, 1.0 - (double) stats.liveTokens() / slots);
    }
}
