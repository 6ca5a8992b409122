package dev.kvcache.offheap;

import dev.kvcache.CapacityPlanner;
import dev.kvcache.EvictionPolicy;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.Quantizer;
import dev.kvcache.Sequence;
import dev.kvcache.quant.Quantizers;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every name of ../shared/API.md used exactly as written there, so a rename or signature change
 * breaks this build before it breaks the engines that compile against the contract.
 */
class ApiContractTest {

    @Test
    void theContractCompilesAndHolds() {
        // Sizing
        KvFormat f16 = KvFormats.F16;
        List<KvFormat> named = List.of(KvFormats.F32, KvFormats.F16, KvFormats.BF16, KvFormats.FP8_E4M3,
                KvFormats.FP8_E5M2, KvFormats.Q8_0, KvFormats.Q4_0);
        assertEquals(7, named.size());
        KvLayout big = new KvLayout(32, 32, 128, 16, f16);
        String name = f16.name();
        assertEquals("F16", name);
        long perToken = big.bytesPerToken();
        long perBlock = big.bytesPerBlock();
        assertEquals(524_288, perToken);
        assertEquals(524_288L * 16, perBlock);
        long oneSeq = CapacityPlanner.kvBytes(big, 16_384);
        long seqs = CapacityPlanner.maxSequences(big, 8L << 30, 16_384);
        long ctx = CapacityPlanner.maxContextTokens(big, 8L << 30, 1);
        assertEquals(8L << 30, oneSeq);
        assertEquals(1, seqs);
        assertEquals(16_384, ctx);

        // The block manager, with the store and attention
        KvLayout layout = new KvLayout(2, 2, 32, 4, KvFormats.Q8_0);
        List<Object> events = new ArrayList<>();
        KvCacheListener listener = events::add;
        try (KvStore store = OffHeapKvStore.allocate(layout, 16);
             KvCacheManager m = KvCacheManager.builder(layout)
                     .blocks(16)
                     .prefixCaching(true)
                     .evictionPolicy(EvictionPolicy.lru())
                     .store(store)
                     .slidingWindow(4, 64)
                     .build()) {
            m.addListener(listener);
            Sequence s = m.open("a");
            int hits = m.append(s, 1, 2, 3, 4, 5, 6);
            assertEquals(0, hits);
            String id = s.id();
            int length = s.length();
            int blocks = s.blockCount();
            int[] table = s.blockTable();
            long slot = s.slot(5);
            assertEquals("a", id);
            assertEquals(6, length);
            assertEquals(2, blocks);
            assertEquals((long) table[1] * 4 + 1, slot);
            float[] k = new float[layout.kvDim()];
            float[] v = new float[layout.kvDim()];
            k[0] = 1f;
            v[0] = 2f;
            for (int p = 0; p < length; p++) {
                store.write(0, s.slot(p), k, v);
            }
            float[] back = new float[layout.kvDim()];
            store.readKey(0, slot, back);
            store.readValue(0, slot, back);
            assertEquals(2f, back[0], 0.02f);
            Sequence child = m.fork(s, "b");
            m.append(child, 7);
            assertTrue(m.sequence("b") == child);
            float[] q = new float[4 * 32];
            float[] out = new float[q.length];
            q[0] = 1f;
            PagedAttention.decode(store, 0, q, 4, s.blockTable(), s.length(), out);
            assertEquals(2f, out[0], 0.02f);
            int cached = m.cachedPrefixLength(1, 2, 3, 4, 5);
            assertEquals(4, cached);
            KvCacheStats st = m.stats();
            int total = st.totalBlocks();
            assertEquals(total, st.usedBlocks() + st.cachedBlocks() + st.emptyBlocks());
            long sum = st.liveSequences() + st.liveTokens() + st.prefixQueryTokens() + st.prefixHitTokens()
                    + st.allocationFailures() + st.evictedBlocks();
            assertTrue(sum > 0);
            boolean reset = m.resetPrefixCache();
            assertTrue(!reset, "blocks are in use");
            m.free(child);
            m.free(s);
            store.copyBlock(0, 1);
            int storeBlocks = store.blocks();
            assertEquals(16, storeBlocks);
            assertTrue(m.resetPrefixCache());
            assertTrue(events.size() >= 2);
        }

        // Quantizers
        Quantizer qz = Quantizers.of(KvFormats.Q8_0);
        assertEquals(KvFormats.Q8_0, qz.format());
        long bytes = qz.encodedBytes(2, 64);
        assertEquals(2 * 2 * 34, bytes);
        float[] src = new float[128];
        for (int i = 0; i < src.length; i++) {
            src[i] = i / 10f;
        }
        float[] dst = new float[128];
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(bytes);
            qz.encode(src, 2, 64, seg);
            qz.decode(seg, 2, 64, dst);
        }
        assertEquals(src[100], dst[100], 0.05f);
    }
}
