package dev.kvcache.cuda;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.offheap.StoreLayout;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Layout arithmetic, without a device: the same bytes as the off-heap store, tiled without gaps. */
class CudaBlockLayoutTest {

    static KvLayout randomLayout(Random rnd, KvFormat f) {
        int layers = 1 + rnd.nextInt(5);
        int kvHeads = 1 + rnd.nextInt(4);
        int headDim = 32 * (1 + rnd.nextInt(8));
        int bt = 1 + rnd.nextInt(33);
        return new KvLayout(layers, kvHeads, headDim, bt, f);
    }

    @Test
    void offsetsEqualTheOffHeapStoreLayout() {
        Random rnd = new Random(7);
        for (KvFormat f : CudaBlockLayout.SUPPORTED) {
            for (int iter = 0; iter < 50; iter++) {
                KvLayout l = randomLayout(rnd, f);
                CudaBlockLayout c = new CudaBlockLayout(l);
                StoreLayout s = new StoreLayout(l);
                assertEquals(s.blockBytes(), c.blockBytes(), l::toString);
                assertEquals(s.layerBytes(), c.layerBytes(), l::toString);
                assertEquals(s.stageBytes(), c.stageBytes(), l::toString);
                for (int b = 0; b < 3; b++) {
                    assertEquals(s.blockOffset(b), c.blockOffset(b));
                    for (int layer = 0; layer < l.layers(); layer++) {
                        for (int h = 0; h < l.kvHeads(); h++) {
                            assertEquals(s.keyOffset(b, layer, h), c.keyOffset(b, layer, h), l::toString);
                            assertEquals(s.valueOffset(b, layer, h), c.valueOffset(b, layer, h), l::toString);
                            assertEquals(s.stageKeyOffset(h), c.stageKeyOffset(h));
                            assertEquals(s.stageValueOffset(h), c.stageValueOffset(h));
                        }
                    }
                }
            }
        }
    }

    @Test
    void slicesTileEachBlockWithoutGapsOrOverlap() {
        Random rnd = new Random(11);
        for (KvFormat f : CudaBlockLayout.SUPPORTED) {
            KvLayout l = randomLayout(rnd, f);
            CudaBlockLayout c = new CudaBlockLayout(l);
            long expect = c.blockOffset(2);
            for (int layer = 0; layer < l.layers(); layer++) {
                for (int h = 0; h < l.kvHeads(); h++) {
                    assertEquals(expect, c.keyOffset(2, layer, h));
                    expect += c.keySliceBytes();
                }
                for (int h = 0; h < l.kvHeads(); h++) {
                    assertEquals(expect, c.valueOffset(2, layer, h));
                    expect += c.valueSliceBytes();
                }
            }
            assertEquals(c.blockOffset(3), expect, "block 2 ends where block 3 starts");
            assertEquals(l.bytesPerBlock(), c.blockBytes());
            assertEquals(c.blockBytes() + (c.blockFormat() ? l.layers() * c.stageBytes() : 0), c.swapBlockBytes());
        }
    }

    @Test
    void formatCodesMatchTheKernelDefines() {
        // kvcache_kernels.cu: FMT_F32 0, F16 1, BF16 2, FP8_E4M3 3, FP8_E5M2 4, Q8_0 5, Q4_0 6
        KvFormat[] order = {KvFormats.F32, KvFormats.F16, KvFormats.BF16, KvFormats.FP8_E4M3,
            KvFormats.FP8_E5M2, KvFormats.Q8_0, KvFormats.Q4_0};
        for (int i = 0; i < order.length; i++) {
            assertEquals(i, new CudaBlockLayout(KvLayout.of(1, 1, 64, order[i])).formatCode(), order[i]::name);
        }
        assertTrue(new CudaBlockLayout(KvLayout.of(1, 1, 64, KvFormats.FP8_E5M2)).blockFormat());
        assertTrue(!new CudaBlockLayout(KvLayout.of(1, 1, 64, KvFormats.Q4_0)).blockFormat());
    }

    @Test
    void kiviIsRefusedNamingTheSupportedFormats() {
        var e = assertThrows(IllegalArgumentException.class,
                () -> new CudaBlockLayout(KvLayout.of(2, 2, 64, KvFormats.KIVI_4)));
        assertTrue(e.getMessage().contains("KIVI_4") && e.getMessage().contains("Q8_0"), e.getMessage());
    }
}
