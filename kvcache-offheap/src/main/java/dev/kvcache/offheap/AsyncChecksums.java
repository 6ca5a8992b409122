package dev.kvcache.offheap;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import java.util.zip.CRC32C;

/**
 * The background checksums of a {@link HostTier.Checksum#ASYNC} {@link HostTier}: per slot a
 * generation and a pending flag, a bounded ring of queued {@code (slot, generation)}, and one
 * daemon thread ({@code "kvcache-HostTier-<n>-checksum"}) that takes the CRC32C of a queued slot
 * outside the tier's lock and publishes it under the lock. It shares the tier's lock, slot index,
 * slot memory, checksum array and counters; every method but the thread's own loop and
 * {@link #join()} is called with the tier's lock held. Invariants, under the lock at every return,
 * on top of {@link SlotIndex}'s:
 * <ul>
 *   <li>every slot has a generation, bumped whenever its content or its holder changes (a put
 *       into it, a drop); a queued checksum is {@code (slot, generation)} and is computed only if
 *       the slot is still held, still pending, at that generation;</li>
 *   <li>at most one slot is <em>busy</em>: the one whose bytes the thread is reading, outside the
 *       lock. A busy slot is never written, reused or freed: a put that would take it (it is the
 *       LRU tail, or the head of the free chain), a load of it, {@code corruptForTest} and
 *       {@code close()} wait ({@link #awaitNotBusy()}) until the thread has finished that one pass
 *       (one CRC32C of one block: bounded), then start over;</li>
 *   <li>the thread publishes its result under the lock, and only if the slot's generation is the
 *       one it read: a slot dropped meanwhile keeps no stale checksum;</li>
 *   <li>a load of a pending slot takes its checksum itself first (under the lock, as a
 *       synchronous put would have) and {@link #settle}s it, so no load is served from a slot
 *       without one; a load of the busy slot waits for it;</li>
 *   <li>the queue is bounded (at most {@code min(capacity, 1024)} entries); a put finding it full
 *       ({@link #hasRoom()} false) takes the checksum synchronously. A checksum is never dropped,
 *       a put never waits for the queue;</li>
 *   <li>{@link #stop()} (under the lock) and {@link #join()} (outside it) end the thread before
 *       the tier frees the memory; it finishes at most one pass first.</li>
 * </ul>
 * A pass that throws publishes nothing: the slot stays pending and a load takes its checksum.
 */
final class AsyncChecksums {

    private static final int NONE = SlotIndex.NONE;
    private static final int MAX_QUEUE = 1024;
    private static final AtomicInteger SERIAL = new AtomicInteger();

    private final Object lock;
    private final SlotIndex index;
    private final MemorySegment memory;
    private final long slotBytes;
    private final int[] crcs;
    private final TierCounters counters;
    private final Supplier<Runnable> beforeChecksum;

    /** Per slot: bumped on every put into it and every drop of it. */
    private final int[] generation;
    /** Per slot: held, its checksum not taken yet. */
    private final boolean[] pending;
    private int pendingCount;
    /** Ring of queued (slot << 32 | generation). */
    private final long[] queue;
    private int queueHead;
    private int queueSize;
    /** The slot the checksum thread is reading outside the lock, or NONE. */
    private int busy = NONE;
    private boolean hold;
    private boolean stopped;
    private final Thread worker;

    /**
     * The checksums of a tier's slots; its thread is started.
     *
     * @param lock           the tier's lock
     * @param index          the tier's slots
     * @param memory         the tier's slot memory, slot {@code s} at {@code s * slotBytes}
     * @param slotBytes      the bytes of one slot
     * @param crcs           the tier's per-slot checksums, written here when a pass is published
     * @param counters       the tier's counters (a published pass adds its time to copy nanos)
     * @param beforeChecksum the test hook run before each pass reads its slot (or null inside)
     */
    AsyncChecksums(Object lock, SlotIndex index, MemorySegment memory, long slotBytes, int[] crcs,
            TierCounters counters, Supplier<Runnable> beforeChecksum) {
        this.lock = lock;
        this.index = index;
        this.memory = memory;
        this.slotBytes = slotBytes;
        this.crcs = crcs;
        this.counters = counters;
        this.beforeChecksum = beforeChecksum;
        int capacity = index.capacity();
        this.generation = new int[capacity];
        this.pending = new boolean[capacity];
        this.queue = new long[Math.min(capacity, MAX_QUEUE)];
        Thread w = new Thread(this::loop, "kvcache-HostTier-" + SERIAL.incrementAndGet() + "-checksum");
        w.setDaemon(true);
        this.worker = w;
        w.start();
    }

