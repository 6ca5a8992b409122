package dev.kvcache.offheap;

import dev.kvcache.TierStats;

/**
 * The counters a tier ({@link HostTier}, {@link DiskTier}) reports in its {@link TierStats}, plus
 * the loads a store's import failed, as plain fields the tier bumps under its own lock (what each
 * counts is the tier's documentation). They only grow: nothing resets them, not even close.
 *
 * <p>Not thread-safe: guarded by the owning tier's lock, and so is {@link #stats}, which makes
 * the snapshot consistent.
 */
final class TierCounters {

    /** Puts that hold the block afterwards (a repeated put of a held block included). */
    long puts;
    /** Puts that returned false. */
    long refusedPuts;
    /** Loads served. */
    long loads;
    /** Loads that missed because the store threw on import. */
    long failedLoads;
    /** Loads that missed because the copy did not verify. */
    long verificationMisses;
    /** Copies dropped to make room. */
    long evictions;
    /** Payload bytes in by puts and out by loads. */
    long bytesMoved;
    /** {@link System#nanoTime()} spent copying and checksumming. */
    long copyNanos;

    /** Counts a put that moved {@code bytes} in. */
    void stored(long bytes) {
        puts++;
        bytesMoved += bytes;
    }

    /** Counts a load that moved {@code bytes} out. */
    void served(long bytes) {
        loads++;
        bytesMoved += bytes;
    }

    /**
     * The snapshot {@link dev.kvcache.KvTier#stats()} returns.
     *
     * @param name       the tier's name
     * @param blocks     the blocks it holds now
     * @param blockBytes the payload bytes of one block
     * @param capacity   the most blocks it holds
     */
    TierStats stats(String name, long blocks, long blockBytes, long capacity) {
        return new TierStats(name, blocks, blocks * blockBytes, capacity * blockBytes, puts, refusedPuts,
                loads, verificationMisses, evictions, bytesMoved, copyNanos);
    }
}
