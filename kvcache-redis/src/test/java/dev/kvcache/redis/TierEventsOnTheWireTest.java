package dev.kvcache.redis;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;
import dev.kvcache.offheap.HostTier;
import dev.kvcache.offheap.OffHeapKvStore;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A host tier's events reach the instance's stream under medium "CPU", and a router following
 * the streams knows a prefix demoted from one instance's store is still one load away there.
 */
class TierEventsOnTheWireTest {

    private static final KvLayout LAYOUT = new KvLayout(1, 1, 8, 16, KvFormats.F16);

    private static boolean await(java.util.function.BooleanSupplier c) {
        long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (!c.getAsBoolean()) {
            if (System.nanoTime() - end > 0) {
                return false;
            }
            RedisTimeouts.sleep(5);
        }
        return true;
    }

    @Test
    void aDemotedPrefixStaysRoutedToItsInstanceUntilTheTierEvictsIt() throws Exception {
        try (RedisServers.Server server = RedisServers.Server.start(); RedisEndpoint ep = RedisEndpoint.standalone(server.uri())) {
            RedisKeys keys = RedisKeys.of("tier-events", LAYOUT);
            List<String> ids = List.of("a", "b", "c");
            try (PrefixRouter router = new PrefixRouter(16, ids);
                 KvEventPublisher pub = KvEventPublisher.builder(ep, keys, "a", 16).build();
                 OffHeapKvStore store = OffHeapKvStore.allocate(LAYOUT, 6);
                 HostTier host = HostTier.allocate(LAYOUT, 4 * LAYOUT.bytesPerBlock()).listener(pub.tierListener("CPU"));
                 KvCacheManager m = KvCacheManager.builder(LAYOUT).store(store).tier(host).build()) {
                assertThrows(IllegalArgumentException.class, () -> pub.tierListener("GPU"), "the store's medium");
                assertThrows(IllegalArgumentException.class, () -> pub.tierListener("ALL"));
                m.addListener(pub);
                List<PrefixKey> promptKeys = new ArrayList<>();
                m.addListener(e -> {
                    if (e instanceof KvCacheEvent.BlockStored s && promptKeys.size() < 3) {
                        promptKeys.add(s.key());
                    }
                });
                router.follow(ep, keys, Duration.ofMillis(5));
                int[] prompt = Kv.tokens(3 * 16 + 5, 11);
                Sequence s = m.open("p");
                m.append(s, prompt);
                m.free(s);
                assertTrue(pub.flush(Duration.ofSeconds(5)));
                assertTrue(await(() -> router.held("a", true).containsAll(promptKeys)), "on a's GPU");
                assertEquals("a", router.route(prompt, 0).instance());
                assertEquals(3, router.route(prompt, 0).cachedBlocks());

                Sequence other = m.open("q");                           // takes every block: demotes the prompt's
                m.append(other, Kv.tokens(6 * 16, 40_000));
                assertTrue(pub.flush(Duration.ofSeconds(5)));
                assertTrue(await(() -> router.held("a", false).containsAll(promptKeys)
                        && !router.held("a", true).contains(promptKeys.get(0))), "now in a's CPU tier, off its GPU: "
                        + router.held("a", false) + " / " + router.held("a", true));
                assertEquals("a", router.route(prompt, 0).instance(), "still one load away on a");
                assertEquals(3, router.route(prompt, 0).cachedBlocks());

                m.free(other);                                           // 6 blocks demoted into a 4-block tier
                Sequence third = m.open("r");
                m.append(third, Kv.tokens(6 * 16, 90_000));
                m.free(third);
                assertTrue(pub.flush(Duration.ofSeconds(5)));
                Set<PrefixKey> inTier = new HashSet<>();
                assertTrue(await(() -> {
                    inTier.clear();
                    inTier.addAll(router.held("a", false));
                    return inTier.size() == host.stats().blocks() && !inTier.contains(promptKeys.get(0));
                }), "the tier evicted the prompt's first block, and the router knows: " + inTier.size() + " vs "
                        + host.stats().blocks());
                assertEquals(0, router.route(prompt, 0).cachedBlocks(), "a prefix whose first block is gone is held nowhere");
                assertFalse(router.gaps() > 0, "no event lost");
            }
        }
    }
}
