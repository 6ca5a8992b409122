package dev.kvcache.redis;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;
import dev.kvcache.TierEntry;
import dev.kvcache.offheap.OffHeapKvStore;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Failure is a miss, never a stall: the server is killed (SIGKILL) or paused (SIGSTOP) in the
 * middle of a run of appends. Every append keeps working from the local cache, none waits longer
 * than the lookup deadline plus scheduling noise, the failures are counted, and once the server
 * is back (restarted empty, or continued) the tier serves and stores again by itself.
 */
class RedisFailureTest {

    private static final KvLayout LAYOUT = new KvLayout(2, 2, 32, 16, KvFormats.F16);
    /** The lookup deadline in this test. */
    private static final Duration LOOKUP = Duration.ofMillis(20);
    /** An append's added latency bound: the deadline plus generous scheduling noise on a shared 2-core VM. */
    private static final long BOUND_NANOS = TimeUnit.MILLISECONDS.toNanos(400);

    private RedisServers.Server server;
    private RedisEndpoint endpoint;
    private OffHeapKvStore store;
    private RedisTier tier;
    private KvCacheManager manager;
    private int next;

    @BeforeEach
    void start() throws IOException {
        server = RedisServers.Server.start();
        endpoint = RedisEndpoint.standalone(server.uri());
        store = OffHeapKvStore.allocate(LAYOUT, 64);
        tier = RedisTier.builder(endpoint, LAYOUT).lookupTimeout(LOOKUP).writeTimeout(Duration.ofMillis(100))
                .breakerThreshold(2).breakerOpen(Duration.ofMillis(200)).queueBlocks(32).build();
        manager = KvCacheManager.builder(LAYOUT).store(store).tier(tier).build();
        manager.addListener(tier.writeOnPublish(store));
    }

    @AfterEach
    void stop() {
        try {
            manager.close();
            tier.close();
            store.close();
            endpoint.close();
        } finally {
            server.close();
        }
    }

    /** One request: a shared 2-block system prompt, 2 blocks of its own, 8 decode tokens; its slowest call. */
    private long request() {
        int id = next++;
        int[] prompt = new int[64];
        for (int i = 0; i < 64; i++) {
            prompt[i] = i < 32 ? 1 + i : 100_000 + id * 64 + i;
        }
        Sequence s = manager.open("r" + id);
        long worst = 0;
        long t0 = System.nanoTime();
        int served = manager.append(s, prompt);
        worst = Math.max(worst, System.nanoTime() - t0);
        assertTrue(served >= 0, "the append was refused");
        Kv.write(store, s, 1, served, prompt.length);
        for (int d = 0; d < 8; d++) {
            t0 = System.nanoTime();
            assertTrue(manager.append(s, 50_000 + d) >= 0);
            worst = Math.max(worst, System.nanoTime() - t0);
            Kv.write(store, s, 1, s.length() - 1, s.length());
        }
        manager.free(s);
        return worst;
    }

    private long run(int requests) {
        long worst = 0;
        for (int i = 0; i < requests; i++) {
            worst = Math.max(worst, request());
        }
        return worst;
    }

    /**
     * Requests while the server is up, each waiting for its writes: a burst faster than the
     * writer would fill the bounded queue and drop by design (CI once dropped 6 of 36 while the
     * writer's first batch was still cold), which is not what the up phase checks.
     */
    private void runPaced(int requests) {
        for (int i = 0; i < requests; i++) {
            request();
            assertTrue(tier.awaitWrites(Duration.ofSeconds(5)), "writes drain while the server is up: " + tier.redisStats());
        }
    }

    private long failures() {
        RedisTierStats s = tier.redisStats();
        return s.errors() + s.timeouts() + s.skippedByBreaker() + s.writesFailed() + s.writesDropped();
    }

    /** Waits (bounded) until a fresh block goes in and comes back through the tier. */
    private boolean recovers() {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        int attempt = 0;
        while (System.nanoTime() < end) {
            TierEntry e = Kv.entries(LAYOUT, Kv.tokens(16, 900_000 + attempt++), 0, null)[0];
            Kv.fillBlock(store, 63, 3);
            tier.put(e, store, 63);
            tier.awaitWrites(Duration.ofSeconds(1));
            if (tier.leadingHits(new PrefixKey[]{e.key()}, 0, 1) == 1) {
                return true;
            }
            RedisServers.sleep(50);
        }
        return false;
    }

    @Test
    void aKilledServerCostsMissesNotStallsAndARestartedOneIsUsedAgain() throws Exception {
        runPaced(20);
        assertTrue(tier.redisStats().writesDone() > 0, "writes reached Redis before the kill");
        assertEquals(0, failures(), "no failure while the server was up: " + tier.redisStats());

        server.kill();
        long worst = run(60);
        System.out.printf("killed server: slowest append %.2f ms over 60 requests; %s%n", worst / 1e6, tier.redisStats());
        assertTrue(worst < BOUND_NANOS, "an append waited " + worst / 1_000_000 + " ms on a dead server");
        assertTrue(failures() > 0, "the failures were counted: " + tier.redisStats());
        assertTrue(tier.redisStats().breakerOpens() >= 1, "the breaker opened");

        server.launch(); // same port, empty
        assertTrue(recovers(), "the tier is used again after the restart: " + tier.redisStats());
        long done = tier.redisStats().writesDone();
        run(5);
        assertTrue(tier.awaitWrites(Duration.ofSeconds(5)));
        assertTrue(tier.redisStats().writesDone() > done, "requests after the restart reach Redis again");
    }

    @Test
    void aPausedServerCostsBoundedLatencyAndAFullQueueDropsAndCounts() throws Exception {
        runPaced(20);
        assertEquals(0, failures(), tier.redisStats().toString());
        server.pause();
        long worst;
        try {
            worst = run(80);
        } finally {
            server.resume();
        }
        RedisTierStats s = tier.redisStats();
        System.out.printf("paused server: slowest append %.2f ms over 80 requests; %s%n", worst / 1e6, s);
        assertTrue(worst < BOUND_NANOS, "an append waited " + worst / 1_000_000 + " ms on a paused server");
        assertTrue(s.timeouts() > 0, "lookups and writes timed out and were counted: " + s);
        assertTrue(s.breakerOpens() >= 1, "the breaker opened: " + s);
        assertTrue(failures() > 0, s.toString());
        assertTrue(recovers(), "the tier is used again once the server continues: " + tier.redisStats());
    }

    @Test
    void aFullWriteQueueDropsInsteadOfBlocking() throws Exception {
        server.pause();
        try {
            long worst = 0;
            TierEntry[] es = Kv.entries(LAYOUT, Kv.tokens(16 * 200, 7), 0, null);
            Kv.fillBlock(store, 0, 1);
            for (TierEntry e : es) {
                long t0 = System.nanoTime();
                tier.put(e, store, 0);
                worst = Math.max(worst, System.nanoTime() - t0);
            }
            assertTrue(worst < BOUND_NANOS, "a put waited " + worst / 1_000_000 + " ms");
            assertTrue(tier.redisStats().writesDropped() > 0, "a full queue drops: " + tier.redisStats());
        } finally {
            server.resume();
        }
    }
}
