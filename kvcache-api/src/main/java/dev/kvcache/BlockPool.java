package dev.kvcache;

import java.util.Objects;

/**
 * The physical blocks: reference counts, the empty stack and the eviction queue (vLLM's
 * {@code BlockPool} with its free-block queue).
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>Every block is in exactly one state: <b>used</b> ({@code refCount > 0}), <b>cached</b>
 *       (refCount 0, published, in the policy's queue) or <b>empty</b> (refCount 0, unpublished, on
 *       the empty stack). So {@code used + cached + empty == total}.</li>
 *   <li>Every reference is charged to the holder's tenant ({@link TenantAccounts}).</li>
 *   <li>An empty block is always taken before a cached one; taking a cached block evicts it: its
 *       publication ends ({@link PrefixIndex#unpublish}) before anyone can write into it.</li>
 *   <li>A block that becomes empty is reported to the store ({@link Notifications#blockReleased}).</li>
 *   <li>With tiers, a cached block taken for reuse is first copied to the first tier
 *       ({@link Tiers#demote}).</li>
 * </ul>
 * Every operation is O(1) on {@code int[]}s and allocation-free (without listeners).
 */
final class BlockPool {

    private static final int NIL = -1;

    private final int total;
    private final int[] refCount;
    /** Highest priority among the sequences that held the block since it was last free. */
    private final int[] priority;
    private final int[] emptyStack;
    private int emptyTop;
    private final EvictionPolicy.Queue cached;
    private final PrefixIndex index;
    private final TenantAccounts accounts;
    private final Notifications notes;
    private final Tiers tiers;
    private int used;
    private int peakUsed;
    private long evicted;

    BlockPool(int blocks, EvictionPolicy policy, PrefixIndex index, TenantAccounts accounts, Notifications notes,
              Tiers tiers) {
        this.total = blocks;
        this.refCount = new int[blocks];
        this.priority = new int[blocks];
        this.emptyStack = new int[blocks];
        // lowest ids on top: a fresh pool hands out 0, 1, 2, ...
        for (int i = 0; i < blocks; i++) {
            emptyStack[i] = blocks - 1 - i;
        }
        this.emptyTop = blocks;
        this.cached = Objects.requireNonNull(policy.newQueue(blocks), "policy.newQueue");
        this.index = index;
        this.accounts = accounts;
        this.notes = notes;
        this.tiers = tiers;
    }

    int total() {
        return total;
    }

    int used() {
        return used;
    }

    int peakUsed() {
        return peakUsed;
    }

    int empty() {
        return emptyTop;
    }

    int cached() {
        return cached.size();
    }

    /** Blocks an allocation could take: empty plus cached. */
    int free() {
        return emptyTop + cached.size();
    }

    long evicted() {
        return evicted;
    }

    int refCount(int b) {
        return refCount[b];
    }

    /**
     * Takes a block for exclusive use by {@code q}: an empty one if any, else the policy's victim
     * (evicted first). The caller has checked supply.
     */
    int allocate(PagedSequence q) {
        int b;
        if (emptyTop > 0) {
            b = emptyStack[--emptyTop];
        } else {
            b = cached.poll();
            if (b == NIL) {
                throw new AssertionError("allocate without supply; planning is broken");
            }
            if (tiers != null) {
                tiers.demote(b); // before its publication ends and before anyone writes into it
            }
            evict(b);
        }
        refCount[b] = 1;
        priority[b] = q.priority;
        accounts.ref(b, q.tenant);
        used++;
        if (used > peakUsed) {
            peakUsed = used;
        }
        return b;
    }

    /** Takes one more reference on {@code b} for {@code q}: a prefix hit (reviving a cached block) or a fork. */
    void acquire(int b, PagedSequence q) {
        if (refCount[b] == 0) {
            cached.remove(b);
            used++;
            if (used > peakUsed) {
                peakUsed = used;
            }
            priority[b] = q.priority;
        } else {
            priority[b] = Math.max(priority[b], q.priority);
        }
        refCount[b]++;
        accounts.ref(b, q.tenant);
    }

    /** Drops {@code q}'s reference on {@code b}; at zero the block becomes cached (published) or empty. */
    void release(int b, PagedSequence q) {
        accounts.unref(b, q.tenant);
        if (--refCount[b] == 0) {
            used--;
            if (index.isPublished(b)) {
                cached.add(b, priority[b]);
            } else {
                emptyStack[emptyTop++] = b;
                notes.blockReleased(b);
            }
        }
    }

    /**
     * Gives back a block {@link #allocate} just handed to {@code q} whose contents are unusable
     * (a copy into it failed): it goes to the empty pool, unpublished, and the peak is what it was
     * before that allocation.
     */
    void discardAllocated(int b, PagedSequence q, int peakBefore) {
        accounts.unref(b, q.tenant);
        refCount[b] = 0;
        used--;
        peakUsed = peakBefore;
        index.unpublish(b);
        emptyStack[emptyTop++] = b;
        notes.blockReleased(b);
    }

    /** Ends the publication of a cached block (no references) and moves it to the empty pool. */
    void dropCached(int b) {
        cached.remove(b);
        evict(b);
        emptyStack[emptyTop++] = b;
        notes.blockReleased(b);
    }

    /** Empties the eviction queue onto the empty stack (the prefix cache is being reset). */
    void clearCached() {
        for (int b = cached.poll(); b != NIL; b = cached.poll()) {
            index.unpublish(b);
            emptyStack[emptyTop++] = b;
        }
    }

    private void evict(int b) {
        PrefixKey key = notes.listening() ? index.key(b) : null;
        index.unpublish(b);
        evicted++;
        if (notes.listening()) {
            notes.event(new KvCacheEvent.BlockRemoved(b, key == null ? 0L : key.hi(), key));
        }
    }
}
