package dev.kvcache;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The manager with a tier below its store: evicted published blocks go down, a prompt's blocks
 * come back from the tier instead of being recomputed, and a tier that is empty, refuses, throws
 * or holds a copy for another prefix costs a miss, never a wrong block.
 */
class TierIntegrationTest {

    private static final KvLayout L = new KvLayout(1, 1, 32, 4, KvFormats.F32);
    private static final int B = 4;

    /** A tier in a map: verifies entries exactly as the SPI says; faults on demand. */
    static final class MapTier implements KvTier {
        final Map<PrefixKey, TierEntry> entries = new HashMap<>();
        final Map<PrefixKey, byte[]> bytes = new HashMap<>();
        boolean throwOnPut;
        boolean errorOnPut;
        boolean throwOnLookup;
        boolean throwOnLoad;
        boolean skipVerification;
        int puts;
        int loads;

        @Override
        public String name() {
            return "map";
        }

        @Override
        public int leadingHits(PrefixKey[] keys, int from, int count) {
            if (throwOnLookup) {
                throw new IllegalStateException("injected lookup failure");
            }
            int n = 0;
            while (n < count && entries.containsKey(keys[from + n])) {
                n++;
            }
            return n;
        }

        @Override
        public boolean put(TierEntry entry, KvStore store, int block) {
            if (throwOnPut) {
                throw new IllegalStateException("injected put failure");
            }
            if (errorOnPut) {
                throw new AssertionError("injected put error");
            }
            byte[] b = new byte[(int) store.layout().bytesPerBlock()];
            store.exportBlock(block, MemorySegment.ofArray(b));
            entries.put(entry.key(), entry);
            bytes.put(entry.key(), b);
            puts++;
            return true;
        }

        @Override
        public boolean load(TierEntry expected, KvStore store, int block) {
            if (throwOnLoad) {
                throw new IllegalStateException("injected load failure");
            }
            TierEntry held = entries.get(expected.key());
            if (held == null || (!skipVerification && !held.matches(expected))) {
                return false;
            }
            store.importBlock(block, MemorySegment.ofArray(bytes.get(expected.key())));
            loads++;
            return true;
        }

        @Override
        public boolean remove(PrefixKey key) {
            bytes.remove(key);
            return entries.remove(key) != null;
        }

        @Override
        public TierStats stats() {
            return new TierStats(name(), entries.size(), entries.size() * L.bytesPerBlock(), Long.MAX_VALUE, puts, 0,
                    loads, 0, 0, 0, 0);
        }

        @Override
        public void close() {
        }
    }

    private static int[] range(int from, int count) {
        return IntStream.range(from, from + count).toArray();
    }

    /** A pool of 4 blocks: a 9-token prompt (2 full blocks + 1) fills 3; the next prompt evicts. */
    private static KvCacheManager manager(IntegrityTest.ArrayStore st, MapTier tier) {
        return KvCacheManager.builder(L).store(st).blocks(4).tier(tier).build();
    }

    private static int compute(KvCacheManager m, IntegrityTest.ArrayStore st, Sequence s, int... tokens) {
        int old = s.length();
        int hits = m.append(s, tokens);
        int[] all = new int[s.length()];
        for (int p = 0; p < all.length; p++) {
            all[p] = s.token(p);
        }
        for (int p = old + hits; p < all.length; p++) {
            st.write(0, s.slot(p), IntegrityTest.kvOf(all, p, false), IntegrityTest.kvOf(all, p, true));
        }
        return hits;
    }

    private static void assertOwnKv(IntegrityTest.ArrayStore st, Sequence s) {
        int[] all = new int[s.length()];
        for (int p = 0; p < all.length; p++) {
            all[p] = s.token(p);
        }
        float[] k = new float[L.kvDim()];
        for (int p = 0; p < all.length; p++) {
            st.readKey(0, s.slot(p), k);
            assertArrayEquals(IntegrityTest.kvOf(all, p, false), k, "position " + p + " of " + s.id());
        }
    }

    @Test
    void anEvictedPromptComesBackFromTheTierWithItsOwnKv() {
        IntegrityTest.ArrayStore st = new IntegrityTest.ArrayStore(L, 4);
        MapTier tier = new MapTier();
        try (KvCacheManager m = manager(st, tier)) {
            Sequence a = m.open("a");
            compute(m, st, a, range(1, 9));
            m.free(a);                                         // 2 full blocks published, cached
            Sequence b = m.open("b");
            compute(m, st, b, range(100, 13));                 // needs 4 blocks: both cached ones evicted
            assertEquals(2, tier.puts, "both evicted blocks went down");
            assertEquals(2, m.ledger().demotedBlocks());
            m.free(b);
            Sequence c = m.open("c");
            assertEquals(8, compute(m, st, c, range(1, 9)), "a's prompt comes back from the tier");
            assertEquals(2, tier.loads);
            assertOwnKv(st, c);
            assertEquals(8, c.cachedTokens());
            KvCacheLedger l = m.ledger();
            assertEquals(2, l.promotedBlocks());
            assertEquals(8, l.tierHitTokens());
            assertEquals(1, l.tiers().size());
            assertTrue(m.isPublished(c.blockTable()[0]) && m.isPublished(c.blockTable()[1]),
                    "promoted blocks are published at once (their KV is loaded and verified)");
            assertEquals(8, m.cachedPrefixLength(range(1, 9)));
            m.free(c);
            assertEquals(m.stats().totalBlocks(), m.stats().usedBlocks() + m.stats().cachedBlocks() + m.stats().emptyBlocks());
        }
    }