    /** The checksum thread. */
    Thread thread() {
        return worker;
    }

    /** The slot the thread is reading now, or NONE. */
    int busy() {
        return busy;
    }

    /** Held slots whose checksum is not taken yet. */
    int pendingCount() {
        return pendingCount;
    }

    /** Whether held slot {@code slot} waits for its checksum. */
    boolean isPending(int slot) {
        return pending[slot];
    }

    /** Whether a put may queue its checksum (else it takes it itself). */
    boolean hasRoom() {
        return queueSize < queue.length;
    }

    /** Slot {@code slot} was just recorded by a put; {@code queued}: its checksum is left to the thread (there was room). */
    void recorded(int slot, boolean queued) {
        generation[slot]++;
        if (queued) {
            pending[slot] = true;
            pendingCount++;
            queue[(queueHead + queueSize) % queue.length] = (long) slot << 32 | (generation[slot] & 0xFFFF_FFFFL);
            if (queueSize++ == 0) {
                lock.notifyAll();
            }
        }
    }

    /** Slot {@code slot} was just dropped: a queued or in-flight checksum of it is stale now. */
    void dropped(int slot) {
        generation[slot]++;
        if (pending[slot]) {
            settle(slot);
        }
    }

    /** Marks a pending slot's checksum as no longer pending (taken, or the slot dropped). */
    void settle(int slot) {
        pending[slot] = false;
        pendingCount--;
    }

    /** Test hook: while held, the thread takes nothing from the queue; the caller notifies. */
    void hold(boolean on) {
        hold = on;
    }

    /**
     * Waits (the lock released) until the checksum thread has finished its current pass, which is
     * one CRC32C of one block, or the tier is closed. The caller starts over: anything may have
     * changed. An interrupt is kept for later, not lost.
     */
    void awaitNotBusy() {
        int was = busy;
        boolean interrupted = false;
        while (busy == was && busy != NONE) {
            try {
                lock.wait();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /** The tier is closing: the thread ends at its next look at the queue; the caller notifies. */
    void stop() {
        stopped = true;
    }

    /** Waits (the lock not held) for the thread to end after {@link #stop()}; an interrupt is kept. */
    void join() {
        if (worker == Thread.currentThread()) {
            return;
        }
        boolean interrupted = false;
        while (true) {
            try {
                worker.join(); // it finishes at most one checksum pass, then sees stopped
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /** Forgets every pending slot and queued checksum (the tier has forgotten its slots). */
    void clear() {
        Arrays.fill(pending, false);
        pendingCount = 0;
        queueSize = 0;
    }

    /** The checksum thread: takes (slot, generation) from the queue, checksums outside the lock, publishes. */
    private void loop() {
        CRC32C own = new CRC32C();
        while (true) {
            int slot;
            int gen;
            synchronized (lock) {
                while (!stopped && (queueSize == 0 || hold)) {
                    try {
                        lock.wait();
                    } catch (InterruptedException e) {
                        // only close() stops this thread
                    }
                }
                if (stopped) {
                    return;
                }
                long q = queue[queueHead];
                queueHead = (queueHead + 1) % queue.length;
                queueSize--;
                slot = (int) (q >>> 32);
                gen = (int) q;
                if (index.entry(slot) == null || !pending[slot] || generation[slot] != gen) {
                    continue; // stale: dropped, reused, or taken by a load meanwhile
                }
                busy = slot; // from here no one writes, reuses or frees it until busy is cleared
            }
            int sum = 0;
            long nanos = 0;
            boolean done = false;
            try {
                Runnable hook = beforeChecksum.get();
                if (hook != null) {
                    hook.run();
                }
                long t0 = System.nanoTime();
                own.reset();
                own.update(memory.asSlice(slot * slotBytes, slotBytes).asByteBuffer());
                sum = (int) own.getValue();
                nanos = System.nanoTime() - t0;
                done = true;
            } catch (RuntimeException | Error e) {
                // not published: the slot stays pending and a load takes its checksum itself
            } finally {
                synchronized (lock) {
                    busy = NONE;
                    if (done && generation[slot] == gen && pending[slot] && index.entry(slot) != null) {
                        crcs[slot] = sum;
                        settle(slot);
                        counters.copyNanos += nanos;
                    }
                    lock.notifyAll(); // calls waiting for the busy slot
                }
            }
        }
    }
}
