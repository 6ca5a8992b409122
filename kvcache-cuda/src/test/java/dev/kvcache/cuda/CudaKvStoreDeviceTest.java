package dev.kvcache.cuda;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.offheap.OffHeapKvStore;
import dev.kvcache.offheap.PagedAttention;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * CudaKvStore on a real device against CPU references on fresh random inputs: the {@link RefCodec}
 * model (byte-exact, itself pinned to kvcache-quant by RefCodecTest), the off-heap store where it
 * supports the format, and float64 attention. Skipped, with the probe's reason, without a device.
 */
class CudaKvStoreDeviceTest {

    @BeforeEach
    void requireCuda() {
        assumeTrue(CudaRuntime.isAvailable(), () -> CudaRuntime.status().toString());
    }

    /** A store on the device under test (the emulated subclass runs the same tests on the CPU). */
    CudaKvStore open(KvLayout layout, int blocks) {
        return CudaKvStore.allocate(layout, blocks);
    }

    /** The decode test's grid: sequence lengths, head sizes and forced split sizes (0 = automatic). */
    int[] decodeLengths() {
        return new int[] {1, 15, 16, 17, 100, 250};
    }

    int[] decodeHeadDims() {
        return new int[] {64, 128};
    }

    int[] decodeChunks() {
        return new int[] {0, 7, 33};
    }

    static Iterable<KvFormat> formats() {
        return CudaBlockLayout.SUPPORTED;
    }

    /** Two shapes per format: a common one and one with odd sizes (3 heads, 96 dims, 5-token blocks). */
    static List<KvLayout> shapes(KvFormat f) {
        return List.of(new KvLayout(2, 2, 64, 16, f), new KvLayout(1, 3, 96, 5, f));
    }

