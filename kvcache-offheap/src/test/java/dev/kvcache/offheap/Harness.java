package dev.kvcache.offheap;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.Sequence;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A block manager over an {@link OffHeapKvStore} plus, per sequence and layer, the original float
 * K/V of every position, so attention can be checked against a float64 reference.
 */
final class Harness implements AutoCloseable {

    final KvLayout layout;
    final OffHeapKvStore store;
    final KvCacheManager manager;
    final SplittableRandom rnd;
    private final Map<String, List<float[]>[]> keys = new HashMap<>();
    private final Map<String, List<float[]>[]> values = new HashMap<>();
    private int nextToken = 1;

    Harness(KvLayout layout, int blocks, long seed, KvCacheManager.Builder configured) {
        this.layout = layout;
        this.store = OffHeapKvStore.allocate(layout, blocks);
        this.manager = (configured != null ? configured : KvCacheManager.builder(layout).prefixCaching(false))
                .store(store).build();
        this.rnd = new SplittableRandom(seed);
    }

    Harness(KvLayout layout, int blocks, long seed) {
        this(layout, blocks, seed, null);
    }

    Sequence open(String id) {
        Sequence s = manager.open(id);
        keys.put(id, newLists());
        values.put(id, newLists());
        return s;
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private List<float[]>[] newLists() {
        List<float[]>[] l = new List[layout.layers()];
        for (int i = 0; i < l.length; i++) {
            l[i] = new ArrayList<>();
        }
        return l;
    }

    /** Appends {@code n} fresh tokens and writes random K/V for them in every layer. */
    void append(Sequence s, int n) {
        int[] tokens = new int[n];
        for (int i = 0; i < n; i++) {
            tokens[i] = nextToken++;
        }
        int start = s.length();
        int r = manager.append(s, tokens);
        assertTrue(r >= 0, "append failed: pool exhausted");
        for (int p = start; p < start + n; p++) {
            long slot = s.slot(p);
            for (int layer = 0; layer < layout.layers(); layer++) {
                float[] k = Reference.gaussian(rnd, layout.kvDim(), 1.0);
                float[] v = Reference.gaussian(rnd, layout.kvDim(), 1.0);
                store.write(layer, slot, k, v);
                keys.get(s.id())[layer].add(k);
                values.get(s.id())[layer].add(v);
            }
        }
    }

    Sequence fork(Sequence parent, String childId) {
        Sequence c = manager.fork(parent, childId);
        List<float[]>[] k = newLists();
        List<float[]>[] v = newLists();
        for (int layer = 0; layer < layout.layers(); layer++) {
            k[layer].addAll(keys.get(parent.id())[layer]);
            v[layer].addAll(values.get(parent.id())[layer]);
        }
        keys.put(childId, k);
        values.put(childId, v);
        return c;
    }

    float[][] originalKeys(Sequence s, int layer) {
        return keys.get(s.id())[layer].toArray(new float[0][]);
    }

    float[][] originalValues(Sequence s, int layer) {
        return values.get(s.id())[layer].toArray(new float[0][]);
    }

    /** What the store returns for every kept position (zeros for released ones). */
    float[][] storedKeys(KvStore st, Sequence s, int layer) {
        return stored(st, s, layer, true);
    }

    float[][] storedValues(KvStore st, Sequence s, int layer) {
        return stored(st, s, layer, false);
    }

    private float[][] stored(KvStore st, Sequence s, int layer, boolean key) {
        float[][] a = new float[s.length()][layout.kvDim()];
        for (int p = 0; p < s.length(); p++) {
            long slot = s.slot(p);
            if (slot >= 0) {
                if (key) {
                    st.readKey(layer, slot, a[p]);
                } else {
                    st.readValue(layer, slot, a[p]);
                }
            }
        }
        return a;
    }

    static boolean[] kept(Sequence s) {
        boolean[] k = new boolean[s.length()];
        for (int p = 0; p < k.length; p++) {
            k[p] = s.slot(p) >= 0;
        }
        return k;
    }

    /**
     * Decodes {@code s} at {@code layer} with a fresh random query and checks it against the float64
     * reference over the store's dequantized values ({@code tolStored}) and over the original
     * floats ({@code tolOriginal}). Returns {max error vs stored, max error vs original}.
     */
    double[] check(Sequence s, int layer, int queryHeads, double tolStored, double tolOriginal) {
        int dim = layout.headDim();
        float[] q = Reference.gaussian(rnd, queryHeads * dim, 1.0);
        float[] out = new float[queryHeads * dim];
        PagedAttention.decode(store, layer, q, queryHeads, s.blockTable(), s.length(), out);
        boolean[] kept = kept(s);
        double[] refStored = Reference.attention(storedKeys(store, s, layer), storedValues(store, s, layer),
                kept, s.length(), q, queryHeads, layout.kvHeads(), dim);
        double[] refOrig = Reference.attention(originalKeys(s, layer), originalValues(s, layer),
                kept, s.length(), q, queryHeads, layout.kvHeads(), dim);
        double eStored = Reference.maxAbsDiff(out, refStored);
        double eOrig = Reference.maxAbsDiff(out, refOrig);
        String what = layout.format() + " len=" + s.length() + " qh=" + queryHeads + " layer=" + layer;
        if (System.getenv("KVCACHE_REPORT_ERRORS") != null) {
            System.out.printf("ERR %s stored=%.3g original=%.3g%n", what, eStored, eOrig);
        }
        assertTrue(eStored <= tolStored, what + ": error vs float64 over stored values " + eStored
                + " > " + tolStored);
        assertTrue(eOrig <= tolOriginal, what + ": error vs float64 over original values " + eOrig
                + " > " + tolOriginal);
        assertEquals(queryHeads * dim, out.length);
        return new double[] {eStored, eOrig};
    }

    @Override
    public void close() {
        for (String id : manager.liveSequenceIds()) {
            manager.free(manager.sequence(id));
        }
        manager.close();
        store.close();
    }
}
