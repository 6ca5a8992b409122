package dev.kvcache.cuda;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Bad input names the value and the limit and changes nothing. The allocation checks run before
 * the device is touched, so they are tested everywhere; the per-call checks need a store.
 */
class CudaBadInputTest {

    static void fails(Class<? extends Throwable> type, Executable call, String... mustMention) {
        Throwable e = assertThrows(type, call);
        for (String s : mustMention) {
            assertTrue(e.getMessage() != null && e.getMessage().contains(s),
                    () -> "message '" + e.getMessage() + "' should mention '" + s + "'");
        }
    }

    @Test
    void allocationArgumentsAreCheckedBeforeTheDevice() {
        KvLayout l = KvLayout.of(2, 2, 64, KvFormats.F16);
        fails(IllegalArgumentException.class, () -> CudaKvStore.allocate(l, 0), "blocks", "0");
        fails(IllegalArgumentException.class, () -> CudaKvStore.allocate(l, -3), "-3");
        fails(IllegalArgumentException.class, () -> CudaKvStore.allocate(new KvLayout(1, 1, 64, 1 << 16, KvFormats.F16),
                1 << 16), "slots", String.valueOf(Integer.MAX_VALUE));
        fails(IllegalArgumentException.class, () -> CudaKvStore.allocate(KvLayout.of(1, 1, 64, KvFormats.KIVI_2), 4),
                "KIVI_2", "not supported");
        assertThrows(NullPointerException.class, () -> CudaKvStore.allocate(null, 4));
        // checkAllocation is what allocate runs before CudaRuntime.get(); valid input passes it
        assertEquals(l.bytesPerBlock(), CudaKvStore.checkAllocation(l, 4).blockBytes());
    }

    static final KvLayout CALLS = new KvLayout(2, 2, 64, 16, KvFormats.Q8_0);

    @Test
    void callArgumentsAreCheckedAndChangeNothing() {
        assumeTrue(CudaRuntime.isAvailable(), () -> CudaRuntime.status().toString());
        checkCalls(CudaKvStore.allocate(CALLS, 4));
    }

    @Test
    void callArgumentsAreCheckedAndChangeNothingOnTheEmulator() {
        EmulatedDriver d = EmulatedDriver.get();
        assumeTrue(d != null, () -> "kernel emulator unavailable: " + EmulatedDriver.unavailableReason());
        checkCalls(new CudaKvStore(d, CudaKvStore.checkAllocation(CALLS, 4), 4));
        assertEquals(0, d.liveAllocations(), "close() freed everything");
    }

    static void checkCalls(CudaKvStore store) {
        try (CudaKvStore s = store) {
            float[] ok = new float[128];
            java.util.Arrays.fill(ok, 0.5f);
            s.write(1, 17, ok, ok);
            byte[] before = new byte[(int) s.blockLayout().blockBytes()];
            s.readBlock(1, before);

            fails(IllegalArgumentException.class, () -> s.write(2, 0, ok, ok), "layer 2", "[0, 2)");
            fails(IllegalArgumentException.class, () -> s.write(0, 64, ok, ok), "slot 64", "[0, 64)");
            fails(IllegalArgumentException.class, () -> s.write(0, -1, ok, ok), "slot -1");
            fails(IllegalArgumentException.class, () -> s.write(0, 17, new float[127], ok), "k.length 127", "128");
            float[] nan = ok.clone();
            nan[5] = Float.NaN;
            fails(IllegalArgumentException.class, () -> s.write(1, 17, ok, nan), "v[5]", "not finite");
            float[] huge = ok.clone();
            huge[40] = 1e7f * 127f;
            fails(IllegalArgumentException.class, () -> s.write(1, 17, huge, ok), "layer 1", "slot 17", "k[40]",
                    String.valueOf(dev.kvcache.KvStore.MAX_ABS_VALUE));
            fails(IllegalArgumentException.class, () -> s.readKey(0, 0, new float[3]), "out.length 3");
            fails(IllegalArgumentException.class, () -> s.copyBlock(0, 4), "dstBlock 4", "[0, 4)");
            fails(IllegalArgumentException.class, () -> s.copyBlocks(new int[] {0, 2}, new int[] {1, 1}), "dst[1] = 1", "twice");
            fails(IllegalArgumentException.class, () -> s.copyBlocks(new int[] {0, 1}, new int[] {1, 2}), "src[1] = 1",
                    "also a destination");
            float[] q = new float[6 * 64];
            float[] out = new float[6 * 64];
            fails(IllegalArgumentException.class, () -> s.decode(0, q, 5, new int[] {0}, 3, out), "queryHeads 5", "kvHeads 2");
            fails(IllegalArgumentException.class, () -> s.decode(0, q, 6, new int[] {0}, 17, out), "length 17 needs 2");
            fails(IllegalArgumentException.class, () -> s.decode(0, q, 6, new int[] {0, 4}, 17, out), "blockTable[1] = 4");
            fails(IllegalArgumentException.class, () -> s.decode(0, q, 6, new int[] {-2}, 1, out), "blockTable[0] = -2");
            fails(IllegalArgumentException.class, () -> s.decode(0, new float[10], 6, new int[] {0}, 1, out), "q.length 10");
            fails(IllegalArgumentException.class, () -> s.decode(0, q, 6, new int[] {0}, -1, out), "length must be >= 0");
            // values that would overflow attention (issue #12): refused at write and in the query
            float[] poison = ok.clone();
            poison[77] = 3e38f;
            fails(IllegalArgumentException.class, () -> s.write(1, 17, ok, poison), "layer 1", "slot 17", "v[77] = 3.0E38",
                    String.valueOf(dev.kvcache.KvStore.MAX_ABS_VALUE));
            float[] badQ = q.clone();
            badQ[200] = Float.NaN;
            fails(IllegalArgumentException.class, () -> s.decode(0, badQ, 6, new int[] {0}, 1, out), "q[200] = NaN");
            badQ[200] = -3e38f;
            fails(IllegalArgumentException.class, () -> s.decode(0, badQ, 6, new int[] {0}, 1, out), "q[200] = -3.0E38",
                    String.valueOf(dev.kvcache.KvStore.MAX_ABS_VALUE));
            try (CudaSwapSpace swap = CudaSwapSpace.allocate(s, 2)) {
                fails(IllegalArgumentException.class, () -> swap.swapOutAsync(new int[] {0, 9}), "deviceBlocks[1] 9");
                assertEquals(null, swap.swapOutAsync(new int[] {0, 1, 2}), "not enough host blocks: null");
                assertEquals(2, swap.freeBlocks());
                fails(IllegalArgumentException.class, () -> swap.swapInAsync(new int[] {0}, new int[] {1}), "not in use");
                int[] host = swap.swapOutAsync(new int[] {3});
                fails(IllegalArgumentException.class, () -> swap.swapInAsync(host, new int[] {-1}), "-1 pairs only with -1");
                swap.free(host);
            }
            byte[] after = new byte[before.length];
            s.readBlock(1, after);
            assertArrayEquals(before, after, "rejected calls changed block 1");
        }
    }
}
