package dev.kvcache.offheap;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PreemptedSequence;
import dev.kvcache.PreemptionMode;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/** Preemption by swap through the block manager, with the KV really moving to the host pool and back. */
class ManagerSwapTest {

    @Test
    void aSwappedSequenceComesBackWithItsKvAndTheSameAttention() {
        KvLayout layout = new KvLayout(2, 2, 32, 8, KvFormats.Q8_0);
        Random rnd = new Random(42);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 8);
             HostSwapSpace host = HostSwapSpace.allocate(layout, 8);
             KvCacheManager m = KvCacheManager.builder(layout).store(store).swapSpace(host.forStore(store)).build()) {
            Sequence s = m.open("s");
            int length = 21;
            m.append(s, rnd.ints(length, 0, 50).toArray());
            for (int p = 0; p < length; p++) {
                for (int l = 0; l < layout.layers(); l++) {
                    float[] k = new float[layout.kvDim()];
                    float[] v = new float[layout.kvDim()];
                    for (int i = 0; i < k.length; i++) {
                        k[i] = (float) rnd.nextGaussian();
                        v[i] = (float) rnd.nextGaussian();
                    }
                    store.write(l, s.slot(p), k, v);
                }
            }
            float[] q = new float[4 * 32];
            for (int i = 0; i < q.length; i++) {
                q[i] = (float) rnd.nextGaussian();
            }
            float[] before = new float[q.length];
            PagedAttention.decode(store, 1, q, 4, s.blockTable(), length, before);

            PreemptedSequence p = m.preempt(s, PreemptionMode.SWAP);
            assertEquals(3, host.blocksSwappedOut());
            Sequence filler = m.open("filler");
            m.append(filler, rnd.ints(40, 100, 200).toArray()); // 5 blocks: reuses the freed ones
            for (int pos = 0; pos < 40; pos++) {
                float[] junk = new float[layout.kvDim()];
                java.util.Arrays.fill(junk, 9f);
                store.write(0, filler.slot(pos), junk, junk);
                store.write(1, filler.slot(pos), junk, junk);
            }
            Sequence back = m.resume(p);
            assertNotNull(back);
            assertEquals(length, back.length());
            float[] after = new float[q.length];
            PagedAttention.decode(store, 1, q, 4, back.blockTable(), length, after);
            assertArrayEquals(before, after, "bit-identical attention after the round trip");
            assertEquals(3 * layout.bytesPerBlock(), m.ledger().swappedOutBytes());
            assertEquals(3 * layout.bytesPerBlock(), m.ledger().swappedInBytes());
            assertEquals(8, host.freeBlocks());
            m.free(back);
            m.free(filler);
        }
    }
}
