package dev.kvcache.model;

import dev.kvcache.BlockCopier;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.KvTier;
import dev.kvcache.PrefixKey;
import dev.kvcache.SwapSpace;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;

import java.util.Iterator;
import java.util.LinkedHashMap;

import java.util.ArrayList;
import java.util.HashMap;
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
 * <p>Faults on demand: the copier can be armed to copy half a block and throw (a device error in
 * the middle of a copy).
 */
final class ModelEngine implements BlockCopier {

    private final int blockTokens;
    private final Map<Long, List<Integer>> written = new HashMap<>();
    private boolean failCopies;
    private int copies;
    final Swap swap;

    ModelEngine(int blockTokens, int swapBlocks) {
        this.blockTokens = blockTokens;
        this.swap = new Swap(swapBlocks);
    }

    /** The prefix slot {@code slot} was last written for, or null. */
    List<Integer> at(long slot) {
        return written.get(slot);
    }

    /** Writes at {@code slot} KV computed from {@code identity} (salt, then the tokens up to its position). */
    void write(long slot, List<Integer> identity) {
        written.put(slot, List.copyOf(identity));
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
        for (int o = 0; o < n; o++) {
            copySlot((long) src * blockTokens + o, (long) dst * blockTokens + o);
        }
        if (failCopies) {
            throw new IllegalStateException("injected copy failure " + src + " -> " + dst);
        }
        copies++;
    }

    private void copySlot(long from, long to) {
        List<Integer> v = written.get(from);
        if (v == null) {
            written.remove(to);
        } else {
            written.put(to, v);
        }
    }

    /** The engine as a {@link KvStore} (a tier needs one): copies are the engine's, nothing else is used. */
    KvStore storeView(KvLayout layout, int blocks) {
        ModelEngine engine = this;
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
            public void close() {
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
        private final Map<PrefixKey, List<List<Integer>>> slots = new HashMap<>();
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
            List<List<Integer>> copy = new ArrayList<>();
            for (int o = 0; o < blockTokens; o++) {
                copy.add(written.get((long) block * blockTokens + o));
            }
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
            List<List<Integer>> copy = slots.get(expected.key());
            for (int o = 0; o < blockTokens; o++) {
                long slot = (long) block * blockTokens + o;
                if (copy.get(o) == null) {
                    written.remove(slot);
                } else {
                    written.put(slot, copy.get(o));
                }
            }
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
        private final Map<Long, List<List<Integer>>> held = new HashMap<>();
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
            List<List<Integer>> slots = new ArrayList<>();
            for (int o = 0; o < blockTokens; o++) {
                slots.add(written.get((long) block * blockTokens + o));
            }
            held.put(next, slots);
            return next++;
        }

        @Override
        public void swapIn(long handle, int block) {
            List<List<Integer>> slots = held.remove(handle);
            if (slots == null) {
                throw new IllegalArgumentException("swap handle " + handle + " is not held");
            }
            for (int o = 0; o < blockTokens; o++) {
                long slot = (long) block * blockTokens + o;
                if (slots.get(o) == null) {
                    written.remove(slot);
                } else {
                    written.put(slot, slots.get(o));
                }
            }
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
