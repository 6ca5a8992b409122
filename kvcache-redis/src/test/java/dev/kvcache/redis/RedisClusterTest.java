package dev.kvcache.redis;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.TierEntry;
import dev.kvcache.offheap.OffHeapKvStore;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The tier against a 3-master Redis Cluster made with {@code redis-cli --cluster create}: blocks
 * spread over all masters (no hash tags), a lookup is still one pipelined flush, and a second
 * engine is served the first one's blocks.
 */
class RedisClusterTest {

    private static final KvLayout LAYOUT = new KvLayout(2, 2, 32, 16, KvFormats.Q8_0);
    private static RedisServers.Cluster cluster;
    private static RedisEndpoint endpoint;

    @BeforeAll
    static void start() throws Exception {
        cluster = RedisServers.Cluster.start(3);
        endpoint = RedisEndpoint.cluster(cluster.seeds());
    }

    @AfterAll
    static void stop() {
        try {
            if (endpoint != null) {
                endpoint.close();
            }
        } finally {
            if (cluster != null) {
                cluster.close();
            }
        }
    }

    @Test
    void blocksSpreadOverEveryMasterAndAreServedBack() throws Exception {
        int blocks = 48;
        int[] prompt = Kv.tokens(16 * blocks, 11);
        TierEntry[] e = Kv.entries(LAYOUT, prompt, 0, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, blocks + 1); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, blocks + 1);
             RedisTier ta = RedisTier.builder(endpoint, LAYOUT).lookupTimeout(Duration.ofSeconds(10))
                     .writeTimeout(Duration.ofSeconds(10)).build(); // placement, not deadlines (RedisFailureTest): a fresh cluster opens node connections slowly
             RedisTier tb = RedisTier.builder(endpoint, LAYOUT).lookupTimeout(Duration.ofSeconds(10))
                     .writeTimeout(Duration.ofSeconds(10)).build(); // placement, not deadlines (RedisFailureTest): a fresh cluster opens node connections slowly
             KvCacheManager ma = KvCacheManager.builder(LAYOUT).store(a).tier(ta).build();
             KvCacheManager mb = KvCacheManager.builder(LAYOUT).store(b).tier(tb).build()) {
            assertTrue(endpoint.isCluster());
            ma.addListener(ta.writeOnPublish(a));
            Sequence qa = ma.open("a");
            assertEquals(0, ma.append(qa, prompt));
            Kv.write(a, qa, 9, 0, prompt.length);
            ma.commit(qa);
            assertTrue(ta.awaitWrites(Duration.ofSeconds(10)));
            assertEquals(blocks, ta.redisStats().writesDone(), ta.redisStats() + " " + ta.lastError());
            long total = 0;
            for (RedisServers.Server n : cluster.nodes) {
                long keys = n.integer("EVAL", "return #redis.call('keys', ARGV[1])", "0", ta.keys().blockPattern());
                assertTrue(keys > 0, "master " + n.port + " holds none of the " + blocks + " blocks");
                total += keys;
            }
            assertEquals(blocks, total);

            long trips = tb.redisStats().roundTrips();
            Sequence qb = mb.open("b");
            assertEquals(16 * (blocks - 1), mb.append(qb, prompt),
                    () -> "every full block but the last (kept for the next token) is served: " + tb.redisStats() + " " + tb.lastError());
            assertEquals(trips + 2, tb.redisStats().roundTrips(), "two batches of 32 keys: one flush each");
            for (int j = 0; j < blocks - 1; j++) {
                assertArrayEquals(Kv.export(a, qa.blockTable()[j]), Kv.export(b, qb.blockTable()[j]), "block " + j);
            }
            mb.free(qb);
            ma.free(qa);
        }
    }

    @Test
    void eventStreamsAndTheRouterWorkOnACluster() {
        RedisKeys keys = RedisKeys.of("cluster-events", LAYOUT);
        int[] prompt = Kv.tokens(16 * 3 + 1, 500);
        try (KvCacheManager m0 = KvCacheManager.builder(LAYOUT).blocks(8).build();
             KvCacheManager m1 = KvCacheManager.builder(LAYOUT).blocks(8).build();
             KvEventPublisher p0 = KvEventPublisher.builder(endpoint, keys, "c0", 16).build();
             KvEventPublisher p1 = KvEventPublisher.builder(endpoint, keys, "c1", 16).build();
             PrefixRouter router = new PrefixRouter(16, java.util.List.of("c0", "c1"))) {
            m0.addListener(p0);
            m1.addListener(p1);
            router.follow(endpoint, keys, Duration.ofMillis(5));
            Sequence s = m1.open("s");
            m1.append(s, prompt);
            m1.free(s);
            assertTrue(p0.flush(Duration.ofSeconds(5)) && p1.flush(Duration.ofSeconds(5)));
            long end = System.nanoTime() + 5_000_000_000L;
            while (router.route(prompt, 0).cachedBlocks() < 3 && System.nanoTime() < end) {
                RedisServers.sleep(5);
            }
            assertEquals(new PrefixRouter.Route("c1", 3, 48, 0), router.route(prompt, 0));
            assertEquals(PrefixRouterTest.truth(m1, 8), router.held("c1", true));
        }
    }
}
