package dev.kvcache.offheap;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvTier;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * HostTier's and DiskTier's listeners: every block a tier starts or stops holding is reported, so
 * that the set a listener rebuilds from the events is always exactly what the tier holds.
 */
class TierEventsTest {

    static final KvLayout LAYOUT = new KvLayout(2, 2, 16, 8, KvFormats.F16);

    private static TierEntry[] chain(int n, long salt) {
        TierEntry[] e = new TierEntry[n];
        PrefixKey parent = null;
        for (int i = 0; i < n; i++) {
            PrefixKey k = new PrefixKey(salt * 1_000 + i + 1, ~(salt * 1_000 + i));
            int[] tokens = new int[LAYOUT.blockTokens()];
            for (int t = 0; t < tokens.length; t++) {
                tokens[t] = i * 100 + t;
            }
            e[i] = new TierEntry(k, parent, salt, null, tokens, TierEntry.fingerprint(LAYOUT));
            parent = k;
        }
        return e;
    }

    /** Rebuilds the held set from the events, as a router does. */
    private static final class Mirror implements dev.kvcache.KvCacheListener {
        final Set<PrefixKey> held = new LinkedHashSet<>();
        final List<KvCacheEvent> seen = new ArrayList<>();
        boolean clearedAll;

        @Override
        public void onEvent(KvCacheEvent e) {
            seen.add(e);
            switch (e) {
                case KvCacheEvent.BlockStored s -> assertTrue(held.add(s.key()), "stored twice: " + s.key());
                case KvCacheEvent.BlockRemoved r -> assertTrue(held.remove(r.key()), "removed but not held: " + r.key());
                case KvCacheEvent.AllBlocksCleared c -> {
                    held.clear();
                    clearedAll = true;
                }
                default -> throw new AssertionError(e);
            }
        }
    }

    private static Set<PrefixKey> holding(KvTier t, TierEntry[] all) {
        Set<PrefixKey> s = new LinkedHashSet<>();
        for (TierEntry e : all) {
            if (t.leadingHits(new PrefixKey[]{e.key()}, 0, 1) == 1) {
                s.add(e.key());
            }
        }
        return s;
    }

    private static void exercise(KvTier t, Mirror m, OffHeapKvStore store, TierEntry[] all) {
        java.util.SplittableRandom r = new java.util.SplittableRandom(System.nanoTime());
        for (int step = 0; step < 200; step++) {
            TierEntry e = all[r.nextInt(all.length)];
            switch (r.nextInt(4)) {
                case 0, 1 -> t.put(e, store, r.nextInt(4));         // evicts when full
                case 2 -> t.remove(e.key());
                default -> t.load(e, store, r.nextInt(4));
            }
            assertEquals(holding(t, all), m.held, "step " + step + ": the events say what the tier holds");
        }
    }

    @Test
    void aHostTiersEventsAlwaysMirrorWhatItHolds() {
        TierEntry[] all = chain(12, 3);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(LAYOUT, 4)) {
            HostTier t = HostTier.allocate(LAYOUT, 5 * LAYOUT.bytesPerBlock());
            assertTrue(t.put(all[0], store, 0));
            Mirror m = new Mirror();
            t.listener(m);
            assertEquals(Set.of(all[0].key()), m.held, "a new listener hears what is held already");
            KvCacheEvent.BlockStored first = assertInstanceOf(KvCacheEvent.BlockStored.class, m.seen.get(0));
            assertEquals(-1, first.block());
            assertEquals(3, first.cacheSalt());
            assertNull(first.parentKey());
            assertEquals(KvCacheManager.ROOT_HASH, first.parentHash());
            assertArrayEquals(all[0].tokens(), first.tokenIds());
            exercise(t, m, store, all);
            t.close();
            assertTrue(m.clearedAll && m.held.isEmpty(), "closing clears");
        }
    }

    @Test
    void aDiskTiersEventsAlwaysMirrorWhatItHoldsAndAReopenAnnouncesItsFiles(@TempDir Path dir) {
        TierEntry[] all = chain(10, 4);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(LAYOUT, 4)) {
            Mirror m = new Mirror();
            try (DiskTier t = DiskTier.open(dir, LAYOUT, 4 * LAYOUT.bytesPerBlock()).listener(m)) {
                exercise(t, m, store, all);
                assertTrue(t.put(all[9], store, 1));
            }
            assertTrue(m.clearedAll && m.held.isEmpty());
            Mirror again = new Mirror();
            try (DiskTier t = DiskTier.open(dir, LAYOUT, 4 * LAYOUT.bytesPerBlock()).listener(again)) {
                assertTrue(again.held.contains(all[9].key()), "the files a new process finds are announced");
                assertEquals(holding(t, all), again.held);
            }
        }
    }

    @Test
    void aListenerThatCallsTheTierSeesItWholeAndHearsEveryChangeInOrder() {
        TierEntry[] all = chain(8, 6);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(LAYOUT, 4);
             HostTier t = HostTier.allocate(LAYOUT, 3 * LAYOUT.bytesPerBlock())) {
            Mirror m = new Mirror();
            int[] depth = {0};
            t.listener(e -> {
                m.onEvent(e);
                // a hostile listener: every removal it hears puts the block back (evicting another),
                // from inside the delivery, at most a few levels deep
                if (e instanceof KvCacheEvent.BlockRemoved r && depth[0] < 3) {
                    depth[0]++;
                    try {
                        for (TierEntry x : all) {
                            if (x.key().equals(r.key())) {
                                t.put(x, store, 0);
                            }
                        }
                    } finally {
                        depth[0]--;
                    }
                }
            });
            java.util.SplittableRandom r = new java.util.SplittableRandom(System.nanoTime());
            for (int step = 0; step < 100; step++) {
                TierEntry e = all[r.nextInt(all.length)];
                if (r.nextBoolean()) {
                    t.put(e, store, r.nextInt(4));
                } else {
                    t.remove(e.key());
                }
                assertEquals(holding(t, all), m.held, "step " + step);
                assertTrue(t.stats().blocks() <= 3);
            }
            assertEquals(0, t.listenerFailures());
        }
    }

    @Test
    void aListenerThatThrowsIsCountedAndChangesNothing() {
        TierEntry[] all = chain(3, 5);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(LAYOUT, 4);
             HostTier t = HostTier.allocate(LAYOUT, 2 * LAYOUT.bytesPerBlock())) {
            t.listener(e -> {
                throw new IllegalStateException("listener down");
            });
            assertTrue(t.put(all[0], store, 0));
            assertTrue(t.put(all[1], store, 1));
            assertTrue(t.put(all[2], store, 2)); // evicts all[0]
            assertEquals(Set.of(all[1].key(), all[2].key()), holding(t, all));
            assertTrue(t.load(all[2], store, 3));
            assertEquals(4, t.listenerFailures(), "three stores and one eviction, each counted");
        }
    }
}
