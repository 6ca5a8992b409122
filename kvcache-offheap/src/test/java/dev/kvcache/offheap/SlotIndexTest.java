package dev.kvcache.offheap;

import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/** SlotIndex against a LinkedHashMap in access order, on fresh random operations. */
class SlotIndexTest {

    private static TierEntry entry(PrefixKey k) {
        return new TierEntry(k, null, 0, null, new int[] {1}, 42);
    }

    /** Keys from a small pool, some of them sharing their table home (same hi ^ lo * c). */
    private static PrefixKey key(SplittableRandom r, int pool) {
        int i = r.nextInt(pool);
        return new PrefixKey(i % 3 == 0 ? 7 : i * 0x1234_5678_9L, i);
    }

    @Test
    void matchesAnAccessOrderedMapUnderRandomPutsTouchesRemovesAndEvictions() {
        for (long seed : new SplittableRandom().longs(20).toArray()) {
            SplittableRandom r = new SplittableRandom(seed);
            int capacity = 1 + r.nextInt(40);
            int pool = capacity * 2 + 1;
            SlotIndex index = new SlotIndex(capacity);
            LinkedHashMap<PrefixKey, Integer> model = new LinkedHashMap<>(16, 0.75f, true); // eldest first; get touches
            Map<PrefixKey, Integer> slots = new HashMap<>(); // the same, looked up without touching
            for (int op = 0; op < 2000; op++) {
                PrefixKey k = key(r, pool);
                int slot = index.find(k);
                assertEquals(slots.getOrDefault(k, SlotIndex.NONE), slot, "seed " + seed + " op " + op);
                switch (r.nextInt(4)) {
                    case 0, 1 -> { // put, evicting the least recently used when full
                        if (slot != SlotIndex.NONE) {
                            index.touch(slot);
                            model.get(k);
                            break;
                        }
                        int s = index.takeFree();
                        if (s == SlotIndex.NONE) {
                            s = index.tail();
                            PrefixKey eldest = model.keySet().iterator().next();
                            assertEquals(eldest, index.entry(s).key(), "seed " + seed);
                            index.remove(s);
                            model.remove(eldest);
                            slots.remove(eldest);
                        }
                        index.add(s, entry(k));
                        model.put(k, s);
                        slots.put(k, s);
                    }
                    case 2 -> { // remove and free
                        if (slot != SlotIndex.NONE) {
                            index.remove(slot);
                            index.release(slot);
                            model.remove(k);
                            slots.remove(k);
                        }
                    }
                    default -> { // leading hits over a short run of keys
                        PrefixKey[] keys = new PrefixKey[4];
                        for (int i = 0; i < keys.length; i++) {
                            keys[i] = key(r, pool);
                        }
                        int n = 0;
                        while (n < keys.length && model.containsKey(keys[n])) {
                            n++;
                        }
                        for (int i = n - 1; i >= 0; i--) {
                            model.get(keys[i]);
                        }
                        assertEquals(n, index.leadingHits(keys, 0, keys.length), "seed " + seed);
                    }
                }
                check(index, model, capacity, seed);
            }
        }
    }

    private static void check(SlotIndex index, LinkedHashMap<PrefixKey, Integer> model, int capacity, long seed) {
        assertEquals(model.size(), index.size(), "seed " + seed);
        List<PrefixKey> mru = new ArrayList<>();
        for (int s = index.head(); s != SlotIndex.NONE; s = index.next(s)) {
            mru.add(index.entry(s).key());
        }
        List<PrefixKey> expected = new ArrayList<>(model.keySet());
        java.util.Collections.reverse(expected);
        assertEquals(expected, mru, "seed " + seed);
        Set<Integer> held = new HashSet<>(model.values());
        int free = 0;
        for (int s = index.freeHead(); s != SlotIndex.NONE; s = index.next(s)) {
            assertNull(index.entry(s), "free slot " + s + " holds an entry, seed " + seed);
            assertEquals(false, held.contains(s), "seed " + seed);
            free++;
        }
        assertEquals(capacity - model.size(), free, "seed " + seed);
        for (Map.Entry<PrefixKey, Integer> e : model.entrySet()) {
            assertEquals(e.getKey(), index.entry(e.getValue()).key(), "seed " + seed);
        }
    }

    @Test
    void aTakenSlotThatIsReleasedIsFreeAgainAndClearForgetsEverything() {
        SlotIndex index = new SlotIndex(2);
        int a = index.takeFree();
        index.release(a); // a refused put gives its slot back
        assertEquals(a, index.freeHead());
        int s = index.takeFree();
        index.add(s, entry(new PrefixKey(1, 2)));
        assertEquals(s, index.find(new PrefixKey(1, 2)));
        index.clear();
        assertEquals(0, index.size());
        assertEquals(SlotIndex.NONE, index.find(new PrefixKey(1, 2)));
        assertEquals(SlotIndex.NONE, index.freeHead());
        assertEquals(SlotIndex.NONE, index.head());
    }
}
