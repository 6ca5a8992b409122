package dev.kvcache.cli;

import dev.kvcache.KvFormat;

/**
 * One configuration row of {@code kvcache simulate}: the levers it pulls. Built by
 * {@link ConfigRegistry} from a lever list such as {@code paged+prefix+fp8+idle}.
 *
 * @param name          the row's label
 * @param paged         the real block manager (false: contiguous preallocation)
 * @param format        the KV format (null: the base layout's)
 * @param prefixCaching the manager's prefix cache
 * @param window        a sliding window (sinks + window tokens)
 * @param idleRelease   the manager's idle lease and {@code reapIdle()}
 * @param comparedTo    the row this one is compared with (null: none)
 * @param hostTier      a host tier below the pool (needs prefix caching)
 * @param longPool      long-context routes in a tenant of their own under a quota, and admission
 *                      per class so a blocked long prompt does not hold up short ones
 * @param swap          preemption chooses SWAP or RECOMPUTE by the library's cost model, into a
 *                      swap space of the host budget
 * @param sharedTier    a remote tier below the pool (a shared cache such as the Redis tier), its
 *                      copies priced at the network bandwidth; needs prefix caching, excludes hostTier
 */
record SimConfig(String name, boolean paged, KvFormat format, boolean prefixCaching, boolean window,
                 boolean idleRelease, String comparedTo, boolean hostTier, boolean longPool, boolean swap,
                 boolean sharedTier) {

    SimConfig {
        if (hostTier && !(paged && prefixCaching)) {
            throw new IllegalArgumentException("config '" + name + "': a host tier needs paging and prefix caching");
        }
        if (sharedTier && !(paged && prefixCaching)) {
            throw new IllegalArgumentException("config '" + name + "': a shared tier needs paging and prefix caching");
        }
        if (sharedTier && hostTier) {
            // the manager demotes only to its first tier, so a shared tier under a host tier would stay empty
            throw new IllegalArgumentException("config '" + name + "': give tier or shared, not both");
        }
        if (!paged && (format != null || prefixCaching || window || idleRelease || longPool || swap)) {
            throw new IllegalArgumentException("config '" + name + "': contiguous combines with no other lever");
        }
    }

    /** A row with the first seven levers. */
    SimConfig(String name, boolean paged, KvFormat format, boolean prefixCaching, boolean window,
              boolean idleRelease, String comparedTo) {
        this(name, paged, format, prefixCaching, window, idleRelease, comparedTo, false, false, false, false);
    }

    /** A row with or without a host tier. */
    SimConfig(String name, boolean paged, KvFormat format, boolean prefixCaching, boolean window,
              boolean idleRelease, String comparedTo, boolean hostTier) {
        this(name, paged, format, prefixCaching, window, idleRelease, comparedTo, hostTier, false, false, false);
    }

    SimConfig withName(String n, String against) {
        return new SimConfig(n, paged, format, prefixCaching, window, idleRelease, against, hostTier, longPool, swap,
                sharedTier);
    }

    /** How many levers it pulls (for choosing what a custom row is compared with). */
    int levers() {
        return (paged ? 1 : 0) + (format != null ? 1 : 0) + (prefixCaching ? 1 : 0) + (window ? 1 : 0)
                + (idleRelease ? 1 : 0) + (hostTier ? 1 : 0) + (longPool ? 1 : 0) + (swap ? 1 : 0) + (sharedTier ? 1 : 0);
    }

    /** Whether every lever of {@code o} is pulled here too. */
    boolean includes(SimConfig o) {
        return (paged || !o.paged) && (o.format == null || o.format == format)
                && (prefixCaching || !o.prefixCaching) && (window || !o.window) && (idleRelease || !o.idleRelease)
                && (hostTier || !o.hostTier) && (longPool || !o.longPool) && (swap || !o.swap)
                && (sharedTier || !o.sharedTier);
    }
}
