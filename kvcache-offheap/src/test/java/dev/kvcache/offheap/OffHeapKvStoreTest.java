package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.quant.Quantizers;
import dev.kvcache.quant.SliceKernels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;
import java.util.SplittableRandom;

import static dev.kvcache.offheap.PagedAttentionTest.assertMessage;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class OffHeapKvStoreTest {

    static List<KvFormat> formats() {
        return KvFormats.all();
    }

    static boolean blockFormat(KvFormat f) {
        return !(Quantizers.keyKernels(f).rowIndependent() && Quantizers.valueKernels(f).rowIndependent());
    }

    @ParameterizedTest
    @MethodSource("formats")
    void sizesAndAlignment(KvFormat f) {
        KvLayout layout = new KvLayout(3, 2, 64, 16, f);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 5)) {
            assertEquals(5 * layout.bytesPerBlock(), s.memory().byteSize());
            assertEquals(0, s.memory().address() % 64, "allocation not 64-byte aligned");
            assertEquals(5 * layout.bytesPerBlock(), s.allocatedBytes(), "nothing staged yet");
            StoreLayout b = s.storeLayout();
            assertEquals(layout.bytesPerBlock(), b.blockBytes());
            // slices tile a block exactly, in [layer][K|V][head] order
            assertEquals(0, b.keyOffset(0, 0, 0));
            assertEquals(b.keySliceBytes(), b.keyOffset(0, 0, 1));
            assertEquals(2 * b.keySliceBytes(), b.valueOffset(0, 0, 0));
            assertEquals(b.layerBytes(), b.keyOffset(0, 1, 0));
            assertEquals(b.blockBytes(), b.keyOffset(1, 0, 0));
            assertEquals(b.blockBytes(), b.valueOffset(0, 2, 1) + b.valueSliceBytes());
        }
    }

    /**
     * Every row reads back as the quantizer's own round trip of the block it belongs to: exact
     * while a block format's block is partial (staging), the block encoding once it is full.
     */
    @ParameterizedTest
    @MethodSource("formats")
    void writeReadRoundTripMatchesQuantizer(KvFormat f) {
        KvLayout layout = new KvLayout(2, 2, 32, 8, f);
        SplittableRandom r = new SplittableRandom(f.name().hashCode());
        int tokens = 21; // 2 full blocks + 5 rows
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 4)) {
            float[][][] k = new float[2][tokens][];
            float[][][] v = new float[2][tokens][];
            int[] blockOf = {3, 0, 2};
            for (int p = 0; p < tokens; p++) {
                for (int layer = 0; layer < 2; layer++) {
                    k[layer][p] = Reference.gaussian(r, 64, 1);
                    v[layer][p] = Reference.gaussian(r, 64, 1);
                    s.write(layer, blockOf[p / 8] * 8L + p % 8, k[layer][p], v[layer][p]);
                }
            }
            assertEquals(blockFormat(f) ? 2 : 0, s.stagedSlices());
            float[] out = new float[64];
            for (int layer = 0; layer < 2; layer++) {
                for (int p = 0; p < tokens; p++) {
                    boolean partial = p >= 16;
                    float[] ek = expected(Quantizers.keyKernels(f), k[layer], p, partial && blockFormat(f));
                    float[] ev = expected(Quantizers.valueKernels(f), v[layer], p, partial && blockFormat(f));
                    long slot = blockOf[p / 8] * 8L + p % 8;
                    s.readKey(layer, slot, out);
                    assertArrayEquals(ek, out, f + " key layer " + layer + " pos " + p);
                    s.readValue(layer, slot, out);
                    assertArrayEquals(ev, out, f + " value layer " + layer + " pos " + p);
                }
            }
        }
    }

    /** The value of position p after the quantizer's round trip (head by head, block of 8 rows). */
    private static float[] expected(SliceKernels kernels, float[][] rows, int p, boolean exact) {
        if (exact) {
            return rows[p].clone();
        }
        int first = p / 8 * 8;
        float[] out = new float[64];
        for (int h = 0; h < 2; h++) {
            float[] src = new float[8 * 32];
            for (int t = 0; t < 8; t++) {
                float[] row = first + t < rows.length ? rows[first + t] : new float[64];
                System.arraycopy(row, h * 32, src, t * 32, 32);
            }
            java.lang.foreign.MemorySegment seg = java.lang.foreign.MemorySegment.ofArray(
                    new byte[(int) kernels.sliceBytes(8, 32)]);
            kernels.encode(src, 0, 8, 32, seg, 0);
            float[] dec = new float[8 * 32];
            kernels.decode(seg, 0, 8, 32, dec, 0);
            System.arraycopy(dec, (p - first) * 32, out, h * 32, 32);
        }
        return out;
    }

    @ParameterizedTest
    @MethodSource("formats")
    void copyBlockCopiesEncodedBytesAndStaging(KvFormat f) {
        KvLayout layout = new KvLayout(2, 1, 32, 4, f);
        SplittableRandom r = new SplittableRandom(3);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 4)) {
            // block 0 full, block 1 partial (2 rows)
            for (int slot = 0; slot < 6; slot++) {
                for (int layer = 0; layer < 2; layer++) {
                    s.write(layer, slot, Reference.gaussian(r, 32, 1), Reference.gaussian(r, 32, 1));
                }
            }
            s.copyBlock(0, 2);
            s.copyBlock(1, 3);
            float[] a = new float[32];
            float[] b = new float[32];
            for (int layer = 0; layer < 2; layer++) {
                for (int row = 0; row < 4; row++) {
                    for (int src : new int[] {0, 1}) {
                        s.readKey(layer, src * 4L + row, a);
                        s.readKey(layer, (src + 2) * 4L + row, b);
                        assertArrayEquals(a, b);
                        s.readValue(layer, src * 4L + row, a);
                        s.readValue(layer, (src + 2) * 4L + row, b);
                        assertArrayEquals(a, b);
                    }
                }
            }
            // the copies diverge independently: finish block 3, block 1 stays as it was
            float[] before = new float[32];
            s.readKey(0, 5, before);
            for (int slot = 14; slot < 16; slot++) {
                for (int layer = 0; layer < 2; layer++) {
                    s.write(layer, slot, Reference.gaussian(r, 32, 1), Reference.gaussian(r, 32, 1));
                }
            }
            s.readKey(0, 5, a);
            assertArrayEquals(before, a);
            assertEquals(blockFormat(f) ? 2 : 0, s.stagedSlices(), "block 1 staged in both layers");
            // copying a sealed block over a staged one drops the stale staging
            s.copyBlock(0, 1);
            assertEquals(0, s.stagedSlices());
            s.copyBlock(2, 2); // self copy: nothing happens
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void rewritingARowOfAFullBlockTakesEffect(KvFormat f) {
        KvLayout layout = new KvLayout(1, 1, 32, 4, f);
        SplittableRandom r = new SplittableRandom(5);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 2)) {
            for (int slot = 0; slot < 4; slot++) {
                s.write(0, slot, Reference.gaussian(r, 32, 1), Reference.gaussian(r, 32, 1));
            }
            float[] k = Reference.gaussian(r, 32, 1);
            s.write(0, 1, k, k);   // the block is reopened (block formats) or the row rewritten
            float[] out = new float[32];
            s.readKey(0, 1, out);
            if (blockFormat(f)) {
                assertArrayEquals(k, out, "a reopened block reads its new row exactly");
            } else {
                for (int i = 0; i < 32; i++) {
                    assertEquals(k[i], out[i], 0.1 * Math.abs(k[i]) + 0.25, "row " + i);
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void trimStagingSealsOldestPartialBlocksAndKeepsTheirRows(KvFormat f) {
        KvLayout layout = new KvLayout(2, 1, 32, 4, f);
        SplittableRandom r = new SplittableRandom(8);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 6)) {
            // blocks 0..4 get 2 rows each (5 partial blocks), block 5 is full
            float[][] keys = new float[24][];
            for (int slot = 0; slot < 24; slot++) {
                if (slot < 20 && slot % 4 >= 2) {
                    continue;
                }
                keys[slot] = Reference.gaussian(r, 32, 1);
                for (int layer = 0; layer < 2; layer++) {
                    s.write(layer, slot, keys[slot], keys[slot]);
                }
            }
            boolean staged = blockFormat(f);
            assertEquals(staged ? 10 : 0, s.stagedSlices());
            assertEquals(staged ? 6 : 0, s.trimStaging(4));
            assertEquals(staged ? 4 : 0, s.stagedSlices());
            assertEquals(0, s.trimStaging(4), "already within the bound");
            float[] out = new float[32];
            for (int slot = 0; slot < 20; slot++) {
                if (keys[slot] == null) {
                    continue;
                }
                int block = slot / 4;
                s.readKey(1, slot, out);
                if (staged && block >= 3) {
                    assertArrayEquals(keys[slot], out, "newest partial blocks stay exact");
                } else {
                    for (int i = 0; i < 32; i++) {
                        assertEquals(keys[slot][i], out[i], 0.5 + 0.25 * Math.abs(keys[slot][i]),
                                f + " slot " + slot + " [" + i + "] after sealing");
                    }
                }
            }
            // a sealed partial block reopens on the next write and fills normally
            float[] k = Reference.gaussian(r, 32, 1);
            s.write(0, 2, k, k);
            s.readKey(0, 2, out);
            if (staged) {
                assertArrayEquals(k, out);
            }
            int left = s.stagedSlices();
            assertEquals(staged ? 5 : 0, left, "4 kept + the reopened block's layer 0");
            assertEquals(left, s.trimStaging(0));
            assertEquals(0, s.stagedSlices());
            assertMessage(() -> s.trimStaging(-1), "maxSlices", "-1");
        }
    }

    @Test
    void closeIsIdempotentAndEveryCallThenThrowsIllegalState() {
        KvLayout layout = new KvLayout(1, 1, 32, 4, KvFormats.Q8_0);
        OffHeapKvStore s = OffHeapKvStore.allocate(layout, 2);
        float[] a = new float[32];
        s.write(0, 0, a, a);
        s.close();
        s.close();
        assertTrue(s.isClosed());
        assertThrows(IllegalStateException.class, s::layout);
        assertThrows(IllegalStateException.class, s::storeLayout);
        assertThrows(IllegalStateException.class, () -> s.write(0, 0, a, a));
        assertThrows(IllegalStateException.class, () -> s.readKey(0, 0, a));
        assertThrows(IllegalStateException.class, () -> s.readValue(0, 0, a));
        assertThrows(IllegalStateException.class, () -> s.copyBlock(0, 1));
        assertThrows(IllegalStateException.class, s::blocks);
        assertThrows(IllegalStateException.class, s::allocatedBytes);
        assertThrows(IllegalStateException.class, s::stagedSlices);
        assertThrows(IllegalStateException.class, () -> s.trimStaging(0));
    }

    @Test
    void closeRacingWithReadersNeverCrashes() throws Exception {
        KvLayout layout = new KvLayout(1, 2, 64, 16, KvFormats.F32);
        for (int round = 0; round < 20; round++) {
            OffHeapKvStore s = OffHeapKvStore.allocate(layout, 64);
            float[] a = Reference.gaussian(new SplittableRandom(round), 128, 1);
            for (int slot = 0; slot < 1024; slot++) {
                s.write(0, slot, a, a);
            }
            int[] table = new int[64];
            for (int i = 0; i < 64; i++) {
                table[i] = i;
            }
            Throwable[] failure = new Throwable[1];
            Thread reader = new Thread(() -> {
                float[] q = new float[4 * 64];
                float[] out = new float[4 * 64];
                try {
                    while (true) {
                        PagedAttention.decode(s, 0, q, 4, table, 1024, out);
                    }
                } catch (IllegalStateException expected) {
                    // closed under us: the only acceptable outcome
                } catch (Throwable t) {
                    failure[0] = t;
                }
            });
            reader.start();
            Thread.sleep(2);
            s.close();
            reader.join(10_000);
            assertTrue(!reader.isAlive());
            if (failure[0] != null) {
                throw new AssertionError("reader failed with other than IllegalStateException", failure[0]);
            }
        }
    }

    @Test
    void badInputNamesValueAndLimitAndChangesNothing() {
        KvLayout layout = new KvLayout(2, 2, 32, 4, KvFormats.Q8_0);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 3)) {
            float[] good = Reference.gaussian(new SplittableRandom(1), 64, 1);
            s.write(1, 5, good, good);
            float[] before = new float[64];
            s.readKey(1, 5, before);
            float[] other = new float[64];
            assertMessage(() -> s.write(2, 0, other, other), "layer 2", "[0, 2)");
            assertMessage(() -> s.write(-1, 0, other, other), "layer -1", "[0, 2)");
            assertMessage(() -> s.write(0, 12, other, other), "slot 12", "[0, 12)");
            assertMessage(() -> s.write(0, -1, other, other), "slot -1", "[0, 12)");
            assertMessage(() -> s.write(1, 5, new float[63], other), "k.length 63", "64");
            assertMessage(() -> s.write(1, 5, other, new float[3]), "v.length 3", "64");
            float[] nan = other.clone();
            nan[40] = Float.NaN;
            assertMessage(() -> s.write(1, 5, other, nan), "v[40] = NaN", "not finite");
            assertMessage(() -> s.readKey(1, 5, new float[10]), "out.length 10", "64");
            assertMessage(() -> s.readValue(0, 99, other), "slot 99", "[0, 12)");
            assertMessage(() -> s.copyBlock(3, 0), "srcBlock 3", "[0, 3)");
            assertMessage(() -> s.copyBlock(0, -1), "dstBlock -1", "[0, 3)");
            assertMessage(() -> OffHeapKvStore.allocate(layout, 0), "blocks", "0");
            float[] after = new float[64];
            s.readKey(1, 5, after);
            assertArrayEquals(before, after, "a refused call changed the store");
        }
    }

    @Test
    void refusedEncodeOfAFullBlockChangesNothing() {
        // Q8_0 stores an fp16 scale: values past 65504*127 cannot be encoded; the refusal of the
        // second head must not leave the first head's row written
        KvLayout layout = new KvLayout(1, 2, 32, 2, KvFormats.Q8_0);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(layout, 1)) {
            float[] ok = Reference.gaussian(new SplittableRandom(2), 64, 1);
            s.write(0, 0, ok, ok);
            float[] before = new float[64];
            s.readKey(0, 0, before);
            float[] huge = ok.clone();
            huge[40] = 3e38f;
            float[] fresh = Reference.gaussian(new SplittableRandom(3), 64, 1);
            System.arraycopy(huge, 32, fresh, 32, 32);
            assertThrows(IllegalArgumentException.class, () -> s.write(0, 0, fresh, ok));
            float[] after = new float[64];
            s.readKey(0, 0, after);
            assertArrayEquals(before, after);
        }
    }

    /** The manager's free tells the store (KvStore.blockReleased): a freed partial block's staging comes back. */
    @ParameterizedTest
    @MethodSource("formats")
    void managerFreeingAPartialBlockGivesBackItsStaging(KvFormat f) {
        KvLayout layout = new KvLayout(2, 2, 32, 4, f);
        int staged = blockFormat(f) ? 2 : 0; // one partial block, two layers
        try (Harness h = new Harness(layout, 16, 7)) {
            Sequence a = h.open("a");
            h.append(a, 6); // a full block and 2 of 4 rows of the next
            assertEquals(staged, h.store.stagedSlices());
            Sequence b = h.fork(a, "b"); // shares both blocks
            h.manager.free(a);
            assertEquals(staged, h.store.stagedSlices(), "the fork still holds the partial block");
            h.manager.free(b);
            assertEquals(0, h.store.stagedSlices(), "freed partial block still holds staging");

            // the freed blocks are written again by a new sequence, its partial rows read back exactly
            Sequence c = h.open("c");
            h.append(c, 6);
            assertEquals(staged, h.store.stagedSlices());
            if (blockFormat(f)) {
                for (int layer = 0; layer < 2; layer++) {
                    float[][] want = h.originalKeys(c, layer);
                    float[][] got = h.storedKeys(h.store, c, layer);
                    assertArrayEquals(want[4], got[4], "staged row 4, layer " + layer);
                    assertArrayEquals(want[5], got[5], "staged row 5, layer " + layer);
                }
            }
            h.manager.free(c);
            assertEquals(0, h.store.stagedSlices());
        }
    }
}
