package dev.kvcache.redis;

import dev.kvcache.PrefixKey;

import java.nio.ByteBuffer;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The values a {@link RedisTier}'s lookups fetched and its loads have not consumed yet, oldest
 * first, within a byte budget ({@link RedisTier.Builder#prefetchBytes}).
 *
 * <p>Ownership is the invariant: a value in here is owned by this map and by nothing else; it
 * leaves either by {@link #take} (the caller then owns its buffer and gives it back to the
 * {@link ValueBuffers} pool after its last read) or by being dropped here, which gives its buffer
 * back at once. So a pooled buffer is never read by two owners, and a value replaced under the
 * same key cannot be served after its buffer was reused. Not thread-safe: the tier calls it under
 * its lookup lock.
 */
final class PrefetchedValues {

    /** A value a lookup fetched, already found {@code BlockValue.intact} (payload at {@code at}). */
    record Fetched(ByteBuffer value, int at) {
    }

    private final LinkedHashMap<PrefixKey, Fetched> values = new LinkedHashMap<>();
    private final long budget;
    private final ValueBuffers buffers;
    private long bytes;

    PrefetchedValues(long budget, ValueBuffers buffers) {
        this.budget = budget;
        this.buffers = buffers;
    }

    /** Keeps {@code value} (payload at {@code at}) for {@code key}, dropping an older one for it. */
    void keep(PrefixKey key, ByteBuffer value, int at) {
        Fetched old = values.put(key, new Fetched(value, at));
        if (old != null) {
            drop(old);
        }
        bytes += value.remaining();
    }

    /** Drops the oldest values until {@code need} more bytes fit in the budget. */
    void makeRoom(long need) {
        Iterator<Map.Entry<PrefixKey, Fetched>> it = values.entrySet().iterator();
        while (bytes + need > budget && it.hasNext()) {
            Fetched f = it.next().getValue();
            it.remove();
            drop(f);
        }
    }

    /**
     * Takes the value kept for {@code key} out: the caller owns its buffer from now on.
     *
     * @return the value, or null if none is kept
     */
    Fetched take(PrefixKey key) {
        Fetched f = values.remove(key);
        if (f != null) {
            bytes -= f.value().remaining();
        }
        return f;
    }

    /** Drops the value kept for {@code key}, if any, and gives its buffer back. */
    void discard(PrefixKey key) {
        Fetched f = values.remove(key);
        if (f != null) {
            drop(f);
        }
    }

    /** Forgets every value without giving buffers back (closing: the GC frees them, like the pool's). */
    void clear() {
        values.clear();
        bytes = 0;
    }

    /** Value bytes kept now (for tests). */
    long bytes() {
        return bytes;
    }

    private void drop(Fetched f) {
        bytes -= f.value().remaining();
        buffers.release(f.value());
    }
}
