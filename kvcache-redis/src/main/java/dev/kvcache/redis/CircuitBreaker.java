package dev.kvcache.redis;

import java.util.function.LongSupplier;

/**
 * Stops asking a server that keeps failing. Closed: every call goes through; after
 * {@code threshold} consecutive failures it opens for {@code openNanos}, and callers skip Redis
 * (a miss, a dropped write) without waiting on anything. Then one caller at a time probes
 * (half-open): a success closes it, a failure opens it again for another period. Thread-safe;
 * {@link #allow()} costs one volatile read while closed.
 */
final class CircuitBreaker {

    private final int threshold;
    private final long openNanos;
    private final LongSupplier clock;
    private volatile long openUntil = Long.MIN_VALUE;   // MIN_VALUE: closed
    private int consecutive;
    private boolean probing;
    private long opened;

    CircuitBreaker(int threshold, long openNanos, LongSupplier clock) {
        this.threshold = threshold;
        this.openNanos = openNanos;
        this.clock = clock;
    }

    /** Whether a call may go to Redis now. */
    boolean allow() {
        if (openUntil == Long.MIN_VALUE) {
            return true;
        }
        synchronized (this) {
            if (openUntil == Long.MIN_VALUE) {
                return true;
            }
            if (clock.getAsLong() - openUntil < 0 || probing) {
                return false;
            }
            probing = true; // half-open: this caller probes
            return true;
        }
    }

    synchronized void success() {
        consecutive = 0;
        probing = false;
        openUntil = Long.MIN_VALUE;
    }

    synchronized void failure() {
        probing = false;
        if (++consecutive >= threshold) {
            if (openUntil == Long.MIN_VALUE) {
                opened++;
            }
            openUntil = clock.getAsLong() + openNanos;
        }
    }

    /** Whether it is open (or half-open) now. */
    boolean isOpen() {
        return openUntil != Long.MIN_VALUE;
    }

    /** How many times it went from closed to open. */
    synchronized long opened() {
        return opened;
    }
}
