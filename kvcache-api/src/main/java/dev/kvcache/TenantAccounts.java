package dev.kvcache;

import org.agrona.collections.Long2LongHashMap;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Who is charged for which block (Arrow's {@code Accountant}, per tenant).
 *
 * <h2>The rule</h2>
 * A tenant is charged once for every block that at least one of its live sequences holds. A block
 * held by two tenants (possible only when the manager shares its prefix cache across tenants) is
 * charged to both; a block held by two sequences of one tenant (a fork) is charged once. So a
 * tenant's charge depends on its own sequences alone: no tenant can use up another's quota, and
 * when a tenant's sequences let go of a block, exactly the charge they added goes away. The sum of
 * the charges is at least the used blocks, equal when no block is shared across tenants.
 *
 * <h2>Invariants</h2>
 * {@code refs(b, t)} is the number of references tenant t's live sequences hold on block b;
 * {@code tenant.used} is the number of blocks with {@code refs(b, t) > 0}. The common case, a block
 * held by one tenant, lives in two flat arrays (the block's primary tenant and its references);
 * references of other tenants go to a primitive map keyed by (block, tenant). No allocation unless
 * blocks are shared across tenants.
 */
final class TenantAccounts {

    private static final int NONE = -1;

    private final Map<String, Tenant> byName = new HashMap<>();
    private Tenant[] byIndex = new Tenant[4];
    private final Map<String, Integer> quotas;
    private final int[] primary;
    private final int[] primaryRefs;
    private final Long2LongHashMap otherRefs = new Long2LongHashMap(0L);

    TenantAccounts(int blocks, Map<String, Integer> quotas) {
        this.quotas = new HashMap<>(quotas);
        this.primary = new int[blocks];
        this.primaryRefs = new int[blocks];
        Arrays.fill(primary, NONE);
    }

    /** The tenant called {@code name}, made on first use. */
    Tenant tenant(String name) {
        Tenant t = byName.get(name);
        if (t == null) {
            t = new Tenant(name, byName.size(), quotas.getOrDefault(name, Integer.MAX_VALUE));
            byName.put(name, t);
            if (t.index == byIndex.length) {
                byIndex = Arrays.copyOf(byIndex, t.index * 2);
            }
            byIndex[t.index] = t;
        }
        return t;
    }

    Tenant find(String name) {
        return byName.get(name);
    }

    /** References tenant {@code t}'s sequences hold on block {@code b}. */
    int refs(int b, Tenant t) {
        if (primary[b] == t.index) {
            return primaryRefs[b];
        }
        return otherRefs.isEmpty() ? 0 : (int) otherRefs.get(key(b, t));
    }

    /** One more reference of {@code t} on {@code b}; charges {@code t} if it held none. */
    void ref(int b, Tenant t) {
        int p = primary[b];
        if (p == t.index) {
            primaryRefs[b]++;
            return;
        }
        if (p == NONE && otherRefs.isEmpty()) { // a fresh block, nobody else's: the allocation path
            primary[b] = t.index;
            primaryRefs[b] = 1;
            t.used++;
            return;
        }
        long k = key(b, t);
        long r = otherRefs.isEmpty() ? 0 : otherRefs.get(k);
        if (primary[b] == NONE && r == 0) {
            primary[b] = t.index;
            primaryRefs[b] = 1;
            t.used++;
            return;
        }
        if (r == 0) {
            t.used++;
        }
        otherRefs.put(k, r + 1);
    }

    /** One reference of {@code t} on {@code b} less; uncharges {@code t} when it was its last. */
    void unref(int b, Tenant t) {
        if (primary[b] == t.index) {
            if (--primaryRefs[b] == 0) {
                primary[b] = NONE;
                t.used--;
            }
            return;
        }
        long k = key(b, t);
        long r = otherRefs.get(k);
        if (r <= 0) {
            throw new AssertionError("tenant '" + t.name + "' holds no reference on block " + b);
        }
        if (r == 1) {
            otherRefs.remove(k);
            t.used--;
        } else {
            otherRefs.put(k, r - 1);
        }
    }

    /** Tenants with at least one live sequence. */
    int activeTenants() {
        int n = 0;
        for (Tenant t : byName.values()) {
            if (t.liveSequences > 0) {
                n++;
            }
        }
        return n;
    }

    List<TenantStats> stats() {
        List<TenantStats> out = new ArrayList<>();
        for (Tenant t : byName.values()) {
            out.add(t.stats());
        }
        out.sort(Comparator.comparing(TenantStats::tenant));
        return out;
    }

    private static long key(int b, Tenant t) {
        return ((long) b << 32) | t.index;
    }

    /** A tenant's running totals. */
    static final class Tenant {
        final String name;
        final int index;
        final int quota;
        int used;
        int liveSequences;
        long liveTokens;
        long refusals;
        long preemptions;
        long idleReleases;

        Tenant(String name, int index, int quota) {
            this.name = name;
            this.index = index;
            this.quota = quota;
        }

        TenantStats stats() {
            return new TenantStats(name, quota, used, liveSequences, liveTokens, refusals, preemptions, idleReleases);
        }
    }
}
