package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ForkJoinPool;

import static dev.kvcache.offheap.PagedAttentionTest.assertMessage;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue #12 (integrity): a finite value that would poison attention is refused at write (and a
 * query at decode), naming it; values at the bound decode finitely; a KIVI block never gets stuck.
 */
class ValueBoundsTest {

    static final float MAX = KvStore.MAX_ABS_VALUE;

    static List<KvFormat> formats() {
        return KvFormats.all();
    }

    private static float[][] snapshot(OffHeapKvStore s, int layers, int slots, int kvDim) {
        float[][] all = new float[layers * slots * 2][kvDim];
        for (int l = 0; l < layers; l++) {
            for (int t = 0; t < slots; t++) {
                s.readKey(l, t, all[(l * slots + t) * 2]);
                s.readValue(l, t, all[(l * slots + t) * 2 + 1]);
            }
        }
        return all;
    }

    /** The probe: one key of 3e38 made every later decode NaN (F32, BF16, FP8); now it is refused. */
    @ParameterizedTest
    @MethodSource("formats")
    void poisonousWriteIsRefusedAndValuesAtTheBoundDecodeFinitely(KvFormat f) {
        KvLayout layout = new KvLayout(2, 2, 64, 4, f);
        int kvDim = layout.kvDim();
        int queryHeads = 4;
        SplittableRandom rnd = new SplittableRandom(7);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 3)) {
            int length = 10; // two full blocks and two staged rows of the third
            for (int t = 0; t < length; t++) {
                float[] k = new float[kvDim];
                float[] v = new float[kvDim];
                for (int i = 0; i < kvDim; i++) {
                    // at the bound, both signs: the worst case the bound allows
                    k[i] = rnd.nextBoolean() ? MAX : -MAX;
                    v[i] = rnd.nextBoolean() ? MAX : -MAX;
                }
                for (int layer = 0; layer < 2; layer++) {
                    s.write(layer, t, k, v);
                }
            }
            float[][] before = snapshot(s, 2, 12, kvDim);
            float[] ok = new float[kvDim];
            float[] poison = new float[kvDim];
            poison[70] = 3e38f;
            for (long slot : new long[] {3, 10, 11}) { // a sealed block's row, a staged row, a block's last row
                assertMessage(() -> s.write(1, slot, poison, ok), "layer 1", "slot " + slot, "k[70] = 3.0E38",
                        String.valueOf(MAX));
                assertMessage(() -> s.write(0, slot, ok, poison), "layer 0", "slot " + slot, "v[70] = 3.0E38");
            }
            float[] over = new float[kvDim];
            over[5] = -Math.nextUp(MAX);
            assertMessage(() -> s.write(0, 11, over, ok), "k[5] = " + -Math.nextUp(MAX), String.valueOf(MAX));
            float[] nan = new float[kvDim];
            nan[127] = Float.NaN;
            assertMessage(() -> s.write(0, 11, ok, nan), "v[127] = NaN", "not finite");
            float[] inf = new float[kvDim];
            inf[0] = Float.POSITIVE_INFINITY;
            assertMessage(() -> s.write(0, 0, inf, ok), "k[0] = Infinity");
            assertArrayEquals(before, snapshot(s, 2, 12, kvDim), "a refused write changed the store");

            // decode with q at the bound too: every output finite
            float[] q = new float[queryHeads * 64];
            for (int i = 0; i < q.length; i++) {
                q[i] = rnd.nextBoolean() ? MAX : -MAX;
            }
            float[] out = new float[q.length];
            int[] table = {0, 1, 2};
            for (int layer = 0; layer < 2; layer++) {
                PagedAttention.decode(s, layer, q, queryHeads, table, length, out);
                for (int i = 0; i < out.length; i++) {
                    assertTrue(Float.isFinite(out[i]) && Math.abs(out[i]) <= MAX * 1.01f,
                            f + " layer " + layer + ": out[" + i + "] = " + out[i]);
                }
            }
        }
    }

    @Test
    void decodeRefusesAPoisonousQueryAndLeavesOutUntouched() {
        KvLayout layout = new KvLayout(1, 2, 32, 4, KvFormats.F32);
        ForkJoinPool pool = new ForkJoinPool(2);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 2)) {
            float[] kv = new float[64];
            Arrays.fill(kv, 1f);
            for (int t = 0; t < 6; t++) {
                s.write(0, t, kv, kv);
            }
            int[] table = {0, 1};
            float[] out = new float[4 * 32];
            Arrays.fill(out, 42f);
            for (float bad : new float[] {3e38f, -Math.nextUp(MAX), Float.NaN, Float.NEGATIVE_INFINITY}) {
                float[] q = new float[4 * 32];
                q[100] = bad;
                assertMessage(() -> PagedAttention.decode(s, 0, q, 4, table, 6, out), "q[100] = " + bad,
                        String.valueOf(MAX));
                assertMessage(() -> new BatchDecoder(pool).decodeSplit(s, 0, q, 4, table, 6, out), "q[100]");
                assertMessage(() -> new BatchDecoder(pool).decode(s, 0, new float[][] {new float[4 * 32], q}, 4,
                        new int[][] {table, table}, new int[] {6, 6}, new float[][] {out, out}, 2), "sequence 1", "q[100]");
            }
            float[] untouched = new float[4 * 32];
            Arrays.fill(untouched, 42f);
            assertArrayEquals(untouched, out);
            // at the bound: accepted
            float[] q = new float[4 * 32];
            Arrays.fill(q, -MAX);
            PagedAttention.decode(s, 0, q, 4, table, 6, out);
            assertEquals(1f, out[0]);
        } finally {
            pool.shutdown();
        }
    }

    /**
     * The KIVI staging bug: rows are staged in F32 until the block is full, and KIVI's fp16 group
     * minimum cannot hold 1e5, so a block whose row 0 held 1e5 refused its last row forever (naming
     * a row of the scratch, not the caller's) and trimStaging threw forever. Now 1e5 is refused at
     * the write of row 0, naming slot and value, and the block fills and seals normally.
     */
    @ParameterizedTest
    @MethodSource("kivi")
    void kiviBlockWithAHugeRowIsRefusedAtThatRowAndNeverStuck(KvFormat f) {
        KvLayout layout = new KvLayout(1, 1, 32, 4, f);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 2)) {
            float[] huge = new float[32];
            huge[9] = 1e5f;
            assertMessage(() -> s.write(0, 0, huge, new float[32]), "slot 0", "k[9] = 100000.0", String.valueOf(MAX));
            assertEquals(0, s.stagedSlices(), "a refused write took a staging slot");
            float[] atLimit = new float[32];
            atLimit[9] = MAX;
            atLimit[10] = -MAX;
            s.write(0, 0, atLimit, atLimit);
            float[] small = new float[32];
            Arrays.fill(small, 0.5f);
            s.write(0, 1, small, small);
            s.write(0, 2, small, small);
            assertEquals(1, s.stagedSlices());
            s.write(0, 3, small, small); // the last row seals the block
            assertEquals(0, s.stagedSlices());
            float[] back = new float[32];
            s.readKey(0, 0, back);
            assertEquals(MAX, back[9], MAX * 0.01f);
            assertEquals(-MAX, back[10], MAX * 0.01f);
            // a second block left partial is sealed by trimStaging without throwing
            s.write(0, 4, atLimit, atLimit);
            assertEquals(1, s.trimStaging(0));
            assertEquals(0, s.stagedSlices());
        }
    }

    static List<KvFormat> kivi() {
        return List.of(KvFormats.KIVI_4, KvFormats.KIVI_2);
    }

    /** The write path and decode stay allocation-free: the checks themselves allocate nothing. */
    @Test
    void theValueChecksAllocateNothing() {
        com.sun.management.ThreadMXBean mx =
                (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        float[] k = new float[1024];
        float[] v = new float[1024];
        java.util.Arrays.fill(k, KvStore.MAX_ABS_VALUE);
        java.util.Arrays.fill(v, -1f);
        for (int i = 0; i < 20_000; i++) {
            KvStore.checkValues(0, i, k, v, 1024);
            KvStore.checkQuery(k, 1024);
        }
        long tid = Thread.currentThread().threadId();
        long before = mx.getThreadAllocatedBytes(tid);
        for (int i = 0; i < 10_000; i++) {
            KvStore.checkValues(0, i, k, v, 1024);
            KvStore.checkQuery(k, 1024);
        }
        long allocated = mx.getThreadAllocatedBytes(tid) - before;
        assertTrue(allocated < 1024, "10000 checks allocated " + allocated + " bytes");
    }
}
