package dev.kvcache;

/**
 * A sequence {@link KvCacheManager#reapIdle()} released (or, from
 * {@link KvCacheManager#idleSequences}, one it would release): who it was and what it held. When
 * {@link KvCacheManager#reapIdle(boolean) offloading}, {@code offloaded} is what
 * {@link KvCacheManager#resume} takes when the client comes back; null when the KV was dropped.
 *
 * @param id        the sequence
 * @param tenant    its tenant
 * @param idleNanos how long it had been idle, by the manager's clock
 * @param tokens    the tokens it held
 * @param blocks    the blocks it held
 * @param bytes     {@code blocks} times the layout's bytes per block
 * @param offloaded what {@link KvCacheManager#resume} takes to bring it back, or null when dropped
 */
public record IdleRelease(String id, String tenant, long idleNanos, int tokens, int blocks, long bytes,
                          PreemptedSequence offloaded) {

    /**
     * A release without offload.
     *
     * @param id        the sequence
     * @param tenant    its tenant
     * @param idleNanos how long it had been idle
     * @param tokens    the tokens it held
     * @param blocks    the blocks it held
     * @param bytes     the bytes those blocks take
     */
    public IdleRelease(String id, String tenant, long idleNanos, int tokens, int blocks, long bytes) {
        this(id, tenant, idleNanos, tokens, blocks, bytes, null);
    }

    /** This release with its offloaded form. */
    IdleRelease withOffloaded(PreemptedSequence p) {
        return new IdleRelease(id, tenant, idleNanos, tokens, blocks, bytes, p);
    }
}