    static float[] token(Random rnd, int n, double scale) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextGaussian() * scale);
        }
        return x;
    }

    /** Applies the same write to every target. */
    static void write(int layer, long slot, float[] k, float[] v, RefCodec.Model m, KvStore... stores) {
        m.write(layer, slot, k, v);
        for (KvStore s : stores) {
            s.write(layer, slot, k, v);
        }
    }

    /**
     * Writes the script every test starts from: block 0 full, block 1 half, block 2 full and then
     * row 1 of layer 0 rewritten (an FP8 block reopened), block 3 written last row first.
     */
    static void script(Random rnd, KvLayout l, RefCodec.Model m, KvStore... stores) {
        int bt = l.blockTokens();
        int n = l.kvDim();
        for (int block = 0; block < 4; block++) {
            int rows = block == 1 ? Math.max(1, bt / 2) : bt;
            for (int i = 0; i < rows; i++) {
                int row = block == 3 ? bt - 1 - i : i;
                for (int layer = 0; layer < l.layers(); layer++) {
                    double scale = Math.pow(10, rnd.nextInt(5) - 2);
                    write(layer, (long) block * bt + row, token(rnd, n, scale), token(rnd, n, scale), m, stores);
                }
            }
        }
        write(0, 2L * bt + Math.min(1, bt - 1), token(rnd, n, 3), token(rnd, n, 3), m, stores);
    }

    /** Device block {@code db} reads exactly like model block {@code mb}, row by row and byte by byte. */
    static void assertBlock(CudaKvStore s, int db, RefCodec.Model m, int mb) {
        KvLayout l = s.layout();
        int bt = l.blockTokens();
        float[] got = new float[l.kvDim()];
        float[] want = new float[l.kvDim()];
        for (int layer = 0; layer < l.layers(); layer++) {
            for (int row = 0; row < bt; row++) {
                for (boolean key : new boolean[] {true, false}) {
                    m.read(layer, (long) mb * bt + row, want, key);
                    if (key) {
                        s.readKey(layer, (long) db * bt + row, got);
                    } else {
                        s.readValue(layer, (long) db * bt + row, got);
                    }
                    int lr = layer;
                    int r = row;
                    assertArrayEquals(want, got, () -> l.format() + " " + (key ? "K" : "V") + " block " + db
                            + " layer " + lr + " row " + r);
                }
            }
        }
        byte[] bytes = new byte[(int) s.blockLayout().blockBytes()];
        s.readBlock(db, bytes);
        byte[] expect = Arrays.copyOfRange(m.bytes, (int) (mb * s.blockLayout().blockBytes()),
                (int) ((mb + 1) * s.blockLayout().blockBytes()));
        assertArrayEquals(expect, bytes, () -> l.format() + " encoded bytes of block " + db);
    }

    @ParameterizedTest
    @MethodSource("formats")
    void writeReadRoundTripIsByteExact(KvFormat f) {
        for (KvLayout l : shapes(f)) {
            Random rnd = new Random(1 + l.hashCode());
            RefCodec.Model m = new RefCodec.Model(l, 6);
            try (CudaKvStore s = open(l, 6)) {
                script(rnd, l, m, s);
                for (int b = 0; b < 6; b++) {
                    assertBlock(s, b, m, b);
                }
                int staged = 0;
                for (float[] st : m.stage) {
                    staged += st == null ? 0 : 1;
                }
                assertEquals(staged, s.stagedSlices(), "FP8 staging slots held");
            }
        }
    }

    /** A manager freeing a partial FP8 block gives its staging slots back (KvStore.blockReleased). */
    @Test
    void managerFreeGivesBackStaging() {
        KvLayout l = new KvLayout(2, 2, 32, 4, KvFormats.FP8_E4M3);
        try (CudaKvStore s = open(l, 8)) {
            dev.kvcache.KvCacheManager m = dev.kvcache.KvCacheManager.builder(l).prefixCaching(false).store(s).build();
            dev.kvcache.Sequence q = m.open("q");
            assertTrue(m.append(q, new int[] {1, 2, 3, 4, 5, 6}) >= 0);
            float[] kv = new float[l.kvDim()];
            Arrays.fill(kv, 0.5f);
            for (int p = 0; p < 6; p++) {
                for (int layer = 0; layer < 2; layer++) {
                    s.write(layer, q.slot(p), kv, kv);
                }
            }
            assertEquals(2, s.stagedSlices(), "the partial block, both layers");
            m.free(q);
            assertEquals(0, s.stagedSlices(), "freed partial block still holds staging");
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void readsEqualTheOffHeapStore(KvFormat f) {
        KvLayout l = shapes(f).get(0);
        OffHeapKvStore cpu;
        try {
            cpu = OffHeapKvStore.allocate(l, 6);
        } catch (UnsupportedOperationException e) {
            assumeTrue(false, "OffHeapKvStore does not support " + f + " yet: " + e.getMessage());
            return;
        }
        try (cpu; CudaKvStore gpu = open(l, 6)) {
            script(new Random(5), l, new RefCodec.Model(l, 6), cpu, gpu);
            float[] a = new float[l.kvDim()];
            float[] b = new float[l.kvDim()];
            for (long slot = 0; slot < 6L * l.blockTokens(); slot++) {
                for (int layer = 0; layer < l.layers(); layer++) {
                    cpu.readKey(layer, slot, a);
                    gpu.readKey(layer, slot, b);
                    assertArrayEquals(a, b, "K slot " + slot);
                    cpu.readValue(layer, slot, a);
                    gpu.readValue(layer, slot, b);
                    assertArrayEquals(a, b, "V slot " + slot);
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void copyBlockAndCopyBlocksCopyEverythingIncludingStagedRows(KvFormat f) {
        KvLayout l = shapes(f).get(0);
        Random rnd = new Random(9);
        RefCodec.Model m = new RefCodec.Model(l, 10);
        try (CudaKvStore s = open(l, 10)) {
            script(rnd, l, m, s);
            s.copyBlock(0, 4);
            m.copyBlock(0, 4);
            s.copyBlock(1, 5);            // a partial block: FP8 staging rows travel with it
            m.copyBlock(1, 5);
            s.copyBlocks(new int[] {2, 1, 3}, new int[] {6, 7, 8});
            m.copyBlock(2, 6);
            m.copyBlock(1, 7);
            m.copyBlock(3, 8);
            // copy-on-write continues the copied partial block independently of its source
            int bt = l.blockTokens();
            long next = 5L * bt + Math.max(1, bt / 2);
            for (int layer = 0; layer < l.layers(); layer++) {
                write(layer, next, token(rnd, l.kvDim(), 1), token(rnd, l.kvDim(), 1), m, s);
            }
            s.copyBlock(0, 1);            // a full block over a staged one drops the staging rows
            m.copyBlock(0, 1);
            for (int b = 0; b < 10; b++) {
                assertBlock(s, b, m, b);
            }
        }
    }

    /**
     * exportBlock / importBlock (the tier hooks): device to host and back is byte-identical (to the
     * reference model's bytes), a staged FP8 block is refused, an import over a staged block drops
     * its staging, and a HostTier put from this store loads back into another block exactly.
     */
    @ParameterizedTest
    @MethodSource("formats")
    void exportImportRoundTripIsByteIdentical(KvFormat f) {
        KvLayout l = shapes(f).get(0);
        Random rnd = new Random(21);
        RefCodec.Model m = new RefCodec.Model(l, 6);
        int n = (int) l.bytesPerBlock();
        try (CudaKvStore s = open(l, 6); Arena arena = Arena.ofConfined()) {
            script(rnd, l, m, s);   // block 0 full, 1 partial, 2 full with a row rewritten, 3 written last row first
            byte[] want = Arrays.copyOfRange(m.bytes, 0, n);
            MemorySegment nat = arena.allocate(n);
            s.exportBlock(0, nat);
            assertArrayEquals(want, nat.toArray(ValueLayout.JAVA_BYTE), f + " export to native memory");
            byte[] heap = new byte[n + 3];
            s.exportBlock(0, MemorySegment.ofArray(heap));
            assertArrayEquals(want, Arrays.copyOf(heap, n), f + " export to a heap array");
            if (s.blockLayout().blockFormat()) {
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> s.exportBlock(1, nat));
                assertTrue(e.getMessage().contains("block 1"), e.getMessage());
                assertThrows(IllegalStateException.class, () -> s.exportBlock(2, nat), "layer 0 reopened");
            }
            int staged = s.stagedSlices();
            s.importBlock(1, nat);  // over the partial block
            m.copyBlock(0, 1);
            assertBlock(s, 1, m, 1);
            if (s.blockLayout().blockFormat()) {
                assertTrue(s.stagedSlices() < staged, "import drops the block's staging");
            }
            try (dev.kvcache.offheap.HostTier tier = dev.kvcache.offheap.HostTier.allocate(l, 2L * n)) {
                dev.kvcache.TierEntry e = new dev.kvcache.TierEntry(new dev.kvcache.PrefixKey(1, 2), null, 0, null,
                        new int[l.blockTokens()], dev.kvcache.TierEntry.fingerprint(l));
                if (s.blockLayout().blockFormat()) {
                    // block 3's rows went in last-first: its last write (row 0) reopened it, so it is staged
                    assertFalse(tier.put(e, s, 3));
                }
                assertTrue(tier.put(e, s, 0));
                assertTrue(tier.load(e, s, 4));
                m.copyBlock(0, 4);
                assertBlock(s, 4, m, 4);
                assertEquals(2L * n, tier.stats().bytesMoved());
            }
            MemorySegment small = MemorySegment.ofArray(new byte[n - 1]);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> s.exportBlock(0, small));
            assertTrue(e.getMessage().contains("dst holds " + (n - 1)), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> s.importBlock(0, small));
            assertTrue(e.getMessage().contains("src holds " + (n - 1)), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> s.exportBlock(6, nat));
            assertTrue(e.getMessage().contains("block 6"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> s.importBlock(-1, nat));
            assertThrows(IllegalArgumentException.class, () -> s.exportBlock(0, nat.asReadOnly()));
            s.close();
            assertThrows(IllegalStateException.class, () -> s.exportBlock(0, nat));
            assertThrows(IllegalStateException.class, () -> s.importBlock(0, nat));
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void swapOutAndBackInIsBitIdentical(KvFormat f) {
        KvLayout l = shapes(f).get(0);
        Random rnd = new Random(13);
        RefCodec.Model m = new RefCodec.Model(l, 8);
        try (CudaKvStore s = open(l, 8); CudaSwapSpace swap = CudaSwapSpace.allocate(s, 4)) {
            script(rnd, l, m, s);
            RefCodec.Model before = m.copy();
            int[] host = swap.swapOutAsync(new int[] {0, 1, -1, 2, 3});
            assertEquals(-1, host[2]);
            assertEquals(0, swap.freeBlocks());
            // overwrite the swapped blocks at once: the device orders these writes after the copies
            int bt = l.blockTokens();
            for (int b = 0; b < 4; b++) {
                for (int row = 0; row < bt; row++) {
                    for (int layer = 0; layer < l.layers(); layer++) {
                        write(layer, (long) b * bt + row, token(rnd, l.kvDim(), 2), token(rnd, l.kvDim(), 2), m, s);
                    }
                }
            }
            swap.swapInAsync(host, new int[] {4, 5, -1, 6, 7});
            swap.await();
            assertEquals(4, swap.freeBlocks());
            for (int i = 0; i < 4; i++) {
                assertBlock(s, 4 + i, before, i);
                assertBlock(s, i, m, i);
            }
            long stagedLayers = 0;
            for (int b = 0; b < 4; b++) {
                for (int layer = 0; layer < l.layers(); layer++) {
                    stagedLayers += before.stage[b * l.layers() + layer] == null ? 0 : 1;
                }
            }
            long expected = 4 * s.blockLayout().blockBytes() + stagedLayers * s.blockLayout().stageBytes();
            assertEquals(expected, swap.bytesSwappedOut(), "bytes out: 4 blocks plus staged layers");
            assertEquals(expected, swap.bytesSwappedIn(), "bytes in");
        }
    }

    /** float64 attention over what the store reads back (dequantized), skipping -1 blocks. */
    static double[] reference(KvStore s, int layer, float[] q, int queryHeads, int[] table, int length) {
        KvLayout l = s.layout();
        int hd = l.headDim();
        int group = queryHeads / l.kvHeads();
        int bt = l.blockTokens();
        double[] out = new double[queryHeads * hd];
        float[] k = new float[l.kvDim()];
        float[] v = new float[l.kvDim()];
        List<float[]> keys = new ArrayList<>();
        List<float[]> values = new ArrayList<>();
        for (int p = 0; p < length; p++) {
            int b = table[p / bt];
            if (b < 0) {
                continue;
            }
            s.readKey(layer, (long) b * bt + p % bt, k);
            s.readValue(layer, (long) b * bt + p % bt, v);
            keys.add(k.clone());
            values.add(v.clone());
        }
        if (keys.isEmpty()) {
            return out;
        }
        for (int h = 0; h < queryHeads; h++) {
            int g = h / group;
            double[] sc = new double[keys.size()];
            double max = Double.NEGATIVE_INFINITY;
            for (int t = 0; t < sc.length; t++) {
                double dot = 0;
                for (int i = 0; i < hd; i++) {
                    dot += (double) q[h * hd + i] * keys.get(t)[g * hd + i];
                }
                sc[t] = dot / Math.sqrt(hd);
                max = Math.max(max, sc[t]);
            }
            double sum = 0;
            for (int t = 0; t < sc.length; t++) {
                sc[t] = Math.exp(sc[t] - max);
                sum += sc[t];
            }
            for (int t = 0; t < sc.length; t++) {
                for (int i = 0; i < hd; i++) {
                    out[h * hd + i] += sc[t] / sum * values.get(t)[g * hd + i];
                }
            }
        }
        return out;
    }

    @ParameterizedTest
    @MethodSource("formats")
    void decodeMatchesFloat64Reference(KvFormat f) {
        for (int hd : decodeHeadDims()) {
            KvLayout l = new KvLayout(2, 2, hd, 16, f);
            int blocks = 16;
            Random rnd = new Random(17 + hd);
            try (CudaKvStore s = open(l, blocks)) {
                for (int length : decodeLengths()) {
                    List<Integer> perm = new ArrayList<>();
                    for (int b = 0; b < blocks; b++) {
                        perm.add(b);
                    }
                    Collections.shuffle(perm, rnd);
                    int[] table = perm.stream().mapToInt(Integer::intValue).limit(l.blocksFor(length)).toArray();
                    for (int p = 0; p < length; p++) {
                        for (int layer = 0; layer < 2; layer++) {
                            s.write(layer, (long) table[p / 16] * 16 + p % 16, token(rnd, l.kvDim(), 1), token(rnd, l.kvDim(), 1));
                        }
                    }
                    for (int queryHeads : new int[] {2, 6}) {
                        float[] q = token(rnd, queryHeads * hd, 1);
                        float[] out = new float[queryHeads * hd];
                        double[] want = reference(s, 1, q, queryHeads, table, length);
                        int[] released = table.clone(); // a sliding window released the first block
                        released[0] = -1;
                        double[] wantReleased = reference(s, 1, q, queryHeads, released, length);
                        // automatic split, and forced splits that cut blocks and leave warps idle
                        for (int chunk : decodeChunks()) {
                            s.decodeChunk = chunk;
                            String what = f + " hd " + hd + " length " + length + " queryHeads " + queryHeads + " chunk " + chunk;
                            s.decode(1, q, queryHeads, table, length, out);
                            assertClose(want, out, what);
                            s.decode(1, q, queryHeads, released, length, out);
                            assertClose(wantReleased, out, "released first block, " + what);
                        }
                        s.decodeChunk = 0;
                    }
                }
                float[] out = new float[2 * hd];
                Arrays.fill(out, 7f);
                s.decode(0, token(rnd, 2 * hd, 1), 2, new int[0], 0, out);
                assertArrayEquals(new float[2 * hd], out, "length 0 gives zeros");
                Arrays.fill(out, 7f);
                s.decode(0, token(rnd, 2 * hd, 1), 2, new int[] {-1, -1}, 20, out);
                assertArrayEquals(new float[2 * hd], out, "everything released gives zeros");
            }
        }
    }

    static void assertClose(double[] want, float[] got, String what) {
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], 1e-4 * (1 + Math.abs(want[i])), what + " [" + i + "]");
        }
    }

    @Test
    void decodeEqualsOffHeapPagedAttentionForF32() {
        KvLayout l = new KvLayout(1, 4, 128, 16, KvFormats.F32);
        Random rnd = new Random(23);
        try (OffHeapKvStore cpu = OffHeapKvStore.allocate(l, 8); CudaKvStore gpu = open(l, 8)) {
            int length = 117;
            int[] table = {5, 2, 7, 0, 1, 3, 6, 4};
            RefCodec.Model m = new RefCodec.Model(l, 8);
            for (int p = 0; p < length; p++) {
                write(0, (long) table[p / 16] * 16 + p % 16, token(rnd, l.kvDim(), 1), token(rnd, l.kvDim(), 1), m, cpu, gpu);
            }
            float[] q = token(rnd, 16 * 128, 1);
            float[] a = new float[16 * 128];
            float[] b = new float[16 * 128];
            PagedAttention.decode(cpu, 0, q, 16, table, length, a);
            gpu.decode(0, q, 16, table, length, b);
            for (int i = 0; i < a.length; i++) {
                assertEquals(a[i], b[i], 1e-5 * (1 + Math.abs(a[i])), "out[" + i + "]");
            }
        }
    }

    @Test
    void useAfterCloseFailsCleanly() {
        KvLayout l = KvLayout.of(1, 1, 64, KvFormats.FP8_E4M3);
        CudaKvStore s = open(l, 2);
        CudaSwapSpace swap = CudaSwapSpace.allocate(s, 1);
        s.write(0, 0, new float[64], new float[64]);
        s.close();
        s.close();
        assertThrows(IllegalStateException.class, () -> s.write(0, 1, new float[64], new float[64]));
        assertThrows(IllegalStateException.class, () -> s.readKey(0, 0, new float[64]));
        assertThrows(IllegalStateException.class, () -> s.copyBlock(0, 1));
        assertThrows(IllegalStateException.class, () -> s.decode(0, new float[64], 1, new int[] {0}, 1, new float[64]));
        assertThrows(IllegalStateException.class, () -> swap.swapOutAsync(new int[] {0}));
        assertThrows(IllegalStateException.class, s::blocks);
    }
}
