package dev.kvcache.offheap;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ForkJoinPool;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PagedAttentionTest {

    /**
     * Error vs float64 over the store's own (dequantized) values: only float32 arithmetic differs.
     * Largest seen: 9.1e-7 (all formats, this suite, 2026-11-25, 2-core VM, Vector API kernels).
     */
    static final double TOL_STORED = 5e-6;

    /**
     * Error vs float64 over the original floats: bounds the quantization error of each format as
     * it reaches the attention output (inputs N(0,1), headDim 32..64, lengths 1..71). Each bound
     * is about three times the largest error this suite observed (KVCACHE_REPORT_ERRORS=1 prints
     * them; run of 2026-11-25 in comments), so a regression in a codec shows up here while the
     * tight check above pins the attention arithmetic.
     */
    static double tolOriginal(KvFormat f) {
        return switch (f.name()) {
            case "F32" -> 5e-6;       // seen 4.6e-7
            case "F16" -> 3e-3;       // seen 9.0e-4
            case "BF16" -> 2.5e-2;    // seen 7.6e-3
            case "FP8_E4M3" -> 0.2;   // seen 0.063
            case "FP8_E5M2" -> 0.5;   // seen 0.158
            case "Q8_0" -> 0.035;     // seen 0.0106
            case "Q5_0" -> 0.3;       // about half of Q4_0: one more bit per value (issue #17)
            case "Q4_0" -> 0.55;      // seen 0.185
            case "KIVI_4" -> 0.45;    // seen 0.145
            case "KIVI_2" -> 2.7;     // seen 0.896 (2-bit: a sanity bound only)
            default -> throw new IllegalArgumentException(f.name());
        };
    }

    static List<KvFormat> formats() {
        return KvFormats.all();
    }

    @ParameterizedTest
    @MethodSource("formats")
    void everyFormatMatchesFloat64ReferenceAtLengthsEndingMidBlock(KvFormat f) {
        KvLayout layout = new KvLayout(2, 2, 64, 16, f);
        try (Harness h = new Harness(layout, 64, 11 + f.name().hashCode())) {
            Sequence s = h.open("s");
            int[] steps = {1, 14, 1, 1, 17, 31, 5, 1};   // lengths 1, 15, 16, 17, 34, 65, 70, 71
            for (int n : steps) {
                h.append(s, n);
                for (int layer = 0; layer < layout.layers(); layer++) {
                    h.check(s, layer, 4, TOL_STORED, tolOriginal(f));
                }
            }
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 4, 8})
    void groupedQueryAttentionRatios(int ratio) {
        for (KvFormat f : List.of(KvFormats.F32, KvFormats.Q8_0, KvFormats.KIVI_4)) {
            KvLayout layout = new KvLayout(1, 3, 32, 8, f);
            try (Harness h = new Harness(layout, 32, 7L * ratio)) {
                Sequence s = h.open("s");
                h.append(s, 45);  // 5 full blocks + 5 rows
                h.check(s, 0, 3 * ratio, TOL_STORED, tolOriginal(f));
            }
        }
    }

    @Test
    void oddBlockSizeAndHeadDimForRowFormats() {
        KvLayout layout = new KvLayout(1, 2, 24, 7, KvFormats.F32); // dim not a multiple of 8 or 16
        try (Harness h = new Harness(layout, 16, 3)) {
            Sequence s = h.open("s");
            for (int n : new int[] {1, 6, 1, 1, 13, 30}) {
                h.append(s, n);
                h.check(s, 0, 6, TOL_STORED, tolOriginal(KvFormats.F32));
            }
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void forksAndCopyOnWriteThroughTheManager(KvFormat f) {
        KvLayout layout = new KvLayout(2, 2, 32, 8, f);
        try (Harness h = new Harness(layout, 64, 5)) {
            Sequence parent = h.open("p");
            h.append(parent, 21);                 // 2 full blocks + 5 rows in a shared partial block
            Sequence a = h.fork(parent, "a");
            Sequence b = h.fork(parent, "b");
            h.append(a, 3);                       // copy-on-write of the partial block into a new one
            h.append(b, 9);                       // another copy, then a fresh block
            h.append(parent, 2);
            assertEquals(parent.blockTable()[0], a.blockTable()[0]);
            assertFalse(parent.blockTable()[2] == a.blockTable()[2], "partial block was not copied");
            assertFalse(parent.blockTable()[2] == b.blockTable()[2], "partial block was not copied");
            for (Sequence s : List.of(parent, a, b)) {
                for (int layer = 0; layer < 2; layer++) {
                    h.check(s, layer, 4, TOL_STORED, tolOriginal(f));
                }
            }
            // fill the copied blocks past their end: block formats seal the copied staging
            h.append(a, 30);
            h.append(b, 30);
            for (Sequence s : List.of(parent, a, b)) {
                h.check(s, 1, 4, TOL_STORED, tolOriginal(f));
            }
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void slidingWindowMatchesReferenceOverKeptTokensAndStaysBounded(KvFormat f) {
        KvLayout layout = new KvLayout(1, 2, 32, 8, f);
        int sinks = 4;
        int window = 40;
        KvCacheManager.Builder b = KvCacheManager.builder(layout).prefixCaching(false).slidingWindow(sinks, window);
        try (Harness h = new Harness(layout, 16, 9, b)) {
            Sequence s = h.open("s");
            int maxHeld = 0;
            int maxStaged = 0;
            long bytes0 = h.store.allocatedBytes();
            long maxBytes = bytes0;
            for (int step = 0; step < 40; step++) {
                h.append(s, step % 3 == 0 ? 5 : 1);
                maxHeld = Math.max(maxHeld, s.heldBlocks());
                maxStaged = Math.max(maxStaged, h.store.stagedSlices());
                maxBytes = Math.max(maxBytes, h.store.allocatedBytes());
                if (step % 4 == 3) {
                    h.check(s, 0, 4, TOL_STORED, tolOriginal(f));
                }
            }
            assertTrue(s.length() > 2 * (sinks + window), "sequence did not outgrow the window");
            assertTrue(Arrays.stream(s.blockTable()).anyMatch(x -> x == -1), "nothing was released");
            // sinks (1 block) + window (5 blocks + the partial one + the previous call's) at most
            int bound = (int) (layout.blocksFor(sinks) + layout.blocksFor(window) + 2);
            assertTrue(maxHeld <= bound, "held " + maxHeld + " blocks, bound " + bound);
            assertTrue(h.manager.stats().usedBlocks() <= bound);
            assertTrue(maxStaged <= 1, "staging grew to " + maxStaged);
            assertTrue(maxBytes == bytes0 || maxBytes - bytes0 <= 1 << 20, "memory grew by " + (maxBytes - bytes0));
        }
    }

    @Test
    void everythingReleasedOrEmptyGivesZeros() {
        KvLayout layout = new KvLayout(1, 1, 32, 4, KvFormats.F32);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4)) {
            float[] q = Reference.gaussian(new SplittableRandom(1), 64, 1);
            float[] out = new float[64];
            Arrays.fill(out, 7f);
            PagedAttention.decode(store, 0, q, 2, new int[0], 0, out);
            assertArrayEquals(new float[64], out);
            Arrays.fill(out, 7f);
            PagedAttention.decode(store, 0, q, 2, new int[] {-1, -1}, 6, out);
            assertArrayEquals(new float[64], out);
        }
    }

    @Test
    void extremeScoresStayFiniteAndExact() {
        // scores of several hundred: a naive exp would overflow float
        KvLayout layout = new KvLayout(1, 2, 32, 16, KvFormats.F32);
        try (Harness h = new Harness(layout, 16, 21)) {
            Sequence s = h.open("s");
            h.append(s, 50);
            float[] q = Reference.gaussian(h.rnd, 4 * 32, 60.0);
            float[] out = new float[4 * 32];
            PagedAttention.decode(h.store, 0, q, 4, s.blockTable(), s.length(), out);
            double[] ref = Reference.attention(h.originalKeys(s, 0), h.originalValues(s, 0), null,
                    s.length(), q, 4, 2, 32);
            for (float x : out) {
                assertTrue(Float.isFinite(x));
            }
            assertTrue(Reference.maxAbsDiff(out, ref) < 1e-3, "error " + Reference.maxAbsDiff(out, ref));
        }
    }

    @Test
    void genericStorePathMatchesOffHeapPath() {
        KvLayout layout = new KvLayout(1, 2, 32, 8, KvFormats.F32);
        try (Harness h = new Harness(layout, 16, 4)) {
            Sequence s = h.open("s");
            h.append(s, 37);
            KvStore wrapped = new DelegatingStore(h.store);
            float[] q = Reference.gaussian(h.rnd, 8 * 32, 1);
            float[] a = new float[8 * 32];
            float[] b = new float[8 * 32];
            PagedAttention.decode(h.store, 0, q, 8, s.blockTable(), s.length(), a);
            PagedAttention.decode(wrapped, 0, q, 8, s.blockTable(), s.length(), b);
            double[] ref = Reference.attention(h.originalKeys(s, 0), h.originalValues(s, 0), null,
                    s.length(), q, 8, 2, 32);
            assertTrue(Reference.maxAbsDiff(a, ref) < TOL_STORED);
            assertTrue(Reference.maxAbsDiff(b, ref) < TOL_STORED);
        }
    }

    @Test
    void batchEqualsOneByOne() {
        KvLayout layout = new KvLayout(1, 2, 32, 8, KvFormats.F32);
        ForkJoinPool pool = new ForkJoinPool(2);
        try (Harness h = new Harness(layout, 128, 8)) {
            int n = 9;
            float[][] q = new float[n][];
            int[][] tables = new int[n][];
            int[] lengths = new int[n];
            float[][] out = new float[n][8 * 32];
            float[][] one = new float[n][8 * 32];
            for (int i = 0; i < n; i++) {
                Sequence s = h.open("s" + i);
                h.append(s, 1 + 13 * i);
                q[i] = Reference.gaussian(h.rnd, 8 * 32, 1);
                tables[i] = s.blockTable();
                lengths[i] = s.length();
                PagedAttention.decode(h.store, 0, q[i], 8, tables[i], lengths[i], one[i]);
            }
            PagedAttention.decodeBatch(h.store, 0, q, 8, tables, lengths, out, n, pool);
            for (int i = 0; i < n; i++) {
                assertArrayEquals(one[i], out[i], "sequence " + i);
            }
            BatchDecoder decoder = new BatchDecoder(pool);
            for (int round = 0; round < 3; round++) {
                float[][] again = new float[n][8 * 32];
                decoder.decode(h.store, 0, q, 8, tables, lengths, again, n - round);
                for (int i = 0; i < n - round; i++) {
                    assertArrayEquals(one[i], again[i], "round " + round + " sequence " + i);
                }
                for (int i = n - round; i < n; i++) {
                    assertArrayEquals(new float[8 * 32], again[i], "beyond count: untouched");
                }
            }
            // a bad sequence anywhere in the batch: nothing is written
            float[][] before = Arrays.stream(out).map(float[]::clone).toArray(float[][]::new);
            int[][] bad = tables.clone();
            bad[5] = new int[] {999};
            lengths[5] = 1;
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> PagedAttention.decodeBatch(h.store, 0, q, 8, bad, lengths, out, n, pool));
            assertTrue(e.getMessage().contains("sequence 5") && e.getMessage().contains("999"), e.getMessage());
            assertArrayEquals(before, out);
        } finally {
            pool.shutdown();
        }
    }

    /** Zero garbage per step, in every format (the vector kernels must not box), partial last block included. */
    @ParameterizedTest
    @MethodSource("formats")
    void steadyStateDecodeAllocatesNothing(KvFormat f) {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        KvLayout layout = new KvLayout(1, 2, 64, 16, f);
        try (Harness h = new Harness(layout, 64, 2)) {
            Sequence s = h.open("s");
            h.append(s, 200);
            int[] table = s.blockTable();
            float[] q = Reference.gaussian(h.rnd, 8 * 64, 1);
            float[] out = new float[8 * 64];
            for (int i = 0; i < 3000; i++) {
                PagedAttention.decode(h.store, 0, q, 8, table, 200, out);
            }
            // steady state: a window of 500 decodes with no garbage. On a loaded machine C2 may
            // still be compiling after the warm-up, so up to 8 windows are tried; a kernel that
            // boxes allocates in every one of them
            long tid = Thread.currentThread().threadId();
            long allocated = Long.MAX_VALUE;
            for (int window = 0; window < 8 && allocated >= 1024; window++) {
                long before = mx.getThreadAllocatedBytes(tid);
                for (int i = 0; i < 500; i++) {
                    PagedAttention.decode(h.store, 0, q, 8, table, 200, out);
                }
                allocated = mx.getThreadAllocatedBytes(tid) - before;
            }
            assertTrue(allocated < 1024, f + ": 500 decodes allocated " + allocated + " bytes in the last of 8 windows");
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void splitAcrossThreadsMatchesSingleThreadAndReference(KvFormat f) {
        KvLayout layout = new KvLayout(1, 2, 32, 4, f);
        ForkJoinPool pool = new ForkJoinPool(3);
        KvCacheManager.Builder b = KvCacheManager.builder(layout).prefixCaching(false).slidingWindow(4, 13);
        try (Harness h = new Harness(layout, 64, 31);
             Harness w = new Harness(layout, 64, 32, b)) {
            BatchDecoder decoder = new BatchDecoder(pool);
            Sequence s = h.open("s");
            Sequence sw = w.open("w");
            for (int n : new int[] {1, 2, 3, 6, 11, 40}) {   // lengths 1, 3, 6, 12, 23, 63
                h.append(s, n);
                w.append(sw, n);
                for (Harness hh : List.of(h, w)) {
                    Sequence x = hh == h ? s : sw;
                    float[] q = Reference.gaussian(hh.rnd, 8 * 32, 1);
                    float[] one = new float[8 * 32];
                    float[] split = new float[8 * 32];
                    PagedAttention.decode(hh.store, 0, q, 8, x.blockTable(), x.length(), one);
                    decoder.decodeSplit(hh.store, 0, q, 8, x.blockTable(), x.length(), split);
                    double[] ref = Reference.attention(hh.storedKeys(hh.store, x, 0), hh.storedValues(hh.store, x, 0),
                            Harness.kept(x), x.length(), q, 8, 2, 32);
                    assertTrue(Reference.maxAbsDiff(split, ref) <= TOL_STORED,
                            f + " len " + x.length() + ": split error " + Reference.maxAbsDiff(split, ref));
                    for (int i = 0; i < one.length; i++) {
                        assertEquals(one[i], split[i], 2e-6, "len " + x.length() + " [" + i + "]");
                    }
                }
            }
            assertTrue(Arrays.stream(sw.blockTable()).anyMatch(x -> x == -1), "window released nothing");
            assertMessage(() -> decoder.decodeSplit(h.store, 0, new float[5], 8, s.blockTable(), s.length(),
                    new float[8 * 32]), "q.length 5");
        } finally {
            pool.shutdown();
        }
    }

    @Test
    void steadyStateBatchAllocatesNothingOnAnyThread() {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        KvLayout layout = new KvLayout(1, 2, 64, 16, KvFormats.Q8_0);
        ForkJoinPool pool = new ForkJoinPool(2);
        try (Harness h = new Harness(layout, 256, 12)) {
            int n = 12;
            float[][] q = new float[n][];
            int[][] tables = new int[n][];
            int[] lengths = new int[n];
            float[][] out = new float[n][8 * 64];
            for (int i = 0; i < n; i++) {
                Sequence s = h.open("s" + i);
                h.append(s, 17 + 23 * i);
                q[i] = Reference.gaussian(h.rnd, 8 * 64, 1);
                tables[i] = s.blockTable();
                lengths[i] = s.length();
            }
            BatchDecoder decoder = new BatchDecoder(pool);
            for (int i = 0; i < 2000; i++) {
                decoder.decode(h.store, 0, q, 8, tables, lengths, out, n);
            }
            float[] one = new float[8 * 64];
            for (int i = 0; i < 2000; i++) {
                decoder.decodeSplit(h.store, 0, q[n - 1], 8, tables[n - 1], lengths[n - 1], one);
            }
            long before = mx.getTotalThreadAllocatedBytes();
            for (int i = 0; i < 300; i++) {
                decoder.decode(h.store, 0, q, 8, tables, lengths, out, n);
                decoder.decodeSplit(h.store, 0, q[n - 1], 8, tables[n - 1], lengths[n - 1], one);
            }
            long allocated = mx.getTotalThreadAllocatedBytes() - before;
            // Counted over every thread, so JIT and test-runner threads add noise (once 19,416 bytes
            // were seen). The bound is what one 16-byte object per sequence per batch would reach:
            // any per-sequence allocation fails it, background noise does not.
            long bound = 300L * n * 16;
            assertTrue(allocated < bound, "300 batches of " + n + " sequences and splits allocated "
                    + allocated + " bytes in all threads (bound " + bound + ")");
        } finally {
            pool.shutdown();
        }
    }

    @Test
    void badInputNamesValueAndLimitAndWritesNothing() {
        KvLayout layout = new KvLayout(2, 2, 32, 8, KvFormats.F32);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4)) {
            float[] q = new float[4 * 32];
            float[] out = new float[4 * 32];
            Arrays.fill(out, 3f);
            int[] t = {0, 1};
            assertMessage(() -> PagedAttention.decode(store, 2, q, 4, t, 9, out), "layer 2", "[0, 2)");
            assertMessage(() -> PagedAttention.decode(store, -1, q, 4, t, 9, out), "layer -1", "[0, 2)");
            assertMessage(() -> PagedAttention.decode(store, 0, q, 3, t, 9, out), "queryHeads 3", "kvHeads 2");
            assertMessage(() -> PagedAttention.decode(store, 0, q, 0, t, 9, out), "queryHeads 0", "kvHeads 2");
            assertMessage(() -> PagedAttention.decode(store, 0, new float[127], 4, t, 9, out), "q.length 127", "128");
            assertMessage(() -> PagedAttention.decode(store, 0, q, 4, t, 9, new float[5]), "out.length 5", "128");
            assertMessage(() -> PagedAttention.decode(store, 0, q, 4, t, -1, out), "length", "-1");
            assertMessage(() -> PagedAttention.decode(store, 0, q, 4, t, 17, out), "2 entries", "needs 3");
            assertMessage(() -> PagedAttention.decode(store, 0, q, 4, new int[] {0, 4}, 9, out),
                    "blockTable[1] = 4", "[-1, 4)");
            assertMessage(() -> PagedAttention.decode(store, 0, q, 4, new int[] {-2}, 1, out),
                    "blockTable[0] = -2", "[-1, 4)");
            float[] expect = new float[4 * 32];
            Arrays.fill(expect, 3f);
            assertArrayEquals(expect, out, "a failed decode wrote its output");
        }
    }

    @Test
    void decodeAfterCloseThrowsIllegalState() {
        KvLayout layout = new KvLayout(1, 1, 32, 8, KvFormats.F32);
        OffHeapKvStore store = OffHeapKvStore.allocate(layout, 2);
        store.write(0, 0, new float[32], new float[32]);
        store.close();
        assertThrows(IllegalStateException.class,
                () -> PagedAttention.decode(store, 0, new float[32], 1, new int[] {0}, 1, new float[32]));
        ForkJoinPool pool = new ForkJoinPool(1);
        try {
            assertThrows(IllegalStateException.class, () -> PagedAttention.decodeBatch(store, 0,
                    new float[][] {new float[32]}, 1, new int[][] {{0}}, new int[] {1},
                    new float[][] {new float[32]}, 1, pool));
        } finally {
            pool.shutdown();
        }
    }

    static void assertMessage(org.junit.jupiter.api.function.Executable call, String... parts) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message '" + e.getMessage() + "' lacks '" + p + "'");
        }
    }

    /** A KvStore that is not an OffHeapKvStore, to reach the generic path. */
    private record DelegatingStore(KvStore d) implements KvStore {
        @Override
        public KvLayout layout() {
            return d.layout();
        }

        @Override
        public int blocks() {
            return d.blocks();
        }

        @Override
        public void write(int layer, long slot, float[] k, float[] v) {
            d.write(layer, slot, k, v);
        }

        @Override
        public void readKey(int layer, long slot, float[] out) {
            d.readKey(layer, slot, out);
        }

        @Override
        public void readValue(int layer, long slot, float[] out) {
            d.readValue(layer, slot, out);
        }

        @Override
        public void copyBlock(int srcBlock, int dstBlock) {
            d.copyBlock(srcBlock, dstBlock);
        }

        @Override
        public void close() {
            d.close();
        }
    }
}
