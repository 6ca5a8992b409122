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
