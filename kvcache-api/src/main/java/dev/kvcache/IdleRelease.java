package dev.kvcache;

/**
 * A sequence {@link KvCacheManager#reapIdle()} released (or, from
 * {@link KvCacheManager#idleSequences}, one it would release): who it was and what it held. When
 * {@link KvCacheManager#reapIdle(boolean) offloading}, {@code offloaded} is what
 * {@link KvCacheManager#resume} takes when the client comes back; null when the KV was dropped.
 */
public record IdleRelease(String id, String tenant, long idleNanos, int tokens, int blocks, long bytes,
                          PreemptedSequence offloaded) {

    /** A release without offload. */
    public IdleRelease(String id, String tenant, long idleNanos, int tokens, int blocks, long bytes) {
        this(id, tenant, idleNanos, tokens, blocks, bytes, null);
    }

    /** This release with its offloaded form. */
    IdleRelease withOffloaded(PreemptedSequence p) {
        return new IdleRelease(id, tenant, idleNanos, tokens, blocks, bytes, p);
    }
}
