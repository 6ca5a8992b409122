package dev.kvcache.redis;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;
import dev.kvcache.TierEntry;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

/** Test KV: deterministic per (seed, position, layer), so two "engines" compute the same values. */
final class Kv {

    private Kv() {
    }

    static float[] vector(long seed, int pos, int layer, int which, int dim) {
        SplittableRandom r = new SplittableRandom(seed * 1_000_003L + pos * 31L + layer * 7L + which);
        float[] out = new float[dim];
        for (int i = 0; i < dim; i++) {
            out[i] = (float) (r.nextDouble() * 4 - 2);
        }
        return out;
    }

    /** Writes K and V of positions [from, to) of {@code s} ("computes" them). */
    static void write(KvStore store, Sequence s, long seed, int from, int to) {
        KvLayout l = store.layout();
        for (int p = from; p < to; p++) {
            for (int layer = 0; layer < l.layers(); layer++) {
                store.write(layer, s.slot(p), vector(seed, p, layer, 0, l.kvDim()), vector(seed, p, layer, 1, l.kvDim()));
            }
        }
    }

    /** Fills block {@code b} of {@code store} as positions [0, blockTokens) of prompt {@code seed}. */
    static void fillBlock(KvStore store, int b, long seed) {
        KvLayout l = store.layout();
        for (int t = 0; t < l.blockTokens(); t++) {
            for (int layer = 0; layer < l.layers(); layer++) {
                store.write(layer, (long) b * l.blockTokens() + t, vector(seed, t, layer, 0, l.kvDim()),
                        vector(seed, t, layer, 1, l.kvDim()));
            }
        }
    }

    /** The exported bytes of block {@code b}. */
    static byte[] export(KvStore store, int b) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment seg = a.allocate(store.layout().bytesPerBlock());
            store.exportBlock(b, seg);
            return seg.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        }
    }

    /** The entries of a prompt's full blocks, chained from the root of (salt, scope). */
    static TierEntry[] entries(KvLayout l, int[] tokens, long salt, String scope) {
        int n = tokens.length / l.blockTokens();
        TierEntry[] out = new TierEntry[n];
        PrefixKey parent = PrefixKey.root(salt, scope);
        for (int j = 0; j < n; j++) {
            PrefixKey k = PrefixKey.chain(parent, tokens, j * l.blockTokens(), l.blockTokens());
            int[] t = java.util.Arrays.copyOfRange(tokens, j * l.blockTokens(), (j + 1) * l.blockTokens());
            out[j] = new TierEntry(k, j == 0 ? null : parent, salt, scope, t, TierEntry.fingerprint(l));
            parent = k;
        }
        return out;
    }

    static PrefixKey[] keys(TierEntry[] es) {
        PrefixKey[] k = new PrefixKey[es.length];
        for (int i = 0; i < es.length; i++) {
            k[i] = es[i].key();
        }
        return k;
    }

    static int[] tokens(int n, int base) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = base + i * 7 % 9973;
        }
        return t;
    }
}
