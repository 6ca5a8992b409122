package dev.kvcache.redis;

import java.util.concurrent.atomic.LongAdder;

/** What a {@link RedisTier} and its {@link WriteBehind} count, from any thread. */
final class TierCounters {

    final LongAdder lookups = new LongAdder();
    final LongAdder lookupKeys = new LongAdder();
    final LongAdder lookupHits = new LongAdder();
    final LongAdder roundTrips = new LongAdder();
    final LongAdder skipped = new LongAdder();
    final LongAdder timeouts = new LongAdder();
    final LongAdder errors = new LongAdder();
    final LongAdder loads = new LongAdder();
    final LongAdder prefetchedLoads = new LongAdder();
    final LongAdder verificationMisses = new LongAdder();
    final LongAdder writesQueued = new LongAdder();
    final LongAdder writesDropped = new LongAdder();
    final LongAdder writesDeduplicated = new LongAdder();
    final LongAdder writesDone = new LongAdder();
    final LongAdder writesFailed = new LongAdder();
    final LongAdder bytesWritten = new LongAdder();
    final LongAdder bytesRead = new LongAdder();
    final LongAdder copyNanos = new LongAdder();
    private volatile String lastError;

    /** Counts an error and keeps its description. */
    void error(Throwable e) {
        errors.increment();
        lastError = e.getCause() != null ? e.getCause().toString() : e.toString();
    }

    String lastError() {
        return lastError;
    }

    RedisTierStats snapshot(long breakerOpens) {
        return new RedisTierStats(lookups.sum(), lookupKeys.sum(), lookupHits.sum(), roundTrips.sum(), skipped.sum(),
                timeouts.sum(), errors.sum(), breakerOpens, loads.sum(), prefetchedLoads.sum(), verificationMisses.sum(),
                writesQueued.sum(), writesDropped.sum(), writesDeduplicated.sum(), writesDone.sum(), writesFailed.sum(),
                bytesWritten.sum(), bytesRead.sum());
    }
}
