package dev.kvcache;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** One test per rule of the block manager contract (shared/API.md, "The block manager"). */
class KvCacheManagerTest {

    /** blockTokens 4 keeps the arithmetic readable. */
    private static final KvLayout LAYOUT = new KvLayout(2, 2, 8, 4, KvFormats.F32);

    private static KvCacheManager manager(int blocks) {
        return KvCacheManager.builder(LAYOUT).blocks(blocks).build();
    }

    private static int[] range(int from, int count) {
        return IntStream.range(from, from + count).toArray();
    }

    private static void assertBalanced(KvCacheStats s) {
        assertEquals(s.totalBlocks(), s.usedBlocks() + s.cachedBlocks() + s.emptyBlocks(), s.toString());
    }

    @Test
    void freshPoolHandsOutBlockIdsInRange() {
        try (KvCacheManager m = manager(8)) {
            Sequence s = m.open("a");
            assertEquals(0, m.append(s, range(0, 32)));
            int[] table = s.blockTable();
            assertEquals(8, table.length);
            assertArrayEquals(range(0, 8), Arrays.stream(table).sorted().toArray());
            assertEquals(8, m.stats().usedBlocks());
            m.free(s);
        }
    }

    @Test
    void slotIsBlockTimesBlockTokensPlusOffset() {
        try (KvCacheManager m = manager(8)) {
            Sequence s = m.open("a");
            m.append(s, range(0, 10));
            int[] t = s.blockTable();
            for (int p = 0; p < 10; p++) {
                assertEquals((long) t[p / 4] * 4 + p % 4, s.slot(p));
            }
            assertThrows(IllegalArgumentException.class, () -> s.slot(10));
            int[] buf = new int[5];
            assertEquals(3, s.blockTable(buf));
            assertArrayEquals(t, java.util.Arrays.copyOf(buf, 3));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> s.blockTable(new int[2]));
            assertTrue(e.getMessage().contains("2") && e.getMessage().contains("3"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> s.slot(-1));
            assertEquals(3, s.blockCount());
            assertEquals(10, s.length());
            m.free(s);
        }
    }

    @Test
    void statsCountUsedCachedEmptyAndLiveTokens() {
        try (KvCacheManager m = manager(8)) {
            Sequence a = m.open("a");
            Sequence b = m.open("b");
            m.append(a, range(0, 9)); // 3 blocks, 2 full
            m.append(b, range(100, 4)); // 1 full block
            KvCacheStats s = m.stats();
            assertEquals(4, s.usedBlocks());
            assertEquals(0, s.cachedBlocks());
            assertEquals(4, s.emptyBlocks());
            assertEquals(2, s.liveSequences());
            assertEquals(13, s.liveTokens());
            m.free(a);
            s = m.stats();
            assertEquals(1, s.usedBlocks());
            assertEquals(2, s.cachedBlocks(), "the two full blocks of a stay reusable");
            assertEquals(5, s.emptyBlocks(), "the partial block of a has nothing reusable");
            assertBalanced(s);
            assertEquals(4, s.liveTokens());
            m.free(b);
        }
    }

    @Test
    void appendThatDoesNotFitReturnsMinusOneAndChangesNothing() {
        try (KvCacheManager m = manager(4)) {
            Sequence a = m.open("a");
            assertEquals(0, m.append(a, range(0, 10)));
            int[] tableBefore = a.blockTable();
            KvCacheStats before = m.stats();
            assertEquals(-1, m.append(a, range(10, 7))); // needs 2 more blocks, 1 free
            KvCacheStats after = m.stats();
            assertArrayEquals(tableBefore, a.blockTable());
            assertEquals(10, a.length());
            assertEquals(before.allocationFailures() + 1, after.allocationFailures());
            assertEquals(before.usedBlocks(), after.usedBlocks());
            assertEquals(before.emptyBlocks(), after.emptyBlocks());
            assertEquals(before.liveTokens(), after.liveTokens());
            assertEquals(0, m.append(a, range(10, 6)), "what fits still fits");
            m.free(a);
        }
    }

