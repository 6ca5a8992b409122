package dev.kvcache.testkit;

import dev.kvcache.BlockCopier;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.KvTier;
import dev.kvcache.PrefixKey;
import dev.kvcache.SwapSpace;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The engine side of a {@link ManagerModel} run: what KV each physical slot holds, recorded as what
 * it was computed from (the cache salt, then the tokens up to and including its position). The manager
 * never sees this; the model writes a slot only where a real engine would (the tokens an append
 * did not get as hits), copies slots where the manager asks for a copy-on-write, and moves them
 * through an in-memory {@link SwapSpace}. "Served KV computed for another prefix" then shows as a
 * slot whose recorded prefix differs from the reader's.
 *
 * <p>With a {@link StoreUnderTest}, every write, copy, swap and tier move also goes through the
 * user's store (vectors derived from the recorded prefix, see {@link #vector}), and
 * {@link #checkStore} reads them back.
 *
 * <p>Faults on demand: the copier can be armed to copy half a block and throw (a device error in
 * the middle of a copy).
 */
final class ModelEngine implements BlockCopier {

    private final int blockTokens;
    private final Map<Long, List<Integer>> written = new HashMap<>();
    private boolean failCopies;
    private int copies;
    final Swap swap;
    /** The user's store, or null. */
    private final KvStore user;
    private final StoreUnderTest underTest;
    private final int layers;
    private final int dim;
    private final float[] readBuffer;

    ModelEngine(int blockTokens, int swapBlocks) {
        this(blockTokens, swapBlocks, null, 0);
    }

    /** An engine whose KV also lives in the store {@code underTest} creates (null: none). */
    ModelEngine(int blockTokens, int swapBlocks, StoreUnderTest underTest, int blocks) {
        this.blockTokens = blockTokens;
        this.swap = new Swap(swapBlocks);
        this.underTest = underTest;
        if (underTest == null) {
            this.user = null;
            this.layers = 0;
            this.dim = 0;
        } else {
            KvLayout layout = underTest.layout(blockTokens);
            this.user = java.util.Objects.requireNonNull(underTest.factory().create(layout, blocks),
                    "StoreUnderTest.factory() returned null");
            if (!layout.equals(user.layout()) || user.blocks() != blocks) {
                KvStore created = user;
                created.close();
                throw new IllegalArgumentException("the store under test has layout " + created.layout() + " and "
                        + created.blocks() + " blocks; the model asked for " + layout + " and " + blocks);
            }
            this.layers = layout.layers();
            this.dim = layout.kvDim();
        }
        this.readBuffer = new float[Math.max(dim, 1)];
    }

    /** The user's store, or null. */
    KvStore userStore() {
        return user;
    }

    /** Closes the user's store, if any. */
    void close() {
        if (user != null) {
            user.close();
        }
    }

    /**
     * The K ({@code value == false}) or V vector the model writes for a slot whose KV was computed
     * from {@code identity}, at {@code layer}: {@code dim} integers in [-7, 7] from a SplitMix64
     * hash of the identity, the layer and K/V.
     */
    static float[] vector(List<Integer> identity, int layer, boolean value, int dim) {
        long h = 0x9E3779B97F4A7C15L * (layer * 2L + (value ? 1 : 0) + 1);
        for (int x : identity) {
            h = mix(h ^ x);
        }
        float[] out = new float[dim];
        for (int d = 0; d < dim; d++) {
            h = mix(h + d);
            out[d] = (int) Math.floorMod(h, 15L) - 7;
        }
        return out;
    }

    private static long mix(long z) {
        z += 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /**
     * Reads {@code slot} of the user's store back and checks it against the vectors of the prefix
     * recorded for it; returns null when it matches (or there is no user store or nothing was
     * written there), else what is wrong.
     */
    String checkStore(long slot) {
        List<Integer> id = written.get(slot);
        if (user == null || id == null) {
            return null;
        }
        for (int layer = 0; layer < layers; layer++) {
            for (boolean value : new boolean[] {false, true}) {
                float[] want = vector(id, layer, value, dim);
                if (value) {
                    user.readValue(layer, slot, readBuffer);
                } else {
                    user.readKey(layer, slot, readBuffer);
                }
                for (int d = 0; d < dim; d++) {
                    if (!(Math.abs(readBuffer[d] - want[d]) <= underTest.tolerance())) {
                        return "the store under test reads " + (value ? "V" : "K") + "[" + d + "] = " + readBuffer[d]
                                + " at layer " + layer + ", slot " + slot + "; the KV written for " + id + " has "
                                + want[d] + " (tolerance " + underTest.tolerance() + ", "
                                + underTest.format().name() + ")";
                    }
                }
            }
        }
        return null;
    }

    /** A slot's contents in the user's store: [layer][K, V] vectors, or null without one. */
    private float[][] readSlot(long slot) {
        if (user == null) {
            return null;
        }
        float[][] out = new float[layers * 2][dim];
        for (int layer = 0; layer < layers; layer++) {
            user.readKey(layer, slot, out[layer * 2]);
            user.readValue(layer, slot, out[layer * 2 + 1]);
        }
        return out;
    }

    private void writeSlot(long slot, float[][] kv) {
        if (kv != null) {
            for (int layer = 0; layer < layers; layer++) {
                user.write(layer, slot, kv[layer * 2], kv[layer * 2 + 1]);
            }
        }
    }

    /** One block's KV as the engine and the user's store hold it. */
    private record Image(List<List<Integer>> ids, List<float[][]> bytes) {
    }

    private Image snapshot(int block) {
        List<List<Integer>> ids = new ArrayList<>(blockTokens);
        List<float[][]> bytes = new ArrayList<>(blockTokens);
        for (int o = 0; o < blockTokens; o++) {
            long slot = (long) block * blockTokens + o;
            ids.add(written.get(slot));
            bytes.add(readSlot(slot));
        }
        return new Image(ids, bytes);
    }

    private void restore(Image image, int block) {
        for (int o = 0; o < blockTokens; o++) {
            long slot = (long) block * blockTokens + o;
            List<Integer> id = image.ids().get(o);
            if (id == null) {
                written.remove(slot);
            } else {
                written.put(slot, id);
            }
            writeSlot(slot, image.bytes().get(o));
        }
    }

    /** The prefix slot {@code slot} was last written for, or null. */
    List<Integer> at(long slot) {
        return written.get(slot);
    }

    /** Writes at {@code slot} KV computed from {@code identity} (salt, then the tokens up to its position). */
    void write(long slot, List<Integer> identity) {
        List<Integer> id = List.copyOf(identity);
        if (user != null) {
            for (int layer = 0; layer < layers; layer++) {
                user.write(layer, slot, vector(id, layer, false, dim), vector(id, layer, true, dim));
            }
        }
        written.put(slot, id);
    }

    void failCopies(boolean on) {
        failCopies = on;
    }

    int copies() {
        return copies;
    }

    @Override
    public void copy(int src, int dst) {
        int n = failCopies ? blockTokens / 2 : blockTokens;
        if (user != null && !failCopies) {
            user.copyBlock(src, dst); // the store's own copy is what is under test
        }
        for (int o = 0; o < n; o++) {
            copySlot((long) src * blockTokens + o, (long) dst * blockTokens + o, user != null && failCopies);
        }
        if (failCopies) {
            throw new IllegalStateException("injected copy failure " + src + " -> " + dst);
        }
        copies++;
    }

    private void copySlot(long from, long to, boolean bytesToo) {
        List<Integer> v = written.get(from);
        if (v == null) {
            written.remove(to);
        } else {
            written.put(to, v);
        }
        if (bytesToo) {
            writeSlot(to, readSlot(from)); // half a copy: the store holds what the engine map says
        }
    }

    /** The engine as a {@link KvStore} (a tier needs one): copies are the engine's, nothing else is used. */
    KvStore storeView(KvLayout layout, int blocks) {
        ModelEngine engine = this;
        KvStore user = this.user;
        return new KvStore() {
            @Override
            public KvLayout layout() {
                return layout;
            }

            @Override
            public int blocks() {
                return blocks;
            }

            @Override
            public void write(int layer, long slot, float[] k, float[] v) {
                throw new UnsupportedOperationException("the model writes through the engine");
            }

            @Override
            public void readKey(int layer, long slot, float[] out) {
                throw new UnsupportedOperationException("the model reads through the engine");
            }

            @Override
            public void readValue(int layer, long slot, float[] out) {
                throw new UnsupportedOperationException("the model reads through the engine");
            }

            @Override
            public void copyBlock(int srcBlock, int dstBlock) {
                engine.copy(srcBlock, dstBlock);
            }

            @Override
            public void blockReleased(int block) {
                if (user != null) {
                    user.blockReleased(block);
                }
            }

            @Override
            public void close() {
                // the engine closes the user's store at the end of the run
            }
        };
    }

    /** A small LRU tier over the engine's slots; with {@code faults}, every fifth call throws. */
    Tier tier(int capacity, boolean faults) {
        return new Tier(capacity, faults);
    }

    /**
     * A tier of {@code capacity} blocks that keeps what each slot of a block was computed for, and
     * verifies entries as the SPI asks. Faulty, it throws on every fifth call.
     */
    final class Tier implements KvTier {
        private final int capacity;
        private final boolean faults;
        private final LinkedHashMap<PrefixKey, TierEntry> entries = new LinkedHashMap<>(16, 0.75f, true);
        private final Map<PrefixKey, Image> slots = new HashMap<>();
        private int calls;
        long loads;

        Tier(int capacity, boolean faults) {
            this.capacity = capacity;
            this.faults = faults;
        }

        private void maybeFail() {
            if (faults && ++calls % 5 == 0) {
                throw new IllegalStateException("injected tier failure");
            }
        }

        @Override
        public String name() {
            return "model";
        }

        @Override
        public int leadingHits(PrefixKey[] keys, int from, int count) {
            maybeFail();
            int n = 0;
            while (n < count && entries.containsKey(keys[from + n])) {
                n++;
            }
            return n;
        }

        @Override
        public boolean put(TierEntry entry, KvStore store, int block) {
            maybeFail();
            if (!entries.containsKey(entry.key()) && entries.size() == capacity) {
                Iterator<PrefixKey> lru = entries.keySet().iterator();
                slots.remove(lru.next());
                lru.remove();
            }
            Image copy = snapshot(block);
            entries.put(entry.key(), entry);
            slots.put(entry.key(), copy);
            return true;
        }

        @Override
        public boolean load(TierEntry expected, KvStore store, int block) {
            maybeFail();
            TierEntry held = entries.get(expected.key());
            if (held == null || !held.matches(expected)) {
                return false;
            }
            restore(slots.get(expected.key()), block);
            loads++;
            return true;
        }

        @Override
        public boolean remove(PrefixKey key) {
            slots.remove(key);
            return entries.remove(key) != null;
        }

        @Override
        public TierStats stats() {
            return new TierStats(name(), entries.size(), entries.size(), capacity, 0, 0, loads, 0, 0, 0, 0);
        }

        @Override
        public void close() {
        }
    }

    /** Host memory for swapped blocks, each handle used once. */
    final class Swap implements SwapSpace {
        private final int capacity;
        private final Map<Long, Image> held = new HashMap<>();
        private long next = 1;

        Swap(int capacity) {
            this.capacity = capacity;
        }

        @Override
        public long bytesPerBlock() {
            return 1;
        }

        @Override
        public int freeBlocks() {
            return capacity - held.size();
        }

        @Override
        public long swapOut(int block) {
            if (held.size() == capacity) {
                return -1;
            }
            held.put(next, snapshot(block));
            return next++;
        }

        @Override
        public void swapIn(long handle, int block) {
            Image image = held.remove(handle);
            if (image == null) {
                throw new IllegalArgumentException("swap handle " + handle + " is not held");
            }
            restore(image, block);
        }

        @Override
        public void discard(long handle) {
            if (held.remove(handle) == null) {
                throw new IllegalArgumentException("swap handle " + handle + " is not held");
            }
        }

        int held() {
            return held.size();
        }
    }
}
