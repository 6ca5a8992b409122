package dev.kvcache.offheap;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.retention.AttentionMass;
import dev.kvcache.retention.HeavyHitterRetention;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Decode that skips dropped tokens and reports attention mass, against a float64 reference. */
class RetentionAttentionTest {

    private static final int QUERY_HEADS = 4;

    private record Setup(KvLayout layout, OffHeapKvStore store, KvCacheManager manager, Sequence seq,
                         float[][][] k, float[][][] v) implements AutoCloseable {
        @Override
        public void close() {
            manager.free(seq);
            manager.close();
            store.close();
        }
    }

    private static Setup setup(long seed, int length) {
        Random rnd = new Random(seed);
        KvLayout layout = new KvLayout(1, 2, 16, 8, KvFormats.F32);
        OffHeapKvStore store = OffHeapKvStore.allocate(layout, 64);
        KvCacheManager m = KvCacheManager.builder(layout).store(store).build();
        Sequence s = m.open("s");
        int[] ids = new int[length];
        for (int i = 0; i < length; i++) {
            ids[i] = rnd.nextInt(100);
        }
        m.append(s, ids);
        float[][][] k = new float[1][length][layout.kvDim()];
        float[][][] v = new float[1][length][layout.kvDim()];
        for (int p = 0; p < length; p++) {
            for (int i = 0; i < layout.kvDim(); i++) {
                k[0][p][i] = (float) (rnd.nextGaussian() * 2);
                v[0][p][i] = (float) rnd.nextGaussian();
            }
            store.write(0, s.slot(p), k[0][p], v[0][p]);
        }
        return new Setup(layout, store, m, s, k, v);
    }

    /** float64 attention over the positions not dropped; fills probs[h][p] when non-null. */
    private static double[] reference(Setup su, float[] q, double[][] probs) {
        KvLayout l = su.layout();
        int dim = l.headDim();
        int group = QUERY_HEADS / l.kvHeads();
        int n = su.seq().length();
        double[] out = new double[QUERY_HEADS * dim];
        for (int h = 0; h < QUERY_HEADS; h++) {
            int kv = (h / group) * dim;
            double[] sc = new double[n];
            double mx = Double.NEGATIVE_INFINITY;
            for (int p = 0; p < n; p++) {
                if (su.seq().isDropped(p)) {
                    sc[p] = Double.NEGATIVE_INFINITY;
                    continue;
                }
                double d = 0;
                for (int i = 0; i < dim; i++) {
                    d += (double) q[h * dim + i] * su.k()[0][p][kv + i];
                }
                sc[p] = d / Math.sqrt(dim);
                mx = Math.max(mx, sc[p]);
            }
            double z = 0;
            for (int p = 0; p < n; p++) {
                z += sc[p] == Double.NEGATIVE_INFINITY ? 0 : Math.exp(sc[p] - mx);
            }
            for (int p = 0; p < n; p++) {
                double w = sc[p] == Double.NEGATIVE_INFINITY ? 0 : Math.exp(sc[p] - mx) / z;
                if (probs != null) {
                    probs[h][p] = w;
                }
                for (int i = 0; i < dim; i++) {
                    out[h * dim + i] += w * su.v()[0][p][kv + i];
                }
            }
        }
        return out;
    }

    private static float[] query(Random rnd, int size) {
        float[] q = new float[size];
        for (int i = 0; i < size; i++) {
            q[i] = (float) rnd.nextGaussian();
        }
        return q;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 7, 8, 29, 64})
    void droppedTokensTakeNoPartAndMassMatchesTheProbabilities(int length) {
        Random rnd = new Random(length * 31L + System.nanoTime());
        try (Setup su = setup(rnd.nextLong(), length)) {
            int[] drop = rnd.ints(length / 3, 0, length).toArray();
            su.manager().dropTokens(su.seq(), drop, 0, drop.length);
            float[] q = query(rnd, QUERY_HEADS * su.layout().headDim());
            float[] out = new float[q.length];
            AttentionMass mass = new AttentionMass(length);
            PagedAttention.decode(su.store(), 0, q, QUERY_HEADS, su.seq().blockTable(), length, out, su.seq(), mass);
            double[][] probs = new double[QUERY_HEADS][length];
            double[] ref = reference(su, q, probs);
            for (int i = 0; i < out.length; i++) {
                assertEquals(ref[i], out[i], 1e-4, "out[" + i + "]");
            }
            double total = 0;
            for (int p = 0; p < length; p++) {
                double expected = 0;
                for (int h = 0; h < QUERY_HEADS; h++) {
                    expected += probs[h][p];
                }
                assertEquals(expected, mass.get(p), 1e-5, "mass of position " + p);
                if (su.seq().isDropped(p)) {
                    assertEquals(0f, mass.get(p), "a dropped token gets no attention");
                }
                total += mass.get(p);
            }
            boolean anyKept = false;
            for (int p = 0; p < length; p++) {
                anyKept |= !su.seq().isDropped(p);
            }
            assertEquals(anyKept ? QUERY_HEADS : 0, total, 1e-4, "each head's probabilities sum to one");
            // without mask or mass it is the plain decode
            float[] plain = new float[q.length];
            PagedAttention.decode(su.store(), 0, q, QUERY_HEADS, su.seq().blockTable(), length, plain, null, null);
            float[] direct = new float[q.length];
            PagedAttention.decode(su.store(), 0, q, QUERY_HEADS, su.seq().blockTable(), length, direct);
            assertArrayEquals(direct, plain);
        }
    }

    @Test
    void heavyHittersFedByTheKernelFreeBlocksAndKeepTheOutputClose() {
        Random rnd = new Random(11);
        int length = 64;
        try (Setup su = setup(5, length)) {
            // make positions 20 and 41 attract every query: large keys along the query direction
            float[] q = query(rnd, QUERY_HEADS * su.layout().headDim());
            AttentionMass mass = new AttentionMass(length);
            float[] out = new float[q.length];
            for (int step = 0; step < 4; step++) {
                PagedAttention.decode(su.store(), 0, q, QUERY_HEADS, su.seq().blockTable(), length, out, null, mass);
            }
            HeavyHitterRetention h2o = new HeavyHitterRetention(4, 16, 16, true);
            int[] drop = h2o.select(su.seq(), mass, su.layout().blockTokens());
            int held = su.seq().heldBlocks();
            int released = su.manager().dropTokens(su.seq(), drop, 0, drop.length);
            assertEquals(held - released, su.seq().heldBlocks());
            assertTrue(released >= 3, "released " + released);
            float[] after = new float[q.length];
            PagedAttention.decode(su.store(), 0, q, QUERY_HEADS, su.seq().blockTable(), length, after, su.seq(), null);
            double[] ref = reference(su, q, null);
            for (int i = 0; i < after.length; i++) {
                assertEquals(ref[i], after[i], 1e-4);
            }
        }
    }

    @Test
    void masksNeedTheOffHeapStoreAndALongEnoughSequence() {
        try (Setup su = setup(3, 10)) {
            float[] q = new float[QUERY_HEADS * 16];
            float[] out = new float[q.length];
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PagedAttention.decode(
                    su.store(), 0, q, QUERY_HEADS, new int[] {0, 1, 2}, 20, out, su.seq(), null));
            assertTrue(e.getMessage().contains("20"), e.getMessage());
        }
    }
}