    @Test
    void prefixHitsServeFullBlocksOfAFirstAppend() {
        try (KvCacheManager m = manager(16)) {
            int[] prompt = range(0, 12);
            Sequence a = m.open("a");
            assertEquals(0, m.append(a, prompt));
            assertEquals(0, m.cachedPrefixLength(prompt), "nothing is hit-able before a's KV is written");
            m.commit(a); // the engine wrote a's KV: its full blocks are published now
            Sequence b = m.open("b");
            // 12 tokens = 3 full blocks, but a hit never covers the last token: 2 blocks
            assertEquals(8, m.append(b, prompt));
            assertEquals(8, b.cachedTokens());
            assertArrayEquals(Arrays.copyOf(a.blockTable(), 2), Arrays.copyOf(b.blockTable(), 2));
            assertNotEquals(a.blockTable()[2], b.blockTable()[2]);
            KvCacheStats s = m.stats();
            assertEquals(24, s.prefixQueryTokens());
            assertEquals(8, s.prefixHitTokens());
            assertEquals(2, m.refCount(a.blockTable()[0]));
            m.free(a);
            m.free(b);
        }
    }

    @Test
    void hitCapKeepsTheLastTokenOfTheCallForTheEngine() {
        try (KvCacheManager m = manager(16)) {
            Sequence a = m.open("a");
            m.append(a, range(0, 8));
            m.free(a);
            Sequence b = m.open("b");
            assertEquals(4, m.append(b, range(0, 8)), "8 cached tokens: the second block holds the last token");
            Sequence c = m.open("c");
            assertEquals(8, m.append(c, range(0, 9)), "one more token: both blocks hit");
            Sequence d = m.open("d");
            assertEquals(0, m.append(d, range(0, 4)), "a single-block prompt cannot hit");
            for (Sequence s : List.of(b, c, d)) {
                m.free(s);
            }
        }
    }

    @Test
    void onlyTheFirstAppendLooksThePrefixCacheUp() {
        try (KvCacheManager m = manager(16)) {
            Sequence a = m.open("a");
            m.append(a, range(0, 12));
            m.commit(a);
            assertEquals(12, m.cachedPrefixLength(range(0, 12)), "a's blocks are hit-able");
            Sequence b = m.open("b");
            m.append(b, 0);
            assertEquals(0, m.append(b, range(1, 11)), "b already computed token 0");
            m.free(a);
            m.free(b);
        }
    }

    @Test
    void differentSaltsNeverShareBlocks() {
        try (KvCacheManager m = manager(16)) {
            Sequence a = m.open("a", SequenceOptions.DEFAULT.withCacheSalt(1));
            m.append(a, range(0, 12));
            m.commit(a);
            Sequence b = m.open("b", SequenceOptions.DEFAULT.withCacheSalt(2));
            assertEquals(0, m.append(b, range(0, 12)));
            Sequence c = m.open("c", SequenceOptions.DEFAULT.withCacheSalt(1));
            assertEquals(8, m.append(c, range(0, 12)));
            assertEquals(0, m.cachedPrefixLength(range(0, 12)), "salt 0 sees neither");
            assertEquals(12, m.cachedPrefixLength(1L, range(0, 12)));
            m.free(a);
            m.free(b);
            m.free(c);
        }
    }

    @Test
    void blocksWithoutContentAreReusedBeforeAnyCachedBlock() {
        try (KvCacheManager m = manager(6)) {
            Sequence a = m.open("a");
            m.append(a, range(0, 8)); // 2 full blocks
            m.free(a); // 2 cached, 4 empty
            Sequence b = m.open("b");
            m.append(b, range(100, 16)); // 4 blocks: must take the empty ones
            assertEquals(2, m.stats().cachedBlocks());
            assertEquals(0, m.stats().evictedBlocks());
            assertEquals(8, m.cachedPrefixLength(range(0, 8)));
            m.free(b);
        }
    }

    @Test
    void aReleasedSequencesTailIsReusedBeforeItsHead() {
        try (KvCacheManager m = manager(3)) {
            Sequence a = m.open("a");
            m.append(a, range(0, 12)); // 3 full blocks
            int[] t = a.blockTable();
            m.free(a);
            Sequence b = m.open("b");
            m.append(b, 99); // needs one block: evicts a's tail
            assertEquals(t[2], b.blockTable()[0]);
            assertEquals(8, m.cachedPrefixLength(range(0, 12)), "head and middle survive");
            m.append(b, range(200, 4)); // second block: evicts the middle
            assertEquals(t[1], b.blockTable()[1]);
            assertEquals(4, m.cachedPrefixLength(range(0, 12)));
            assertEquals(2, m.stats().evictedBlocks());
            m.free(b);
        }
    }

