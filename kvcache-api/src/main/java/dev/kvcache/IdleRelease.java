package dev.kvcache;

/**
 * A sequence {@link KvCacheManager#reapIdle()} released (or, from
 * {@link KvCacheManager#idleSequences}, one it would release): who it was and what it held.
 */
public record IdleRelease(String id, String tenant, long idleNanos, int tokens, int blocks, long bytes) {
}
