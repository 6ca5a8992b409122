package dev.kvcache.offheap;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.KvTier;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;
import java.util.zip.CRC32C;

/**
 * A {@link KvTier} in host memory: copies of published blocks, one fixed-size slot each, in one
 * off-heap allocation sized by a byte budget the engine sets, evicted least recently used first.
 * Any {@link KvStore} that implements {@link KvStore#exportBlock}/{@link KvStore#importBlock}
 * (the off-heap store, the CUDA store) can put blocks into it and load them back.
 *
 * <h2>Memory</h2>
 * {@link #allocate(KvLayout, long) allocate(layout, budgetBytes)} takes
 * {@code floor(budgetBytes / layout.bytesPerBlock())} slots of exactly {@code bytesPerBlock} bytes
 * from one {@link Arena#ofShared()} allocation (64-byte aligned), made once: the tier never grows,
 * never allocates native memory afterwards, and never holds more than its budget. Slot
 * {@code s} is the range {@code [s * bytesPerBlock, (s + 1) * bytesPerBlock)}; it holds the
 * store's encoded bytes as {@code exportBlock} wrote them (format, scales and all), so a load
 * restores the block bit for bit and no format needs code here. {@link #close()} frees the arena.
 *
 * <h2>Bookkeeping</h2>
 * Per slot: its {@link TierEntry} (a private copy: the token ids are cloned, so a caller reusing
 * its array cannot change what a copy is verified against), a CRC32C of its bytes taken at
 * {@link #put}, and its links in an intrusive doubly linked LRU list kept in two {@code int[]}s
 * (most recently used at the head). Free slots are chained through the same {@code next} array.
 * Keys find slots through an open-addressing (linear probing) table of slot indices, so no object
 * exists per slot beyond the entry itself. Invariants, under the lock at every return:
 * <ul>
 *   <li>a slot is either free (on the free chain, entry null) or held (in the LRU list, in the key
 *       table, entry and checksum set) - never both, never half recorded;</li>
 *   <li>{@code blocks} is the number of held slots, {@code <= capacity}, and
 *       {@code bytes == blocks * bytesPerBlock};</li>
 *   <li>each key is held at most once.</li>
 * </ul>
 *
 * <h2>Put</h2>
 * A key already held with a matching entry is only touched (moved to the head; it counts as a put,
 * copies nothing). Otherwise a free slot is taken, or the least recently used slot is evicted
 * (counted in {@code evictions}); the store exports the block into the slot, the slot is
 * checksummed, and only then recorded. If the store throws (a closed store, a partially written
 * block, a device error) the slot goes back to the free chain, the put returns false and is
 * counted in {@code refusedPuts}: an eviction made for a put that then failed is not undone.
 * A key held with a different entry (not possible for content-derived keys short of a bug or a
 * collision) is replaced.
 *
 * <h2>Load: a tier is trusted with nothing</h2>
 * {@link #load} first compares the held entry with the expected one ({@link TierEntry#matches}:
 * key, parent key, salt, scope, token ids, layout fingerprint), then recomputes the CRC32C of the
 * slot's bytes and compares it with the one taken at put. Either mismatch is a miss, counted in
 * {@code verificationMisses}, and the copy is dropped (a copy that failed once is never tried
 * again). Only then does the store import the bytes; the slot is touched. A store that throws is a
 * miss as well ({@link #failedLoads()}); the copy stays held (it was not at fault), and the store's
 * block may be partly written, which the manager never serves. A key not held is a plain miss.
 * {@link #leadingHits} refreshes the keys it finds, the first most recent: the manager loads them
 * right after, and the same append's allocations may first demote blocks into this tier.
 *
 * <h2>Threads</h2>
 * Every method takes one lock, copies included, so a tier may be shared by several managers; a
 * copy of one block is short next to the work that makes one. Stats are a consistent snapshot.
 * Stores are only called under this lock (export or import of one block), never the other way.
 *
 * <h2>Stats</h2>
 * {@link #stats()}: blocks and bytes held, capacity in bytes ({@code capacity * bytesPerBlock}),
 * puts, refused puts, loads, verification misses, evictions, bytes moved (in by puts and out by
 * loads) and copy nanos ({@link System#nanoTime()} around each store copy and the checksum pass
 * over the same bytes, which is part of what a move costs).
 *
 * <h2>Errors</h2>
 * A budget below one block: IllegalArgumentException naming it. A store or entry of another
 * layout (wiring, not data): IllegalArgumentException. Every call but {@link #name()},
 * {@link #stats()} and {@link #close()} after {@code close()}: IllegalStateException.
 */
public final class HostTier implements KvTier {

    private static final int NONE = -1;

