package dev.kvcache.offheap;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;

import static dev.kvcache.offheap.PagedAttentionTest.assertMessage;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

class HostSwapSpaceTest {

    static List<KvFormat> formats() {
        return KvFormats.all();
    }

    /** Preempt a sequence to host memory, let others overwrite its blocks, bring it back: same attention. */
    @ParameterizedTest
    @MethodSource("formats")
    void preemptAndResumeGivesBitIdenticalAttention(KvFormat f) {
        KvLayout layout = new KvLayout(2, 2, 32, 8, f);
        try (Harness h = new Harness(layout, 12, 17);
             HostSwapSpace swap = HostSwapSpace.allocate(layout, 8)) {
            Sequence s = h.open("victim");
            h.append(s, 43);                     // 5 full blocks + 3 rows (staged for block formats)
            float[] q = Reference.gaussian(h.rnd, 4 * 32, 1);
            float[][] before = new float[2][4 * 32];
            for (int layer = 0; layer < 2; layer++) {
                PagedAttention.decode(h.store, layer, q, 4, s.blockTable(), s.length(), before[layer]);
            }
            long staged = h.store.stagedSlices();
            int[] host = swap.swapOut(h.store, s.blockTable());
            assertNotNull(host);
            assertEquals(6, swap.blocksSwappedOut());
            assertEquals(6 * layout.bytesPerBlock() + staged * h.store.storeLayout().stageBytes(),
                    swap.bytesSwappedOut());
            assertEquals(2, swap.freeBlocks());
            h.manager.free(s);

            Sequence other = h.open("other");    // reuses (and overwrites) the victim's blocks
            h.append(other, 90);
            h.manager.free(other);

            Sequence again = h.open("victim");
            h.append(again, 43);                  // fresh blocks, fresh (wrong) KV
            swap.swapIn(host, h.store, again.blockTable());
            assertEquals(8, swap.freeBlocks());
            assertEquals(swap.bytesSwappedOut(), swap.bytesSwappedIn());
            float[] after = new float[4 * 32];
            for (int layer = 0; layer < 2; layer++) {
                PagedAttention.decode(h.store, layer, q, 4, again.blockTable(), again.length(), after);
                assertArrayEquals(before[layer], after, f + " layer " + layer);
            }
        }
    }

