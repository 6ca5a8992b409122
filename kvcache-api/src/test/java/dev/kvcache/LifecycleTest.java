package dev.kvcache;

import dev.kvcache.retention.AttentionMass;
import dev.kvcache.retention.HeavyHitterRetention;
import dev.kvcache.retention.SnapKvRetention;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The levers for when memory runs short: quotas, admission, preemption, idle release, retention. */
class LifecycleTest {

    private static final KvLayout LAYOUT = new KvLayout(1, 1, 8, 4, KvFormats.F32);

    private static int[] range(int from, int count) {
        return IntStream.range(from, from + count).toArray();
    }

    @Test
    void tenantQuotaRefusesAndChargesEachBlockOnce() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(16).tenantQuota("acme", 3).build()) {
            SequenceOptions acme = SequenceOptions.DEFAULT.withTenant("acme");
            Sequence a = m.open("a", acme);
            assertEquals(0, m.append(a, range(0, 12)));
            Sequence b = m.open("b", acme);
            assertEquals(Refusal.TENANT_QUOTA, m.estimateAppend(b, 1).refusal());
            assertEquals(0, m.ledger().quotaRefusals(), "an estimate counts nothing");
            assertEquals(-1, m.append(b, 1));
            assertEquals(Refusal.TENANT_QUOTA, m.lastRefusal());
            Sequence other = m.open("o");
            assertEquals(0, m.append(other, range(500, 12)), "other tenants are not limited");
            assertEquals(Refusal.NONE, m.lastRefusal());
            // a fork shares: no new charge until copy-on-write
            Sequence f = m.fork(a, "f");
            TenantStats t = m.tenantStats("acme");
            assertEquals(3, t.usedBlocks());
            assertEquals(3, t.liveSequences());
            assertEquals(24, t.liveTokens());
            assertEquals(1, t.refusals());
            assertEquals(-1, m.append(f, 5), "a new block would be the fourth");
            m.free(f);
            m.free(b);
            m.free(a);
            assertEquals(0, m.tenantStats("acme").usedBlocks());
            m.free(other);
            assertEquals(2, m.ledger().quotaRefusals(), "b and f");
        }
    }

    @Test
    void watermarkKeepsBlocksForRunningDecodes() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(10).admissionWatermark(0.2).build()) {
            Sequence a = m.open("a");
            assertEquals(0, m.append(a, range(0, 32))); // 8 blocks, 2 left = the watermark
            Sequence b = m.open("b");
            AppendEstimate e = m.estimateAppend(b, 1);
            assertEquals(new AppendEstimate(Refusal.WATERMARK, 1, 0, 0, 0, 2), e);
            assertEquals(-1, m.append(b, 1), "a new sequence may not dip into the watermark");
            assertEquals(Refusal.WATERMARK, m.lastRefusal());
            assertEquals(0, m.append(a, range(32, 8)), "a running one may");
            assertEquals(1, m.ledger().watermarkRefusals());
            m.free(a);
            m.free(b);
        }
    }

    @Test
    void guaranteedSequencesNeverFailUpToTheirMaximum() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(10).build()) {
            Sequence g = m.open("g", SequenceOptions.DEFAULT.withMaxTokens(24)); // 6 blocks set aside
            assertEquals(0, m.append(g, 1));
            assertEquals(5, m.ledger().reservedBlocks());
            Sequence x = m.open("x");
            assertEquals(0, m.append(x, range(0, 16)), "4 blocks are not set aside");
            assertEquals(Refusal.RESERVED, m.estimateAppend(x, 99).refusal());
            assertTrue(m.estimateAppend(g, 1, 2, 3).admitted(), "g's own blocks are set aside for it");
            assertEquals(-1, m.append(x, 99), "the fifth would eat g's reservation");
            assertEquals(Refusal.RESERVED, m.lastRefusal());
            for (int i = 1; i < 24; i++) {
                assertTrue(m.append(g, i) >= 0, "guaranteed append " + i);
            }
            assertEquals(0, m.ledger().reservedBlocks());
            Sequence h = m.open("h", SequenceOptions.DEFAULT.withMaxTokens(8));
            assertEquals(-1, m.append(h, 1), "no room to guarantee h");
            m.free(g);
            m.free(x);
            m.free(h);
        }
    }

    @Test
    void noEvictModeDemandsAMaximumLength() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(4).requireMaxTokens(true).build()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> m.open("a"));
            assertTrue(e.getMessage().contains("maxTokens"), e.getMessage());
            Sequence a = m.open("a", SequenceOptions.DEFAULT.withMaxTokens(12));
            assertEquals(0, m.append(a, 1));
            Sequence b = m.open("b", SequenceOptions.DEFAULT.withMaxTokens(8));
            assertEquals(-1, m.append(b, 1), "only 1 block is not promised to a");
            m.free(a);
            m.free(b);
        }
    }

    @Test
    void preemptionPicksLowPriorityNewestAndReturnsEveryBlock() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8).build()) {
            Sequence hi = m.open("hi", SequenceOptions.DEFAULT.withPriority(5));
            Sequence old = m.open("old");
            Sequence young = m.open("young");
            m.append(hi, range(0, 8));
            m.append(old, range(100, 8));
            m.append(young, range(200, 8));
            List<Sequence> v = m.preemptionVictims(2, hi);
            assertEquals(List.of("young"), v.stream().map(Sequence::id).toList());
            v = m.preemptionVictims(3, hi);
            assertEquals(List.of("young", "old"), v.stream().map(Sequence::id).toList());
            m.commit(young); // the engine wrote young's KV before the scheduler preempted it
            int usedBefore = m.stats().usedBlocks();
            PreemptedSequence p = m.preempt(young, PreemptionMode.RECOMPUTE);
            assertEquals(8, m.cachedPrefixLength(range(200, 8)), "its committed blocks stay in the prefix cache");
            assertEquals(usedBefore - 2, m.stats().usedBlocks(), "every block returned");
            assertFalse(young.isLive());
            assertArrayEquals(range(200, 8), p.tokens());
            Sequence back = m.resume(p);
            assertNotNull(back);
            assertEquals(8, back.length());
            assertEquals(4, back.cachedTokens(), "its first block came back from the prefix cache");
            KvCacheLedger l = m.ledger();
            assertEquals(1, l.preemptions());
            assertEquals(4, l.recomputedTokens());
            m.free(hi);
            m.free(old);
            m.free(back);
        }
    }

    @Test
    void thrashGuardProtectsASequencePreemptedRepeatedly() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8).thrashLimit(2).build()) {
            Sequence s = m.open("s");
            m.append(s, range(0, 8));
            for (int i = 0; i < 2; i++) {
                assertEquals(List.of(s.id()), m.preemptionVictims(1, null).stream().map(Sequence::id).toList());
                s = m.resume(m.preempt(s, PreemptionMode.RECOMPUTE));
            }
            assertEquals(2, m.preemptionCount("s"));
            assertTrue(m.preemptionVictims(1, null).isEmpty(), "protected now");
            m.free(s);
        }
    }

    @Test
    void tenantsAboveFairShareArePreemptedFirst() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8).build()) {
            Sequence hog = m.open("hog", SequenceOptions.DEFAULT.withTenant("big").withPriority(9));
            Sequence small = m.open("small", SequenceOptions.DEFAULT.withTenant("small"));
            m.append(hog, range(0, 20)); // 5 blocks > fair share 4
            m.append(small, range(50, 4));
            assertEquals("hog", m.preemptionVictims(1, null).get(0).id(), "over its share despite priority");
            m.free(hog);
            m.free(small);
        }
    }

    @Test
    void swapPreemptionMovesBlocksOutAndBackAllOrNothing() {
        FakeSwap swap = new FakeSwap(3, LAYOUT.bytesPerBlock());
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(6).swapSpace(swap).build()) {
            Sequence s = m.open("s");
            m.append(s, range(0, 10)); // 3 blocks
            m.commit(s); // its KV is written: the record remembers 2 committed full blocks
            int[] table = s.blockTable();
            PreemptedSequence p = m.preempt(s, PreemptionMode.SWAP);
            assertEquals(3, swap.held.size());
            for (int i = 0; i < 3; i++) {
                assertEquals(table[i], swap.held.get(p.swapHandles()[i]), "handle i holds block i");
            }
            assertEquals(0, m.stats().usedBlocks());
            Sequence big = m.open("big");
            m.append(big, range(500, 16)); // 4 of 6 blocks: resume cannot fit
            Map<Long, Integer> before = new HashMap<>(swap.held);
            assertNull(m.resume(p));
            assertEquals(before, swap.held, "nothing swapped in");
            m.free(big);
            Sequence back = m.resume(p);
            assertNotNull(back);
            assertEquals(10, back.length());
            assertEquals(3, back.heldBlocks());
            assertTrue(swap.held.isEmpty());
            assertEquals(3, swap.swappedIn);
            KvCacheLedger l = m.ledger();
            assertEquals(3 * LAYOUT.bytesPerBlock(), l.swappedOutBytes());
            assertEquals(3 * LAYOUT.bytesPerBlock(), l.swappedInBytes());
            assertEquals(8, m.cachedPrefixLength(range(0, 10)), "full blocks are published again");
            m.free(back);
            Sequence s2 = m.open("s2");
            m.append(s2, range(0, 20));
            assertThrows(IllegalStateException.class, () -> m.preempt(s2, PreemptionMode.SWAP),
                    "5 blocks do not fit 3 host blocks");
            assertTrue(s2.isLive(), "a refused swap changes nothing");
            assertEquals(5, s2.heldBlocks());
            m.free(s2);
        }
    }

    @Test
    void costModelChoosesTheCheaperMode() {
        PreemptionCostModel model = new PreemptionCostModel(25e9, 5_000);
        assertEquals(PreemptionMode.SWAP, model.choose(1L << 30, 8_000), "1 GiB over 25 GB/s beats 1.6 s of prefill");
        assertEquals(PreemptionMode.RECOMPUTE, model.choose(1L << 30, 100));
        assertThrows(IllegalArgumentException.class, () -> new PreemptionCostModel(0, 1));
    }

    @Test
    void reaperReleasesOnlySequencesPastTheirLease() {
        AtomicLong now = new AtomicLong();
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(16).clock(now::get)
                .idleLease(Duration.ofSeconds(30)).build()) {
            Sequence chat = m.open("chat");
            Sequence gone = m.open("gone", SequenceOptions.DEFAULT.withTenant("t"));
            Sequence pinned = m.open("pinned", SequenceOptions.DEFAULT.withLease(Duration.ofHours(1)));
            m.append(chat, range(0, 8));
            m.append(gone, range(100, 12));
            m.append(pinned, range(200, 4));
            now.addAndGet(Duration.ofSeconds(20).toNanos());
            m.append(chat, 9); // touched
            assertTrue(m.reapIdle().isEmpty());
            now.addAndGet(Duration.ofSeconds(15).toNanos()); // gone idle 35 s, chat 15 s
            assertEquals(3, m.ledger().idleHeldBlocks(), "gone's 3 blocks are past their lease, pinned's is not");
            List<IdleRelease> r = m.reapIdle();
            assertEquals(1, r.size());
            assertEquals("gone", r.get(0).id());
            assertEquals(3, r.get(0).blocks());
            assertEquals(3 * LAYOUT.bytesPerBlock(), r.get(0).bytes());
            assertEquals(Duration.ofSeconds(35).toNanos(), r.get(0).idleNanos());
            assertFalse(gone.isLive());
            assertEquals(1, m.tenantStats("t").idleReleases());
            assertEquals(1, m.ledger().idleReleasedSequences());
            now.addAndGet(Duration.ofMinutes(10).toNanos());
            assertEquals(List.of("chat"), m.reapIdle().stream().map(IdleRelease::id).toList());
            assertTrue(pinned.isLive(), "its own lease is an hour");
            assertEquals(1, m.idleSequences(Duration.ofMinutes(5)).size());
            m.free(pinned);
        }
    }

    @Test
    void idleSequencesCanBeOffloadedAndResumedWhenTheClientReturns() {
        AtomicLong now = new AtomicLong();
        FakeSwap swap = new FakeSwap(3, LAYOUT.bytesPerBlock());
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8).clock(now::get).swapSpace(swap)
                .idleLease(Duration.ofSeconds(5)).build()) {
            Sequence small = m.open("small");
            Sequence big = m.open("big");
            m.append(small, range(0, 10)); // 3 blocks: fits the 3 host blocks
            m.append(big, range(100, 16)); // 4 blocks: does not
            now.addAndGet(Duration.ofSeconds(6).toNanos());
            List<IdleRelease> r = m.reapIdle(true);
            assertEquals(List.of("big", "small"), r.stream().map(IdleRelease::id).toList());
            assertNull(r.get(0).offloaded(), "too big for the swap space: released");
            PreemptedSequence p = r.get(1).offloaded();
            assertNotNull(p);
            assertEquals(0, m.stats().usedBlocks());
            assertEquals(3, swap.held.size());
            Sequence back = m.resume(p);
            assertNotNull(back);
            assertEquals(10, back.length());
            assertEquals(3 * LAYOUT.bytesPerBlock(), m.ledger().swappedInBytes());
            assertEquals(2, m.ledger().idleReleasedSequences());
            m.free(back);
        }
    }

    @Test
    void droppingTokensMasksThemAndReleasesFullyDroppedBlocks() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8).build()) {
            Sequence s = m.open("s");
            m.append(s, range(0, 14)); // blocks 0..3, last partial
            assertEquals(0, m.dropTokens(s, new int[] {4, 5, 6}, 0, 3), "block 1 keeps token 7");
            assertEquals(-1, s.slot(5));
            assertTrue(s.isDropped(5));
            assertTrue(s.slot(7) >= 0);
            assertEquals(4, s.heldBlocks());
            assertEquals(1, m.dropTokens(s, new int[] {7, 7}, 0, 2), "now block 1 goes");
            assertEquals(-1, s.blockTable()[1]);
            assertEquals(3, s.heldBlocks());
            assertEquals(0, m.dropTokens(s, new int[] {12, 13}, 0, 2), "the partial last block is never released");
            assertEquals(6, s.droppedTokens());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> m.dropTokens(s, new int[] {0, 14}, 0, 2));
            assertTrue(e.getMessage().contains("14"));
            assertFalse(s.isDropped(0), "a failed drop drops nothing");
            assertTrue(m.append(s, 14) >= 0);
            KvCacheLedger l = m.ledger();
            assertEquals(6, l.droppedTokens());
            assertEquals(1, l.retentionReleasedBlocks());
            m.free(s);
            assertEquals(0, m.stats().usedBlocks());
        }
    }

    @Test
    void heavyHittersKeepSinksRecentAndTheHeaviest() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(16).build()) {
            Sequence s = m.open("s");
            m.append(s, range(0, 40));
            AttentionMass mass = new AttentionMass(40);
            for (int p = 0; p < 40; p++) {
                mass.add(p, 0.01f);
            }
            mass.add(10, 5f);
            mass.add(21, 3f);
            HeavyHitterRetention h2o = new HeavyHitterRetention(4, 8, 2, false);
            int[] drop = h2o.select(s, mass, 4);
            List<Integer> kept = new ArrayList<>();
            for (int p = 4; p < 32; p++) {
                kept.add(p);
            }
            for (int p : drop) {
                kept.remove(Integer.valueOf(p));
            }
            assertEquals(List.of(10, 21), kept);
            m.dropTokens(s, drop, 0, drop.length);
            assertEquals(0, h2o.select(s, mass, 4).length, "idempotent");
            // token-granular: blocks 1..7 each keep nothing except blocks 2 (10) and 5 (21)
            assertEquals(5, s.heldBlocks(), "sink block, two partly kept blocks, two recent blocks");
            m.free(s);
        }
    }

    @Test
    void blockGranularHeavyHittersFreeMemory() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(16).build()) {
            Sequence s = m.open("s");
            m.append(s, range(0, 40)); // 10 blocks
            AttentionMass mass = new AttentionMass(40);
            mass.add(13, 1f); // block 3
            mass.add(26, 2f); // block 6
            mass.add(27, 2f);
            HeavyHitterRetention h2o = new HeavyHitterRetention(4, 8, 8, true); // keep 2 blocks
            int[] drop = h2o.select(s, mass, 4);
            int released = m.dropTokens(s, drop, 0, drop.length);
            assertEquals(5, released, "blocks 1,2,4,5,7 go; 3 and 6 stay");
            int[] t = s.blockTable();
            for (int blk : new int[] {0, 3, 6, 8, 9}) {
                assertTrue(t[blk] >= 0, "block " + blk);
            }
            assertEquals(5, s.heldBlocks());
            m.free(s);
        }
    }

    @Test
    void snapKvProtectsTheObservationWindowAndKeepsPooledNeighbours() {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(16).build()) {
            Sequence s = m.open("s");
            m.append(s, range(0, 32));
            AttentionMass obs = new AttentionMass(32);
            obs.add(12, 1f);
            SnapKvRetention snap = new SnapKvRetention(2, 8, 3, 3, false);
            int[] drop = snap.select(s, obs, 4);
            List<Integer> kept = new ArrayList<>();
            for (int p = 0; p < 32; p++) {
                kept.add(p);
            }
            for (int p : drop) {
                kept.remove(Integer.valueOf(p));
            }
            List<Integer> expected = new ArrayList<>(List.of(0, 1, 11, 12, 13));
            for (int p = 24; p < 32; p++) {
                expected.add(p);
            }
            assertEquals(expected, kept);
            assertThrows(IllegalArgumentException.class, () -> new SnapKvRetention(0, 1, 1, 2, false));
            m.free(s);
        }
    }

    @Test
    void everyLeverIsReportedToListeners() {
        AtomicLong now = new AtomicLong();
        List<KvCacheEvent> events = new ArrayList<>();
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(4).clock(now::get)
                .idleLease(Duration.ofSeconds(1)).build()) {
            m.addListener(events::add);
            Sequence a = m.open("a", SequenceOptions.DEFAULT.withTenant("t"));
            m.append(a, range(0, 16));
            Sequence b = m.open("b");
            assertEquals(-1, m.append(b, range(0, 3)));
            KvCacheEvent.AppendRefused refused = (KvCacheEvent.AppendRefused) events.get(events.size() - 1);
            assertEquals(new KvCacheEvent.AppendRefused("b", "default", Refusal.NO_BLOCKS, 3, 0), refused);
            m.dropTokens(a, range(4, 4), 0, 4);
            assertEquals(new KvCacheEvent.TokensDropped("a", 4, 1), events.get(events.size() - 1));
            PreemptedSequence p = m.preempt(a, PreemptionMode.RECOMPUTE);
            assertEquals(new KvCacheEvent.SequencePreempted("a", "t", PreemptionMode.RECOMPUTE, 16, 3),
                    events.get(events.size() - 1));
            now.addAndGet(Duration.ofSeconds(2).toNanos());
            m.reapIdle();
            KvCacheEvent.IdleReleased idle = (KvCacheEvent.IdleReleased) events.get(events.size() - 1);
            assertEquals("b", idle.release().id());
            assertEquals(16, p.length());
        }
    }

    /** A swap space in a map: handle -> the block it holds. */
    static final class FakeSwap implements SwapSpace {
        final int capacity;
        final long bytesPerBlock;
        final Map<Long, Integer> held = new HashMap<>();
        long next;
        int swappedIn;

        FakeSwap(int capacity, long bytesPerBlock) {
            this.capacity = capacity;
            this.bytesPerBlock = bytesPerBlock;
        }

        @Override
        public long bytesPerBlock() {
            return bytesPerBlock;
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
            held.put(next, block);
            return next++;
        }

        @Override
        public void swapIn(long handle, int block) {
            if (held.remove(handle) == null) {
                throw new IllegalStateException("unknown handle " + handle);
            }
            swappedIn++;
        }

        @Override
        public void discard(long handle) {
            held.remove(handle);
        }
    }
}
