package dev.kvcache.offheap;

import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;

import java.util.Arrays;

/**
 * The slot bookkeeping of a tier with a fixed number of slots ({@link HostTier}): which slot
 * holds which {@link TierEntry}, in what order they were used, and which slots are free, in flat
 * arrays, so no object exists per slot beyond the entry itself.
 *
 * <p>Held slots are linked in an intrusive doubly linked LRU list kept in two {@code int[]}s
 * (most recently used at the {@link #head()}, least at the {@link #tail()}). Free slots are
 * chained through the same {@code next} array from {@link #freeHead()}. Keys find slots through
 * an open-addressing (linear probing, backward-shift deletion) table of {@code slot + 1}, 0 when
 * empty, at least four times the capacity rounded down to a power of two (load factor at most
 * 1/2). Invariants, at every return of a method but between {@link #remove} and {@link #release}:
 * <ul>
 *   <li>a slot is either free (on the free chain, entry null) or held (in the LRU list, in the key
 *       table, entry set) - never both, never half recorded;</li>
 *   <li>{@link #size()} is the number of held slots, {@code <= capacity};</li>
 *   <li>each key is held at most once (the caller {@link #find}s before it {@link #add}s).</li>
 * </ul>
 * {@link #remove} unlinks a held slot without freeing it (the tier may write it again at once,
 * an eviction); {@link #release} puts a removed or just taken slot on the free chain.
 *
 * <p>Not thread-safe: the owning tier calls it under its own lock only.
 */
final class SlotIndex {

    /** No slot. */
    static final int NONE = -1;

    private final TierEntry[] entries;
    /** LRU links of held slots (toward the tail / toward the head); next also chains free slots. */
    private final int[] next;
    private final int[] prev;
    private int head = NONE;
    private int tail = NONE;
    private int freeHead;
    /** Open-addressing key table: slot + 1, 0 when empty; length a power of two >= 2 * capacity. */
    private final int[] table;
    private final int mask;
    private int size;

    /** An index of {@code capacity} slots ({@code [1, 2^28]}), all free, chained in slot order. */
    SlotIndex(int capacity) {
        this.entries = new TierEntry[capacity];
        this.next = new int[capacity];
        this.prev = new int[capacity];
        for (int s = 0; s < capacity; s++) {
            next[s] = s + 1 < capacity ? s + 1 : NONE;
            prev[s] = NONE;
        }
        this.freeHead = 0;
        int t = Integer.highestOneBit(capacity) << 2; // load factor <= 1/2
        this.table = new int[t];
        this.mask = t - 1;
    }

    /** The number of slots. */
    int capacity() {
        return entries.length;
    }

    /** The number of held slots. */
    int size() {
        return size;
    }

    /** The entry slot {@code slot} holds, or null when it is free. */
    TierEntry entry(int slot) {
        return entries[slot];
    }

    /** The most recently used held slot, or NONE. */
    int head() {
        return head;
    }

    /** The least recently used held slot, or NONE. */
    int tail() {
        return tail;
    }

    /** The first free slot (the one {@link #takeFree} returns), or NONE. */
    int freeHead() {
        return freeHead;
    }

    /** The held slot used next less recently than {@code slot}, or NONE. */
    int next(int slot) {
        return next[slot];
    }

    /** The held slot of {@code key}, or NONE. */
    int find(PrefixKey key) {
        for (int i = hash(key) & mask; ; i = (i + 1) & mask) {
            int v = table[i];
            if (v == 0) {
                return NONE;
            }
            if (entries[v - 1].key().equals(key)) {
                return v - 1;
            }
        }
    }

    /**
     * How many of {@code keys[from, from + count)} are held from the first on, stopping at the
     * first null or missing one; those are refreshed, the first most recent.
     */
    int leadingHits(PrefixKey[] keys, int from, int count) {
        int n = 0;
        while (n < count && keys[from + n] != null && find(keys[from + n]) != NONE) {
            n++;
        }
        // the manager loads these next, after its own allocations may have demoted blocks into
        // this tier: refresh them, the first most recent (a lost first key loses them all)
        for (int i = n - 1; i >= 0; i--) {
            touch(find(keys[from + i]));
        }
        return n;
    }

    /** Makes held slot {@code slot} the most recently used. */
    void touch(int slot) {
        if (head != slot) {
            unlink(slot);
            pushHead(slot);
        }
    }

    /** Takes the first free slot off the free chain (it is neither free nor held until added or released), or NONE. */
    int takeFree() {
        int slot = freeHead;
        if (slot != NONE) {
            freeHead = next[slot];
        }
        return slot;
    }

    /**
     * Records taken or removed slot {@code slot} as holding {@code entry}, the most recently used;
     * no held slot has its key.
     */
    void add(int slot, TierEntry entry) {
        entries[slot] = entry;
        insert(slot);
        pushHead(slot);
        size++;
    }

    /** Unlinks held slot {@code slot} from the LRU list and the key table; counts it out. Does not free it. */
    void remove(int slot) {
        unlink(slot);
        delete(slot);
        entries[slot] = null;
        size--;
    }

    /** Puts a removed (or taken, never added) slot on the free chain. */
    void release(int slot) {
        entries[slot] = null;
        next[slot] = freeHead;
        prev[slot] = NONE;
        freeHead = slot;
    }

    /** Forgets every slot, leaving none free either: what a closed tier keeps. */
    void clear() {
        Arrays.fill(entries, null);
        Arrays.fill(table, 0);
        head = tail = freeHead = NONE;
        size = 0;
    }

    private void pushHead(int slot) {
        prev[slot] = NONE;
        next[slot] = head;
        if (head != NONE) {
            prev[head] = slot;
        }
        head = slot;
        if (tail == NONE) {
            tail = slot;
        }
    }

    private void unlink(int slot) {
        int p = prev[slot];
        int n = next[slot];
        if (p != NONE) {
            next[p] = n;
        } else {
            head = n;
        }
        if (n != NONE) {
            prev[n] = p;
        } else {
            tail = p;
        }
        prev[slot] = NONE;
        next[slot] = NONE;
    }

    private static int hash(PrefixKey key) {
        long h = key.hi() ^ key.lo() * 0x9E3779B97F4A7C15L;
        return (int) (h ^ (h >>> 32));
    }

    /** Adds held slot {@code slot} (its entry set) to the key table; its key is not there yet. */
    private void insert(int slot) {
        int i = hash(entries[slot].key()) & mask;
        while (table[i] != 0) {
            i = (i + 1) & mask;
        }
        table[i] = slot + 1;
    }

    /** Removes {@code slot} (its entry still set) from the key table: linear-probing deletion with backward shift. */
    private void delete(int slot) {
        int i = hash(entries[slot].key()) & mask;
        while (table[i] != slot + 1) {
            i = (i + 1) & mask;
        }
        int j = i;
        while (true) {
            j = (j + 1) & mask;
            int v = table[j];
            if (v == 0) {
                break;
            }
            int home = hash(entries[v - 1].key()) & mask;
            // move v back to the hole at i unless its home lies cyclically in (i, j]
            boolean stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) {
                table[i] = v;
                i = j;
            }
        }
        table[i] = 0;
    }
}
