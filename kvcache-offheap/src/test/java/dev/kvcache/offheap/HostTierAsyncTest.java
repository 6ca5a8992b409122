package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import static dev.kvcache.offheap.HostTierTest.BLOCK_TOKENS;
import static dev.kvcache.offheap.HostTierTest.entry;
import static dev.kvcache.offheap.HostTierTest.export;
import static dev.kvcache.offheap.HostTierTest.fill;
import static dev.kvcache.offheap.HostTierTest.key;
import static dev.kvcache.offheap.HostTierTest.layout;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** HostTier with {@link HostTier.Checksum#ASYNC}: the background checksum and its invariants. */
class HostTierAsyncTest {

    static final HostTier.Checksum ASYNC = HostTier.Checksum.ASYNC;

    static java.util.List<KvFormat> someFormats() {
        return java.util.List.of(KvFormats.F32, KvFormats.F16, KvFormats.Q8_0, KvFormats.Q4_0);
    }

    static void awaitSettled(HostTier tier) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (tier.pendingChecksums() != 0) {
            assertTrue(System.nanoTime() < deadline, "checksums still pending after 10 s");
            Thread.sleep(1);
        }
    }

    static void awaitWaiting(Thread t) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (t.getState() != Thread.State.WAITING && t.getState() != Thread.State.TIMED_WAITING) {
            assertTrue(t.isAlive(), "the thread ended instead of waiting");
            assertTrue(System.nanoTime() < deadline, "the thread does not wait: " + t.getState());
            Thread.sleep(1);
        }
    }

    static void assertChecksumRight(HostTier tier, PrefixKey k) {
        int[] c = tier.checksumsForTest(k);
        assertNotNull(c, "held and settled");
        assertEquals(c[1], c[0], "the recorded checksum is the one of the slot's bytes");
    }

    @Test
    void theDefaultIsSynchronousAndStartsNoThread() {
        KvLayout l = layout(KvFormats.F16);
        try (HostTier tier = HostTier.allocate(l, l.bytesPerBlock())) {
            assertSame(HostTier.Checksum.SYNC, tier.checksumMode());
            assertNull(tier.checksumThreadForTest());
        }
        assertThrows(NullPointerException.class, () -> HostTier.allocate(l, l.bytesPerBlock(), null));
    }

    /** Put, let the checksum settle, overwrite the store block, load: the exported bytes come back. */
    @ParameterizedTest
    @MethodSource("someFormats")
    void asyncPutThenLoadIsByteIdentical(KvFormat f) throws Exception {
        KvLayout l = layout(f);
        SplittableRandom r = new SplittableRandom(f.name().hashCode());
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3);
             HostTier tier = HostTier.allocate(l, 2 * l.bytesPerBlock(), ASYNC)) {
            assertSame(ASYNC, tier.checksumMode());
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] a = export(store, 0);
            byte[] b = export(store, 1);
            assertTrue(tier.put(entry(l, 0), store, 0));
            assertTrue(tier.put(entry(l, 1), store, 1));
            awaitSettled(tier);
            assertChecksumRight(tier, key(0));
            assertChecksumRight(tier, key(1));
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            assertTrue(tier.load(entry(l, 0), store, 2));
            assertArrayEquals(a, export(store, 2), f.name());
            assertTrue(tier.load(entry(l, 1), store, 0));
            assertArrayEquals(b, export(store, 0), f.name());
            TierStats s = tier.stats();
            assertEquals(2, s.blocks());
            assertEquals(2, s.puts());
            assertEquals(2, s.loads());
            assertEquals(4 * l.bytesPerBlock(), s.bytesMoved());
            assertEquals(0, s.verificationMisses() + s.refusedPuts() + s.evictions());
            assertTrue(s.copyNanos() > 0);
        }
    }

    /** With the thread held, a load of a pending slot takes the checksum itself and is served. */
    @ParameterizedTest
    @MethodSource("someFormats")
    void aLoadOfAPendingSlotChecksumsItFirst(KvFormat f) throws Exception {
        KvLayout l = layout(f);
        SplittableRandom r = new SplittableRandom(3);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
             HostTier tier = HostTier.allocate(l, 2 * l.bytesPerBlock(), ASYNC)) {
            tier.holdChecksumsForTest(true);
            fill(store, 0, BLOCK_TOKENS, r);
            byte[] a = export(store, 0);
            assertTrue(tier.put(entry(l, 0), store, 0));
            assertEquals(1, tier.pendingChecksums());
            assertNull(tier.checksumsForTest(key(0)), "pending");
            assertEquals(1, tier.stats().blocks(), "a pending slot is held");
            assertTrue(tier.load(entry(l, 0), store, 1));
            assertArrayEquals(a, export(store, 1));
            assertEquals(0, tier.pendingChecksums(), "the load took it");
            assertChecksumRight(tier, key(0));
            tier.holdChecksumsForTest(false); // the queued one is stale now: skipped
            Thread.sleep(5);
            assertChecksumRight(tier, key(0));
            assertTrue(tier.load(entry(l, 0), store, 1));
            assertEquals(2, tier.stats().loads());
        }
    }

    /**
     * A copy corrupted right after its put (the thread held, or racing it) is a counted miss:
     * the hook models a fault after the tier's checksum, as in SYNC mode.
     */
    @Test
    void aCopyCorruptedRightAfterAnAsyncPutIsACountedMiss() throws Exception {
        KvLayout l = layout(KvFormats.Q8_0);
        SplittableRandom r = new SplittableRandom(5);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
             HostTier tier = HostTier.allocate(l, 2 * l.bytesPerBlock(), ASYNC)) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] target = export(store, 1);
            tier.holdChecksumsForTest(true);
            assertTrue(tier.put(entry(l, 0), store, 0));
            assertTrue(tier.corruptForTest(key(0), r.nextLong(l.bytesPerBlock())));
            assertFalse(tier.load(entry(l, 0), store, 1));
            assertArrayEquals(target, export(store, 1), "nothing loaded");
            assertEquals(1, tier.stats().verificationMisses());
            assertEquals(0, tier.stats().blocks());
            tier.holdChecksumsForTest(false);
            for (int i = 0; i < 200; i++) { // racing the thread
                TierEntry e = entry(l, 10 + i);
                assertTrue(tier.put(e, store, 0));
                assertTrue(tier.corruptForTest(e.key(), r.nextLong(l.bytesPerBlock())));
                assertFalse(tier.load(e, store, 1), "round " + i);
            }
            assertArrayEquals(target, export(store, 1));
            TierStats s = tier.stats();
            assertEquals(201, s.verificationMisses());
            assertEquals(0, s.loads());
            assertEquals(0, s.blocks());
            assertEquals(0, tier.pendingChecksums());
        }
    }

    /** A load of the slot whose checksum the thread is taking waits for that pass and is verified. */
    @Test
    void aLoadRacingTheBackgroundChecksumWaitsAndIsVerified() throws Exception {
        KvLayout l = layout(KvFormats.F16);
        SplittableRandom r = new SplittableRandom(9);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
             HostTier tier = HostTier.allocate(l, 2 * l.bytesPerBlock(), ASYNC)) {
            CountDownLatch entered = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            tier.beforeChecksumForTest = () -> {
                entered.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
            };
            fill(store, 0, BLOCK_TOKENS, r);
            byte[] a = export(store, 0);
            assertTrue(tier.put(entry(l, 0), store, 0));
            assertTrue(entered.await(10, TimeUnit.SECONDS));
            tier.beforeChecksumForTest = null;
            AtomicBoolean loaded = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread t = new Thread(() -> {
                try {
                    loaded.set(tier.load(entry(l, 0), store, 1));
                } catch (Throwable e) {
                    failure.set(e);
                }
            });
            t.start();
            awaitWaiting(t);
            assertEquals(0, tier.stats().loads(), "it waits for the busy slot");
            release.countDown();
            t.join(10_000);
            assertFalse(t.isAlive());
            assertNull(failure.get());
            assertTrue(loaded.get());
            assertArrayEquals(a, export(store, 1));
            assertEquals(0, tier.pendingChecksums());
            assertChecksumRight(tier, key(0));
            assertEquals(0, tier.stats().verificationMisses());
        }
    }

    /** A slot dropped and reused while its checksum is queued gets the checksum of its new bytes. */
    @Test
    void aSlotReusedWhileItsChecksumIsQueuedGetsItsNewChecksum() throws Exception {
        KvLayout l = layout(KvFormats.Q4_0);
        SplittableRandom r = new SplittableRandom(13);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3);
             HostTier tier = HostTier.allocate(l, 2 * l.bytesPerBlock(), ASYNC)) { // queue of 2
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] b = export(store, 1);
            tier.holdChecksumsForTest(true);
            assertTrue(tier.put(entry(l, 0), store, 0)); // slot 0, queued at generation g
            assertTrue(tier.remove(key(0)));              // slot 0 back at the head of the free chain
            assertEquals(0, tier.pendingChecksums(), "a dropped slot is no longer pending");
            assertTrue(tier.put(entry(l, 1), store, 1)); // slot 0 again, queued at a later generation
            assertEquals(1, tier.pendingChecksums());
            assertNull(tier.checksumsForTest(key(1)), "queued, not taken synchronously");
            tier.holdChecksumsForTest(false); // two queued entries for the slot; the first is stale
            awaitSettled(tier);
            assertChecksumRight(tier, key(1));
            assertFalse(tier.load(entry(l, 0), store, 2));
            assertTrue(tier.load(entry(l, 1), store, 2));
            assertArrayEquals(b, export(store, 2));
            assertEquals(0, tier.stats().verificationMisses());
        }
    }

    /**
     * A slot removed while the thread reads it: the thread's result is not published (generation),
     * and a put that would take the freed slot waits for that pass, then gets its own checksum.
     */
    @Test
    void aBusySlotIsNotReusedAndItsStaleChecksumIsNotPublished() throws Exception {
        KvLayout l = layout(KvFormats.Q8_0);
        SplittableRandom r = new SplittableRandom(17);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3);
             HostTier tier = HostTier.allocate(l, l.bytesPerBlock(), ASYNC)) { // one slot
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] b = export(store, 1);
            CountDownLatch entered = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            tier.beforeChecksumForTest = () -> {
                entered.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
            };
            assertTrue(tier.put(entry(l, 0), store, 0));
            assertTrue(entered.await(10, TimeUnit.SECONDS));
            tier.beforeChecksumForTest = null;
            assertTrue(tier.remove(key(0)), "a busy slot can be dropped");
            assertEquals(0, tier.pendingChecksums());
            assertEquals(0, tier.stats().blocks());
            AtomicBoolean put = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread t = new Thread(() -> {
                try {
                    put.set(tier.put(entry(l, 1), store, 1));
                } catch (Throwable e) {
                    failure.set(e);
                }
            });
            t.start();
            awaitWaiting(t); // the only slot is busy: it is not overwritten
            assertEquals(1, tier.stats().puts());
            release.countDown();
            t.join(10_000);
            assertFalse(t.isAlive());
            assertNull(failure.get());
            assertTrue(put.get());
            awaitSettled(tier);
            assertChecksumRight(tier, key(1));
            assertTrue(tier.load(entry(l, 1), store, 2));
            assertArrayEquals(b, export(store, 2));
            assertEquals(0, tier.stats().verificationMisses());
        }
    }

    /** A full queue: the put takes the checksum itself; nothing is dropped. */
    @Test
    void aFullQueueFallsBackToASynchronousChecksum() throws Exception {
        KvLayout l = layout(KvFormats.F16);
        SplittableRandom r = new SplittableRandom(19);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 7);
             HostTier tier = HostTier.allocate(l, 4 * l.bytesPerBlock(), ASYNC)) { // queue of 4
            byte[][] content = new byte[6][];
            for (int k = 0; k < 6; k++) {
                fill(store, k, BLOCK_TOKENS, r);
                content[k] = export(store, k);
            }
            tier.holdChecksumsForTest(true);
            for (int k = 0; k < 6; k++) {
                assertTrue(tier.put(entry(l, k), store, k));
            }
            // 0..3 queued; 4 and 5 found the queue full and evicted 0 and 1 (no longer pending)
            assertEquals(2, tier.pendingChecksums());
            assertChecksumRight(tier, key(4));
            assertChecksumRight(tier, key(5));
            assertNull(tier.checksumsForTest(key(2)), "still pending");
            TierStats s = tier.stats();
            assertEquals(4, s.blocks());
            assertEquals(6, s.puts());
            assertEquals(2, s.evictions());
            tier.holdChecksumsForTest(false);
            awaitSettled(tier);
            for (int k = 2; k < 6; k++) {
                assertChecksumRight(tier, key(k));
                assertTrue(tier.load(entry(l, k), store, 6));
                assertArrayEquals(content[k], export(store, 6), "key " + k);
            }
            assertEquals(0, tier.stats().verificationMisses());
        }
    }

    /** close() stops and joins the checksum thread, also with work queued or a pass under way. */
    @Test
    void closeJoinsTheChecksumThread() throws Exception {
        KvLayout l = layout(KvFormats.F16);
        SplittableRandom r = new SplittableRandom(23);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2)) {
            fill(store, 0, BLOCK_TOKENS, r);
            // idle
            HostTier idle = HostTier.allocate(l, 2 * l.bytesPerBlock(), ASYNC);
            Thread w = idle.checksumThreadForTest();
            assertTrue(w.isAlive() && w.isDaemon());
            assertTrue(w.getName().startsWith("kvcache-HostTier-"), w.getName());
            assertTrue(idle.put(entry(l, 0), store, 0));
            awaitSettled(idle);
            idle.close();
            assertFalse(w.isAlive());
            assertNoLiveThreadNamed(w.getName());
            idle.close(); // idempotent
            assertThrows(IllegalStateException.class, () -> idle.load(entry(l, 0), store, 1));

            // work queued and held
            HostTier held = HostTier.allocate(l, 2 * l.bytesPerBlock(), ASYNC);
            held.holdChecksumsForTest(true);
            assertTrue(held.put(entry(l, 0), store, 0));
            Thread w2 = held.checksumThreadForTest();
            held.close();
            assertFalse(w2.isAlive());
            assertEquals(0, held.stats().blocks());
            assertEquals(0, held.pendingChecksums());

            // a pass under way: close waits for it
            HostTier busy = HostTier.allocate(l, 2 * l.bytesPerBlock(), ASYNC);
            CountDownLatch entered = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            busy.beforeChecksumForTest = () -> {
                entered.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
            };
            assertTrue(busy.put(entry(l, 0), store, 0));
            assertTrue(entered.await(10, TimeUnit.SECONDS));
            Thread w3 = busy.checksumThreadForTest();
            Thread closer = new Thread(busy::close);
            closer.start();
            awaitWaiting(closer);
            assertTrue(w3.isAlive());
            release.countDown();
            closer.join(10_000);
            assertFalse(closer.isAlive());
            assertFalse(w3.isAlive());
            assertNoLiveThreadNamed(w3.getName());
            assertThrows(IllegalStateException.class, () -> busy.put(entry(l, 1), store, 0));
        }
    }

    static void assertNoLiveThreadNamed(String name) {
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            assertFalse(t.isAlive() && t.getName().equals(name), "live thread " + name);
        }
    }
}
