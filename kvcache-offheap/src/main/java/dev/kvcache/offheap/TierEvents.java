package dev.kvcache.offheap;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;

import java.util.ArrayDeque;

/**
 * What a tier tells a listener about the blocks it holds, as the manager's own
 * {@link KvCacheEvent}s: {@code BlockStored} when it starts holding a block, {@code BlockRemoved}
 * when it stops (an eviction, a replacement, a failed verification, a remove),
 * {@code AllBlocksCleared} when it closes. {@code block} is -1 in both: a tier's copy has no
 * block of the store. This is what a KV-event publisher needs to report the tier's medium (vLLM's
 * {@code "CPU"}, {@code "DISK"}) next to the store's, so that a router knows a prefix is one load
 * away on that instance.
 *
 * <p><b>Delivery.</b> The tier records events under its lock, in the order of its changes
 * ({@link #stored}, {@link #removed}, {@link #cleared}), and calls {@link #flush} after the lock is
 * released, once the change is whole. Flushes are serialized by a lock of their own, so events
 * reach the listener in the order they were recorded even when several threads change the tier.
 * A listener may therefore call the tier: its call changes a consistent tier, and the events of
 * that call are delivered by the same drain, after the ones already recorded. An exception a
 * listener throws is counted and otherwise ignored: the tier's state has changed already, and a
 * router that misses an event routes worse, never to wrong KV (an engine verifies every hit).
 * A flush must never be called with the tier's lock held (a listener calling the tier from
 * another thread would wait for it).
 */
final class TierEvents {

    private static final System.Logger LOG = System.getLogger(TierEvents.class.getName());

    /** An event and the listener that was set when it was recorded. */
    private record Pending(KvCacheListener listener, KvCacheEvent event) {
    }

    private volatile KvCacheListener listener;
    private final ArrayDeque<Pending> pending = new ArrayDeque<>(); // guarded by itself
    private final Object delivery = new Object();
    private long failures; // guarded by delivery

    /** Sets (or with null, removes) the listener; under the tier's lock. */
    void set(KvCacheListener l) {
        listener = l;
    }

    void stored(TierEntry e) {
        KvCacheListener l = listener;
        if (l != null) {
            PrefixKey p = e.parentKey();
            record(l, new KvCacheEvent.BlockStored(-1, e.key().hi(), p == null ? KvCacheManager.ROOT_HASH : p.hi(), e.salt(),
                    e.tokens().clone(), e.key(), p, e.scope()));
        }
    }

    void removed(PrefixKey k) {
        KvCacheListener l = listener;
        if (l != null) {
            record(l, new KvCacheEvent.BlockRemoved(-1, k.hi(), k));
        }
    }

    void cleared() {
        KvCacheListener l = listener;
        if (l != null) {
            record(l, new KvCacheEvent.AllBlocksCleared());
        }
    }

    private void record(KvCacheListener l, KvCacheEvent e) {
        synchronized (pending) {
            pending.add(new Pending(l, e));
        }
    }

    /** Delivers what was recorded, in order; outside the tier's lock. */
    void flush() {
        synchronized (delivery) { // reentrant: a listener's own call to the tier drains here too
            while (true) {
                Pending p;
                synchronized (pending) {
                    p = pending.poll();
                }
                if (p == null) {
                    return;
                }
                try {
                    p.listener().onEvent(p.event());
                } catch (RuntimeException x) {
                    if (failures++ == 0) {
                        LOG.log(System.Logger.Level.WARNING, "a tier's event listener threw (counted, ignored from now on): " + x, x);
                    }
                }
            }
        }
    }

    /** Listener exceptions so far. */
    long failures() {
        synchronized (delivery) {
            return failures;
        }
    }
}
