package dev.kvcache.offheap;

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

/**
 * The engine protocol against a real store and real attention: the manager publishes a prompt's
 * full blocks only once the engine has written their KV (next append, commit or free), so an engine
 * that fails before writing and aborts leaves nothing behind that a later identical prompt could
 * hit, and one that wrote and freed serves exactly the KV a fresh computation would give.
 */
class PublishAfterWriteTest {

    private static final int LAYERS = 2;
    private static final int KV_HEADS = 2;
    private static final int HEAD_DIM = 32;
    private static final int QUERY_HEADS = 4;
    private static final int BLOCK = 16;
    private static final int[] PROMPT = IntStream.range(0, 40).map(i -> 7 + 3 * i).toArray(); // 2 full blocks + 8

    static List<KvFormat> formats() {
        return List.of(KvFormats.F32, KvFormats.F16, KvFormats.Q8_0);
    }

    /** The "model": the true K/V of every prompt position, per layer, and one query per layer. */
    private record Truth(float[][][] k, float[][][] v, float[][] q) {
        static Truth of(long seed, int dim, int qdim) {
            SplittableRandom r = new SplittableRandom(seed);
            float[][][] k = new float[LAYERS][PROMPT.length][];
            float[][][] v = new float[LAYERS][PROMPT.length][];
            float[][] q = new float[LAYERS][];
            for (int l = 0; l < LAYERS; l++) {
                for (int p = 0; p < PROMPT.length; p++) {
                    k[l][p] = Reference.gaussian(r, dim, 1.0);
                    v[l][p] = Reference.gaussian(r, dim, 1.0);
                }
                q[l] = Reference.gaussian(r, qdim, 1.0);
            }
            return new Truth(k, v, q);
        }
    }

    private static void write(OffHeapKvStore store, Sequence s, Truth t, int from, int to) {
        for (int p = from; p < to; p++) {
            for (int l = 0; l < LAYERS; l++) {
                store.write(l, s.slot(p), t.k[l][p], t.v[l][p]);
            }
        }
    }

    private static float[][] decode(OffHeapKvStore store, Sequence s, Truth t) {
        float[][] out = new float[LAYERS][QUERY_HEADS * HEAD_DIM];
        for (int l = 0; l < LAYERS; l++) {
            PagedAttention.decode(store, l, t.q[l], QUERY_HEADS, s.blockTable(), s.length(), out[l]);
        }
        return out;
    }

    /** The prompt computed on a fresh store and manager: what every later answer must equal. */
    private static float[][] fresh(KvLayout layout, Truth t) {
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 8);
             KvCacheManager m = KvCacheManager.builder(layout).store(store).build()) {
            Sequence s = m.open("fresh");
            assertEquals(0, m.append(s, PROMPT));
            write(store, s, t, 0, PROMPT.length);
            float[][] out = decode(store, s, t);
            m.free(s);
            return out;
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void anAbortedPromptLeavesNothingToHitAndAWrittenOneServesExactlyItsKv(KvFormat format) {
        KvLayout layout = new KvLayout(LAYERS, KV_HEADS, HEAD_DIM, BLOCK, format);
        Truth truth = Truth.of(42, layout.kvDim(), QUERY_HEADS * HEAD_DIM);
        Truth garbage = Truth.of(7, layout.kvDim(), QUERY_HEADS * HEAD_DIM);
        float[][] want = fresh(layout, truth);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 8);
             KvCacheManager m = KvCacheManager.builder(layout).store(store).build()) {
            // 1. the engine appends the prompt, writes half of block 1 (wrong values, say a bad
            //    kernel), then throws before writing the rest: it aborts
            Sequence failed = m.open("failed");
            assertEquals(0, m.append(failed, PROMPT));
            write(store, failed, garbage, 0, 24);
            m.abort(failed);
            assertEquals(2, m.ledger().abortedBlocks());
            assertEquals(0, m.ledger().publishedBlocks());
            assertEquals(0, m.cachedPrefixLength(PROMPT));
            assertEquals(0, m.stats().cachedBlocks());

            // 2. the same prompt again: no hits; computed in full, it decodes like a fresh run
            Sequence again = m.open("again");
            assertEquals(0, m.append(again, PROMPT));
            write(store, again, truth, 0, PROMPT.length);
            assertArrayEquals(want, decode(store, again, truth));
            // written but not yet committed: a concurrent identical prompt would not hit it yet
            assertEquals(0, m.cachedPrefixLength(PROMPT));
            m.free(again); // the request ran to its end: its two full blocks are published

            // 3. a third identical prompt hits both full blocks; it computes only the rest, and
            //    attention over the cached KV equals the fresh computation exactly
            Sequence third = m.open("third");
            assertEquals(32, m.append(third, PROMPT));
            write(store, third, truth, 32, PROMPT.length);
            assertArrayEquals(want, decode(store, third, truth));

            // 4. while third lives, a fourth shares its blocks once third commits (its KV is written)
            Sequence fourth = m.open("fourth");
            m.commit(third);
            assertEquals(32, m.append(fourth, PROMPT));
            assertEquals(third.blockTable()[0], fourth.blockTable()[0]);
            assertEquals(third.blockTable()[1], fourth.blockTable()[1]);
            write(store, fourth, truth, 32, PROMPT.length);
            assertArrayEquals(want, decode(store, fourth, truth));
            m.free(third);
            m.free(fourth);
            assertEquals(2, m.ledger().abortedBlocks());
        }
    }
}
