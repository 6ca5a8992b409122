package dev.kvcache;

/**
 * One tenant's share of a {@link KvCacheManager}.
 *
 * @param tenant         the name sequences were opened with
 * @param quotaBlocks    its block quota ({@link Integer#MAX_VALUE} when unlimited)
 * @param usedBlocks     blocks charged to it now: each block at least one of its live sequences holds,
 *                       once (a block two tenants hold, possible only with a shared cache, counts for both)
 * @param liveSequences  its live sequences
 * @param liveTokens     their tokens
 * @param refusals       its appends refused for its quota
 * @param preemptions    its sequences preempted
 * @param idleReleases   its sequences released idle
 */
public record TenantStats(String tenant, int quotaBlocks, int usedBlocks, int liveSequences,
                          long liveTokens, long refusals, long preemptions, long idleReleases) {
}
