package dev.kvcache.offheap;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;

/**
 * What a tier tells a listener about the blocks it holds, as the manager's own
 * {@link KvCacheEvent}s: {@code BlockStored} when it starts holding a block, {@code BlockRemoved}
 * when it stops (an eviction, a replacement, a failed verification, a remove),
 * {@code AllBlocksCleared} when it closes. {@code block} is -1 in both: a tier's copy has no
 * block of the store. This is what a KV-event publisher needs to report the tier's medium (vLLM's
 * {@code "CPU"}, {@code "DISK"}) next to the store's, so that a router knows a prefix is one load
 * away on that instance.
 *
 * <p>Called under the tier's lock, after the change: a listener must not block or call the tier.
 * An exception it throws is counted and otherwise ignored; the tier's state has changed already
 * and stays consistent, and a router that misses an event routes worse, never to wrong KV (an
 * engine verifies every hit itself).
 */
final class TierEvents {

    private static final System.Logger LOG = System.getLogger(TierEvents.class.getName());

    private volatile KvCacheListener listener;
    private long failures;

    /** Sets (or with null, removes) the listener. */
    void set(KvCacheListener l) {
        listener = l;
    }

    boolean active() {
        return listener != null;
    }

    void stored(TierEntry e) {
        KvCacheListener l = listener;
        if (l != null) {
            PrefixKey p = e.parentKey();
            emit(l, new KvCacheEvent.BlockStored(-1, e.key().hi(), p == null ? KvCacheManager.ROOT_HASH : p.hi(), e.salt(),
                    e.tokens().clone(), e.key(), p, e.scope()));
        }
    }

    void removed(PrefixKey k) {
        KvCacheListener l = listener;
        if (l != null) {
            emit(l, new KvCacheEvent.BlockRemoved(-1, k.hi(), k));
        }
    }

    void cleared() {
        KvCacheListener l = listener;
        if (l != null) {
            emit(l, new KvCacheEvent.AllBlocksCleared());
        }
    }

    /** Listener exceptions so far (under the tier's lock). */
    long failures() {
        return failures;
    }

    private void emit(KvCacheListener l, KvCacheEvent e) {
        try {
            l.onEvent(e);
        } catch (RuntimeException x) {
            if (failures++ == 0) {
                LOG.log(System.Logger.Level.WARNING, "a tier's event listener threw (counted, ignored from now on): " + x, x);
            }
        }
    }
}
