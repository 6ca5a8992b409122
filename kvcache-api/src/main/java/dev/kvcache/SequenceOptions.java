package dev.kvcache;

import java.util.Objects;

/**
 * How a sequence is opened. {@link #DEFAULT} is what {@link KvCacheManager#open(String)} uses.
 *
 * @param cacheSalt      mixed into every prefix hash of the sequence: sequences with different salts
 *                       never share cached blocks (isolates tenants, LoRA adapters, multimodal inputs)
 * @param priority       0 (lowest) to {@link #MAX_PRIORITY}; with {@link EvictionPolicy#priority()} the
 *                       cached blocks of lower priorities are reused first, and preemption picks
 *                       lower priorities first
 * @param expectedTokens a hint: capacity reserved up front for this many tokens so that appends up
 *                       to it allocate nothing on the heap (0 for none)
 * @param tenant         who is charged for the sequence's blocks (quotas, fair share, per-tenant stats)
 * @param maxTokens      the most tokens the sequence will reach, or 0 when unknown. When positive, its
 *                       first append is admitted only if blocks for all {@code maxTokens} tokens can
 *                       be set aside, and from then on its appends up to {@code maxTokens} cannot
 *                       fail for want of blocks (unless it is forked: forks draw on the shared pool)
 * @param leaseNanos     idle lease: released by {@link KvCacheManager#reapIdle()} when untouched for
 *                       longer; 0 takes the manager's default ({@link KvCacheManager.Builder#idleLease})
 */
public record SequenceOptions(long cacheSalt, int priority, int expectedTokens, String tenant,
                              int maxTokens, long leaseNanos) {

    /** Highest priority value. */
    public static final int MAX_PRIORITY = 127;

    /** The tenant of sequences that name none. */
    public static final String DEFAULT_TENANT = "default";

    /** Salt 0, priority 0, no size hint, the default tenant, no reservation, the default lease. */
    public static final SequenceOptions DEFAULT = new SequenceOptions(0L, 0, 0);

    /** Checks the ranges named above; the tenant must be present. */
    public SequenceOptions {
        Objects.requireNonNull(tenant, "tenant");
        if (priority < 0 || priority > MAX_PRIORITY) {
            throw new IllegalArgumentException("priority must be in 0.." + MAX_PRIORITY + ", got " + priority);
        }
        if (expectedTokens < 0) {
            throw new IllegalArgumentException("expectedTokens must be >= 0, got " + expectedTokens);
        }
        if (maxTokens < 0) {
            throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
        }
        if (leaseNanos < 0) {
            throw new IllegalArgumentException("leaseNanos must be >= 0, got " + leaseNanos);
        }
    }

    /**
     * Salt, priority and size hint; default tenant, no reservation, default lease.
     *
     * @param cacheSalt the cache salt (0: none)
     * @param priority the priority (higher is kept longer)
     * @param expectedTokens tokens reserved up front (0: none)
     */
    public SequenceOptions(long cacheSalt, int priority, int expectedTokens) {
        this(cacheSalt, priority, expectedTokens, DEFAULT_TENANT, 0, 0L);
    }

    /**
     * These options with another cache salt.
     *
     * @param salt the cache salt
     * @return a copy with {@code salt}
     */
    public SequenceOptions withCacheSalt(long salt) {
        return new SequenceOptions(salt, priority, expectedTokens, tenant, maxTokens, leaseNanos);
    }

    /**
     * These options with another priority.
     *
     * @param p the priority, 0 to {@link #MAX_PRIORITY}
     * @return a copy with {@code p}
     */
    public SequenceOptions withPriority(int p) {
        return new SequenceOptions(cacheSalt, p, expectedTokens, tenant, maxTokens, leaseNanos);
    }

    /**
     * These options with another size hint.
     *
     * @param n tokens to make room for up front, >= 0
     * @return a copy with {@code n}
     */
    public SequenceOptions withExpectedTokens(int n) {
        return new SequenceOptions(cacheSalt, priority, n, tenant, maxTokens, leaseNanos);
    }

    /**
     * These options with another tenant.
     *
     * @param t the tenant charged for the sequence's blocks
     * @return a copy with {@code t}
     */
    public SequenceOptions withTenant(String t) {
        return new SequenceOptions(cacheSalt, priority, expectedTokens, t, maxTokens, leaseNanos);
    }

    /**
     * These options with another maximum.
     *
     * @param n the most tokens the sequence will reach, or 0 when unknown
     * @return a copy with {@code n}
     */
    public SequenceOptions withMaxTokens(int n) {
        return new SequenceOptions(cacheSalt, priority, expectedTokens, tenant, n, leaseNanos);
    }

    /**
     * These options with another idle lease.
     *
     * @param lease the lease; zero takes the manager's default
     * @return a copy with {@code lease} in nanoseconds
     */
    public SequenceOptions withLease(java.time.Duration lease) {
        return new SequenceOptions(cacheSalt, priority, expectedTokens, tenant, maxTokens, lease.toNanos());
    }
}
