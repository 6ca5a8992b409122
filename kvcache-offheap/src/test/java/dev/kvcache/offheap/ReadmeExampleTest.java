package dev.kvcache.offheap;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The README's engine example, runnable: if this stops compiling, the README is wrong. */
class ReadmeExampleTest {

    @Test
    void theReadmeExampleRuns() {
        Random rnd = new Random(7);
        int queryHeads = 4;
        int layer = 1;
        int[] promptIds = new int[40];
        for (int i = 0; i < promptIds.length; i++) {
            promptIds[i] = rnd.nextInt(512);
        }
        int nextToken = 3;
        KvLayout layout = new KvLayout(2, 2, 32, 16, KvFormats.Q8_0);  // layers, KV heads, head dim, block tokens
        float[][][] k = new float[layout.layers()][41][layout.kvDim()];
        float[][][] v = new float[layout.layers()][41][layout.kvDim()];
        for (float[][] perLayer : k) {
            for (float[] row : perLayer) {
                for (int i = 0; i < row.length; i++) {
                    row[i] = (float) rnd.nextGaussian();
                }
            }
        }
        for (float[][] perLayer : v) {
            for (float[] row : perLayer) {
                for (int i = 0; i < row.length; i++) {
                    row[i] = (float) rnd.nextGaussian();
                }
            }
        }
        float[] q = new float[queryHeads * layout.headDim()];
        float[] out = new float[q.length];
        q[0] = 1f;
        KvCacheStats end;
        // --- the README example, unchanged but for the 'int pos' loop bounds ---
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 64);
             KvCacheManager kv = KvCacheManager.builder(layout).store(store).build()) {
            Sequence s = kv.open("req-1");
            int cached = kv.append(s, promptIds);                 // -1: no room (nothing changed); else prefix hits
            assertEquals(0, cached);
            for (int pos = cached; pos < s.length(); pos++)       // compute KV only for what the cache lacks
                for (int l = 0; l < layout.layers(); l++)
                    store.write(l, s.slot(pos), k[l][pos], v[l][pos]);
            Sequence beam = kv.fork(s, "req-1/beam-2");           // shares every block; copy-on-write later
            kv.append(s, nextToken);                              // decode: one slot per step
            for (int l = 0; l < layout.layers(); l++)
                store.write(l, s.slot(40), k[l][40], v[l][40]);
            PagedAttention.decode(store, layer, q, queryHeads, s.blockTable(), s.length(), out);
            assertEquals(1, kv.ledger().copyOnWrites(), "s wrote into the partial block it shared with beam");
            float[] beamKey = new float[layout.kvDim()];
            store.readKey(layer, beam.slot(39), beamKey);
            float[] own = new float[layout.kvDim()];
            store.readKey(layer, s.slot(39), own);
            assertEquals(beamKey[0], own[0], "the copy carried the block's KV");
            kv.free(beam);
            kv.free(s);                                           // full blocks stay cached for the next prompt
            end = kv.stats();
            Sequence again = kv.open("req-2");
            assertEquals(32, kv.append(again, promptIds), "two full blocks of the prompt come from the cache");
            kv.free(again);
        }
        assertEquals(0, end.usedBlocks());
        assertEquals(2, end.cachedBlocks());
        for (float x : out) {
            assertTrue(Float.isFinite(x));
        }
        assertTrue(out[0] != 0f);
    }
}
