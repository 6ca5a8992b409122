package dev.kvcache.redis;

/** Small waits shared by the module's background threads. */
final class RedisTimeouts {

    private RedisTimeouts() {
    }

    /** Sleeps {@code ms}, keeping the interrupt flag. */
    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
