package dev.kvcache;

/**
 * What a {@link KvTier} holds and what it did.
 *
 * @param tier               its name
 * @param blocks             blocks held now
 * @param bytes              bytes held now
 * @param capacityBytes      the most it may hold
 * @param puts               blocks taken ({@link KvTier#put} that returned true)
 * @param refusedPuts        puts refused (full, error)
 * @param loads              blocks loaded ({@link KvTier#load} that returned true)
 * @param verificationMisses loads refused because the held copy did not match or failed its checksum
 * @param evictions          blocks it dropped to make room
 * @param bytesMoved         bytes copied in and out
 * @param copyNanos          time spent copying ({@link System#nanoTime()} around the copies)
 */
public record TierStats(String tier, long blocks, long bytes, long capacityBytes, long puts, long refusedPuts,
                        long loads, long verificationMisses, long evictions, long bytesMoved, long copyNanos) {
}