    @Test
    void leastRecentlyReleasedSequenceGoesFirst() {
        try (KvCacheManager m = manager(4)) {
            Sequence a = m.open("a");
            Sequence b = m.open("b");
            m.append(a, range(0, 8));
            m.append(b, range(50, 8));
            m.free(b); // released first
            m.free(a);
            Sequence c = m.open("c");
            m.append(c, range(100, 8)); // two blocks: b's
            assertEquals(8, m.cachedPrefixLength(range(0, 8)));
            assertEquals(0, m.cachedPrefixLength(range(50, 8)));
            m.free(c);
        }
    }

    @Test
    void blocksAnAppendHitsAreNeverTheOnesItEvicts() {
        try (KvCacheManager m = manager(3)) {
            Sequence a = m.open("a");
            m.append(a, range(0, 12));
            m.free(a); // 3 cached; LRU head is a's tail block
            Sequence b = m.open("b");
            // 2 hits (blocks 0,1 of a) + 1 new block for tokens 8..9: only a's tail may go
            assertEquals(8, m.append(b, range(0, 10)));
            assertEquals(1, m.stats().evictedBlocks());
            assertEquals(3, m.stats().usedBlocks());
            m.free(b);
        }
    }

    @Test
    void hitsCountAgainstSupplyOnlyOnce() {
        try (KvCacheManager m = manager(3)) {
            Sequence a = m.open("a");
            m.append(a, range(0, 12));
            m.free(a);
            Sequence b = m.open("b");
            long queriesBefore = m.stats().prefixQueryTokens();
            // 3 full blocks hit-capped to 2, plus 2 new blocks for 8..16: 4 needed, 3 exist
            assertEquals(-1, m.append(b, range(0, 17)));
            KvCacheStats s = m.stats();
            assertEquals(3, s.cachedBlocks(), "nothing revived, nothing evicted");
            assertEquals(0, s.evictedBlocks());
            assertEquals(queriesBefore, s.prefixQueryTokens(), "a failed append counts no query");
            assertEquals(0, b.length());
            m.free(b);
        }
    }

