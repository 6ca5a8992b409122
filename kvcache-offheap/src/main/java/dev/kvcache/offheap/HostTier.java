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
import java.util.concurrent.atomic.AtomicInteger;
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
 *       table, entry set, and its checksum either set or pending, see below) - never both, never
 *       half recorded;</li>
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
 * <h2>Checksums: synchronous (the default) or in the background</h2>
 * {@link #allocate(KvLayout, long)} is {@link Checksum#SYNC}: {@code put} takes the slot's
 * CRC32C itself, under the lock, through {@link KvStore#exportBlockCrc32c}: a store in host memory
 * (the off-heap one) checksums each chunk right after copying it, from cache, so the block is read
 * from memory once. With
 * {@link #allocate(KvLayout, long, Checksum) allocate(layout, budget, Checksum.ASYNC)} the put
 * copies the block, records the slot with its checksum <em>pending</em>, queues the slot and
 * returns; one daemon thread owned by the tier ({@code "kvcache-HostTier-<n>-checksum"}) takes the
 * CRC32C later. Invariants, under the lock at every return, on top of the ones above:
 * <ul>
 *   <li>every slot has a generation, bumped whenever its content or its holder changes (a put
 *       into it, a drop); a queued checksum is {@code (slot, generation)} and is computed only if
 *       the slot is still held, still pending, at that generation;</li>
 *   <li>at most one slot is <em>busy</em>: the one whose bytes the thread is reading, outside the
 *       lock. A busy slot is never written, reused or freed: a put that would take it (it is the
 *       LRU tail, or the head of the free chain), a load of it, {@link #corruptForTest} and
 *       {@link #close()} wait until the thread has finished that one pass (one CRC32C of one
 *       block: bounded), then start over;</li>
 *   <li>the thread publishes its result under the lock, and only if the slot's generation is the
 *       one it read: a slot dropped meanwhile keeps no stale checksum;</li>
 *   <li>a {@link #load} of a pending slot takes its checksum itself first (under the lock, as a
 *       synchronous put would have), so no load is served from a slot without one; a load of the
 *       busy slot waits for it;</li>
 *   <li>the queue is bounded (at most {@code min(capacity, 1024)} entries); a put finding it full
 *       takes the checksum synchronously. A checksum is never dropped, a put never waits for the
 *       queue;</li>
 *   <li>{@link #close()} stops the thread and joins it before it frees the memory.</li>
 * </ul>
 * What a checksum proves is unchanged in kind: the bytes loaded are the bytes the checksum was
 * taken of. A fault between the export and that checksum is not caught in either mode; in this
 * mode that window is the queue's delay (microseconds when the thread keeps up) rather than zero.
 * {@link #pendingChecksums()} says how many held slots are waiting.
 * <p>Why SYNC is the default: on the project's 2-vCPU VM an evicting append with an ASYNC tier took
 * 1.85x (the append without a tier + one cold block copy) against 1.21x for SYNC with a separate
 * checksum pass ({@code kvcache-api/bench-results/tiers-async-2026-12-03.txt}), and SYNC with the
 * fused export took 1.07x ({@code tiers-fused-export-2026-12-03.txt}). Waking the thread and
 * handing the slot over cost more than the checksum it takes off the put, and with no idle core
 * the thread's pass slows the next copy. ASYNC is for hosts with a core to spare, and should be
 * measured there.
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
 * The checksum thread of an {@link Checksum#ASYNC} tier takes the lock only to take a queued slot
 * and to publish its result; it calls no store.
 *
 * <h2>Stats</h2>
 * {@link #stats()}: blocks and bytes held, capacity in bytes ({@code capacity * bytesPerBlock}),
 * puts, refused puts, loads, verification misses, evictions, bytes moved (in by puts and out by
 * loads) and copy nanos ({@link System#nanoTime()} around each store copy and the checksum pass
 * over the same bytes, which is part of what a move costs; a background checksum's pass is added
 * when it is published, so copy nanos count the work, not only the caller's wait).
 *
 * <h2>Errors</h2>
 * A budget below one block: IllegalArgumentException naming it. A store or entry of another
 * layout (wiring, not data): IllegalArgumentException. Every call but {@link #name()},
 * {@link #stats()}, {@link #close()} and the getters above ({@link #layout()},
 * {@link #capacityBlocks()}, {@link #checksumMode()}, {@link #pendingChecksums()},
 * {@link #failedLoads()}) after {@code close()}: IllegalStateException.
 */
public final class HostTier implements KvTier {

    /** When a put's checksum is taken. */
    public enum Checksum {
        /** By the put, after the export, under the lock: the put returns with the slot checksummed. */
        SYNC,
        /**
         * By the tier's own daemon thread, after the put has returned; a load of a slot still
         * pending takes it first. See the class documentation for the invariants.
         */
        ASYNC
    }

    private static final int NONE = -1;
    private static final int MAX_QUEUE = 1024;
    private static final AtomicInteger SERIAL = new AtomicInteger();

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

    // ASYNC only (null / unused for SYNC)
    private final Checksum mode;
    /** Per slot: bumped on every put into it and every drop of it. */
    private final int[] generation;
    /** Per slot: held, its checksum not taken yet. */
    private final boolean[] pending;
    private int pendingCount;
    /** Ring of queued (slot << 32 | generation). */
    private final long[] queue;
    private int queueHead;
    private int queueSize;
    /** The slot the checksum thread is reading outside the lock, or NONE. */
    private int busy = NONE;
    private final Thread worker;
    private boolean holdForTest;

    private int blocks;
    private long puts;
    private long refusedPuts;
    private long loads;
    private long failedLoads;
    private long verificationMisses;
    private long evictions;
    private final TierEvents events = new TierEvents();
    private long bytesMoved;
    private long copyNanos;
    private boolean closed;

    private HostTier(KvLayout layout, int capacity, Checksum mode) {
        this.layout = layout;
        this.mode = mode;
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
            this.memory = NativeMemory.allocateZeroed(arena, slotBytes * capacity, OffHeapKvStore.ALIGNMENT); // committed on first touch
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
        if (mode == Checksum.ASYNC) {
            this.generation = new int[capacity];
            this.pending = new boolean[capacity];
            this.queue = new long[Math.min(capacity, MAX_QUEUE)];
            Thread w = new Thread(this::checksumLoop, "kvcache-HostTier-" + SERIAL.incrementAndGet() + "-checksum");
            w.setDaemon(true);
            this.worker = w;
            w.start();
        } else {
            this.generation = null;
            this.pending = null;
            this.queue = null;
            this.worker = null;
        }
    }

    /**
     * A host tier for blocks of {@code layout} holding at most {@code budgetBytes} bytes:
     * {@code budgetBytes / layout.bytesPerBlock()} slots, allocated now, off-heap.
     *
     * @param layout      the layout of the blocks it holds (a store or entry of another layout is refused); not null
     * @param budgetBytes the most bytes it may hold, at least {@code layout.bytesPerBlock()}; the
     *                    remainder below a whole block is not allocated
     * @return a new open {@link Checksum#SYNC} tier with every slot free; the caller closes it
     * @throws NullPointerException     if {@code layout} is null
     * @throws IllegalArgumentException the budget holds less than one block, or more slots than
     *                                  this tier indexes (2^28)
     * @throws OutOfMemoryError         if the OS refuses the memory
     */
    public static HostTier allocate(KvLayout layout, long budgetBytes) {
        return allocate(layout, budgetBytes, Checksum.SYNC);
    }

    /**
     * A host tier as {@link #allocate(KvLayout, long)}, taking its checksums as {@code checksum}
     * says; an {@link Checksum#ASYNC} tier starts its checksum thread now and {@link #close()}
     * joins it.
     *
     * @param layout      the layout of the blocks it holds (a store or entry of another layout is refused); not null
     * @param budgetBytes the most bytes it may hold, at least {@code layout.bytesPerBlock()}; the
     *                    remainder below a whole block is not allocated
     * @param checksum    when a put's CRC32C is taken: by the put ({@link Checksum#SYNC}) or by the
     *                    tier's own thread afterwards ({@link Checksum#ASYNC}); not null
     * @return a new open tier with every slot free; the caller closes it
     * @throws NullPointerException     if {@code layout} or {@code checksum} is null
     * @throws IllegalArgumentException the budget holds less than one block, or more slots than
     *                                  this tier indexes (2^28)
     * @throws OutOfMemoryError         if the OS refuses the memory
     */
    public static HostTier allocate(KvLayout layout, long budgetBytes, Checksum checksum) {
        Objects.requireNonNull(layout, "layout");
        Objects.requireNonNull(checksum, "checksum");
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
        return new HostTier(layout, (int) slots, checksum);
    }

    /**
     * Reports the blocks this tier starts and stops holding to {@code l}, as {@link
     * dev.kvcache.KvCacheEvent.BlockStored} / {@link dev.kvcache.KvCacheEvent.BlockRemoved} with
     * block -1, and {@link dev.kvcache.KvCacheEvent.AllBlocksCleared} when it closes: what a KV-event
     * publisher reports under the tier's medium (e.g. {@code KvEventPublisher.tierListener("CPU")}
     * in kvcache-redis). Setting a listener first reports every block held now. {@code l} is called
     * once each change is whole, outside the tier's lock, in the order of the changes, on a thread
     * that made one; it may call the tier. An exception it throws is counted
     * ({@link #listenerFailures}) and ignored: the change stands.
     *
     * @param l the listener, or null to stop reporting
     * @return this tier
     */
    public HostTier listener(dev.kvcache.KvCacheListener l) {
        synchronized (lock) {
            checkOpen();
            events.set(l);
            for (TierEntry e : entries) {
                if (e != null) {
                    events.stored(e);
                }
            }
        }
        events.flush();
        return this;
    }

    /**
     * Exceptions its listener threw (see {@link #listener}).
     *
     * @return the count since it was built
     */
    public long listenerFailures() {
        return events.failures(); // not under the tier's lock: a listener running now may hold the tier
    }

    @Override
    public String name() {
        return "host";
    }

    /**
     * The layout of the blocks it holds.
     *
     * @return the layout given to {@code allocate}; every slot is its {@code bytesPerBlock()} long
     */
    public KvLayout layout() {
        return layout;
    }

    /**
     * Slots: the most blocks it holds.
     *
     * @return {@code floor(budgetBytes / layout.bytesPerBlock())}, in {@code [1, 2^28]}
     */
    public int capacityBlocks() {
        return capacity;
    }

    /**
     * When this tier takes a put's checksum.
     *
     * @return the mode given to {@code allocate} ({@link Checksum#SYNC} for the two-argument one)
     */
    public Checksum checksumMode() {
        return mode;
    }

    /**
     * Held slots whose checksum is not taken yet (always 0 for {@link Checksum#SYNC}).
     *
     * @return the held slots waiting for the checksum thread now, in {@code [0, capacityBlocks()]}
     */
    public int pendingChecksums() {
        synchronized (lock) {
            return pendingCount;
        }
    }

    /**
     * Loads that failed because the store threw on import (the copy stays held).
     *
     * @return the loads since allocation that were misses because the store's {@code importBlock}
     *         threw (verification misses are not counted here)
     */
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
        try {
            return putLocked(entry, store, block);
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    private boolean putLocked(TierEntry entry, KvStore store, int block) {
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
            int held;
            int slot;
            while (true) {
                held = find(entry.key());
                if (held != NONE && entries[held].matches(entry)) {
                    touch(held);
                    puts++;
                    return true;
                }
                // the slot this put writes: the held copy's, a free one, or the LRU tail's
                slot = held != NONE ? held : freeHead != NONE ? freeHead : tail;
                if (slot != busy) {
                    break;
                }
                awaitNotBusy(); // its checksum is being read: never overwrite it (one pass)
                checkOpen();
            }
            if (held != NONE) {
                drop(held);
                release(held);
            }
            slot = freeHead;
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
                boolean queued = mode == Checksum.ASYNC && queueSize < queue.length;
                if (queued) {
                    store.exportBlock(block, seg);
                } else {
                    crcs[slot] = store.exportBlockCrc32c(block, seg); // one read of the block, not two
                }
                copyNanos += System.nanoTime() - t0;
                entries[slot] = new TierEntry(entry.key(), entry.parentKey(), entry.salt(), entry.scope(),
                        entry.tokens().clone(), entry.layoutFingerprint());
                insert(slot);
                pushHead(slot);
                blocks++;
                puts++;
                bytesMoved += slotBytes;
                if (mode == Checksum.ASYNC) {
                    generation[slot]++;
                    if (queued) {
                        pending[slot] = true;
                        pendingCount++;
                        queue[(queueHead + queueSize) % queue.length] = (long) slot << 32 | (generation[slot] & 0xFFFF_FFFFL);
                        if (queueSize++ == 0) {
                            lock.notifyAll();
                        }
                    }
                }
                ok = true;
                events.stored(entries[slot]);
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
        try {
            return loadLocked(expected, store, block);
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    private boolean loadLocked(TierEntry expected, KvStore store, int block) {
        Objects.requireNonNull(expected, "expected");
        Objects.requireNonNull(store, "store");
        synchronized (lock) {
            checkOpen();
            int slot = find(expected.key());
            while (slot != NONE && slot == busy) {
                awaitNotBusy(); // its checksum is being taken: wait for that one pass, look again
                checkOpen();
                slot = find(expected.key());
            }
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
            if (mode == Checksum.ASYNC && pending[slot]) {
                crcs[slot] = sum; // taken now, before serving (the queued one will find it settled)
                settle(slot);
            }
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
        try {
            return removeLocked(key);
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    private boolean removeLocked(PrefixKey key) {
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
        try {
            closeLocked();
        } finally {
            events.flush();
        }
    }

    private void closeLocked() {
        synchronized (lock) {
            if (closed) {
                return;
            }
            closed = true;
            lock.notifyAll(); // the checksum thread, and any call waiting for the busy slot, wake to see it
        }
        if (worker != null && worker != Thread.currentThread()) {
            boolean interrupted = false;
            while (true) {
                try {
                    worker.join(); // it finishes at most one checksum pass, then sees closed
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (lock) {
            events.cleared();
            events.set(null);
            Arrays.fill(entries, null);
            Arrays.fill(table, 0);
            head = tail = freeHead = NONE;
            blocks = 0;
            if (pending != null) {
                Arrays.fill(pending, false);
            }
            pendingCount = 0;
            queueSize = 0;
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
            while (slot != NONE && slot == busy) {
                awaitNotBusy();
                checkOpen();
                slot = find(key);
            }
            if (slot == NONE) {
                return false;
            }
            Objects.checkIndex(offset, slotBytes);
            MemorySegment seg = slot(slot);
            if (mode == Checksum.ASYNC && pending[slot]) {
                // a fault modelled after the tier's checksum was taken, as in SYNC mode (one
                // before it is not detectable in either mode): take the pending one first
                crcs[slot] = checksum(seg);
                settle(slot);
            }
            seg.set(ValueLayout.JAVA_BYTE, offset, (byte) ~seg.get(ValueLayout.JAVA_BYTE, offset));
            return true;
        }
    }

    /**
     * Test hook: while held, the checksum thread takes nothing from the queue (slots stay
     * pending). Releasing wakes it.
     */
    void holdChecksumsForTest(boolean hold) {
        synchronized (lock) {
            holdForTest = hold;
            lock.notifyAll();
        }
    }

    /** Test hook, ASYNC: runs on the checksum thread with the busy slot set, before it reads it. */
    volatile Runnable beforeChecksumForTest;

    /** Test hook: the checksum thread (null for SYNC). */
    Thread checksumThreadForTest() {
        return worker;
    }

    /** Test hook: the checksum recorded for {@code key}'s slot and a fresh one of its bytes, or null (not held, pending). */
    int[] checksumsForTest(PrefixKey key) {
        synchronized (lock) {
            checkOpen();
            int slot = find(key);
            if (slot == NONE || slot == busy || (pending != null && pending[slot])) {
                return null;
            }
            return new int[] {crcs[slot], checksum(slot(slot))};
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
        events.removed(entries[slot].key());
        unlink(slot);
        delete(slot);
        entries[slot] = null;
        blocks--;
        if (mode == Checksum.ASYNC) {
            generation[slot]++; // a queued or in-flight checksum of it is stale now
            if (pending[slot]) {
                settle(slot);
            }
        }
    }

    /** Marks a pending slot's checksum as no longer pending (taken, or the slot dropped). */
    private void settle(int slot) {
        pending[slot] = false;
        pendingCount--;
    }

    /**
     * Waits (the lock released) until the checksum thread has finished its current pass, which is
     * one CRC32C of one block, or the tier is closed. The caller starts over: anything may have
     * changed. An interrupt is kept for later, not lost.
     */
    private void awaitNotBusy() {
        int was = busy;
        boolean interrupted = false;
        while (busy == was && busy != NONE) {
            try {
                lock.wait();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /** The checksum thread: takes (slot, generation) from the queue, checksums outside the lock, publishes. */
    private void checksumLoop() {
        CRC32C own = new CRC32C();
        while (true) {
            int slot;
            int gen;
            synchronized (lock) {
                while (!closed && (queueSize == 0 || holdForTest)) {
                    try {
                        lock.wait();
                    } catch (InterruptedException e) {
                        // only close() stops this thread
                    }
                }
                if (closed) {
                    return;
                }
                long q = queue[queueHead];
                queueHead = (queueHead + 1) % queue.length;
                queueSize--;
                slot = (int) (q >>> 32);
                gen = (int) q;
                if (entries[slot] == null || !pending[slot] || generation[slot] != gen) {
                    continue; // stale: dropped, reused, or taken by a load meanwhile
                }
                busy = slot; // from here no one writes, reuses or frees it until busy is cleared
            }
            int sum = 0;
            long nanos = 0;
            boolean done = false;
            try {
                Runnable hook = beforeChecksumForTest;
                if (hook != null) {
                    hook.run();
                }
                long t0 = System.nanoTime();
                own.reset();
                own.update(slot(slot).asByteBuffer());
                sum = (int) own.getValue();
                nanos = System.nanoTime() - t0;
                done = true;
            } catch (RuntimeException | Error e) {
                // not published: the slot stays pending and a load takes its checksum itself
            } finally {
                synchronized (lock) {
                    busy = NONE;
                    if (done && generation[slot] == gen && pending[slot] && entries[slot] != null) {
                        crcs[slot] = sum;
                        settle(slot);
                        copyNanos += nanos;
                    }
                    lock.notifyAll(); // calls waiting for the busy slot
                }
            }
        }
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
