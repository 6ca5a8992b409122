package dev.kvcache;

/** The ledger's running counters; mutated under the manager's write lock, read under its read lock. */
final class Counters {
    Refusal lastRefusal = Refusal.NONE;
    long liveTokens;
    long admissions;
    long prefixQueryTokens;
    long prefixHitTokens;
    long tierHitTokens;
    long allocationFailures;
    long forks;
    long copyOnWrites;
    long copyFailures;
    long swapFailures;
    long windowReleasedBlocks;
    long appendedTokens;
    long publishedBlocks;
    long abortedBlocks;
    long watermarkRefusals;
    long quotaRefusals;
    long reservationRefusals;
    long preemptions;
    long recomputedTokens;
    long swappedOutBytes;
    long swappedInBytes;
    long idleReleasedSequences;
    long idleReleasedBlocks;
    long droppedTokens;
    long retentionReleasedBlocks;
}