    private final KvLayout layout;
    private final long fingerprint;
    private final long slotBytes;
    private final int capacity;
    private final Arena arena;
    private final MemorySegment memory;

    private final Object lock = new Object();
    private final TierEntry[] entries;
    private final int[] crcs;
    /** LRU links of held slots (toward the tail / toward the head); next also chains free slots. */
    private final int[] next;
    private final int[] prev;
    private int head = NONE;
    private int tail = NONE;
    private int freeHead;
    /** Open-addressing key table: slot + 1, 0 when empty; length a power of two >= 2 * capacity. */
    private final int[] table;
    private final int mask;
    private final CRC32C crc = new CRC32C();

    private int blocks;
    private long puts;
    private long refusedPuts;
    private long loads;
    private long failedLoads;
    private long verificationMisses;
    private long evictions;
    private long bytesMoved;
    private long copyNanos;
    private boolean closed;

    private HostTier(KvLayout layout, int capacity) {
        this.layout = layout;
        this.fingerprint = TierEntry.fingerprint(layout);
        this.slotBytes = layout.bytesPerBlock();
        this.capacity = capacity;
        this.entries = new TierEntry[capacity];
        this.crcs = new int[capacity];
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
        this.arena = Arena.ofShared();
        try {
            this.memory = arena.allocate(slotBytes * capacity, OffHeapKvStore.ALIGNMENT);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /**
     * A host tier for blocks of {@code layout} holding at most {@code budgetBytes} bytes:
     * {@code budgetBytes / layout.bytesPerBlock()} slots, allocated now, off-heap.
     *
     * @throws IllegalArgumentException the budget holds less than one block, or more slots than
     *                                  this tier indexes (2^28)
     */
    public static HostTier allocate(KvLayout layout, long budgetBytes) {
        Objects.requireNonNull(layout, "layout");
        long per = layout.bytesPerBlock();
        if (budgetBytes < per) {
            throw new IllegalArgumentException("host tier budget " + budgetBytes + " bytes holds less than one block of "
                    + layout + " (" + per + " bytes)");
        }
        long slots = budgetBytes / per;
        if (slots > 1 << 28) {
            throw new IllegalArgumentException("host tier budget " + budgetBytes + " bytes is " + slots
                    + " blocks of " + per + " bytes; the limit is " + (1 << 28) + " blocks");
        }
        return new HostTier(layout, (int) slots);
    }

    @Override
    public String name() {
        return "host";
    }

    /** The layout of the blocks it holds. */
    public KvLayout layout() {
        return layout;
    }

    /** Slots: the most blocks it holds. */
    public int capacityBlocks() {
        return capacity;
    }

    /** Loads that failed because the store threw on import (the copy stays held). */
    public long failedLoads() {
        synchronized (lock) {
            return failedLoads;
        }
    }

    @Override
    public int leadingHits(PrefixKey[] keys, int from, int count) {
        Objects.requireNonNull(keys, "keys");
        Objects.checkFromIndexSize(from, count, keys.length);
        synchronized (lock) {
            checkOpen();
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
    }

    @Override
    public boolean put(TierEntry entry, KvStore store, int block) {
        Objects.requireNonNull(entry, "entry");
        Objects.requireNonNull(store, "store");
        synchronized (lock) {
            checkOpen();
            if (entry.layoutFingerprint() != fingerprint) {
                throw new IllegalArgumentException("entry's layout fingerprint " + Long.toHexString(entry.layoutFingerprint())
                        + " is not this tier's " + Long.toHexString(fingerprint) + " (" + layout + ")");
            }
            KvLayout sl;
            try {
                sl = store.layout();
            } catch (RuntimeException e) {
                refusedPuts++;
                return false;
            }
            checkLayout(sl);
            int held = find(entry.key());
            if (held != NONE) {
                if (entries[held].matches(entry)) {
                    touch(held);
                    puts++;
                    return true;
                }
                drop(held);
                release(held);
            }
            int slot = freeHead;
            if (slot != NONE) {
                freeHead = next[slot];
            } else {
                slot = tail; // every slot is held: evict the least recently used
                drop(slot);
                evictions++;
            }
            boolean ok = false;
            try {
                MemorySegment seg = slot(slot);
                long t0 = System.nanoTime();
                store.exportBlock(block, seg);
                int sum = checksum(seg);
                copyNanos += System.nanoTime() - t0;
                crcs[slot] = sum;
                entries[slot] = new TierEntry(entry.key(), entry.parentKey(), entry.salt(), entry.scope(),
                        entry.tokens().clone(), entry.layoutFingerprint());
                insert(slot);
                pushHead(slot);
                blocks++;
                puts++;
                bytesMoved += slotBytes;
                ok = true;
            } catch (RuntimeException e) {
                return false;
            } finally {
                if (!ok) {
                    entries[slot] = null;
                    next[slot] = freeHead;
                    prev[slot] = NONE;
                    freeHead = slot;
                    refusedPuts++;
                }
            }
            return true;
        }
    }

    @Override
    public boolean load(TierEntry expected, KvStore store, int block) {
        Objects.requireNonNull(expected, "expected");
        Objects.requireNonNull(store, "store");
        synchronized (lock) {
            checkOpen();
            int slot = find(expected.key());
            if (slot == NONE) {
                return false;
            }
            if (!entries[slot].matches(expected)) {
                verificationMisses++;
                drop(slot);
                release(slot);
                return false;
            }
            KvLayout sl;
            try {
                sl = store.layout();
            } catch (RuntimeException e) {
                failedLoads++;
                return false;
            }
            checkLayout(sl);
            MemorySegment seg = slot(slot);
            long t0 = System.nanoTime();
            int sum = checksum(seg);
            if (sum != crcs[slot]) {
                copyNanos += System.nanoTime() - t0;
                verificationMisses++;
                drop(slot);
                release(slot);
                return false;
            }
            try {
                store.importBlock(block, seg);
            } catch (RuntimeException e) {
                failedLoads++;
                return false;
            } finally {
                copyNanos += System.nanoTime() - t0;
            }
            touch(slot);
            loads++;
            bytesMoved += slotBytes;
            return true;
        }
    }

    @Override
    public boolean remove(PrefixKey key) {
        Objects.requireNonNull(key, "key");
        synchronized (lock) {
            checkOpen();
            int slot = find(key);
            if (slot == NONE) {
                return false;
            }
            drop(slot);
            release(slot);
            return true;
        }
    }

    @Override
    public TierStats stats() {
        synchronized (lock) {
            return new TierStats(name(), blocks, blocks * slotBytes, capacity * slotBytes, puts, refusedPuts,
                    loads, verificationMisses, evictions, bytesMoved, copyNanos);
        }
    }

    /** Frees the host memory. Idempotent; afterwards every call but name, stats and close throws. */
    @Override
    public void close() {
        synchronized (lock) {
            if (closed) {
                return;
            }
            closed = true;
            Arrays.fill(entries, null);
            Arrays.fill(table, 0);
            head = tail = freeHead = NONE;
            blocks = 0;
            arena.close();
        }
    }

    @Override
    public String toString() {
        synchronized (lock) {
            return "HostTier[" + layout + ", " + blocks + "/" + capacity + " blocks" + (closed ? ", closed]" : "]");
        }
    }

    // ------------------------------------------------------------------ test hooks

    /**
     * Test hook: flips the bits of byte {@code offset} of the copy held under {@code key}, as a
     * memory fault would, without updating its checksum. False when nothing is held under it.
     */
    boolean corruptForTest(PrefixKey key, long offset) {
        synchronized (lock) {
            checkOpen();
            int slot = find(key);
            if (slot == NONE) {
                return false;
            }
            Objects.checkIndex(offset, slotBytes);
            MemorySegment seg = slot(slot);
            seg.set(ValueLayout.JAVA_BYTE, offset, (byte) ~seg.get(ValueLayout.JAVA_BYTE, offset));
            return true;
        }
    }

    /** Test hook: the keys held, most recently used first. */
    PrefixKey[] lruOrderForTest() {
        synchronized (lock) {
            PrefixKey[] out = new PrefixKey[blocks];
            int i = 0;
            for (int s = head; s != NONE; s = next[s]) {
                out[i++] = entries[s].key();
            }
            return out;
        }
    }

    // ------------------------------------------------------------------ internals (under the lock)

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("HostTier is closed");
        }
    }

    private void checkLayout(KvLayout sl) {
        if (!layout.equals(sl)) {
            throw new IllegalArgumentException("store's layout " + sl + " is not this tier's " + layout);
        }
    }

    private MemorySegment slot(int slot) {
        return memory.asSlice(slot * slotBytes, slotBytes);
    }

    private int checksum(MemorySegment seg) {
        crc.reset();
        crc.update(seg.asByteBuffer());
        return (int) crc.getValue();
    }

    /** Unlinks a held slot from the LRU list and the key table; counts it out. Does not free it. */
    private void drop(int slot) {
        unlink(slot);
        delete(slot);
        entries[slot] = null;
        blocks--;
    }

    /** Puts a dropped slot on the free chain. */
    private void release(int slot) {
        next[slot] = freeHead;
        prev[slot] = NONE;
        freeHead = slot;
    }

    private void touch(int slot) {
        if (head != slot) {
            unlink(slot);
            pushHead(slot);
        }
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

    /** The held slot of {@code key}, or NONE. */
    private int find(PrefixKey key) {
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