    @Test
    void forkSharesBlocksAndCopiesOnFirstWriteIntoASharedPartialBlock() {
        List<int[]> copies = new ArrayList<>();
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8)
                .blockCopier((src, dst) -> copies.add(new int[] {src, dst})).build()) {
            Sequence p = m.open("p");
            m.append(p, range(0, 6)); // block 0 full, block 1 half
            Sequence c = m.fork(p, "c");
            assertArrayEquals(p.blockTable(), c.blockTable());
            assertEquals(6, c.length());
            int shared = p.blockTable()[1];
            assertEquals(2, m.refCount(shared));
            assertEquals(2, m.stats().usedBlocks());
            assertEquals(12, m.stats().liveTokens());

            m.append(c, 42); // c writes into the shared partial block: copy
            assertEquals(1, copies.size());
            assertEquals(shared, copies.get(0)[0]);
            int copy = copies.get(0)[1];
            assertEquals(copy, c.blockTable()[1]);
            assertEquals(shared, p.blockTable()[1]);
            assertEquals(1, m.refCount(shared));
            assertEquals(p.blockTable()[0], c.blockTable()[0], "full blocks stay shared");
            assertEquals(42, c.token(6));

            m.append(p, 43); // p now holds its partial block alone: no copy
            assertEquals(1, copies.size());
            assertEquals(1, m.ledger().copyOnWrites());
            m.free(p);
            m.free(c);
            assertEquals(0, m.stats().usedBlocks());
        }
    }

    @Test
    void copyOnWriteGoesToTheStoreWhenOneIsAttached() {
        RecordingStore store = new RecordingStore(LAYOUT, 8);
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).store(store).build()) {
            assertEquals(8, m.stats().totalBlocks(), "pool sized by the store");
            Sequence p = m.open("p");
            m.append(p, range(0, 5));
            Sequence c = m.fork(p, "c");
            m.append(p, 9);
            assertEquals(List.of(c.blockTable()[1] + "->" + p.blockTable()[1]), store.copies);
            m.free(p);
            m.free(c);
        }
    }

    @Test
    void withoutACopierCopiesAreQueuedForTheEngine() {
        try (KvCacheManager m = manager(8)) {
            Sequence p = m.open("p");
            m.append(p, range(0, 5));
            Sequence c = m.fork(p, "c");
            m.append(c, 7);
            assertArrayEquals(new int[] {p.blockTable()[1], c.blockTable()[1]}, m.takePendingCopies());
            assertEquals(0, m.takePendingCopies().length);
            m.free(p);
            m.free(c);
        }
    }

    @Test
    void forkNeedsNoFreeBlock() {
        try (KvCacheManager m = manager(2)) {
            Sequence p = m.open("p");
            m.append(p, range(0, 6));
            Sequence c = m.fork(p, "c");
            assertEquals(-1, m.append(c, 1), "the copy-on-write needs a block and there is none");
            assertEquals(6, c.length());
            m.free(p);
            assertEquals(0, m.append(c, 1), "now c holds the block alone");
            m.free(c);
        }
    }

    @Test
    void prefixCachingOffCachesNothing() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8).prefixCaching(false).build()) {
            Sequence a = m.open("a");
            m.append(a, range(0, 12));
            m.free(a);
            assertEquals(0, m.stats().cachedBlocks());
            assertEquals(8, m.stats().emptyBlocks());
            Sequence b = m.open("b");
            assertEquals(0, m.append(b, range(0, 12)));
            assertEquals(0, m.cachedPrefixLength(range(0, 12)));
            assertEquals(0, m.stats().prefixQueryTokens());
            m.free(b);
        }
    }

    @Test
    void slidingWindowReleasesBlocksOutsideSinksAndWindow() {
        // sinks 4 (block 0), window 8: before an append at length L, blocks wholly inside
        // [4, L-8) go; the previous call's tokens stay readable
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8).slidingWindow(4, 8).build()) {
            Sequence s = m.open("s");
            m.append(s, range(0, 20)); // 5 blocks, nothing released on the first call
            assertEquals(5, s.heldBlocks());
            m.append(s, 20); // L = 20: [4, 12) = blocks 1, 2 go
            int[] t = s.blockTable();
            assertEquals(-1, t[1]);
            assertEquals(-1, t[2]);
            assertTrue(t[0] >= 0 && t[3] >= 0 && t[4] >= 0 && t[5] >= 0);
            assertEquals(-1, s.slot(5));
            assertEquals(-1, s.slot(11));
            assertTrue(s.slot(3) >= 0, "sink");
            assertTrue(s.slot(12) >= 0, "window");
            assertEquals(21, s.length());
            assertEquals(21, m.stats().liveTokens());
            for (int i = 21; i < 400; i++) {
                assertTrue(m.append(s, i) >= 0, "bounded memory never runs out at " + i);
                assertTrue(s.heldBlocks() <= 1 + 2 + 2, "held " + s.heldBlocks());
            }
            assertEquals(400, s.length());
            assertEquals(0, s.token(0));
            assertEquals(399, s.token(399));
            m.free(s);
            assertEquals(0, m.stats().usedBlocks());
        }
    }

    @Test
    void slidingWindowReleaseIsPartOfTheAllOrNothingAppend() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(4).slidingWindow(0, 4)
                .prefixCaching(false).build()) {
            Sequence s = m.open("s");
            m.append(s, range(0, 16)); // all 4 blocks
            // L = 16: blocks 0..2 go, and feed this very append
            assertEquals(0, m.append(s, range(16, 12)));
            assertEquals(4, s.heldBlocks());
            int[] before = s.blockTable();
            assertEquals(-1, m.append(s, range(28, 40)), "too big even after the window");
            assertArrayEquals(before, s.blockTable());
            assertEquals(28, s.length());
            m.free(s);
        }
    }

    @Test
    void resetPrefixCacheRefusesWhileBlocksAreInUse() {
        List<KvCacheEvent> events = new ArrayList<>();
        try (KvCacheManager m = manager(8)) {
            m.addListener(events::add);
            Sequence a = m.open("a");
            m.append(a, range(0, 8));
            m.commit(a);
            assertFalse(m.resetPrefixCache());
            assertEquals(8, m.cachedPrefixLength(range(0, 8)));
            m.free(a);
            assertEquals(2, m.stats().cachedBlocks());
            assertTrue(m.resetPrefixCache());
            assertEquals(0, m.stats().cachedBlocks());
            assertEquals(8, m.stats().emptyBlocks());
            assertEquals(0, m.cachedPrefixLength(range(0, 8)));
            assertTrue(events.get(events.size() - 1) instanceof KvCacheEvent.AllBlocksCleared);
        }
    }

    @Test
    void listenersSeeEnoughToMirrorTheCache() {
        List<KvCacheEvent> events = new ArrayList<>();
        try (KvCacheManager m = manager(2)) {
            m.addListener(events::add);
            Sequence a = m.open("a");
            m.append(a, range(0, 8));
            assertEquals(0, events.size(), "blocks are stored when their KV is written, not at the append");
            m.commit(a);
            assertEquals(2, events.size());
            KvCacheEvent.BlockStored first = (KvCacheEvent.BlockStored) events.get(0);
            KvCacheEvent.BlockStored second = (KvCacheEvent.BlockStored) events.get(1);
            assertEquals(KvCacheManager.ROOT_HASH, first.parentHash());
            assertEquals(first.hash(), second.parentHash());
            assertNull(first.parentKey());
            assertEquals(first.key(), second.parentKey());
            assertEquals(first.key().hi(), first.hash());
            assertEquals(second.key().hi(), second.hash());
            assertArrayEquals(range(0, 4), first.tokenIds());
            assertArrayEquals(range(4, 4), second.tokenIds());
            assertEquals(a.blockTable()[1], second.block());
            m.free(a);
            assertEquals(2, events.size(), "free publishes nothing twice");
            Sequence b = m.open("b");
            m.append(b, 77);
            KvCacheEvent.BlockRemoved removed = (KvCacheEvent.BlockRemoved) events.get(2);
            assertEquals(second.hash(), removed.hash(), "the tail went first");
            assertEquals(second.key(), removed.key());
            assertEquals(second.block(), removed.block());
            m.free(b);
        }
    }

    @Test
    void priorityPolicyEvictsLowerPrioritiesFirst() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(4)
                .evictionPolicy(EvictionPolicy.priority()).build()) {
            Sequence hi = m.open("hi", SequenceOptions.DEFAULT.withPriority(9));
            Sequence lo = m.open("lo", SequenceOptions.DEFAULT.withPriority(1));
            m.append(hi, range(0, 4));
            m.append(lo, range(50, 4));
            m.free(lo); // released first but...
            m.free(hi);
            Sequence x = m.open("x");
            m.append(x, range(100, 12)); // 2 empty + 1 eviction: lo's block goes
            assertEquals(4, m.cachedPrefixLength(range(0, 4)));
            assertEquals(0, m.cachedPrefixLength(range(50, 4)));
            m.free(x);
        }
    }

    @Test
    void cachedPrefixLengthIsReadOnlyAndCountsHeldAndCachedBlocks() {
        try (KvCacheManager m = manager(8)) {
            Sequence a = m.open("a");
            m.append(a, range(0, 10));
            m.commit(a);
            KvCacheStats before = m.stats();
            assertEquals(8, m.cachedPrefixLength(range(0, 10)));
            assertEquals(8, m.cachedPrefixLength(range(0, 8)));
            assertEquals(4, m.cachedPrefixLength(0, 1, 2, 3, 9, 9, 9, 9));
            assertEquals(0, m.cachedPrefixLength(1, 2, 3, 4));
            assertEquals(before, m.stats());
            m.free(a);
        }
    }

    @Test
    void identicalPromptsComputedTwiceStayConsistent() {
        try (KvCacheManager m = manager(8)) {
            Sequence a = m.open("a");
            Sequence b = m.open("b");
            m.append(a, 0);
            m.append(b, 0); // neither can hit: both compute the same blocks
            m.append(a, range(1, 7));
            m.append(b, range(1, 7));
            m.free(a);
            m.free(b);
            KvCacheStats s = m.stats();
            assertEquals(2, s.cachedBlocks(), "one copy of each published block");
            assertEquals(6, s.emptyBlocks());
            assertBalanced(s);
        }
    }

    @Test
    void badInputNamesTheValueAndChangesNothing() {
        try (KvCacheManager m = manager(4)) {
            Sequence a = m.open("a");
            m.append(a, 1, 2);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> m.append(a, 3, -7, 4));
            assertTrue(e.getMessage().contains("-7"), e.getMessage());
            assertEquals(2, a.length());
            e = assertThrows(IllegalArgumentException.class, () -> m.open("a"));
            assertTrue(e.getMessage().contains("'a'"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> m.fork(a, "a"));
            assertTrue(e.getMessage().contains("'a'"), e.getMessage());
            assertThrows(IndexOutOfBoundsException.class, () -> m.append(a, new int[3], 2, 5));
            m.free(a);
            IllegalStateException f = assertThrows(IllegalStateException.class, () -> m.free(a));
            assertTrue(f.getMessage().contains("'a'"), f.getMessage());
            assertThrows(IllegalStateException.class, () -> m.append(a, 1));
            assertThrows(IllegalStateException.class, () -> m.fork(a, "b"));
            assertNull(m.sequence("a"));
            try (KvCacheManager other = manager(4)) {
                Sequence o = other.open("a");
                assertThrows(IllegalArgumentException.class, () -> m.append(o, 1));
                other.free(o);
            }
            KvCacheStats s = m.stats();
            assertEquals(0, s.usedBlocks());
            assertEquals(0, s.liveSequences());
        }
        assertThrows(IllegalArgumentException.class, () -> KvCacheManager.builder(LAYOUT).blocks(0));
        assertThrows(IllegalArgumentException.class, () -> KvCacheManager.builder(LAYOUT).slidingWindow(-1, 4));
        assertThrows(IllegalArgumentException.class, () -> KvCacheManager.builder(LAYOUT).slidingWindow(0, 0));
        assertThrows(IllegalArgumentException.class, () -> KvCacheManager.builder(LAYOUT).memoryBudget(10));
        assertThrows(IllegalStateException.class, () -> KvCacheManager.builder(LAYOUT).build());
        assertThrows(IllegalArgumentException.class, () -> SequenceOptions.DEFAULT.withPriority(128));
    }

    @Test
    void sequenceLooksUpLiveIds() {
        try (KvCacheManager m = manager(4)) {
            Sequence a = m.open("a");
            assertSame(a, m.sequence("a"));
            assertNull(m.sequence("zzz"));
            m.free(a);
            Sequence again = m.open("a");
            assertSame(again, m.sequence("a"));
            m.free(again);
        }
    }

    @Test
    void memoryBudgetSizesThePoolInWholeBlocks() {
        long block = LAYOUT.bytesPerBlock();
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).memoryBudget(block * 5 + block / 2).build()) {
            assertEquals(5, m.stats().totalBlocks());
        }
    }

    @Test
    void closeReleasesAndReportsLiveSequences() {
        KvCacheManager m = manager(4);
        Sequence a = m.open("leaky");
        m.append(a, 1, 2, 3);
        IllegalStateException e = assertThrows(IllegalStateException.class, m::close);
        assertTrue(e.getMessage().contains("leaky"), e.getMessage());
        assertFalse(a.isLive());
        m.close(); // idempotent
        assertThrows(IllegalStateException.class, () -> m.open("b"));
    }

    @Test
    void ledgerReportsBytesAndFragmentation() {
        try (KvCacheManager m = manager(8)) {
            Sequence a = m.open("a");
            m.append(a, range(0, 6)); // 2 blocks, 8 slots, 6 used
            KvCacheLedger l = m.ledger();
            assertEquals(2 * LAYOUT.bytesPerBlock(), l.usedBytes());
            assertEquals(0.25, l.slotWaste(), 1e-12);
            assertEquals(2 * LAYOUT.bytesPerBlock(), l.bytesPerLiveSequence());
            assertEquals(6, l.appendedTokens());
            assertEquals(0, l.publishedBlocks(), "the full block is pending until its KV is written");
            m.commit(a);
            assertEquals(1, m.ledger().publishedBlocks());
            m.free(a);
            assertEquals(1, m.ledger().publishedBlocks(), "free publishes only what is still pending");
        }
    }

    /** A store that only records copies (the manager never reads or writes KV itself). */
    private static final class RecordingStore implements KvStore {
        final KvLayout layout;
        final int blocks;
        final List<String> copies = new ArrayList<>();

        RecordingStore(KvLayout layout, int blocks) {
            this.layout = layout;
            this.blocks = blocks;
        }

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
            throw new UnsupportedOperationException();
        }

        @Override
        public void readKey(int layer, long slot, float[] out) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void readValue(int layer, long slot, float[] out) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void copyBlock(int srcBlock, int dstBlock) {
            copies.add(srcBlock + "->" + dstBlock);
        }

        @Override
        public void close() {
        }
    }
}