    @Test
    void aTierThatThrowsOrIsEmptyIsAMissNeverAStallOrAWrongBlock() {
        for (String fault : new String[] {"put", "lookup", "load"}) {
            IntegrityTest.ArrayStore st = new IntegrityTest.ArrayStore(L, 4);
            MapTier tier = new MapTier();
            try (KvCacheManager m = manager(st, tier)) {
                Sequence a = m.open("a");
                compute(m, st, a, range(1, 9));
                m.free(a);
                tier.throwOnPut = fault.equals("put");
                Sequence b = m.open("b");
                compute(m, st, b, range(100, 13));
                m.free(b);
                tier.throwOnLookup = fault.equals("lookup");
                tier.throwOnLoad = fault.equals("load");
                Sequence c = m.open("c");
                assertEquals(0, compute(m, st, c, range(1, 9)), fault + ": computed, not served");
                assertOwnKv(st, c);
                assertTrue(m.ledger().tierErrors() >= 1, fault + " counted");
                m.free(c);
                KvCacheStats s = m.stats();
                assertEquals(s.totalBlocks(), s.usedBlocks() + s.cachedBlocks() + s.emptyBlocks());
            }
        }
    }

    /** An Error thrown by a demotion inside an allocation must not leave the append half applied. */
    @Test
    void aTierThrowingAnErrorDuringAnEvictingAppendLeavesItWhole() {
        IntegrityTest.ArrayStore st = new IntegrityTest.ArrayStore(L, 4);
        MapTier tier = new MapTier();
        try (KvCacheManager m = manager(st, tier)) {
            Sequence a = m.open("a");
            compute(m, st, a, range(1, 9));
            m.free(a);
            tier.errorOnPut = true;
            Sequence b = m.open("b");
            assertEquals(0, compute(m, st, b, range(100, 13)), "the append completes; the demotions are lost");
            assertEquals(13, b.length());
            assertEquals(4, b.blockTable().length);
            assertOwnKv(st, b);
            assertEquals(2, m.ledger().tierErrors());
            assertEquals(0, m.ledger().demotedBlocks());
            KvCacheStats s = m.stats();
            assertEquals(4, s.usedBlocks());
            assertEquals(s.totalBlocks(), s.usedBlocks() + s.cachedBlocks() + s.emptyBlocks());
            m.free(b);
        }
    }

    @Test
    void aTierCopyForAnotherPrefixSaltOrTenantIsNeverLoaded() {
        IntegrityTest.ArrayStore st = new IntegrityTest.ArrayStore(L, 4);
        MapTier tier = new MapTier();
        try (KvCacheManager m = manager(st, tier)) {
            Sequence a = m.open("a", SequenceOptions.DEFAULT.withTenant("t1"));
            compute(m, st, a, range(1, 9));
            m.free(a);
            Sequence b = m.open("b");
            compute(m, st, b, range(100, 13));
            m.free(b);
            assertEquals(2, tier.entries.size());
            Sequence other = m.open("other", SequenceOptions.DEFAULT.withTenant("t2"));
            assertEquals(0, compute(m, st, other, range(1, 9)), "another tenant's keys differ");
            assertOwnKv(st, other);
            m.free(other);
            Sequence salted = m.open("salted", SequenceOptions.DEFAULT.withTenant("t1").withCacheSalt(7));
            assertEquals(0, compute(m, st, salted, range(1, 9)), "another salt's keys differ");
            m.free(salted);
            Sequence same = m.open("same", SequenceOptions.DEFAULT.withTenant("t1"));
            assertEquals(8, compute(m, st, same, range(1, 9)));
            assertOwnKv(st, same);
            m.free(same);
        }
    }

    @Test
    void tiersNeedAStoreAndPrefixCaching() {
        MapTier tier = new MapTier();
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> KvCacheManager.builder(L).blocks(4).tier(tier).build());
        assertTrue(e.getMessage().contains("map"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> KvCacheManager.builder(L).store(new IntegrityTest.ArrayStore(L, 4))
                .prefixCaching(false).tier(tier).build());
    }
}
