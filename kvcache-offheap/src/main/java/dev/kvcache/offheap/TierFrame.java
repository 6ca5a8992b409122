package dev.kvcache.offheap;

import dev.kvcache.KvCacheListener;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;

import java.util.Objects;
import java.util.function.IntSupplier;

/**
 * The frame every call of a tier of one layout ({@link HostTier}, {@link DiskTier}) runs in: its
 * one lock, its {@link TierEvents}, its {@link TierCounters} and its closed flag, and the steps
 * around each tier-specific body: null checks, then under the lock the open check and (for a
 * put) the layout checks of {@link TierChecks}, then the body, and after the lock is released,
 * also when the call threw, the events it recorded are flushed. Invariants:
 * <ul>
 *   <li>the body of a put, load or remove runs with the lock held, on an open tier, after the
 *       arguments are checked; a put's body only for an entry and a store of the tier's layout
 *       (a store that cannot say its layout is a refused put, counted, and no body runs);</li>
 *   <li>{@link TierEvents#flush()} runs after every put, load, remove, listener change and close,
 *       never with the lock held, so a listener sees each change once it is whole;</li>
 *   <li>a tier closes once: the flag is set in the same hold of the lock as the tier's first
 *       closing step, so no call sees it half closed;</li>
 *   <li>one lock guards everything of the tier (the bodies, the counters, the flag): no second
 *       lock is taken here, so the tier's lock order is the tier's.</li>
 * </ul>
 * The bodies are bound once, at construction, so a call allocates nothing here.
 */
final class TierFrame {

    /** A put or a load of one block, run by the frame under the lock. */
    interface Move {
        boolean apply(TierEntry entry, KvStore store, int block);
    }

    /** A remove of one key, run by the frame under the lock. */
    interface Removal {
        boolean apply(PrefixKey key);
    }

    /** {@link dev.kvcache.KvTier#leadingHits}, run by the frame under the lock, its range checked. */
    interface Lookup {
        int leadingHits(PrefixKey[] keys, int from, int count);
    }

    /** The tier's one lock. */
    final Object lock = new Object();
    /** What the tier tells its listener. */
    final TierEvents events = new TierEvents();
    /** What the tier's stats report. */
    final TierCounters counters = new TierCounters();

    private final String label;
    private final String name;
    private final KvLayout layout;
    private final long fingerprint;
    private final int capacity;
    private final Move put;
    private final Move load;
    private final Removal remove;
    private final Lookup lookup;
    private final IntSupplier size;
    private boolean closed; // guarded by lock

    /**
     * The frame of a tier named {@code name} ({@link dev.kvcache.KvTier#name()}) of {@code capacity}
     * blocks of {@code layout}, called {@code label} in its errors ("HostTier is closed"), running
     * {@code put}, {@code load}, {@code remove} and {@code lookup} as the bodies of those calls;
     * {@code size} says how many blocks it holds (under the lock).
     */
    TierFrame(String label, String name, KvLayout layout, int capacity, Move put, Move load, Removal remove,
            Lookup lookup, IntSupplier size) {
        this.label = label;
        this.name = name;
        this.layout = layout;
        this.fingerprint = TierEntry.fingerprint(layout);
        this.capacity = capacity;
        this.put = put;
        this.load = load;
        this.remove = remove;
        this.lookup = lookup;
        this.size = size;
    }

    /** The layout's fingerprint ({@link TierEntry#fingerprint(KvLayout)}). */
    long fingerprint() {
        return fingerprint;
    }

    /** Throws IllegalStateException once the tier is closed; under the lock. */
    void checkOpen() {
        if (closed) {
            throw new IllegalStateException(label + " is closed");
        }
    }

    /** Whether the tier is closed; under the lock. */
    boolean closed() {
        return closed;
    }


    /** {@link dev.kvcache.KvTier#leadingHits}: checks, then the lookup body under the lock. */
    int leadingHits(PrefixKey[] keys, int from, int count) {
        Objects.requireNonNull(keys, "keys");
        Objects.checkFromIndexSize(from, count, keys.length);
        synchronized (lock) {
            checkOpen();
            return lookup.leadingHits(keys, from, count);
        }
    }

    /** {@link dev.kvcache.KvTier#put}: checks, then the put body under the lock, then the flush. */
    boolean put(TierEntry entry, KvStore store, int block) {
        try {
            Objects.requireNonNull(entry, "entry");
            Objects.requireNonNull(store, "store");
            synchronized (lock) {
                checkOpen();
                TierChecks.entryLayout(entry, fingerprint, layout);
                if (!TierChecks.storeLayout(store, layout)) {
                    counters.refusedPuts++;
                    return false;
                }
                return put.apply(entry, store, block);
            }
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    /** {@link dev.kvcache.KvTier#load}: checks, then the load body under the lock, then the flush. */
    boolean load(TierEntry expected, KvStore store, int block) {
        try {
            Objects.requireNonNull(expected, "expected");
            Objects.requireNonNull(store, "store");
            synchronized (lock) {
                checkOpen();
                return load.apply(expected, store, block);
            }
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    /** {@link dev.kvcache.KvTier#remove}: checks, then the remove body under the lock, then the flush. */
    boolean remove(PrefixKey key) {
        try {
            Objects.requireNonNull(key, "key");
            synchronized (lock) {
                checkOpen();
                return remove.apply(key);
            }
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    /**
     * Sets (or with null removes) the listener and, under the lock, runs {@code replay}, which
     * records every block held now; then flushes.
     */
    void listener(KvCacheListener l, Runnable replay) {
        synchronized (lock) {
            checkOpen();
            events.set(l);
            replay.run();
        }
        events.flush();
    }

    /** {@link dev.kvcache.KvTier#stats()}: a consistent snapshot, under the lock. */
    TierStats stats() {
        synchronized (lock) {
            return counters.stats(name, size.getAsInt(), layout.bytesPerBlock(), capacity);
        }
    }

    /**
     * {@link dev.kvcache.KvTier#close()}, once: marks the tier closed and runs {@code closing} in
     * the same hold of the lock, then {@code after} (which may take the lock again itself), then
     * flushes. A second close does nothing but flush.
     */
    void close(Runnable closing, Runnable after) {
        try {
            synchronized (lock) {
                if (closed) {
                    return;
                }
                closed = true;
                closing.run();
            }
            after.run();
        } finally {
            events.flush();
        }
    }
}
