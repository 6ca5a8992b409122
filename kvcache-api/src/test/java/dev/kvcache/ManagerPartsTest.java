package dev.kvcache;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The block manager's parts on their own, each against the invariants its header states. */
class ManagerPartsTest {

    // ------------------------------------------------------------------ TenantAccounts

    /** A tenant's charge is the number of distinct blocks its references touch, checked against a recount. */
    @Test
    void tenantChargesAreDistinctBlocksPerTenantUnderRandomReferences() {
        Random rnd = new Random();
        int blocks = 12;
        TenantAccounts acc = new TenantAccounts(blocks, Map.of());
        TenantAccounts.Tenant[] ts = {acc.tenant("a"), acc.tenant("b"), acc.tenant("c")};
        int[][] refs = new int[blocks][ts.length];
        for (int step = 0; step < 20_000; step++) {
            int b = rnd.nextInt(blocks);
            int t = rnd.nextInt(ts.length);
            if (refs[b][t] > 0 && rnd.nextBoolean()) {
                acc.unref(b, ts[t]);
                refs[b][t]--;
            } else {
                acc.ref(b, ts[t]);
                refs[b][t]++;
            }
            for (int i = 0; i < ts.length; i++) {
                int charged = 0;
                for (int x = 0; x < blocks; x++) {
                    charged += refs[x][i] > 0 ? 1 : 0;
                    assertEquals(refs[x][i], acc.refs(x, ts[i]), "refs(" + x + ", " + ts[i].name + ")");
                }
                assertEquals(charged, ts[i].used, "charge of " + ts[i].name + " at step " + step);
            }
        }
        assertThrows(AssertionError.class, () -> {
            for (int x = 0; x < blocks; x++) {
                while (refs[x][0] >= 0) {
                    acc.unref(x, ts[0]);
                    refs[x][0]--;
                }
            }
        }, "a reference never taken cannot be dropped");
    }

    // ------------------------------------------------------------------ PrefixIndex

    @Test
    void aHitIsProvenByItsParentAtItsGeneration() {
        int B = 4;
        PrefixIndex ix = new PrefixIndex(8, B, true);
        int[] t = {1, 2, 3, 4, 5, 6, 7, 8};
        long h0 = ix.hash(ix.rootHash(), 0L, 0, t, 0);
        long h1 = ix.hash(h0, 0L, 0, t, 4);
        ix.publish(3, h0, PrefixIndex.ROOT, 0, 0L, 0, t, 0);
        ix.publish(5, h1, 3, ix.generation(3), 0L, 0, t, 4);
        int[] got = new int[2];
        long[] hashes = new long[2];
        assertEquals(2, ix.match(0L, 0, t, 0, 2, got, hashes));
        assertEquals(3, got[0]);
        assertEquals(5, got[1]);
        assertEquals(0, ix.match(1L, 0, t, 0, 2, null, null), "another salt");
        assertEquals(0, ix.match(0L, 1, t, 0, 2, null, null), "another scope");

        // the parent's publication ends and the same content is published again elsewhere: the old
        // child names an old generation and never confirms again
        ix.unpublish(3);
        assertFalse(ix.isPublished(3));
        ix.publish(6, h0, PrefixIndex.ROOT, 0, 0L, 0, t, 0);
        assertEquals(1, ix.match(0L, 0, t, 0, 2, got, hashes));
        assertEquals(6, got[0]);
        assertFalse(ix.confirms(5, 6, ix.generation(6), 0L, 0, t, 4), "its parent is block 3, not 6");
        ix.publish(3, h0 ^ 1, PrefixIndex.ROOT, 0, 0L, 0, t, 0); // block 3 reused for other content
        assertFalse(ix.confirms(5, 3, ix.generation(3), 0L, 0, t, 4), "block 3 at a new generation");

        // the index hash only finds candidates: a stored entry whose tokens differ never confirms
        int[] other = {1, 2, 3, 9};
        assertFalse(ix.confirms(6, PrefixIndex.ROOT, 0, 0L, 0, other, 0));
    }

    @Test
    void indexHashesAreKeyedPerIndex() {
        int[] t = {1, 2, 3, 4};
        PrefixIndex a = new PrefixIndex(4, 4, true);
        PrefixIndex b = new PrefixIndex(4, 4, true);
        // 2^-64 chance of a false failure
        assertTrue(a.hash(a.rootHash(), 0L, 0, t, 0) != b.hash(b.rootHash(), 0L, 0, t, 0),
                "two managers' index hashes must not be computable from each other");
    }

    // ------------------------------------------------------------------ BlockPool

