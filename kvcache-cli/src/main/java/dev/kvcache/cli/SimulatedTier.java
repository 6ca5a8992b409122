package dev.kvcache.cli;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.KvTier;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * The host tier of {@code kvcache simulate}'s {@code + host tier} row: a capacity-bounded LRU
 * {@link KvTier} that keeps {@link TierEntry}s by key and no bytes (the simulator has no KV), so
 * the real manager's demotions and promotions can be replayed at full scale. It behaves as
 * {@code dev.kvcache.offheap.HostTier} does, less the copies:
 * <ul>
 *   <li>capacity = {@code floor(budgetBytes / layout.bytesPerBlock())} blocks; a put into a full
 *       tier evicts the least recently used entry;</li>
 *   <li>a put of a key already held with a matching entry only touches it (a put, no bytes
 *       moved); any other put moves one block, {@code bytesPerBlock} bytes;</li>
 *   <li>{@link #load} verifies the held entry with {@link TierEntry#matches}; a mismatch is a miss
 *       ({@code verificationMisses}) and drops the entry; a match touches it and moves
 *       {@code bytesPerBlock} bytes;</li>
 *   <li>{@link #leadingHits} only looks keys up (asking is not using: the LRU order is kept).</li>
 * </ul>
 * {@link TierStats#copyNanos()} is 0: nothing is copied. The time a copy would take is the
 * simulator's to compute, from {@link TierStats#bytesMoved()} and a host-link bandwidth.
 * Not thread-safe beyond the manager's lock (one manager per tier).
 */
final class SimulatedTier implements KvTier {

    private final long fingerprint;
    private final long bytesPerBlock;
    private final int capacity;
    /** Held entries by key, least recently used first (access order). */
    private final LinkedHashMap<PrefixKey, TierEntry> held = new LinkedHashMap<>(1024, 0.75f, true);
    private long puts;
    private long refusedPuts;
    private long loads;
    private long verificationMisses;
    private long evictions;
    private long bytesMoved;
    private boolean closed;

    /**
     * A tier for blocks of {@code layout} holding at most {@code budgetBytes} bytes.
     *
     * @throws IllegalArgumentException the budget holds less than one block
     */
    SimulatedTier(KvLayout layout, long budgetBytes) {
        Objects.requireNonNull(layout, "layout");
        this.fingerprint = TierEntry.fingerprint(layout);
        this.bytesPerBlock = layout.bytesPerBlock();
        if (budgetBytes < bytesPerBlock) {
            throw new IllegalArgumentException("host budget of " + budgetBytes + " bytes holds less than one block of "
                    + bytesPerBlock + " bytes");
        }
        this.capacity = (int) Math.min(Integer.MAX_VALUE, budgetBytes / bytesPerBlock);
    }

    @Override
    public String name() {
        return "host";
    }

    /** The most blocks it holds. */
    int capacityBlocks() {
        return capacity;
    }

    @Override
    public int leadingHits(PrefixKey[] keys, int from, int count) {
        Objects.checkFromIndexSize(from, count, keys.length);
        checkOpen();
        int n = 0;
        while (n < count && keys[from + n] != null && held.containsKey(keys[from + n])) {
            n++;
        }
        return n;
    }

    @Override
    public boolean put(TierEntry entry, KvStore store, int block) {
        Objects.requireNonNull(entry, "entry");
        checkOpen();
        if (entry.layoutFingerprint() != fingerprint) {
            refusedPuts++;
            return false;
        }
        TierEntry h = held.get(entry.key()); // touches it
        if (h != null && h.matches(entry)) {
            puts++;
            return true;
        }
        if (h == null && held.size() >= capacity) {
            Iterator<Map.Entry<PrefixKey, TierEntry>> lru = held.entrySet().iterator();
            lru.next();
            lru.remove();
            evictions++;
        }
        // a private copy: the caller's token array may be reused
        held.put(entry.key(), new TierEntry(entry.key(), entry.parentKey(), entry.salt(), entry.scope(),
                entry.tokens().clone(), entry.layoutFingerprint()));
        puts++;
        bytesMoved += bytesPerBlock;
        return true;
    }

    @Override
    public boolean load(TierEntry expected, KvStore store, int block) {
        Objects.requireNonNull(expected, "expected");
        checkOpen();
        TierEntry h = held.get(expected.key()); // touches it
        if (h == null) {
            return false;
        }
        if (!h.matches(expected)) {
            held.remove(expected.key());
            verificationMisses++;
            return false;
        }
        loads++;
        bytesMoved += bytesPerBlock;
        return true;
    }

    @Override
    public boolean remove(PrefixKey key) {
        checkOpen();
        return held.remove(key) != null;
    }

    @Override
    public TierStats stats() {
        return new TierStats(name(), held.size(), held.size() * bytesPerBlock, capacity * bytesPerBlock, puts,
                refusedPuts, loads, verificationMisses, evictions, bytesMoved, 0L);
    }

    @Override
    public void close() {
        closed = true;
        held.clear();
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("simulated tier is closed");
        }
    }
}
