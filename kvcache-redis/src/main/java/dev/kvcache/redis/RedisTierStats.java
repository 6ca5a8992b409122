package dev.kvcache.redis;

/**
 * What a {@link RedisTier} did, beyond {@link dev.kvcache.TierStats}: every failure it turned into
 * a miss or a dropped write is counted here.
 *
 * @param lookups            {@code leadingHits} calls that asked Redis
 * @param lookupKeys         keys asked
 * @param lookupHits         keys found (leading hits returned)
 * @param roundTrips         pipelined flushes of the lookup connection (one per batch of keys)
 * @param skippedByBreaker   lookups, loads and writes not sent because the circuit breaker was open
 *                           or the tier had no connection yet
 * @param timeouts           lookups and loads that gave up waiting (counted as misses)
 * @param errors             lookups, loads and writes that failed with an error (refused,
 *                           disconnected, a Redis error)
 * @param breakerOpens       times the breaker opened
 * @param loads              blocks loaded into a store
 * @param prefetchedLoads    of those, blocks whose value the lookup had already fetched
 * @param verificationMisses loads refused because the value did not match the expected entry or
 *                           its checksums
 * @param writesQueued       blocks queued for write-behind
 * @param writesDropped      blocks not queued because the queue was full (decode never waits)
 * @param writesDeduplicated blocks not queued because this tier wrote or loaded them recently
 * @param writesDone         blocks Redis acknowledged
 * @param writesFailed       blocks whose write failed or timed out
 * @param bytesWritten       value bytes acknowledged
 * @param bytesRead          value bytes fetched
 */
public record RedisTierStats(long lookups, long lookupKeys, long lookupHits, long roundTrips, long skippedByBreaker,
                             long timeouts, long errors, long breakerOpens, long loads, long prefetchedLoads,
                             long verificationMisses, long writesQueued, long writesDropped, long writesDeduplicated,
                             long writesDone, long writesFailed, long bytesWritten, long bytesRead) {
}