    @Test
    void emptyBlocksGoFirstAndTakingACachedBlockEndsItsPublication() {
        Counters counters = new Counters();
        Notifications notes = new Notifications(null);
        List<KvCacheEvent> events = new ArrayList<>();
        notes.addListener(events::add);
        PrefixIndex ix = new PrefixIndex(3, 1, true);
        TenantAccounts acc = new TenantAccounts(3, Map.of());
        BlockPool pool = new BlockPool(3, EvictionPolicy.lru(), ix, acc, notes, null);
        PagedSequence q = new Sequences(this, new java.util.concurrent.locks.StampedLock(), 1, false, acc, ix, pool,
                new Admission(3, 0, false, counters, notes), counters,
                new LeaseTracker(System::nanoTime, false, 0, 1)).create("q", SequenceOptions.DEFAULT, 1);
        int a = pool.allocate(q);
        int b = pool.allocate(q);
        ix.publish(a, 42L, PrefixIndex.ROOT, 0, 0L, 0, new int[]{7}, 0);
        pool.release(a, q);                      // published: cached
        pool.release(b, q);                      // not published: empty
        assertEquals(1, pool.cached());
        assertEquals(2, pool.empty());
        assertEquals(pool.total(), pool.used() + pool.cached() + pool.empty());
        int c = pool.allocate(q);
        int d = pool.allocate(q);
        assertTrue(c != a && d != a, "both empty blocks before the cached one");
        int gen = ix.generation(a);
        int e = pool.allocate(q);
        assertEquals(a, e, "then the cached block, evicted");
        assertFalse(ix.isPublished(a));
        assertEquals(gen + 1, ix.generation(a), "its generation moved on");
        assertEquals(1, pool.evicted());
        notes.flush();
        assertTrue(events.stream().anyMatch(x -> x instanceof KvCacheEvent.BlockRemoved r && r.block() == a));
        assertEquals(3, acc.tenant("default").used);
    }

    // ------------------------------------------------------------------ Publisher, Admission, Retention, LeaseTracker

    /** The parts of one small manager, wired as the facade wires them, for the tests below. */
    private static final class Parts {
        final Counters counters = new Counters();
        final Notifications notes = new Notifications(null);
        final PrefixIndex index;
        final TenantAccounts accounts;
        final BlockPool pool;
        final Publisher publisher;
        final Admission admission;
        final Sequences sequences;
        final long[] now = {0};

        Parts(int blocks, int blockTokens) {
            index = new PrefixIndex(blocks, blockTokens, true);
            accounts = new TenantAccounts(blocks, Map.of());
            pool = new BlockPool(blocks, EvictionPolicy.lru(), index, accounts, notes, null);
            publisher = new Publisher(index, pool, notes, counters, blockTokens, true, null);
            admission = new Admission(blocks, 0, false, counters, notes);
            sequences = new Sequences(this, new java.util.concurrent.locks.StampedLock(), blockTokens, false, accounts,
                    index, pool, admission, counters, new LeaseTracker(() -> now[0], true, 0, 1));
        }

        /** A registered sequence holding {@code tokens} in fresh blocks, nothing committed. */
        PagedSequence filled(String id, int... tokens) {
            PagedSequence q = sequences.create(id, SequenceOptions.DEFAULT, tokens.length);
            sequences.register(q);
            int B = q.blockTokens;
            int n = (tokens.length + B - 1) / B;
            q.ensureCapacity(tokens.length, n);
            System.arraycopy(tokens, 0, q.tokens, 0, tokens.length);
            for (int i = 0; i < n; i++) {
                q.table[i] = pool.allocate(q);
            }
            q.tableSize = n;
            q.held = n;
            q.length = tokens.length;
            return q;
        }
    }

    @Test
    void publisherPublishesPendingBlocksOnceAndChainsThemToTheirParents() {
        Parts p = new Parts(12, 2);
        PagedSequence a = p.filled("a", 1, 2, 3, 4, 5);
        assertFalse(p.index.isPublished(a.table[0]), "an append's blocks are pending");
        assertEquals(2, p.publisher.pending(a));
        p.publisher.commit(a);
        assertTrue(p.index.isPublished(a.table[0]) && p.index.isPublished(a.table[1]));
        assertFalse(p.index.isPublished(a.table[2]), "the partial block is never published");
        assertEquals(0, p.publisher.pending(a));
        assertEquals(2, p.counters.publishedBlocks);
        int[] got = new int[2];
        assertEquals(2, p.index.match(0L, a.scope, a.tokens, 0, 2, got, new long[2]));
        assertEquals(a.table[0], got[0]);
        assertEquals(a.table[1], got[1]);

        // the same tokens in other blocks: found published, not published twice; its chain goes on
        // through a's blocks
        PagedSequence b = p.filled("b", 1, 2, 3, 4, 9, 9);
        p.publisher.commit(b);
        assertFalse(p.index.isPublished(b.table[0]) || p.index.isPublished(b.table[1]));
        assertTrue(p.index.isPublished(b.table[2]), "its own third block, after a's second");
        assertEquals(3, p.counters.publishedBlocks);
        assertEquals(3, p.index.match(0L, b.scope, b.tokens, 0, 3, null, null));

        // its parent's publication ends: a sequence continuing that chain publishes nothing more
        PagedSequence c = p.filled("c", 1, 2, 3, 4);
        p.publisher.commit(c);
        c.ensureCapacity(6, 3);
        c.tokens[4] = 7;
        c.tokens[5] = 7;
        c.table[2] = p.pool.allocate(c);
        c.tableSize = 3;
        c.held = 3;
        c.length = 6;
        p.index.unpublish(a.table[1]);
        p.publisher.commit(c);
        assertFalse(p.index.isPublished(c.table[2]), "the chain ended with its parent's publication");
        assertEquals(PrefixIndex.BROKEN, c.chainBlock);
    }

