package dev.kvcache;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * What the manager tells others, held back until a change is complete.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>Nothing outside the manager runs while its state is half changed: an operation records
 *       events and released blocks here, and {@link #flush} delivers them once the state is
 *       consistent again (still under the lock, so every listener sees events in the order the
 *       changes happened).</li>
 *   <li>A listener or store that throws cannot undo or corrupt a change: the exception is counted
 *       ({@link #errors()}), logged once per kind at WARNING, and the rest are still told.</li>
 *   <li>An operation that fails and rolls back calls {@link #discard} and tells nobody.</li>
 * </ul>
 * Without listeners no event object is made, so the decode path allocates nothing.
 */
final class Notifications {

    private static final System.Logger LOG = System.getLogger(KvCacheManager.class.getName());

    private final KvStore store;
    private final List<KvCacheListener> listeners = new CopyOnWriteArrayList<>();
    private final List<KvCacheEvent> events = new ArrayList<>();
    private int[] released = new int[16];
    private int releasedCount;
    private long errors;
    private boolean listenerLogged;
    private boolean storeLogged;

    Notifications(KvStore store) {
        this.store = store;
    }

    void addListener(KvCacheListener l) {
        listeners.add(l);
    }

    boolean removeListener(KvCacheListener l) {
        return listeners.remove(l);
    }

    /** True when someone listens: only then are events (and the keys in them) made. */
    boolean listening() {
        return !listeners.isEmpty();
    }

    void event(KvCacheEvent e) {
        events.add(e);
    }

    /** Block {@code b} went back to the empty pool: the store is told at {@link #flush}. */
    void blockReleased(int b) {
        if (store == null) {
            return;
        }
        if (releasedCount == released.length) {
            released = Arrays.copyOf(released, releasedCount * 2);
        }
        released[releasedCount++] = b;
    }

    /** Forgets what an operation that rolled back had recorded. */
    void discard() {
        events.clear();
        releasedCount = 0;
    }

    /**
     * Delivers what the finished operation recorded. A callback's exception or error is counted and
     * the rest are still told; only a {@link VirtualMachineError} (out of memory, stack overflow)
     * propagates, after everything recorded has been cleared so nothing is delivered twice.
     */
    void flush() {
        if (releasedCount == 0 && events.isEmpty()) {
            return;
        }
        VirtualMachineError fatal = null;
        try {
            for (int i = 0; i < releasedCount; i++) {
                try {
                    store.blockReleased(released[i]);
                } catch (VirtualMachineError e) {
                    fatal = fatal == null ? e : fatal;
                } catch (Throwable e) {
                    errors++;
                    if (!storeLogged) {
                        storeLogged = true;
                        LOG.log(System.Logger.Level.WARNING, "KvStore.blockReleased threw; counted in the ledger, further ones are not logged", e);
                    }
                }
            }
            for (int i = 0; i < events.size(); i++) {
                KvCacheEvent e = events.get(i);
                for (KvCacheListener l : listeners) {
                    try {
                        l.onEvent(e);
                    } catch (VirtualMachineError ex) {
                        fatal = fatal == null ? ex : fatal;
                    } catch (Throwable ex) {
                        errors++;
                        if (!listenerLogged) {
                            listenerLogged = true;
                            LOG.log(System.Logger.Level.WARNING, "a KvCacheListener threw on " + e
                                    + "; counted in the ledger, further ones are not logged", ex);
                        }
                    }
                }
            }
        } finally {
            releasedCount = 0;
            events.clear();
        }
        if (fatal != null) {
            throw fatal;
        }
    }

    /** Listener and store callbacks that threw. */
    long errors() {
        return errors;
    }
}
