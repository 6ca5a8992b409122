package dev.kvcache.jlama;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.github.tjake.jlama.tensor.AbstractTensor;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The in-place block memory as a KvStore and as Jlama page views of the same bytes. */
class JlamaBlockMemoryTest {
    // 3 layers, 2 KV heads of 5 (kvDim 10, not a power of two), blocks of 8 tokens
    private static final KvLayout LAYOUT = new KvLayout(3, 2, 5, 8, KvFormats.F32);
    private static final int KV = 10;

    private static float[] random(Random r) {
        float[] a = new float[KV];
        for (int i = 0; i < KV; i++) a[i] = (float) r.nextGaussian();
        return a;
    }

    @Test
    void storeWritesAreWhatJlamaPagesReadAndTheReverse() {
        Random r = new Random(7);
        try (JlamaBlockMemory m = JlamaBlockMemory.allocate(LAYOUT, 4)) {
            float[][][] k = new float[3][32][], v = new float[3][32][];
            for (int layer = 0; layer < 3; layer++) {
                for (int slot = 0; slot < 32; slot++) {
                    k[layer][slot] = random(r);
                    v[layer][slot] = random(r);
                    m.write(layer, slot, k[layer][slot], v[layer][slot]);
                }
            }
            float[] out = new float[KV];
            for (int layer = 0; layer < 3; layer++) {
                for (int slot = 0; slot < 32; slot++) {
                    m.readKey(layer, slot, out);
                    assertArrayEquals(k[layer][slot], out);
                    m.readValue(layer, slot, out);
                    assertArrayEquals(v[layer][slot], out);
                    AbstractTensor kp = m.keyPage(layer, slot / 8), vp = m.valuePage(layer, slot / 8);
                    assertArrayEquals(new int[] {8, KV}, new int[] {kp.shape().first(), kp.shape().last()});
                    for (int i = 0; i < KV; i++) {
                        assertEquals(k[layer][slot][i], kp.get(slot % 8, i));
                        assertEquals(v[layer][slot][i], vp.get(slot % 8, i));
                    }
                }
            }
            // a write through a Jlama row view lands in the store
            AbstractTensor row = m.valuePage(2, 3).slice(true, 5);
            row.set(42.5f, 0, 9);
            m.readValue(2, 3 * 8 + 5, out);
            assertEquals(42.5f, out[9]);
            assertSame(m.keyPage(1, 2), m.keyPage(1, 2), "views are made once");
        }
    }

    @Test
    void copyBlockCopiesEveryLayerOfThatBlockOnly() {
        Random r = new Random(8);
        try (JlamaBlockMemory m = JlamaBlockMemory.allocate(LAYOUT, 3)) {
            float[][] before = new float[3 * 24 * 2][];
            for (int layer = 0; layer < 3; layer++) {
                for (int slot = 0; slot < 24; slot++) {
                    float[] k = random(r), v = random(r);
                    m.write(layer, slot, k, v);
                    before[(layer * 24 + slot) * 2] = k;
                    before[(layer * 24 + slot) * 2 + 1] = v;
                }
            }
            m.copyBlock(0, 2);
            float[] out = new float[KV];
            for (int layer = 0; layer < 3; layer++) {
                for (int slot = 0; slot < 24; slot++) {
                    int src = slot / 8 == 2 ? slot - 16 : slot;
                    m.readKey(layer, slot, out);
                    assertArrayEquals(before[(layer * 24 + src) * 2], out, "layer " + layer + " slot " + slot);
                    m.readValue(layer, slot, out);
                    assertArrayEquals(before[(layer * 24 + src) * 2 + 1], out);
                }
            }
        }
    }

    @Test
    void badArgumentsNameTheValueAndLimit() {
        try (JlamaBlockMemory m = JlamaBlockMemory.allocate(LAYOUT, 2)) {
            float[] row = new float[KV];
            assertMessage(() -> m.write(3, 0, row, row), "layer 3 is outside 0..2");
            assertMessage(() -> m.write(0, 16, row, row), "slot 16 is outside 0..15");
            assertMessage(() -> m.write(0, -1, row, row), "slot -1 is outside 0..15");
            assertMessage(() -> m.readKey(0, 0, new float[KV + 1]), "out has 11 floats, expected kvHeads*headDim = 10");
            assertMessage(() -> m.copyBlock(0, 2), "block 2 is outside 0..1");
            assertMessage(() -> m.keyPage(0, -1), "block -1 is outside 0..1");
        }
        assertMessage(() -> JlamaBlockMemory.allocate(LAYOUT.withFormat(KvFormats.F16), 2), "format F16 is not served in place");
        assertMessage(() -> JlamaBlockMemory.allocate(LAYOUT, 0), "blocks 0 must be > 0");
    }

    private static void assertMessage(Runnable r, String expected) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r::run);
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }

    @Test
    void useAfterCloseFailsCleanlyEvenThroughViews() {
        JlamaBlockMemory m = JlamaBlockMemory.allocate(LAYOUT, 2);
        AbstractTensor page = m.keyPage(0, 1);
        page.set(1f, 0, 0);
        m.close();
        m.close(); // idempotent
        assertThrows(IllegalStateException.class, () -> m.readKey(0, 0, new float[KV]));
        assertThrows(IllegalStateException.class, () -> m.keyPage(0, 0));
        assertThrows(IllegalStateException.class, () -> m.copyBlock(0, 1));
        // the view's memory is gone: the JDK refuses the access instead of reading freed memory
        assertThrows(IllegalStateException.class, () -> page.get(0, 0));
    }

    @Test
    void aRunOfConsecutiveBlocksIsOneViewOfTheirRowsEvenFromTheLastBlock() {
        Random r = new Random(9);
        try (JlamaBlockMemory m = JlamaBlockMemory.allocate(LAYOUT, 5)) {
            for (int layer = 0; layer < 3; layer++) {
                for (int slot = 0; slot < 40; slot++) m.write(layer, slot, random(r), random(r));
            }
            assertEquals(7, m.maxRunLog2(), "1024 tokens of blocks of 8");
            float[] k = new float[KV], v = new float[KV];
            for (int layer = 0; layer < 3; layer++) {
                for (int first = 0; first < 5; first++) {
                    for (int log2 = 0; log2 <= 3; log2++) {
                        AbstractTensor kr = m.keyRun(layer, first, log2), vr = m.valueRun(layer, first, log2);
                        assertEquals(8 << log2, kr.shape().first());
                        assertSame(kr, m.keyRun(layer, first, log2), "runs are made once");
                        // rows of the blocks that exist are those blocks' rows; the rest is never read
                        for (int row = 0; row < Math.min(8 << log2, (5 - first) * 8); row++) {
                            m.readKey(layer, first * 8 + row, k);
                            m.readValue(layer, first * 8 + row, v);
                            for (int i = 0; i < KV; i++) {
                                assertEquals(k[i], kr.get(row, i));
                                assertEquals(v[i], vr.get(row, i));
                            }
                        }
                    }
                }
            }
            // the longest run from the very last block stays inside the segment (its slack)
            AbstractTensor last = m.valueRun(2, 4, 7);
            assertEquals(0f, last.get(1023, KV - 1));
            assertThrows(IllegalArgumentException.class, () -> m.keyRun(0, 0, 8));
        }
    }
}
