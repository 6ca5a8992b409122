package dev.kvcache;

/**
 * Receives {@link KvCacheEvent}s. Called on the thread that mutates the manager, under its lock,
 * in the order the changes happen: keep it short (hand the event to a queue). Events are only
 * allocated while at least one listener is registered.
 */
@FunctionalInterface
public interface KvCacheListener {
    /**
     * One change, after it is complete. An exception thrown here is counted
     * ({@code ledger().callbackErrors()}) and changes nothing.
     *
     * @param event what changed
     */
    void onEvent(KvCacheEvent event);
}
