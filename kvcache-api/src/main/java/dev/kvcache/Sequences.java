package dev.kvcache;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.StampedLock;

/**
 * The live sequences by id, and the arrays freed sequences leave for the next ones.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>A sequence is in the table exactly while it is live; its tenant counts it in
 *       {@code liveSequences} for as long.</li>
 *   <li>{@link #release} returns every block a sequence holds, tail first (so within one released
 *       sequence the tail is reused before the head), and leaves its arrays to the next sequence
 *       opened: opening and freeing in steady state allocates no token storage. A released
 *       sequence keeps its id, length and options, nothing else.</li>
 * </ul>
 */
final class Sequences {

    private static final int SPARE_ARRAYS = 32;
    private static final int[] NO_INTS = new int[0];

    private final Map<String, PagedSequence> live = new HashMap<>();
    private final ArrayDeque<int[]> spareTokens = new ArrayDeque<>();
    private final ArrayDeque<int[]> spareTables = new ArrayDeque<>();
    private final Object owner;
    private final StampedLock lock;
    private final int blockTokens;
    private final boolean shareAcrossTenants;
    private final TenantAccounts accounts;
    private final PrefixIndex index;
    private final BlockPool pool;
    private final Admission admission;
    private final Counters counters;
    private final LeaseTracker leases;

    Sequences(Object owner, StampedLock lock, int blockTokens, boolean shareAcrossTenants, TenantAccounts accounts,
              PrefixIndex index, BlockPool pool, Admission admission, Counters counters, LeaseTracker leases) {
        this.owner = owner;
        this.lock = lock;
        this.blockTokens = blockTokens;
        this.shareAcrossTenants = shareAcrossTenants;
        this.accounts = accounts;
        this.index = index;
        this.pool = pool;
        this.admission = admission;
        this.counters = counters;
        this.leases = leases;
    }

    /** A new sequence, not yet registered, with room for {@code expectedTokens}. */
    PagedSequence create(String id, SequenceOptions options, int expectedTokens) {
        return create(id, options, accounts.tenant(options.tenant()), expectedTokens);
    }

    /** {@link #create(String, SequenceOptions, int)} for a known tenant (a fork's). */
    PagedSequence create(String id, SequenceOptions options, TenantAccounts.Tenant t, int expectedTokens) {
        int cap = Math.max(expectedTokens, blockTokens);
        return new PagedSequence(owner, lock, blockTokens, id, options, t,
                shareAcrossTenants ? PrefixIndex.SHARED_SCOPE : t.index,
                take(spareTokens, cap), take(spareTables, (int) (((long) cap + blockTokens - 1) / blockTokens)), index.rootHash());
    }

    void register(PagedSequence q) {
        live.put(q.id, q);
        q.tenant.liveSequences++;
        leases.register(q);
    }

    /** Takes back a registered sequence that never held a block (a refused resume). */
    void unregister(PagedSequence q) {
        live.remove(q.id);
        q.tenant.liveSequences--;
        q.live = false;
    }

    /** Releases every block of {@code q}, tail first, and retires it. */
    void release(PagedSequence q) {
        for (int i = q.tableSize - 1; i >= 0; i--) {
            int b = q.table[i];
            if (b >= 0) {
                q.table[i] = -1;
                pool.release(b, q);
            }
        }
        q.held = 0;
        q.live = false;
        live.remove(q.id);
        counters.liveTokens -= q.length;
        q.tenant.liveTokens -= q.length;
        q.tenant.liveSequences--;
        q.reserve = 0;
        admission.update(q);
        recycle(spareTokens, q.tokens);
        recycle(spareTables, q.table);
        q.tokens = NO_INTS;
        q.table = NO_INTS;
    }

    PagedSequence get(String id) {
        return live.get(id);
    }

    boolean isLive(String id) {
        return live.containsKey(id);
    }

    Collection<PagedSequence> all() {
        return live.values();
    }

    int size() {
        return live.size();
    }

    List<String> ids() {
        return new ArrayList<>(live.keySet());
    }

    private static void recycle(ArrayDeque<int[]> spares, int[] a) {
        if (a.length > 0 && spares.size() < SPARE_ARRAYS) {
            spares.push(a);
        }
    }

    /** A spare array of at least {@code n} ints (stale contents), else a new one. */
    private static int[] take(ArrayDeque<int[]> spares, int n) {
        for (Iterator<int[]> it = spares.iterator(); it.hasNext(); ) {
            int[] a = it.next();
            if (a.length >= n) {
                it.remove();
                return a;
            }
        }
        return new int[n];
    }
}
