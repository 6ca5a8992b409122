package dev.kvcache;

/**
 * Receives {@link KvCacheEvent}s. Called on the thread that mutates the manager, under its lock,
 * in the order the changes happen: keep it short (hand the event to a queue). Events are only
 * allocated while at least one listener is registered.
 */
@FunctionalInterface
public interface KvCacheListener {
    void onEvent(KvCacheEvent event);
}