    @Test
    void notEnoughHostBlocksMovesNothingAndBadIdsAreRefused() {
        KvLayout layout = new KvLayout(1, 1, 32, 4, KvFormats.F32);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 8);
             HostSwapSpace swap = HostSwapSpace.allocate(layout, 2)) {
            assertNull(swap.swapOut(store, new int[] {0, 1, 2}));
            assertEquals(0, swap.bytesSwappedOut());
            assertEquals(2, swap.freeBlocks());
            int[] host = swap.swapOut(store, new int[] {-1, 3, 4});
            assertEquals(-1, host[0]);
            assertEquals(0, swap.freeBlocks());
            assertMessage(() -> swap.swapOut(store, new int[] {8}), "deviceBlocks[0] = 8", "[0, 8)");
            assertMessage(() -> swap.swapIn(new int[] {host[1], host[1]}, store, new int[] {1, 2}),
                    "listed twice");
            assertMessage(() -> swap.swapIn(host, store, new int[] {0, 1, 2}), "-1 must line up");
            assertMessage(() -> swap.swapIn(host, store, new int[] {-1, 1}), "deviceBlocks has 2", "3");
            assertMessage(() -> swap.free(new int[] {5}), "hostBlocks[0] = 5", "[0, 2)");
            assertEquals(0, swap.freeBlocks(), "a refused call freed host blocks");
            swap.free(host);
            assertEquals(2, swap.freeBlocks());
            assertMessage(() -> swap.free(host), "holds no swapped-out block");
            try (OffHeapKvStore other = OffHeapKvStore.allocate(layout.withFormat(KvFormats.F16), 2)) {
                assertMessage(() -> swap.swapOut(other, new int[] {0}), "differs");
            }
        }
    }

    @Test
    void closedSpaceOrStoreThrowsIllegalState() {
        KvLayout layout = new KvLayout(1, 1, 32, 4, KvFormats.F32);
        OffHeapKvStore store = OffHeapKvStore.allocate(layout, 2);
        HostSwapSpace swap = HostSwapSpace.allocate(layout, 2);
        swap.close();
        swap.close();
        assertThrows(IllegalStateException.class, () -> swap.swapOut(store, new int[] {0}));
        assertThrows(IllegalStateException.class, swap::freeBlocks);
        store.close();
        try (HostSwapSpace s2 = HostSwapSpace.allocate(layout, 2)) {
            assertThrows(IllegalStateException.class, () -> s2.swapOut(store, new int[] {0}));
        }
    }

    @Test
    void managerCopyOnWriteStillUsesTheStore() {
        // sanity: a manager built over the store copies blocks through it
        KvLayout layout = new KvLayout(1, 1, 32, 4, KvFormats.F32);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4);
             KvCacheManager m = KvCacheManager.builder(layout).prefixCaching(false).store(store).build()) {
            Sequence p = m.open("p");
            m.append(p, 1, 2);
            float[] k = Reference.gaussian(new java.util.SplittableRandom(1), 32, 1);
            store.write(0, p.slot(0), k, k);
            Sequence c = m.fork(p, "c");
            m.append(c, 3);
            float[] out = new float[32];
            store.readKey(0, c.slot(0), out);
            assertArrayEquals(k, out);
            m.free(c);
            m.free(p);
        }
    }

    /** Issue #12: a handle the space did not issue, or one already used, is refused naming it; nothing changes. */
    @Test
    void unknownOrUsedHandlesAreRefusedNamingTheHandle() {
        KvLayout layout = new KvLayout(1, 1, 32, 4, KvFormats.F16);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4);
             HostSwapSpace host = HostSwapSpace.allocate(layout, 3)) {
            dev.kvcache.SwapSpace swap = host.forStore(store);
            for (long bad : new long[] {1L << 40, -1, -(1L << 40), 3, Long.MAX_VALUE, Long.MIN_VALUE}) {
                assertMessage(() -> swap.swapIn(bad, 0), "handle " + bad);
                assertMessage(() -> swap.discard(bad), "handle " + bad);
            }
            assertMessage(() -> swap.swapIn(1, 0), "handle 1", "holds no swapped-out block"); // never issued
            long h = swap.swapOut(2);
            assertEquals(2, swap.freeBlocks());
            swap.swapIn(h, 1);
            assertEquals(3, swap.freeBlocks());
            assertMessage(() -> swap.swapIn(h, 1), "handle " + h, "already swapped in or discarded");
            assertMessage(() -> swap.discard(h), "handle " + h);
            long d = swap.swapOut(2);
            swap.discard(d);
            assertMessage(() -> swap.discard(d), "handle " + d);
            assertMessage(() -> swap.swapIn(d, 0), "handle " + d);
            assertEquals(3, swap.freeBlocks(), "a refused call changed the free count");
        }
    }

    /** Issue #12: swapOut from a closed store keeps no host block and says why. */
    @Test
    void swapOutOfAClosedStoreKeepsNoHostBlock() {
        KvLayout layout = new KvLayout(1, 1, 32, 4, KvFormats.FP8_E4M3);
        try (HostSwapSpace host = HostSwapSpace.allocate(layout, 3)) {
            OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4);
            dev.kvcache.SwapSpace swap = host.forStore(store);
            store.write(0, 1, new float[32], new float[32]); // a staged layer travels too
            store.close();
            assertThrows(IllegalStateException.class, () -> swap.swapOut(0));
            assertThrows(IllegalStateException.class, () -> host.swapOut(store, new int[] {0, 1}));
            assertEquals(3, host.freeBlocks());
            assertEquals(0, host.blocksSwappedOut());
        }
    }

    /**
     * Issue #12: swapOut racing the store's close() on another thread used to keep the host blocks
     * it had taken when the copy failed (freeBlocks never came back). Bounded race: whenever
     * swapOut throws, every host block is free again, and the exception is IllegalStateException.
     */
    @Test
    void swapOutRacingStoreCloseKeepsNoHostBlock() throws Exception {
        KvLayout layout = new KvLayout(8, 8, 128, 16, KvFormats.F32); // 1 MiB blocks: a copy takes a while
        int blocks = 6;
        int[] all = {0, 1, 2, 3, 4, 5};
        int failures = 0;
        try (HostSwapSpace host = HostSwapSpace.allocate(layout, blocks)) {
            for (int round = 0; round < 40 && failures < 8; round++) {
                OffHeapKvStore store = OffHeapKvStore.allocate(layout, blocks);
                java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
                long delay = 20_000L * (round % 10); // spread the close over the copy
                Thread closer = new Thread(() -> {
                    try {
                        go.await();
                    } catch (InterruptedException e) {
                        return;
                    }
                    long until = System.nanoTime() + delay;
                    while (System.nanoTime() < until) {
                        Thread.onSpinWait();
                    }
                    store.close();
                });
                closer.start();
                int[] got = null;
                RuntimeException failure = null;
                go.countDown();
                try {
                    got = host.swapOut(store, all);
                } catch (RuntimeException e) {
                    failure = e;
                }
                boolean interrupted = Thread.interrupted();
                closer.join();
                if (failure != null) {
                    failures++;
                    assertEquals(IllegalStateException.class, failure.getClass(), failure + " (interrupted " + interrupted + ")");
                    assertEquals(blocks, host.freeBlocks(), "round " + round + ": a failed swapOut kept host blocks");
                } else {
                    assertNotNull(got);
                    assertEquals(0, host.freeBlocks());
                    host.free(got);
                }
                store.close();
            }
            assertEquals(blocks, host.freeBlocks());
        }
    }
}
