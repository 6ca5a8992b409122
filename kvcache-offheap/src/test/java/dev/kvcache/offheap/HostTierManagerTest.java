package dev.kvcache.offheap;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The manager with a {@link HostTier} below an {@link OffHeapKvStore}, end to end: a prompt whose
 * blocks were evicted from the store comes back from host memory, and attention over the promoted
 * blocks equals attention over a fresh computation, in every format.
 */
class HostTierManagerTest {

    private static final int LAYERS = 2;
    private static final int KV_HEADS = 2;
    private static final int HEAD_DIM = 32;
    private static final int QUERY_HEADS = 4;
    private static final int B = 16;
    private static final int[] PROMPT = IntStream.range(0, 40).map(i -> 7 + 3 * i).toArray(); // 2 full blocks + 8
    private static final int[] OTHER = IntStream.range(0, 60).map(i -> 1000 + i).toArray();    // 4 blocks

    static List<KvFormat> formats() {
        return List.of(KvFormats.F32, KvFormats.F16, KvFormats.BF16, KvFormats.FP8_E4M3, KvFormats.FP8_E5M2,
                KvFormats.Q8_0, KvFormats.Q4_0, KvFormats.KIVI_2, KvFormats.KIVI_4);
    }

    private static float[][][] kv(long seed, int n, int dim) {
        SplittableRandom r = new SplittableRandom(seed);
        float[][][] out = new float[LAYERS][n][];
        for (int l = 0; l < LAYERS; l++) {
            for (int p = 0; p < n; p++) {
                out[l][p] = Reference.gaussian(r, dim, 1.0);
            }
        }
        return out;
    }

    private static void write(OffHeapKvStore store, Sequence s, float[][][] k, float[][][] v, int from, int to) {
        for (int p = from; p < to; p++) {
            for (int l = 0; l < LAYERS; l++) {
                store.write(l, s.slot(p), k[l][p], v[l][p]);
            }
        }
    }

    private static float[][] decode(OffHeapKvStore store, Sequence s, float[][] q) {
        float[][] out = new float[LAYERS][QUERY_HEADS * HEAD_DIM];
        for (int l = 0; l < LAYERS; l++) {
            PagedAttention.decode(store, l, q[l], QUERY_HEADS, s.blockTable(), s.length(), out[l]);
        }
        return out;
    }

    @ParameterizedTest
    @MethodSource("formats")
    void anEvictedPromptComesBackFromHostMemoryAndAttendsAsAFreshOne(KvFormat f) {
        KvLayout layout = new KvLayout(LAYERS, KV_HEADS, HEAD_DIM, B, f);
        int dim = layout.kvDim();
        float[][][] k = kv(1, PROMPT.length, dim);
        float[][][] v = kv(2, PROMPT.length, dim);
        float[][][] ko = kv(3, OTHER.length, dim);
        float[][][] vo = kv(4, OTHER.length, dim);
        float[][][] queries = kv(5, 1, QUERY_HEADS * HEAD_DIM);
        float[][] q = new float[LAYERS][];
        for (int l = 0; l < LAYERS; l++) {
            q[l] = queries[l][0];
        }
        float[][] expected;
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4);
             KvCacheManager m = KvCacheManager.builder(layout).store(store).build()) {
            Sequence s = m.open("fresh");
            m.append(s, PROMPT);
            write(store, s, k, v, 0, PROMPT.length);
            expected = decode(store, s, q);
            m.free(s);
        }
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4);
             HostTier host = HostTier.allocate(layout, 4 * layout.bytesPerBlock());
             KvCacheManager m = KvCacheManager.builder(layout).store(store).tier(host).build()) {
            Sequence a = m.open("a");
            assertEquals(0, m.append(a, PROMPT));
            write(store, a, k, v, 0, PROMPT.length);
            m.free(a);                                          // its 2 full blocks published, cached
            Sequence o = m.open("o");
            assertEquals(0, m.append(o, OTHER));                // takes all 4 blocks: both cached ones evicted
            write(store, o, ko, vo, 0, OTHER.length);
            m.free(o);
            KvCacheLedger l = m.ledger();
            assertTrue(l.demotedBlocks() >= 2, "the prompt's blocks went to host memory: " + l.demotedBlocks());

            Sequence c = m.open("c");
            int served = m.append(c, PROMPT);
            assertEquals(32, served, f + ": both full blocks come back from the host tier");
            write(store, c, k, v, served, PROMPT.length);       // the engine computes only the rest
            assertArrayEquals(expected, decode(store, c, q), f + ": attention over promoted blocks");
            l = m.ledger();
            assertEquals(2, l.promotedBlocks());
            assertEquals(32, l.tierHitTokens());
            assertEquals(1, l.tiers().size());
            assertEquals(2, l.tiers().get(0).loads());
            m.free(c);
        }
    }
}
