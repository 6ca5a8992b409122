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
}
