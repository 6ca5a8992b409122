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
 * its array cannot change what a copy is verified against) and a CRC32C of its bytes taken at
 * {@link #put}. Which slot holds which key, the LRU order and the free slots are a
 * {@link SlotIndex} (an intrusive LRU list and a free chain in {@code int[]}s, an open-addressing
 * key table), so no object exists per slot beyond the entry itself. Invariants, under the lock at
 * every return: {@link SlotIndex}'s (a slot is free or held, never both, never half recorded;
 * each key held at most once), a held slot's checksum is either set or pending (see below), and
 * {@code bytes == blocks * bytesPerBlock} with {@code blocks} the held slots.
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
 * CRC32C later. That machinery and its invariants (generations, the one <em>busy</em> slot that
 * nothing writes, reuses or frees while the thread reads it, results published only at the
 * generation read, the bounded queue that a full put bypasses by taking the checksum itself, the
 * thread stopped and joined by {@link #close()} before the memory is freed) are
 * {@link AsyncChecksums}. A {@link #load} of a pending slot takes its checksum itself first (under
 * the lock, as a synchronous put would have), so no load is served from a slot without one; a
 * load of the busy slot, a put that would take it, {@link #corruptForTest} and {@link #close()}
 * wait for its one pass.
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
 * and to publish its result; it calls no store. The frame of each call (argument checks, the
 * lock, the open and layout checks, the events flushed once the lock is released) is
 * {@link TierFrame}, shared with {@link DiskTier}.
 *
 * <h2>Stats</h2>
 * {@link #stats()}: blocks and bytes held, capacity in bytes ({@code capacity * bytesPerBlock}),
 * puts, refused puts, loads, verification misses, evictions, bytes moved (in by puts and out by
 * loads) and copy nanos ({@link System#nanoTime()} around each store copy and the checksum pass
 * over the same bytes, which is part of what a move costs; a background checksum's pass is added
 * when it is published, so copy nanos count the work, not only the caller's wait), kept in a
 * {@link TierCounters} as {@link DiskTier}'s are.
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

    private static final int NONE = SlotIndex.NONE;

    private final KvLayout layout;
    private final long slotBytes;
    private final int capacity;
    private final Arena arena;
    private final MemorySegment memory;

    private final TierFrame frame;
    private final Object lock;
    private final SlotIndex index;
    private final int[] crcs;
    private final CRC32C crc = new CRC32C();
    private final Checksum mode;
    /** The background checksums (null for SYNC). */
    private final AsyncChecksums async;

    private final TierCounters counters;
    private final TierEvents events;

    private HostTier(KvLayout layout, int capacity, Checksum mode) {
        this.index = new SlotIndex(capacity);
        this.frame = new TierFrame("HostTier", name(), layout, capacity, this::putHeld, this::loadHeld, this::removeHeld,
                index::leadingHits, index::size);
        this.lock = frame.lock;
        this.counters = frame.counters;
        this.events = frame.events;
        this.layout = layout;
        this.mode = mode;
        this.slotBytes = layout.bytesPerBlock();
        this.capacity = capacity;
        this.crcs = new int[capacity];
        this.arena = Arena.ofShared();
        try {
            this.memory = NativeMemory.allocateZeroed(arena, slotBytes * capacity, OffHeapKvStore.ALIGNMENT); // committed on first touch
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
        this.async = mode == Checksum.ASYNC
                ? new AsyncChecksums(lock, index, memory, slotBytes, crcs, counters, () -> beforeChecksumForTest)
                : null;
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
        TierChecks.oneBlock("host", layout, budgetBytes);
        return new HostTier(layout, (int) TierChecks.blocks("host", layout, budgetBytes, 1 << 28), checksum);
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
        frame.listener(l, () -> {
            for (int s = 0; s < capacity; s++) {
                if (index.entry(s) != null) {
                    events.stored(index.entry(s));
                }
            }
        });
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
            return async == null ? 0 : async.pendingCount();
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
            return counters.failedLoads;
        }
    }


    @Override
    public int leadingHits(PrefixKey[] keys, int from, int count) {
        return frame.leadingHits(keys, from, count);
    }

    @Override
    public boolean put(TierEntry entry, KvStore store, int block) {
        return frame.put(entry, store, block);
    }

    /** The put under the lock, the tier open and the call checked ({@link TierFrame#put}). */
    private boolean putHeld(TierEntry entry, KvStore store, int block) {
        int held;
        int slot;
        while (true) {
            held = index.find(entry.key());
            if (held != NONE && index.entry(held).matches(entry)) {
                index.touch(held);
                counters.puts++; // a repeated put moves nothing
                return true;
            }
            // the slot this put writes: the held copy's, a free one, or the LRU tail's
            slot = held != NONE ? held : index.freeHead() != NONE ? index.freeHead() : index.tail();
            if (slot != busy()) {
                break;
            }
            async.awaitNotBusy(); // its checksum is being read: never overwrite it (one pass)
            frame.checkOpen();
        }
        if (held != NONE) {
            drop(held);
            index.release(held);
        }
        slot = index.takeFree();
        if (slot == NONE) {
            slot = index.tail(); // every slot is held: evict the least recently used
            drop(slot);
            counters.evictions++;
        }
        boolean ok = false;
        try {
            MemorySegment seg = slot(slot);
            long t0 = System.nanoTime();
            boolean queued = async != null && async.hasRoom();
            if (queued) {
                store.exportBlock(block, seg);
            } else {
                crcs[slot] = store.exportBlockCrc32c(block, seg); // one read of the block, not two
            }
            counters.copyNanos += System.nanoTime() - t0;
            index.add(slot, new TierEntry(entry.key(), entry.parentKey(), entry.salt(), entry.scope(),
                    entry.tokens().clone(), entry.layoutFingerprint()));
            counters.stored(slotBytes);
            if (async != null) {
                async.recorded(slot, queued);
            }
            ok = true;
            events.stored(index.entry(slot));
        } catch (RuntimeException e) {
            return false;
        } finally {
            if (!ok) {
                index.release(slot);
                counters.refusedPuts++;
            }
        }
        return true;
    }

    @Override
    public boolean load(TierEntry expected, KvStore store, int block) {
        return frame.load(expected, store, block);
    }

    /** The load under the lock, the tier open and the call checked ({@link TierFrame#load}). */
    private boolean loadHeld(TierEntry expected, KvStore store, int block) {
        int slot = findNotBusy(expected.key()); // a busy one's checksum is being taken: wait for that pass
        if (slot == NONE) {
            return false;
        }
        if (!index.entry(slot).matches(expected)) {
            counters.verificationMisses++;
            drop(slot);
            index.release(slot);
            return false;
        }
        if (!TierChecks.storeLayout(store, layout)) {
            counters.failedLoads++;
            return false;
        }
        MemorySegment seg = slot(slot);
        long t0 = System.nanoTime();
        int sum = checksum(seg);
        if (async != null && async.isPending(slot)) {
            crcs[slot] = sum; // taken now, before serving (the queued one will find it settled)
            async.settle(slot);
        }
        if (sum != crcs[slot]) {
            counters.copyNanos += System.nanoTime() - t0;
            counters.verificationMisses++;
            drop(slot);
            index.release(slot);
            return false;
        }
        try {
            store.importBlock(block, seg);
        } catch (RuntimeException e) {
            counters.failedLoads++;
            return false;
        } finally {
            counters.copyNanos += System.nanoTime() - t0;
        }
        index.touch(slot);
        counters.served(slotBytes);
        return true;
    }

    @Override
    public boolean remove(PrefixKey key) {
        return frame.remove(key);
    }

    /** The remove under the lock, the tier open and the call checked ({@link TierFrame#remove}). */
    private boolean removeHeld(PrefixKey key) {
        int slot = index.find(key);
        if (slot == NONE) {
            return false;
        }
        drop(slot);
        index.release(slot);
        return true;
    }

    @Override
    public TierStats stats() {
        return frame.stats();
    }

    /** Frees the host memory. Idempotent; afterwards every call but name, stats and close throws. */
    @Override
    public void close() {
        frame.close(() -> {
            if (async != null) {
                async.stop();
            }
            lock.notifyAll(); // the checksum thread, and any call waiting for the busy slot, wake to see it
        }, this::release);
    }

    /** Close, after the tier is marked closed: ends the checksum thread, forgets every slot, frees the memory. */
    private void release() {
        if (async != null) {
            async.join(); // it finishes at most one checksum pass, then sees it stopped
        }
        synchronized (lock) {
            events.cleared();
            events.set(null);
            index.clear();
            if (async != null) {
                async.clear();
            }
            arena.close();
        }
    }

    @Override
    public String toString() {
        synchronized (lock) {
            return "HostTier[" + layout + ", " + index.size() + "/" + capacity + " blocks" + (frame.closed() ? ", closed]" : "]");
        }
    }

    // ------------------------------------------------------------------ test hooks

    /**
     * Test hook: flips the bits of byte {@code offset} of the copy held under {@code key}, as a
     * memory fault would, without updating its checksum. False when nothing is held under it.
     */
    boolean corruptForTest(PrefixKey key, long offset) {
        synchronized (lock) {
            frame.checkOpen();
            int slot = findNotBusy(key);
            if (slot == NONE) {
                return false;
            }
            Objects.checkIndex(offset, slotBytes);
            MemorySegment seg = slot(slot);
            if (async != null && async.isPending(slot)) {
                // a fault modelled after the tier's checksum was taken, as in SYNC mode (one
                // before it is not detectable in either mode): take the pending one first
                crcs[slot] = checksum(seg);
                async.settle(slot);
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
            if (async != null) {
                async.hold(hold);
            }
            lock.notifyAll();
        }
    }

    /** Test hook, ASYNC: runs on the checksum thread with the busy slot set, before it reads it. */
    volatile Runnable beforeChecksumForTest;

    /** Test hook: the checksum thread (null for SYNC). */
    Thread checksumThreadForTest() {
        return async == null ? null : async.thread();
    }

    /** Test hook: the checksum recorded for {@code key}'s slot and a fresh one of its bytes, or null (not held, pending). */
    int[] checksumsForTest(PrefixKey key) {
        synchronized (lock) {
            frame.checkOpen();
            int slot = index.find(key);
            if (slot == NONE || slot == busy() || (async != null && async.isPending(slot))) {
                return null;
            }
            return new int[] {crcs[slot], checksum(slot(slot))};
        }
    }

    /** Test hook: the keys held, most recently used first. */
    PrefixKey[] lruOrderForTest() {
        synchronized (lock) {
            PrefixKey[] out = new PrefixKey[index.size()];
            int i = 0;
            for (int s = index.head(); s != NONE; s = index.next(s)) {
                out[i++] = index.entry(s).key();
            }
            return out;
        }
    }

    // ------------------------------------------------------------------ internals (under the lock)


    /** The slot the checksum thread is reading now, or NONE (always for SYNC). */
    private int busy() {
        return async == null ? NONE : async.busy();
    }

    /** The held slot of {@code key}, or NONE, once it is not the busy one (waiting for that pass, the lock released). */
    private int findNotBusy(PrefixKey key) {
        int slot = index.find(key);
        while (slot != NONE && slot == busy()) {
            async.awaitNotBusy();
            frame.checkOpen();
            slot = index.find(key);
        }
        return slot;
    }

    private MemorySegment slot(int slot) {
        return memory.asSlice(slot * slotBytes, slotBytes);
    }

    private int checksum(MemorySegment seg) {
        crc.reset();
        crc.update(seg.asByteBuffer());
        return (int) crc.getValue();
    }

    /** Unlinks a held slot from the index and reports it; counts it out. Does not free it. */
    private void drop(int slot) {
        events.removed(index.entry(slot).key());
        index.remove(slot);
        if (async != null) {
            async.dropped(slot); // a queued or in-flight checksum of it is stale now
        }
    }
}
