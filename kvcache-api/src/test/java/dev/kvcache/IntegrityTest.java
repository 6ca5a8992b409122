package dev.kvcache;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The hostile probes of issue #12, one test (or a few) per probe. Each fails on the manager before
 * the rebuild (8df6539: records resumed twice, hash-only hits, publication at the append, partial
 * copy-on-write, listener exceptions mid-change, shared charges, unguarded sequence reads, unbounded
 * per-id state) and passes on the rebuilt one.
 *
 * <p>Where KV content matters, a tiny {@link ArrayStore} holds one {@code float[]} per slot and the
 * test plays the engine: it writes, for every position it computes, a digest of exactly the token
 * prefix that position saw ({@link #kvOf}). So reading a sequence's slots back proves that it is
 * served the KV of its own prefix and nobody else's.
 */
class IntegrityTest {

    private static final KvLayout L = new KvLayout(1, 1, 32, 4, KvFormats.F32);
    private static final int B = 4;
    private static final int DIM = 32;

    private static int[] range(int from, int count) {
        return IntStream.range(from, from + count).toArray();
    }

    private static int[] concat(int[]... parts) {
        return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
    }

    // ------------------------------------------------------------------ the engine's part

    /** The K (or V) a model would compute for position {@code p} after exactly {@code tokens[0..p]}. */
    static float[] kvOf(int[] tokens, int p, boolean value) {
        long h = 0xcbf29ce484222325L;
        for (int i = 0; i <= p; i++) {
            h = (h ^ tokens[i]) * 0x100000001b3L;
        }
        float[] out = new float[DIM];
        out[0] = p;
        out[1] = value ? 1 : 0;
        for (int i = 0; i < 4; i++) {
            out[2 + i] = (float) ((h >>> (16 * i)) & 0xFFFF);
        }
        return out;
    }

    private static int[] tokensOf(Sequence s) {
        int[] t = new int[s.length()];
        for (int p = 0; p < t.length; p++) {
            t[p] = s.token(p);
        }
        return t;
    }

    /** Appends like an engine: what the cache did not serve is computed and written to the store. */
    private static int compute(KvCacheManager m, ArrayStore st, Sequence s, int... tokens) {
        int old = s.length();
        int hits = m.append(s, tokens);
        if (hits < 0) {
            return hits;
        }
        int[] all = tokensOf(s);
        for (int p = old + hits; p < all.length; p++) {
            st.write(0, s.slot(p), kvOf(all, p, false), kvOf(all, p, true));
        }
        return hits;
    }

    /** Every position of {@code s} reads the KV computed for {@code s}'s own prefix. */
    private static void assertOwnKv(ArrayStore st, Sequence s) {
        int[] all = tokensOf(s);
        float[] k = new float[DIM];
        float[] v = new float[DIM];
        for (int p = 0; p < all.length; p++) {
            st.readKey(0, s.slot(p), k);
            st.readValue(0, s.slot(p), v);
            assertArrayEquals(kvOf(all, p, false), k, s.id() + " position " + p + " reads another prefix's K");
            assertArrayEquals(kvOf(all, p, true), v, s.id() + " position " + p + " reads another prefix's V");
        }
    }

    // ------------------------------------------------------------------ the manager's whole state

    /** Everything observable about a manager: ledger (stats included), live tables, refcounts, publication, tenants. */
    record State(Map<String, Object> ledger, Map<String, String> tables, List<Integer> refs,
                 List<Boolean> published, List<TenantStats> tenants) {
    }

    /** The state of {@code m}, leaving out the ledger components named in {@code without}. */
    static State state(KvCacheManager m, String... without) {
        Map<String, Object> ledger = new TreeMap<>();
        flatten("", m.ledger(), ledger);
        for (String w : without) {
            assertTrue(ledger.containsKey(w), w);
            ledger.remove(w);
        }
        Map<String, String> tables = new TreeMap<>();
        for (String id : m.liveSequenceIds()) {
            Sequence s = m.sequence(id);
            tables.put(id, Arrays.toString(s.blockTable()) + " len=" + s.length() + " held=" + s.heldBlocks()
                    + " cached=" + s.cachedTokens());
        }
        int total = m.stats().totalBlocks();
        List<Integer> refs = new ArrayList<>();
        List<Boolean> published = new ArrayList<>();
        for (int b = 0; b < total; b++) {
            refs.add(m.refCount(b));
            published.add(m.isPublished(b));
        }
        return new State(ledger, tables, refs, published, m.tenantStats());
    }

    private static void flatten(String prefix, Record r, Map<String, Object> out) {
        try {
            for (RecordComponent c : r.getClass().getRecordComponents()) {
                Object v = c.getAccessor().invoke(r);
                if (v instanceof Record inner) {
                    flatten(prefix + c.getName() + ".", inner, out);
                } else {
                    out.put(prefix + c.getName(), v);
                }
            }
        } catch (ReflectiveOperationException e) {
            throw new AssertionError(e);
        }
    }

    private static long ledgerLong(KvCacheManager m, String name) {
        Map<String, Object> f = new TreeMap<>();
        flatten("", m.ledger(), f);
        return ((Number) f.get(name)).longValue();
    }

    private static void assertBalanced(KvCacheManager m) {
        KvCacheStats s = m.stats();
        assertEquals(s.totalBlocks(), s.usedBlocks() + s.cachedBlocks() + s.emptyBlocks(), s.toString());
    }

    // ================================================================== 1. records resume at most once

    @Test
    void aRecordResumedOnceCannotResumeAgainAndReadAnotherSequencesSwappedKv() {
        ArrayStore st = new ArrayStore(L, 16);
        ArraySwap swap = new ArraySwap(st, 8);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).swapSpace(swap).build()) {
            Sequence a = m.open("A");
            compute(m, st, a, 1, 2, 3, 4, 9);
            PreemptedSequence pa = m.preempt(a, PreemptionMode.SWAP);
            long[] paHandles = pa.swapHandles().clone();
            Sequence a2 = m.resume(pa);
            assertOwnKv(st, a2);
            m.free(a2);

            Sequence b = m.open("B");
            compute(m, st, b, 5, 6, 7, 8, 10);
            PreemptedSequence pb = m.preempt(b, PreemptionMode.SWAP);
            assertArrayEquals(paHandles, pb.swapHandles(), "premise: the swap space reused A's host blocks for B");

            State before = state(m);
            String swapBefore = swap.toString();
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> m.resume(pa));
            assertTrue(e.getMessage().contains("'A'"), e.getMessage());
            assertEquals(before, state(m), "a refused resume changes nothing");
            assertEquals(swapBefore, swap.toString(), "nothing swapped in or discarded");
            assertNull(m.sequence("A"));
            assertEquals(1, m.ledger().outstandingRecords());

            Sequence b2 = m.resume(pb);
            assertNotNull(b2);
            assertArrayEquals(new int[] {5, 6, 7, 8, 10}, tokensOf(b2));
            assertOwnKv(st, b2);
            m.free(b2);
            assertEquals(0, m.stats().usedBlocks());
            assertEquals(0, swap.usedBlocks(), "every host block came back");
            assertEquals(0, m.ledger().outstandingRecords());
            assertBalanced(m);
        } // close() throws if anything leaked
    }

    @Test
    void recordsMadeUpOutsideAreRefusedAndChangeNothing() {
        ArrayStore st = new ArrayStore(L, 16);
        ArraySwap swap = new ArraySwap(st, 8);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).swapSpace(swap).build()) {
            Sequence a = m.open("A");
            compute(m, st, a, range(0, 9));
            PreemptedSequence pa = m.preempt(a, PreemptionMode.SWAP);
            State before = state(m);
            String swapBefore = swap.toString();

            PreemptedSequence negative = new PreemptedSequence("X", SequenceOptions.DEFAULT, new int[] {-5},
                    PreemptionMode.RECOMPUTE, null, 0);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> m.resume(negative));
            assertTrue(e.getMessage().contains("'X'"), e.getMessage());
            PreemptedSequence stolen = new PreemptedSequence("Y", SequenceOptions.DEFAULT, range(0, 9),
                    PreemptionMode.SWAP, pa.swapHandles().clone(), pa.releasedBlocks());
            e = assertThrows(IllegalStateException.class, () -> m.resume(stolen), "another record's handles");
            assertTrue(e.getMessage().contains("'Y'"), e.getMessage());
            PreemptedSequence lookalike = new PreemptedSequence(pa.id(), pa.options(), pa.tokens(), pa.mode(),
                    pa.swapHandles(), pa.releasedBlocks());
            assertEquals(pa, lookalike, "premise: equal as a record");
            e = assertThrows(IllegalStateException.class, () -> m.resume(lookalike));
            assertTrue(e.getMessage().contains("'A'"), e.getMessage());
            assertThrows(IllegalStateException.class, () -> m.discard(lookalike));
            assertEquals(before, state(m));
            assertEquals(swapBefore, swap.toString());
            assertEquals(List.of(), m.liveSequenceIds());

            Sequence back = m.resume(pa);
            assertNotNull(back, "the real record still resumes");
            assertOwnKv(st, back);
            m.free(back);
            assertEquals(0, swap.usedBlocks());
        }
    }

    /** A swap space that throws on its {@code failAt}-th swapOut or swapIn call (counted from 1), as a dying host tier would. */
    static final class FailingSwap implements SwapSpace {
        final ArraySwap inner;
        int failOutAt;
        int failInAt;
        int outs;
        int ins;

        FailingSwap(ArraySwap inner) {
            this.inner = inner;
        }

        @Override
        public long bytesPerBlock() {
            return inner.bytesPerBlock();
        }

        @Override
        public int freeBlocks() {
            return inner.freeBlocks();
        }

        @Override
        public long swapOut(int block) {
            if (++outs == failOutAt) {
                throw new IllegalStateException("injected swapOut failure at block " + block);
            }
            return inner.swapOut(block);
        }

        @Override
        public void swapIn(long handle, int block) {
            if (++ins == failInAt) {
                throw new IllegalStateException("injected swapIn failure at handle " + handle);
            }
            inner.swapIn(handle, block);
        }

        @Override
        public void discard(long handle) {
            inner.discard(handle);
        }
    }

    @Test
    void aSwapSpaceThatThrowsMidCopyLeavesNothingHalfDone() {
        ArrayStore st = new ArrayStore(L, 16);
        ArraySwap host = new ArraySwap(st, 8);
        FailingSwap swap = new FailingSwap(host);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).swapSpace(swap).build()) {
            Sequence a = m.open("A");
            compute(m, st, a, range(1, 10));            // 3 blocks
            m.commit(a);

            // swap-out dies on the second block: the first host copy is given back, A is untouched
            swap.failOutAt = 2;
            State before = state(m);
            IllegalStateException out = assertThrows(IllegalStateException.class, () -> m.preempt(a, PreemptionMode.SWAP));
            assertTrue(out.getMessage().contains("injected swapOut"), out.getMessage());
            assertEquals(before, state(m), "a failed swap-out changes nothing");
            assertEquals(0, host.usedBlocks(), "no host block kept");
            assertTrue(a.isLive());
            assertOwnKv(st, a);

            // swap-in dies on the second block: every block taken goes back, the rest of the copies are dropped
            swap.failOutAt = 0;
            PreemptedSequence p = m.preempt(a, PreemptionMode.SWAP);
            assertEquals(3, host.usedBlocks());
            swap.failInAt = swap.ins + 2;
            int usedBefore = m.stats().usedBlocks();
            IllegalStateException in = assertThrows(IllegalStateException.class, () -> m.resume(p));
            assertTrue(in.getMessage().contains("injected swapIn"), in.getMessage());
            assertEquals(usedBefore, m.stats().usedBlocks(), "the blocks the failed swap-in took are back");
            assertNull(m.sequence("A"));
            assertEquals(0, host.usedBlocks(), "the host copies it did not reach were discarded");
            assertEquals(0, m.ledger().outstandingRecords(), "the record is retired");
            assertEquals(1, m.ledger().swapFailures());
            assertThrows(IllegalStateException.class, () -> m.resume(p), "a retired record never resumes");
            assertBalanced(m);

            // the tokens can still be prefilled again, and its committed prefix comes from the cache
            Sequence again = m.open("A");
            assertEquals(8, compute(m, st, again, range(1, 10)));
            assertOwnKv(st, again);
            m.free(again);
        }
    }

    @Test
    void aRecordsArraysChangedAfterIssueDoNotChangeWhatResumes() {
        ArrayStore st = new ArrayStore(L, 16);
        ArraySwap swap = new ArraySwap(st, 8);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).swapSpace(swap).build()) {
            int[] tokens = range(10, 9);
            Sequence a = m.open("A");
            compute(m, st, a, tokens);
            PreemptedSequence pa = m.preempt(a, PreemptionMode.SWAP);
            pa.tokens()[0] = 999;
            pa.swapHandles()[0] = pa.swapHandles()[1];
            Sequence back = m.resume(pa);
            assertArrayEquals(tokens, tokensOf(back));
            assertOwnKv(st, back);
            assertEquals(0, swap.usedBlocks(), "each original handle was swapped in once");

            PreemptedSequence pr = m.preempt(back, PreemptionMode.RECOMPUTE);
            pr.tokens()[3] = 5000;
            Sequence again = m.resume(pr);
            assertArrayEquals(tokens, tokensOf(again));
            m.free(again);
        }
    }

    @Test
    void aDiscardedRecordFreesItsSwapBlocksAndNoLongerResumes() {
        ArrayStore st = new ArrayStore(L, 16);
        ArraySwap swap = new ArraySwap(st, 8);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).swapSpace(swap).build()) {
            Sequence a = m.open("A");
            compute(m, st, a, range(0, 9));
            PreemptedSequence pa = m.preempt(a, PreemptionMode.SWAP);
            assertEquals(3, swap.usedBlocks());
            assertEquals(1, m.ledger().outstandingRecords());
            assertEquals(1, m.preemptionCount("A"));
            m.discard(pa);
            assertEquals(0, swap.usedBlocks(), "its host blocks are free again");
            assertEquals(0, m.ledger().outstandingRecords());
            assertEquals(0, m.preemptionCount("A"), "gone for good");
            State before = state(m);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> m.resume(pa));
            assertTrue(e.getMessage().contains("'A'"), e.getMessage());
            assertThrows(IllegalStateException.class, () -> m.discard(pa));
            assertEquals(before, state(m));
            assertEquals(0, swap.usedBlocks());
        }
    }

    @Test
    void aRefusedResumeLeavesTheRecordResumable() {
        ArrayStore st = new ArrayStore(L, 6);
        ArraySwap swap = new ArraySwap(st, 8);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).swapSpace(swap).build()) {
            Sequence a = m.open("A");
            compute(m, st, a, range(0, 9)); // 3 blocks
            PreemptedSequence pa = m.preempt(a, PreemptionMode.SWAP);
            Sequence filler = m.open("filler");
            compute(m, st, filler, range(100, 16)); // 4 of 6 blocks
            State before = state(m, "stats.allocationFailures");
            long failures = m.stats().allocationFailures();
            String swapBefore = swap.toString();
            assertNull(m.resume(pa));
            assertEquals(Refusal.NO_BLOCKS, m.lastRefusal());
            assertEquals(before, state(m, "stats.allocationFailures"), "nothing but the refusal counter moved");
            assertEquals(failures + 1, m.stats().allocationFailures());
            assertEquals(swapBefore, swap.toString());
            assertEquals(1, m.ledger().outstandingRecords());
            assertNull(m.sequence("A"));
            m.free(filler);
            Sequence back = m.resume(pa);
            assertNotNull(back);
            assertOwnKv(st, back);
            assertEquals(0, m.ledger().outstandingRecords());
            m.free(back);
        }
    }

    // ================================================================== 2. hits are proven, not hashed

    @Test
    void aDifferentFirstBlockNeverLendsItsSecondBlock() {
        ArrayStore st = new ArrayStore(L, 16);
        int[] x = {1, 2, 3, 4};
        int[] xPrime = {100, 101, 102, 103};
        int[] y = {5, 6, 7, 8};
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).build()) {
            Sequence a = m.open("A");
            compute(m, st, a, concat(xPrime, y, new int[] {9}));
            m.commit(a);
            assertEquals(8, m.cachedPrefixLength(concat(xPrime, y)));
            assertEquals(0, m.cachedPrefixLength(concat(x, y)));
            Sequence victim = m.open("victim");
            assertEquals(0, compute(m, st, victim, concat(x, y, new int[] {9})));
            assertEquals(0, victim.cachedTokens());
            assertOwnKv(st, victim);
            assertOwnKv(st, a);
            m.free(a);
            m.free(victim);
        }
    }

    @Test
    void aBlockPublishedUnderAStaleParentIsNeverServed() {
        ArrayStore st = new ArrayStore(L, 8);
        int[] x = {1, 2, 3, 4};
        int[] y = {5, 6, 7, 8};
        int[] prompt = concat(x, y, new int[] {9});
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).build()) {
            Sequence a = m.open("A");
            compute(m, st, a, prompt);
            m.commit(a); // X in block a0, Y in a1 (its parent: a0 at its current generation)
            int[] at = a.blockTable();
            assertTrue(m.isPublished(at[0]) && m.isPublished(at[1]));
            // a retention policy drops X from A: a0 is cached, Y stays held and published by A
            assertEquals(1, m.dropTokens(a, range(0, 4), 0, 4));
            assertEquals(0, m.refCount(at[0]));
            // a0 is evicted and reused for other content
            Sequence c = m.open("C");
            compute(m, st, c, range(200, 24)); // 6 blocks: the 5 empty ones and a0
            assertTrue(Arrays.stream(c.blockTable()).anyMatch(b -> b == at[0]), "premise: a0 was reused");
            assertFalse(m.isPublished(at[0]));
            m.free(c);
            // the same first block is published again (wherever the pool puts it)
            Sequence d = m.open("D");
            compute(m, st, d, concat(x, new int[] {50}));
            m.commit(d);
            int d0 = d.blockTable()[0];
            assertTrue(m.isPublished(d0));
            assertTrue(m.isPublished(at[1]), "premise: the stale Y is still published (A holds it)");

            assertEquals(4, m.cachedPrefixLength(prompt), "only the first block is proven");
            Sequence victim = m.open("victim");
            assertEquals(4, compute(m, st, victim, prompt), "X hits, the stale Y does not");
            int[] vt = victim.blockTable();
            assertEquals(d0, vt[0]);
            assertNotEquals(at[1], vt[1]);
            assertOwnKv(st, victim);
            m.free(victim); // publishes a fresh Y under d0: the stale entry does not block it
            Sequence next = m.open("next");
            assertEquals(8, compute(m, st, next, prompt));
            assertOwnKv(st, next);
            for (Sequence s : List.of(a, d, next)) {
                m.free(s);
            }
        }
    }

    @Test
    void eventsCarryChainedPrefixKeysEqualAcrossManagersAndDistinctAcrossScopes() {
        int[] tokens = range(40, 9);
        List<KvCacheEvent.BlockStored> t1 = stored(false, 7L, "t1", tokens);
        assertEquals(2, t1.size());
        KvCacheEvent.BlockStored e0 = t1.get(0);
        KvCacheEvent.BlockStored e1 = t1.get(1);
        PrefixKey k0 = PrefixKey.chain(PrefixKey.root(7L, "t1"), tokens, 0, 4);
        PrefixKey k1 = PrefixKey.chain(k0, tokens, 4, 4);
        assertEquals(k0, e0.key());
        assertNull(e0.parentKey());
        assertEquals(KvCacheManager.ROOT_HASH, e0.parentHash());
        assertEquals(k0.hi(), e0.hash());
        assertEquals(k1, e1.key());
        assertEquals(k0, e1.parentKey());
        assertEquals(k0.hi(), e1.parentHash());
        assertEquals(k1.hi(), e1.hash());
        assertEquals("t1", e0.scope());
        assertEquals(7L, e1.cacheSalt());
        assertArrayEquals(range(44, 4), e1.tokenIds());

        assertEquals(keys(t1), keys(stored(false, 7L, "t1", tokens)), "a second manager agrees");
        List<PrefixKey> otherTenant = keys(stored(false, 7L, "t2", tokens));
        List<PrefixKey> otherSalt = keys(stored(false, 8L, "t1", tokens));
        List<KvCacheEvent.BlockStored> shared = stored(true, 7L, "t1", tokens);
        for (int i = 0; i < 2; i++) {
            assertNotEquals(keys(t1).get(i), otherTenant.get(i));
            assertNotEquals(keys(t1).get(i), otherSalt.get(i));
            assertNotEquals(keys(t1).get(i), keys(shared).get(i));
        }
        assertNull(shared.get(0).scope());
        assertEquals(PrefixKey.chain(PrefixKey.root(7L, null), tokens, 0, 4), shared.get(0).key());
    }

    private static List<PrefixKey> keys(List<KvCacheEvent.BlockStored> events) {
        return events.stream().map(KvCacheEvent.BlockStored::key).toList();
    }

    /** The BlockStored events of one fresh manager committing {@code tokens} for {@code tenant} and {@code salt}. */
    private static List<KvCacheEvent.BlockStored> stored(boolean shared, long salt, String tenant, int[] tokens) {
        List<KvCacheEvent.BlockStored> out = new ArrayList<>();
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(8).shareAcrossTenants(shared).build()) {
            m.addListener(e -> {
                if (e instanceof KvCacheEvent.BlockStored s) {
                    out.add(s);
                }
            });
            Sequence s = m.open("s", SequenceOptions.DEFAULT.withCacheSalt(salt).withTenant(tenant));
            m.append(s, tokens);
            m.commit(s);
            for (KvCacheEvent.BlockStored e : out) {
                assertEquals(e.key(), m.prefixKey(e.block()), "prefixKey(block) is the published key");
            }
            m.free(s);
        }
        return out;
    }

    // ================================================================== 3. publish after write

    @Test
    void anAbortedPromptLeavesNothingHitableAndCanBeRetried() {
        ArrayStore st = new ArrayStore(L, 16);
        List<KvCacheEvent> events = new ArrayList<>();
        int[] prompt = range(0, 9);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).build()) {
            m.addListener(events::add);
            Sequence s = m.open("r");
            assertEquals(0, m.append(s, prompt)); // the engine fails before writing any KV
            int[] table = s.blockTable();
            assertEquals(0, m.cachedPrefixLength(prompt), "pending blocks are not hit-able");
            m.abort(s);
            assertFalse(s.isLive());
            for (int b : table) {
                assertFalse(m.isPublished(b), "block " + b);
            }
            assertEquals(2, m.ledger().abortedBlocks(), "its two full blocks");
            assertEquals(0, m.ledger().publishedBlocks());
            assertTrue(events.stream().noneMatch(e -> e instanceof KvCacheEvent.BlockStored), events.toString());
            assertEquals(0, m.stats().cachedBlocks());
            assertEquals(16, m.stats().emptyBlocks());

            Sequence retry = m.open("r");
            assertEquals(0, compute(m, st, retry, prompt), "the next identical prompt gets no hits");
            assertOwnKv(st, retry);
            m.free(retry); // this time it ran to its end
            assertEquals(2, m.ledger().publishedBlocks());
            assertEquals(2, m.ledger().abortedBlocks());
            Sequence next = m.open("next");
            assertEquals(8, compute(m, st, next, prompt));
            assertOwnKv(st, next);
            m.free(next);
        }
    }

    @Test
    void aPromptIsPublishedAtItsNextAppendCommitOrFreeButNotByPreemption() {
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(16).build()) {
            int[] p1 = range(0, 9);
            int[] p2 = range(100, 9);
            int[] p3 = range(200, 9);
            Sequence a = m.open("a");
            m.append(a, p1);
            assertEquals(0, m.cachedPrefixLength(p1));
            m.append(a, 7); // the next token: the prompt's KV exists now
            assertEquals(8, m.cachedPrefixLength(p1));

            Sequence b = m.open("b");
            m.append(b, p2);
            int[] bt = b.blockTable();
            PreemptedSequence pb = m.preempt(b, PreemptionMode.RECOMPUTE);
            assertEquals(0, m.cachedPrefixLength(p2), "a scheduler may preempt before the engine wrote it");
            assertFalse(m.isPublished(bt[0]));
            m.discard(pb);

            Sequence c = m.open("c");
            m.append(c, p3);
            m.free(c);
            assertEquals(8, m.cachedPrefixLength(p3), "free: the request ran to its end");
            m.free(a);
        }
    }

    // ================================================================== 4. copy-on-write is all or nothing

    @Test
    void aFailedCopyOnWriteChangesNothingAndTheNextAppendCopies() {
        AtomicBoolean broken = new AtomicBoolean();
        List<int[]> copies = new ArrayList<>();
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(8).tenantQuota("t", 8).blockCopier((src, dst) -> {
            if (broken.get()) {
                throw new IllegalStateException("copier down at " + src + "->" + dst);
            }
            copies.add(new int[] {src, dst});
        }).build()) {
            SequenceOptions t = SequenceOptions.DEFAULT.withTenant("t");
            Sequence p = m.open("p", t);
            m.append(p, range(0, 6)); // block 0 full, block 1 half
            Sequence c = m.fork(p, "c");
            int shared = p.blockTable()[1];
            broken.set(true);
            State before = state(m, "copyFailures");
            KvCacheStats stats = m.stats();
            int[] ct = c.blockTable();
            int[] pt = p.blockTable();
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> m.append(c, 42));
            assertTrue(e.getMessage().contains("copier down at " + shared + "->"), e.getMessage());
            assertEquals(before, state(m, "copyFailures"));
            assertEquals(stats, m.stats());
            assertArrayEquals(ct, c.blockTable());
            assertArrayEquals(pt, p.blockTable());
            assertEquals(6, c.length());
            assertEquals(2, m.refCount(shared));
            assertEquals(2, m.tenantStats("t").usedBlocks());
            assertEquals(1, m.ledger().copyFailures());
            assertEquals(0, m.ledger().copyOnWrites());

            broken.set(false);
            assertEquals(0, m.append(c, 42));
            assertEquals(1, copies.size());
            assertEquals(shared, copies.get(0)[0]);
            assertEquals(c.blockTable()[1], copies.get(0)[1]);
            assertEquals(1, m.refCount(shared));
            assertEquals(3, m.stats().usedBlocks());
            assertEquals(3, m.tenantStats("t").usedBlocks());
            assertEquals(7, c.length());
            m.free(p);
            m.free(c);
            assertEquals(0, m.tenantStats("t").usedBlocks());
        }
    }

    @Test
    void aClosedStoreFailsTheCopyWithNothingChangedAndTheNextAppendCopiesTheKv() {
        ArrayStore st = new ArrayStore(L, 8);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).build()) {
            Sequence p = m.open("p");
            compute(m, st, p, range(0, 6));
            Sequence c = m.fork(p, "c");
            st.closed = true;
            State before = state(m, "copyFailures");
            int[] ct = c.blockTable();
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> m.append(c, 42));
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
            assertEquals(before, state(m, "copyFailures"));
            assertArrayEquals(ct, c.blockTable());
            assertEquals(6, c.length());
            assertEquals(1, m.ledger().copyFailures());

            st.closed = false; // the store is back
            assertEquals(0, compute(m, st, c, 42));
            assertNotEquals(p.blockTable()[1], c.blockTable()[1]);
            assertOwnKv(st, c); // positions 4, 5 were copied, 6 computed
            assertOwnKv(st, p);
            m.free(p);
            m.free(c);
        }
    }

    // ================================================================== 5. callbacks that throw

    @Test
    void aListenerThrowingOnEveryEventCorruptsNothing() {
        AtomicLong calls = new AtomicLong();
        twins(() -> {
            KvCacheManager m = KvCacheManager.builder(L).blocks(10).build();
            m.addListener(e -> {
                calls.incrementAndGet();
                throw new IllegalStateException("listener down on " + e);
            });
            return m;
        }, () -> KvCacheManager.builder(L).blocks(10).build(), calls);
    }

    @Test
    void aListenerThrowingOnBlockRemovedCorruptsNothing() {
        AtomicLong calls = new AtomicLong();
        AtomicLong seen = new AtomicLong();
        twins(() -> {
            KvCacheManager m = KvCacheManager.builder(L).blocks(10).build();
            m.addListener(e -> seen.incrementAndGet());
            m.addListener(e -> {
                if (e instanceof KvCacheEvent.BlockRemoved) {
                    calls.incrementAndGet();
                    throw new IllegalStateException("listener down on " + e);
                }
            });
            return m;
        }, () -> KvCacheManager.builder(L).blocks(10).build(), calls);
        assertTrue(seen.get() > calls.get(), "the other listener was told everything: " + seen + " vs " + calls);
    }

    @Test
    void aStoreWhoseBlockReleasedThrowsCorruptsNothing() {
        AtomicLong calls = new AtomicLong();
        twins(() -> {
            ArrayStore st = new ArrayStore(L, 10);
            st.releaseFailures = calls;
            return KvCacheManager.builder(L).store(st).build();
        }, () -> KvCacheManager.builder(L).store(new ArrayStore(L, 10)).build(), calls);
    }

    /**
     * Runs one random serving workload (prompts sharing prefixes, decodes, commits, frees, aborts,
     * forks, preemptions, resets; small pool, so evictions) on {@code hostile} and {@code plain} in
     * lockstep: every call returns the same and the whole state is the same after each step, apart
     * from {@code callbackErrors}, which counts exactly the throws.
     */
    private static void twins(Supplier<KvCacheManager> hostile, Supplier<KvCacheManager> plain, AtomicLong throwsSeen) {
        int[][] prompts = new int[4][];
        for (int p = 0; p < prompts.length; p++) {
            prompts[p] = new int[9 + 4 * p];
            for (int i = 0; i < prompts[p].length; i++) {
                prompts[p][i] = p < 3 && i < 8 ? i : 100 * p + i;
            }
        }
        KvCacheManager[] ms = {hostile.get(), plain.get()};
        List<List<Sequence>> lives = List.of(new ArrayList<>(), new ArrayList<>());
        SplittableRandom rnd = new SplittableRandom(12);
        int next = 0;
        long resets = 0;
        for (int step = 0; step < 1500; step++) {
            int dice = rnd.nextInt(100);
            int pick = rnd.nextInt(1000);
            int prompt = rnd.nextInt(prompts.length);
            int token = rnd.nextInt(50);
            Object[] results = new Object[2];
            for (int k = 0; k < 2; k++) {
                KvCacheManager m = ms[k];
                List<Sequence> live = lives.get(k);
                Object r;
                if (live.isEmpty() || (dice < 15 && live.size() < 5)) {
                    Sequence s = m.open("q" + next);
                    live.add(s);
                    r = m.append(s, prompts[prompt]);
                } else {
                    Sequence s = live.get(pick % live.size());
                    if (dice < 20) {
                        m.free(s);
                        live.remove(s);
                        r = "free";
                    } else if (dice < 24) {
                        m.abort(s);
                        live.remove(s);
                        r = "abort";
                    } else if (dice < 30) {
                        m.commit(s);
                        r = "commit";
                    } else if (dice < 34 && live.size() < 5) {
                        live.add(m.fork(s, "q" + next));
                        r = "fork";
                    } else if (dice < 38) {
                        live.remove(s);
                        PreemptedSequence p = m.preempt(s, PreemptionMode.RECOMPUTE);
                        Sequence back = m.resume(p);
                        if (back != null) {
                            live.add(back);
                        } else {
                            m.discard(p);
                        }
                        r = back == null ? "preempted" : "resumed";
                    } else if (dice < 40) {
                        for (Sequence q : live) {
                            m.free(q);
                        }
                        live.clear();
                        r = m.resetPrefixCache();
                    } else {
                        int hits = m.append(s, token);
                        if (hits < 0) {
                            m.free(live.remove(0));
                        }
                        r = hits;
                    }
                }
                results[k] = r;
                assertBalanced(m);
            }
            if (Boolean.TRUE.equals(results[0])) {
                resets++;
            }
            next++;
            int at = step;
            assertEquals(results[1], results[0], () -> "step " + at);
            assertEquals(state(ms[1], "callbackErrors"), state(ms[0], "callbackErrors"), "step " + step);
            assertEquals(throwsSeen.get(), ms[0].ledger().callbackErrors(), "step " + step);
        }
        for (int k = 0; k < 2; k++) {
            for (Sequence s : lives.get(k)) {
                ms[k].free(s);
            }
        }
        assertEquals(state(ms[1], "callbackErrors"), state(ms[0], "callbackErrors"));
        assertEquals(0, ms[0].stats().usedBlocks());
        assertTrue(throwsSeen.get() > 0, "the hostile callback threw");
        assertEquals(throwsSeen.get(), ms[0].ledger().callbackErrors());
        assertEquals(0, ms[1].ledger().callbackErrors());
        assertTrue(ms[0].stats().evictedBlocks() > 0 && resets > 0, "workload too tame: " + ms[0].ledger());
        ms[0].close();
        ms[1].close();
    }

    @Test
    void aListenerThrowingAnErrorDoesNotMakeTheOthersSeeEventsTwice() {
        List<KvCacheEvent> seen = new ArrayList<>();
        AtomicBoolean thrown = new AtomicBoolean();
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(8).build()) {
            m.addListener(seen::add);
            m.addListener(e -> {
                if (!thrown.getAndSet(true)) {
                    throw new AssertionError("a listener's own assertion failed on " + e);
                }
            });
            Sequence a = m.open("a");
            m.append(a, range(0, 9));
            try {
                m.commit(a); // the second listener throws an Error on the first BlockStored
            } catch (AssertionError propagated) {
                // an Error may propagate; what matters is what the others are told afterwards
            }
            assertTrue(thrown.get());
            m.free(a);
            Sequence b = m.open("b");
            m.append(b, 77);
            m.free(b);
            List<Integer> stored = seen.stream().filter(e -> e instanceof KvCacheEvent.BlockStored)
                    .map(e -> ((KvCacheEvent.BlockStored) e).block()).toList();
            assertEquals(stored.stream().distinct().toList(), stored, "each block stored once: " + seen);
            assertBalanced(m);
        }
    }

    @Test
    void aStoreThrowingAnErrorIsNeverToldAgainOfABlockThatIsInUseNow() {
        ArrayStore st = new ArrayStore(L, 8);
        try (KvCacheManager m = KvCacheManager.builder(L).store(st).build()) {
            Sequence a = m.open("a");
            m.append(a, 1, 2); // one partial block: released to the empty pool on free
            int b0 = a.blockTable()[0];
            st.errorOnce = true;
            try {
                m.free(a);
            } catch (AssertionError propagated) {
                // an Error may propagate
            }
            assertEquals(List.of(b0), st.released);
            Sequence c = m.open("c");
            m.append(c, 5);
            assertEquals(b0, c.blockTable()[0], "premise: the empty block is reused at once");
            assertEquals(List.of(b0), st.released,
                    "blockReleased(" + b0 + ") again while sequence c holds it would drop c's side state");
            m.free(c);
        }
    }

    // ================================================================== 6. tenants

    @Test
    void tenantsAreIsolatedUnlessTheCacheIsShared() {
        int[] prompt = range(0, 13);
        for (boolean shared : new boolean[] {false, true}) {
            try (KvCacheManager m = KvCacheManager.builder(L).blocks(16).shareAcrossTenants(shared).build()) {
                Sequence a = m.open("a", SequenceOptions.DEFAULT.withTenant("A"));
                m.append(a, prompt);
                m.commit(a);
                Sequence b0 = m.open("b0", SequenceOptions.DEFAULT.withTenant("B"));
                assertEquals(12, m.cachedPrefixLength("A", 0L, prompt));
                assertEquals(shared ? 12 : 0, m.cachedPrefixLength("B", 0L, prompt), "shared=" + shared);
                assertEquals(shared ? 12 : 0, m.cachedPrefixLength(prompt), "the default tenant, shared=" + shared);
                Sequence b = m.open("b", SequenceOptions.DEFAULT.withTenant("B"));
                assertEquals(shared ? 12 : 0, m.append(b, prompt), "shared=" + shared);
                m.free(a);
                m.free(b);
                m.free(b0);
            }
        }
    }

    @Test
    void aTenantCannotHoldMoreThanItsQuotaThroughAnotherTenantsPrefix() {
        int[] prompt = range(0, 37); // 9 full blocks and one partial
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(16).shareAcrossTenants(true)
                .tenantQuota("B", 2).build()) {
            Sequence a = m.open("a", SequenceOptions.DEFAULT.withTenant("A"));
            m.append(a, prompt);
            m.commit(a);
            assertEquals(10, m.tenantStats("A").usedBlocks());
            Sequence b = m.open("b", SequenceOptions.DEFAULT.withTenant("B"));
            State before = state(m, "stats.allocationFailures", "quotaRefusals");
            long queries = m.stats().prefixQueryTokens();
            assertEquals(-1, m.append(b, prompt), "9 hits and a block of its own: 10 blocks for B");
            assertEquals(Refusal.TENANT_QUOTA, m.lastRefusal());
            assertEquals(before.refs(), state(m).refs(), "no reference moved");
            assertEquals(before.published(), state(m).published());
            assertEquals(before.ledger(), state(m, "stats.allocationFailures", "quotaRefusals").ledger());
            assertEquals(queries, m.stats().prefixQueryTokens());
            assertEquals(0, b.length());
            TenantStats tb = m.tenantStats("B");
            assertEquals(0, tb.usedBlocks());
            assertEquals(1, tb.refusals());
            assertEquals(10, m.tenantStats("A").usedBlocks());

            assertEquals(4, m.append(b, range(0, 5)), "one shared block and one of its own fit");
            assertEquals(2, m.tenantStats("B").usedBlocks());
            assertEquals(10, m.tenantStats("A").usedBlocks(), "the shared block is charged to both");
            assertEquals(11, m.stats().usedBlocks());
            m.free(a);
            assertEquals(0, m.tenantStats("A").usedBlocks(), "A's frees return all of A's charge");
            assertEquals(2, m.tenantStats("B").usedBlocks(), "B keeps its own");
            assertEquals(2, m.stats().usedBlocks());
            m.free(b);
            for (TenantStats t : m.tenantStats()) {
                assertEquals(0, t.usedBlocks(), t.toString());
            }
            assertEquals(0, m.stats().usedBlocks());
        }
    }

    // ================================================================== 7. sequence reads racing free

    /** What the writer knows of a sequence: its tokens and the table it got. */
    private record Issued(Sequence s, int[] tokens, int[] table) {
    }

    @Test
    @Timeout(value = 20, unit = TimeUnit.SECONDS)
    void sequenceReadsRacingFreeReturnTruthOrSayFreed() throws Exception {
        KvCacheManager m = KvCacheManager.builder(L).blocks(64).build();
        AtomicReference<Issued> current = new AtomicReference<>();
        AtomicBoolean done = new AtomicBoolean();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicLong reads = new AtomicLong();
        AtomicLong freedReads = new AtomicLong();
        Thread writer = new Thread(() -> {
            try {
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
                for (int i = 0; i < 20_000 && System.nanoTime() < end && failure.get() == null; i++) {
                    int[] t = new int[5 + i % 11];
                    for (int p = 0; p < t.length; p++) {
                        t[p] = i * 16 + p;
                    }
                    Sequence s = m.open("s" + i);
                    m.append(s, t);
                    current.set(new Issued(s, t, s.blockTable()));
                    Thread.onSpinWait();
                    m.free(s);
                }
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
            } finally {
                done.set(true);
            }
        }, "writer");
        Thread reader = new Thread(() -> {
            int[] dst = new int[16];
            try {
                while (!done.get()) {
                    Issued x = current.get();
                    if (x == null) {
                        continue;
                    }
                    reads.incrementAndGet();
                    int last = x.tokens().length - 1;
                    freedReads.addAndGet(check(x, () -> assertEquals((long) x.table()[0] * B, x.s().slot(0), "slot(0)")));
                    check(x, () -> assertEquals((long) x.table()[last / B] * B + last % B, x.s().slot(last), "slot(last)"));
                    check(x, () -> assertArrayEquals(x.table(), x.s().blockTable(), "blockTable()"));
                    check(x, () -> {
                        int n = x.s().blockTable(dst);
                        assertArrayEquals(x.table(), Arrays.copyOf(dst, n), "blockTable(int[])");
                    });
                    check(x, () -> assertEquals(x.tokens().length, x.s().length(), "length()"));
                    check(x, () -> assertEquals(x.tokens()[0], x.s().token(0), "token(0)"));
                    check(x, () -> assertEquals(x.tokens()[last], x.s().token(last), "token(last)"));
                }
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
            }
        }, "reader");
        reader.start();
        writer.start();
        writer.join(TimeUnit.SECONDS.toMillis(15));
        done.set(true);
        reader.join(TimeUnit.SECONDS.toMillis(5));
        assertFalse(writer.isAlive() || reader.isAlive(), "threads did not finish");
        if (failure.get() != null) {
            throw new AssertionError("after " + reads.get() + " reads (" + freedReads.get() + " of a freed sequence)",
                    failure.get());
        }
        assertTrue(reads.get() > 100, "only " + reads.get() + " reads");
        assertEquals(0, m.stats().usedBlocks());
        m.close();
    }

    /** Runs one read: it returns the truth (checked inside) or throws IllegalStateException "... was freed". */
    private static int check(Issued x, Runnable read) {
        try {
            read.run();
            return 0;
        } catch (IllegalStateException e) {
            if (!e.getMessage().contains("'" + x.s().id() + "'") || !e.getMessage().contains("freed")) {
                throw new AssertionError("unexpected message: " + e.getMessage(), e);
            }
            return 1;
        }
    }

    // ================================================================== 8. bounds

    @Test
    void openWithAnExpectedLengthNoPoolCanHoldIsRefusedByName() {
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(16).build()) {
            State before = state(m);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> m.open("big", SequenceOptions.DEFAULT.withExpectedTokens(Integer.MAX_VALUE)));
            assertTrue(e.getMessage().contains("2147483647") && e.getMessage().contains("64"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> m.open("big", SequenceOptions.DEFAULT.withExpectedTokens(65)));
            assertTrue(e.getMessage().contains("65") && e.getMessage().contains("64"), e.getMessage());
            assertEquals(before, state(m));
            assertNull(m.sequence("big"));
            Sequence s = m.open("big", SequenceOptions.DEFAULT.withExpectedTokens(64));
            assertEquals(0, m.append(s, range(0, 64)), "the whole pool");
            m.free(s);
        }
    }

    @Test
    void aMaximumLengthNoPoolCanSetAsideIsRefusedAtTheFirstAppend() {
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(16).build()) {
            Sequence g = m.open("g", SequenceOptions.DEFAULT.withMaxTokens(Integer.MAX_VALUE));
            State before = state(m, "stats.allocationFailures", "reservationRefusals");
            assertEquals(Refusal.RESERVED, m.estimateAppend(g, 1, 2, 3).refusal());
            assertEquals(-1, m.append(g, 1, 2, 3));
            assertEquals(Refusal.RESERVED, m.lastRefusal());
            assertEquals(before, state(m, "stats.allocationFailures", "reservationRefusals"));
            assertEquals(1, m.ledger().reservationRefusals());
            assertEquals(0, m.ledger().reservedBlocks(), "nothing set aside");
            assertEquals(0, g.length());
            Sequence o = m.open("o");
            assertEquals(0, m.append(o, range(0, 64)), "the pool is still whole");
            m.free(o);
            m.free(g);
        }
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(16).requireMaxTokens(true).build()) {
            Sequence g = m.open("g", SequenceOptions.DEFAULT.withMaxTokens(Integer.MAX_VALUE));
            assertEquals(-1, m.append(g, 1));
            assertEquals(Refusal.RESERVED, m.lastRefusal());
            assertEquals(0, m.stats().usedBlocks());
            m.free(g);
        }
    }

    @Test
    void aSwapRecordCannotResumeOnAManagerWithoutSwapSpace() {
        ArrayStore st = new ArrayStore(L, 16);
        ArraySwap swap = new ArraySwap(st, 8);
        try (KvCacheManager withSwap = KvCacheManager.builder(L).store(st).swapSpace(swap).build();
             KvCacheManager without = KvCacheManager.builder(L).blocks(16).build()) {
            Sequence a = withSwap.open("A");
            compute(withSwap, st, a, range(0, 9));
            PreemptedSequence pa = withSwap.preempt(a, PreemptionMode.SWAP);

            Sequence s = without.open("S");
            without.append(s, range(0, 9));
            State before = state(without);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> without.resume(pa));
            assertTrue(e.getMessage().contains("'A'"), e.getMessage());
            e = assertThrows(IllegalStateException.class, () -> without.resume(new PreemptedSequence("Z",
                    SequenceOptions.DEFAULT, range(0, 9), PreemptionMode.SWAP, new long[] {0, 1, 2}, 3)));
            assertTrue(e.getMessage().contains("'Z'"), e.getMessage());
            e = assertThrows(IllegalStateException.class, () -> without.preempt(s, PreemptionMode.SWAP));
            assertTrue(e.getMessage().contains("'S'") && e.getMessage().contains("swap space"), e.getMessage());
            assertTrue(s.isLive());
            assertEquals(before, state(without), "nothing changed, nothing leaked");
            without.free(s);
            assertEquals(0, without.stats().usedBlocks());

            Sequence back = withSwap.resume(pa);
            assertOwnKv(st, back);
            withSwap.free(back);
            assertEquals(0, swap.usedBlocks());
        }
    }

    @Test
    void preemptionCountsAreForgottenWithTheirSequences() {
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(16).thrashLimit(3).build()) {
            int n = 20_000;
            for (int i = 0; i < n; i++) {
                String id = "p" + i;
                Sequence s = m.open(id);
                m.append(s, i % 50, 1, 2, 3, 4);
                Sequence back = m.resume(m.preempt(s, PreemptionMode.RECOMPUTE));
                assertNotNull(back, id);
                if (i < 3) {
                    assertEquals(1, m.preemptionCount(id));
                }
                m.free(back);
            }
            assertEquals(0, m.ledger().outstandingRecords());
            assertEquals(0, m.preemptionCount("p0"));
            assertEquals(0, m.preemptionCount("p" + (n - 1)));
            assertEquals(n, m.ledger().preemptions());

            // a sequence at its thrash limit, freed: its id comes back with a clean count
            Sequence s = m.open("p7");
            m.append(s, 1, 2, 3);
            for (int i = 0; i < 3; i++) {
                s = m.resume(m.preempt(s, PreemptionMode.RECOMPUTE));
            }
            assertEquals(3, m.preemptionCount("p7"));
            assertTrue(m.preemptionVictims(1, null).isEmpty(), "protected by the thrash guard");
            PreemptedSequence parked = m.preempt(s, PreemptionMode.RECOMPUTE);
            assertEquals(4, m.preemptionCount("p7"), "an outstanding record keeps its count");
            m.discard(parked);
            assertEquals(0, m.preemptionCount("p7"));
            Sequence again = m.open("p7");
            m.append(again, 1, 2, 3);
            assertEquals(0, m.preemptionCount("p7"));
            assertSame(again, m.preemptionVictims(1, null).get(0), "a new sequence, a new count");
            m.free(again);

            // records given up are forgotten too
            for (int i = 0; i < 1000; i++) {
                Sequence q = m.open("d" + i);
                m.append(q, 5, 6);
                m.discard(m.preempt(q, PreemptionMode.RECOMPUTE));
            }
            assertEquals(0, m.ledger().outstandingRecords());
            assertEquals(0, m.preemptionCount("d999"));
            assertEquals(0, m.stats().usedBlocks());
        }
    }

    // ================================================================== test doubles

    /** One {@code float[]} of K and of V per slot (one layer); copyBlock copies; a close flag. */
    static final class ArrayStore implements KvStore {
        final KvLayout layout;
        final int blocks;
        final float[][] k;
        final float[][] v;
        volatile boolean closed;
        final List<Integer> released = new ArrayList<>();
        /** When set, blockReleased counts here and throws. */
        AtomicLong releaseFailures;
        /** When set, the next blockReleased throws an Error. */
        boolean errorOnce;

        ArrayStore(KvLayout layout, int blocks) {
            this.layout = layout;
            this.blocks = blocks;
            this.k = new float[blocks * layout.blockTokens()][];
            this.v = new float[blocks * layout.blockTokens()][];
        }

        private void check() {
            if (closed) {
                throw new IllegalStateException("store is closed");
            }
        }

        private int index(int layer, long slot) {
            if (layer != 0 || slot < 0 || slot >= k.length) {
                throw new IllegalArgumentException("layer " + layer + " slot " + slot + " outside 0.." + (k.length - 1));
            }
            return (int) slot;
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
        public void write(int layer, long slot, float[] key, float[] value) {
            check();
            int i = index(layer, slot);
            k[i] = key.clone();
            v[i] = value.clone();
        }

        @Override
        public void readKey(int layer, long slot, float[] out) {
            read(k, index(layer, slot), out);
        }

        @Override
        public void readValue(int layer, long slot, float[] out) {
            read(v, index(layer, slot), out);
        }

        private void read(float[][] from, int i, float[] out) {
            check();
            if (from[i] == null) {
                Arrays.fill(out, Float.NaN); // never written
            } else {
                System.arraycopy(from[i], 0, out, 0, out.length);
            }
        }

        @Override
        public void exportBlock(int block, java.lang.foreign.MemorySegment dst) {
            check();
            long at = 0;
            for (int o = 0; o < layout.blockTokens(); o++) {
                for (float[][] kv : new float[][][] {k, v}) {
                    float[] row = kv[block * layout.blockTokens() + o];
                    for (int i = 0; i < layout.kvDim(); i++, at += 4) {
                        dst.set(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, at, row == null ? 0f : row[i]);
                    }
                }
            }
        }

        @Override
        public void importBlock(int block, java.lang.foreign.MemorySegment src) {
            check();
            long at = 0;
            for (int o = 0; o < layout.blockTokens(); o++) {
                for (float[][] kv : new float[][][] {k, v}) {
                    float[] row = new float[layout.kvDim()];
                    for (int i = 0; i < row.length; i++, at += 4) {
                        row[i] = src.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, at);
                    }
                    kv[block * layout.blockTokens() + o] = row;
                }
            }
        }

        @Override
        public void copyBlock(int srcBlock, int dstBlock) {
            check();
            int bt = layout.blockTokens();
            for (int o = 0; o < bt; o++) {
                k[dstBlock * bt + o] = k[srcBlock * bt + o] == null ? null : k[srcBlock * bt + o].clone();
                v[dstBlock * bt + o] = v[srcBlock * bt + o] == null ? null : v[srcBlock * bt + o].clone();
            }
        }

        @Override
        public void blockReleased(int block) {
            if (closed) {
                return;
            }
            released.add(block);
            if (errorOnce) {
                errorOnce = false;
                throw new AssertionError("the store's own assertion failed on " + block);
            }
            if (releaseFailures != null) {
                releaseFailures.incrementAndGet();
                throw new IllegalStateException("blockReleased down on " + block);
            }
        }

        @Override
        public void close() {
            closed = true;
        }
    }

    /**
     * Host blocks over an {@link ArrayStore}; handles are host block numbers, the lowest free one
     * first (so a freed handle is soon reused, as in a real host pool); each is used once.
     */
    static final class ArraySwap implements SwapSpace {
        final ArrayStore store;
        final float[][][] hostK;
        final float[][][] hostV;
        final boolean[] used;

        ArraySwap(ArrayStore store, int hostBlocks) {
            this.store = store;
            this.hostK = new float[hostBlocks][][];
            this.hostV = new float[hostBlocks][][];
            this.used = new boolean[hostBlocks];
        }

        @Override
        public long bytesPerBlock() {
            return store.layout.bytesPerBlock();
        }

        @Override
        public int freeBlocks() {
            return used.length - usedBlocks();
        }

        int usedBlocks() {
            int n = 0;
            for (boolean u : used) {
                n += u ? 1 : 0;
            }
            return n;
        }

        @Override
        public long swapOut(int block) {
            for (int h = 0; h < used.length; h++) {
                if (!used[h]) {
                    used[h] = true;
                    hostK[h] = slots(store.k, block);
                    hostV[h] = slots(store.v, block);
                    return h;
                }
            }
            return -1;
        }

        private static float[][] slots(float[][] from, int block) {
            float[][] out = new float[B][];
            for (int o = 0; o < B; o++) {
                out[o] = from[block * B + o] == null ? null : from[block * B + o].clone();
            }
            return out;
        }

        private void checkHandle(long handle) {
            if (handle < 0 || handle >= used.length || !used[(int) handle]) {
                throw new IllegalStateException("handle " + handle + " is not in use");
            }
        }

        @Override
        public void swapIn(long handle, int block) {
            checkHandle(handle);
            int h = (int) handle;
            for (int o = 0; o < B; o++) {
                store.k[block * B + o] = hostK[h][o];
                store.v[block * B + o] = hostV[h][o];
            }
            used[h] = false;
        }

        @Override
        public void discard(long handle) {
            checkHandle(handle);
            used[(int) handle] = false;
        }

        @Override
        public String toString() {
            StringBuilder sb = new StringBuilder();
            for (int h = 0; h < used.length; h++) {
                if (used[h]) {
                    sb.append(h).append('=').append(Arrays.deepToString(hostK[h])).append(';');
                }
            }
            return sb.toString();
        }
    }
}
