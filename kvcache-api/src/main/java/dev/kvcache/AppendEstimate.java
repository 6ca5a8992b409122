package dev.kvcache;

/**
 * What an append would do if it were made now ({@link KvCacheManager#estimateAppend}): a
 * scheduler's exact admission test. Nothing is changed by asking; the answer holds until the next
 * change to the manager.
 *
 * @param refusal         why the append would return -1, or {@link Refusal#NONE} if it would succeed
 * @param newBlocks       blocks it would take from the free pool: fresh blocks plus a copy-on-write
 *                        copy of a shared partial last block (a prefix hit on a live block costs none)
 * @param revivedBlocks   prefix hits on cached blocks nobody holds: taken out of the evictable pool
 * @param prefixHitTokens tokens served from the prefix cache (first append only)
 * @param windowFreedBlocks blocks a sliding window would give back to the pool in the same call
 * @param availableBlocks blocks the pool could give this append (empty + evictable, less revived
 *                        hits, plus what the window frees), before reservations and the watermark
 */
public record AppendEstimate(Refusal refusal, int newBlocks, int revivedBlocks, int prefixHitTokens,
                             int windowFreedBlocks, int availableBlocks) {

    /**
     * True when the append would succeed.
     *
     * @return true when the append would succeed
     */
    public boolean admitted() {
        return refusal == Refusal.NONE;
    }
}
