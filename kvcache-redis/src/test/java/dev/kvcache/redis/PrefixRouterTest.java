package dev.kvcache.redis;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link PrefixRouter} with 3 instances: fed over Redis Streams by {@link KvEventPublisher}s
 * (evictions, clears, a router restart that catches up), and in process under a random workload
 * whose index is checked against the managers' own published blocks after every step.
 */
class PrefixRouterTest {

    private static final KvLayout LAYOUT = new KvLayout(1, 1, 8, 16, KvFormats.F16);
    private static final List<String> IDS = List.of("i0", "i1", "i2");

    /** What manager {@code m} really holds: the keys of its published blocks. */
    static Set<PrefixKey> truth(KvCacheManager m, int blocks) {
        Set<PrefixKey> out = new HashSet<>();
        for (int b = 0; b < blocks; b++) {
            if (m.isPublished(b)) {
                out.add(m.prefixKey(b));
            }
        }
        return out;
    }

    private static void serve(KvCacheManager m, String id, int[] prompt) {
        Sequence s = m.open(id);
        assertTrue(m.append(s, prompt) >= 0);
        m.free(s);
    }

    private static int[] concat(int[] a, int[] b) {
        int[] c = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    private static void awaitMirror(PrefixRouter r, List<KvCacheManager> ms, List<KvEventPublisher> ps, int blocks) {
        for (KvEventPublisher p : ps) {
            assertTrue(p.flush(Duration.ofSeconds(5)));
        }
        long end = System.nanoTime() + 5_000_000_000L;
        while (true) {
            boolean same = true;
            for (int i = 0; i < ms.size(); i++) {
                same &= r.held(IDS.get(i), true).equals(truth(ms.get(i), blocks));
            }
            if (same) {
                return;
            }
            if (System.nanoTime() > end) {
                for (int i = 0; i < ms.size(); i++) {
                    assertEquals(truth(ms.get(i), blocks), r.held(IDS.get(i), true), "router's view of " + IDS.get(i));
                }
            }
            RedisServers.sleep(5);
        }
    }

    @Test
    void threeInstancesOverRedisStreamsThroughEvictionsClearsAndARouterRestart() throws Exception {
        int blocks = 16;
        int[] p = Kv.tokens(4 * 16 + 5, 1);
        try (RedisServers.Server server = RedisServers.Server.start(); RedisEndpoint ep = RedisEndpoint.standalone(server.uri())) {
            RedisKeys keys = RedisKeys.of("router-test", LAYOUT);
            List<KvCacheManager> ms = new ArrayList<>();
            List<KvEventPublisher> ps = new ArrayList<>();
            PrefixRouter router = new PrefixRouter(16, IDS);
            try {
                for (String id : IDS) {
                    KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(blocks).build();
                    KvEventPublisher pub = KvEventPublisher.builder(ep, keys, id, 16).build();
                    m.addListener(pub);
                    ms.add(m);
                    ps.add(pub);
                }
                router.follow(ep, keys, Duration.ofMillis(5));
                serve(ms.get(0), "a", p);                                            // i0: all 4 blocks of p
                serve(ms.get(1), "b", concat(java.util.Arrays.copyOf(p, 32), Kv.tokens(40, 5000))); // i1: 2 of them
                awaitMirror(router, ms, ps, blocks);
                assertEquals(new PrefixRouter.Route("i0", 4, 64, 0), router.route(p, 0));
                assertEquals(0, router.route(p, 99).cachedBlocks(), "another salt: nothing cached");
                assertEquals(0, router.route(p, 0, "tenant").cachedBlocks(), "another scope: nothing cached");

                serve(ms.get(0), "evict", Kv.tokens(16 * 16, 90_000));                // i0 evicts p for a long prompt
                awaitMirror(router, ms, ps, blocks);
                assertEquals(new PrefixRouter.Route("i1", 2, 32, 0), router.route(p, 0), "after i0's eviction");

                assertTrue(ms.get(1).resetPrefixCache());                               // i1 clears
                awaitMirror(router, ms, ps, blocks);
                assertEquals(0, router.route(p, 0).cachedBlocks(), "after i1's clear nobody holds p");
                router.reportLoad("i0", 5);
                router.reportLoad("i1", 1);
                router.reportLoad("i2", 3);
                assertEquals("i1", router.route(p, 0).instance(), "least loaded breaks the tie");
                router.reportLoad("i1", 9);
                assertEquals("i2", router.route(p, 0).instance());
                serve(ms.get(2), "c", p);
                awaitMirror(router, ms, ps, blocks);
                assertEquals("i2", router.route(p, 0).instance());
                assertEquals(4, router.route(p, 0).cachedBlocks());
                Map<String, String> before = router.positions();
                router.close();

                serve(ms.get(0), "d", p);                                            // while no router runs
                try (PrefixRouter again = new PrefixRouter(16, IDS)) {
                    again.follow(ep, keys, Duration.ofMillis(5));
                    awaitMirror(again, ms, ps, blocks);                                // caught up from the streams
                    assertEquals(4, again.matchedBlocks(p, 0, "default")[0]);
                    assertEquals(4, again.matchedBlocks(p, 0, "default")[2]);
                    assertEquals(0, again.gaps());
                    assertTrue(again.positions().get("i0").compareTo(before.get("i0")) > 0 || !again.positions().equals(before));
                }
            } finally {
                router.close();
                for (KvEventPublisher pub : ps) {
                    pub.close();
                }
                for (KvCacheManager m : ms) {
                    m.close();
                }
            }
        }
    }

    @Test
    void theInProcessIndexMatchesEveryManagerAfterEveryStepOfARandomWorkload() {
        int blocks = 12;
        SplittableRandom r = new SplittableRandom(42);
        int[][] systems = {Kv.tokens(48, 10), Kv.tokens(48, 20_000), Kv.tokens(32, 40_000)};
        List<KvCacheManager> ms = new ArrayList<>();
        List<List<Sequence>> live = List.of(new ArrayList<>(), new ArrayList<>(), new ArrayList<>());
        try (PrefixRouter router = new PrefixRouter(16, IDS)) {
            for (String id : IDS) {
                KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(blocks).build();
                m.addListener(router.listener(id));
                ms.add(m);
            }
            for (int step = 0; step < 400; step++) {
                int i = r.nextInt(3);
                KvCacheManager m = ms.get(i);
                int op = r.nextInt(10);
                if (op < 5) {
                    int[] prompt = concat(systems[r.nextInt(3)], Kv.tokens(r.nextInt(40), 60_000 + r.nextInt(3) * 100));
                    Sequence s = m.open("s" + step);
                    if (m.append(s, prompt) < 0) {
                        m.free(s);
                    } else {
                        live.get(i).add(s);
                    }
                } else if (op < 9 && !live.get(i).isEmpty()) {
                    Sequence s = live.get(i).remove(r.nextInt(live.get(i).size()));
                    if (r.nextBoolean()) {
                        m.free(s);
                    } else {
                        m.abort(s);
                    }
                } else {
                    m.resetPrefixCache();
                }
                for (int k = 0; k < 3; k++) {
                    assertEquals(truth(ms.get(k), blocks), router.held(IDS.get(k), true), "step " + step + " instance " + k);
                }
                // the route is the instance that really holds the longest prefix
                int[] probe = concat(systems[step % 3], new int[0]);
                int[] matched = router.matchedBlocks(probe, 0, "default");
                for (int k = 0; k < 3; k++) {
                    assertEquals(cachedBlocks(ms.get(k), probe), matched[k], "step " + step + " instance " + k);
                }
            }
            for (int i = 0; i < 3; i++) {
                for (Sequence s : live.get(i)) {
                    ms.get(i).free(s);
                }
                live.get(i).clear();
            }
        } finally {
            ms.forEach(KvCacheManager::close);
        }
    }

    /** Leading full blocks of {@code p} that {@code m} holds published (its own prefix-cache lookup). */
    private static int cachedBlocks(KvCacheManager m, int[] p) {
        return m.cachedPrefixLength(p) / 16;
    }

    @Test
    void aGapInAStreamForgetsTheInstanceAndBadInputNamesTheValue() {
        try (PrefixRouter r = new PrefixRouter(16, IDS)) {
            PrefixKey k = PrefixKey.chain(PrefixKey.root(0, null), Kv.tokens(16, 1), 0, 16);
            r.apply("i0", new KvWireEvent(KvWireEvent.Type.BlockStored, 7, 0, 0, List.of(k), null, Kv.tokens(16, 1), 16, "GPU"));
            r.apply("i0", new KvWireEvent(KvWireEvent.Type.BlockStored, 7, 1, 0, List.of(k), null, Kv.tokens(16, 1), 16, "host"));
            assertEquals(Set.of(k), r.held("i0", true));
            assertEquals(Set.of(k), r.held("i0", false));
            r.apply("i0", new KvWireEvent(KvWireEvent.Type.AllBlocksCleared, 7, 2, 0, List.of(), null, new int[0], 16, "GPU"));
            assertEquals(Set.of(), r.held("i0", true));
            assertEquals(Set.of(k), r.held("i0", false), "a GPU clear leaves the host tier's blocks");
            assertEquals(1, r.matchedBlocks(Kv.tokens(16, 1), 0, null)[0], "null scope: a cache shared across tenants");
            r.apply("i0", new KvWireEvent(KvWireEvent.Type.BlockStored, 7, 9, 0, List.of(k), null, Kv.tokens(16, 1), 16, "GPU"));
            assertEquals(1, r.gaps());
            assertEquals(Set.of(k), r.held("i0", true), "the entry after the gap is applied");
            assertEquals(Set.of(), r.held("i0", false), "what came before the gap is forgotten");
            r.apply("i0", new KvWireEvent(KvWireEvent.Type.BlockStored, 8, 0, 0, List.of(), null, new int[0], 16, "GPU"));
            assertEquals(Set.of(), r.held("i0", true), "a new epoch (a restarted instance) drops the old one's blocks");
            r.apply("i1", new KvWireEvent(KvWireEvent.Type.BlockStored, 1, 0, 0, List.of(k), null, Kv.tokens(16, 1), 32, "GPU"));
            assertEquals(1, r.ignored(), "another block size is ignored");
            assertEquals(0, r.route(new int[1], 0, null).cachedBlocks(), "a prompt shorter than a block matches nothing");
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new PrefixRouter(16, List.of("a", "a")));
        assertTrue(e.getMessage().contains("'a' listed twice"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new PrefixRouter(0, IDS));
        assertTrue(e.getMessage().contains("blockTokens 0"), e.getMessage());
        try (PrefixRouter r = new PrefixRouter(16, IDS)) {
            e = assertThrows(IllegalArgumentException.class, () -> r.reportLoad("zz", 1));
            assertTrue(e.getMessage().contains("'zz'"), e.getMessage());
        }
    }

    @Test
    void wireEventsRoundTripTheirFieldsAndRefuseMalformedOnes() {
        PrefixKey a = new PrefixKey(-2, 3);
        PrefixKey b = new PrefixKey(5, -6);
        KvWireEvent e = new KvWireEvent(KvWireEvent.Type.BlockStored, 123, 4, 99, List.of(a, b), new PrefixKey(1, 1),
                Kv.tokens(32, 3), 16, "GPU");
        Map<String, String> f = e.toFields();
        assertEquals(List.of("type", "epoch", "seq", "ts", "block_hashes", "parent_block_hash", "token_ids", "block_size", "medium"),
                List.copyOf(f.keySet()));
        assertEquals(a.toHex() + " " + b.toHex(), f.get("block_hashes"));
        assertEquals(e, KvWireEvent.fromFields(f));
        Map<String, String> bad = new java.util.HashMap<>(f);
        bad.put("block_hashes", "xyz");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> KvWireEvent.fromFields(bad)).getMessage().contains("'xyz'"));
        bad.put("block_hashes", f.get("block_hashes"));
        bad.remove("seq");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> KvWireEvent.fromFields(bad)).getMessage().contains("'seq'"));
    }
}