    @Test
    void admissionSetsAsideWholeMaximumsWithoutOverflow() {
        Parts p = new Parts(8, 16);
        PagedSequence q = p.sequences.create("g", SequenceOptions.DEFAULT.withMaxTokens(Integer.MAX_VALUE), 1);
        assertEquals((Integer.MAX_VALUE + 15L) / 16, p.admission.reserveAfterAppend(q, 16),
                "ceil(MAX / 16), not a wrapped negative");
        q.reserve = 3;
        p.sequences.register(q);
        p.admission.update(q);
        assertEquals(3, p.admission.outstanding());
        q.held = 2;
        p.admission.update(q);
        assertEquals(1, p.admission.outstanding());
        q.live = false;
        p.admission.update(q);
        assertEquals(0, p.admission.outstanding(), "a freed sequence sets nothing aside");
    }

    @Test
    void retentionReleasesAWholeDroppedBlockAndEndsTheChain() {
        Parts p = new Parts(8, 2);
        Retention r = new Retention(p.pool, p.admission, p.counters, 2);
        PagedSequence q = p.filled("q", 1, 2, 3, 4, 5);
        int second = q.table[1];
        assertEquals(0, r.drop(q, new int[] {2}, 0, 1), "half a block dropped: kept, masked");
        assertTrue(q.isDroppedLocked(2) && !q.isDroppedLocked(3));
        assertEquals(1, r.drop(q, new int[] {2, 3}, 0, 2), "its last kept token: released (2 already dropped)");
        assertEquals(-1, q.table[1]);
        assertEquals(0, p.pool.refCount(second));
        assertEquals(2, q.held);
        assertEquals(2, p.counters.droppedTokens);
        assertEquals(PrefixIndex.BROKEN, q.chainBlock, "KV after a drop saw a pruned context");
    }

    @Test
    void leaseTrackerListsWhatOutlivedItsLease() {
        Parts p = new Parts(8, 2);
        // a default lease of 100 ns tracks every sequence (as the manager does when it has one)
        LeaseTracker leases = new LeaseTracker(() -> p.now[0], true, 100, 64);
        PagedSequence a = p.sequences.create("a", SequenceOptions.DEFAULT, 1);
        PagedSequence b = p.sequences.create("b", SequenceOptions.DEFAULT.withLease(java.time.Duration.ofNanos(10)), 1);
        leases.register(a);
        leases.register(b);
        p.now[0] = 50;
        List<IdleRelease> idle = leases.idle(List.of(a, b), true, 0);
        assertEquals(List.of("b"), idle.stream().map(IdleRelease::id).toList(), "b's own 10 ns lease ran out, a's 100 did not");
        p.now[0] = 150;
        assertEquals(2, leases.idle(List.of(a, b), true, 0).size());
        leases.touch(a);
        assertEquals(List.of("b"), leases.idle(List.of(a, b), true, 0).stream().map(IdleRelease::id).toList());
    }

    // ------------------------------------------------------------------ Notifications

    @Test
    void callbacksThatThrowAreCountedAndNothingIsDeliveredTwice() {
        List<Integer> released = new ArrayList<>();
        KvStore store = new KvStore() {
            public KvLayout layout() { return null; }
            public int blocks() { return 4; }
            public void write(int layer, long slot, float[] k, float[] v) { }
            public void readKey(int layer, long slot, float[] out) { }
            public void readValue(int layer, long slot, float[] out) { }
            public void copyBlock(int s, int d) { }
            public void blockReleased(int block) {
                released.add(block);
                if (block == 1) {
                    throw new AssertionError("injected");
                }
            }
            public void close() { }
        };
        Notifications notes = new Notifications(store);
        List<KvCacheEvent> seen = new ArrayList<>();
        notes.addListener(e -> {
            throw new IllegalStateException("first listener always throws");
        });
        notes.addListener(seen::add);
        notes.blockReleased(0);
        notes.blockReleased(1);
        notes.blockReleased(2);
        notes.event(new KvCacheEvent.AllBlocksCleared());
        notes.flush();
        assertEquals(List.of(0, 1, 2), released, "every block told once, the one after the throw too");
        assertEquals(1, seen.size(), "the second listener still told");
        assertEquals(2, notes.errors());
        notes.flush();
        assertEquals(3, released.size(), "nothing delivered twice");
        assertEquals(1, seen.size());

        notes.addListener(e -> {
            throw new OutOfMemoryError("injected");
        });
        notes.event(new KvCacheEvent.AllBlocksCleared());
        assertThrows(OutOfMemoryError.class, notes::flush, "a VirtualMachineError propagates");
        notes.flush();
        assertEquals(2, seen.size(), "and is not delivered again");
    }
}
