package dev.kvcache.redis;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The router target on a replayed workload: 4 routes, each with its own 512-token system
 * prompt and a user part of its own per request, 4 requests in flight. 4 instances behind the
 * router (each a quarter of the memory) reach at least 0.9x the prefix hit rate of one instance
 * holding everything; random routing is the reference below. Printed figures: the test's output.
 */
class RouterHitRateTest {

    static final KvLayout LAYOUT = new KvLayout(1, 1, 8, 16, KvFormats.F16);
    static final int ROUTES = 4;
    static final int SYSTEM = 512;
    static final int REQUESTS = 600;
    static final int IN_FLIGHT = 4;
    static final int BLOCKS_PER_INSTANCE = 128;

    /** Hit rate of prompt tokens served from the prefix cache; mode 0 one big instance, 1 router, 2 random. */
    static double replay(int mode, long seed) {
        int n = mode == 0 ? 1 : 4;
        List<KvCacheManager> ms = new ArrayList<>();
        List<String> ids = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            ids.add("i" + i);
        }
        ArrayDeque<Object[]> live = new ArrayDeque<>();
        int[] load = new int[n];
        try (PrefixRouter router = new PrefixRouter(16, ids)) {
            for (int i = 0; i < n; i++) {
                KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(mode == 0 ? 4 * BLOCKS_PER_INSTANCE : BLOCKS_PER_INSTANCE).build();
                m.addListener(router.listener(ids.get(i)));
                ms.add(m);
            }
            SplittableRandom r = new SplittableRandom(seed);
            int[][] systems = new int[ROUTES][];
            for (int k = 0; k < ROUTES; k++) {
                systems[k] = Kv.tokens(SYSTEM, 1 + k * 10_000);
            }
            long served = 0;
            long total = 0;
            for (int q = 0; q < REQUESTS; q++) {
                int route = r.nextInt(ROUTES);
                int user = 32 + r.nextInt(224);
                int[] prompt = java.util.Arrays.copyOf(systems[route], SYSTEM + user);
                for (int t = SYSTEM; t < prompt.length; t++) {
                    prompt[t] = 100_000 + q * 300 + t;
                }
                int target = switch (mode) {
                    case 0 -> 0;
                    case 1 -> Integer.parseInt(router.route(prompt, 0).instance().substring(1));
                    default -> r.nextInt(n);
                };
                while (live.size() >= IN_FLIGHT) {
                    Object[] done = live.poll();
                    int at = (int) done[0];
                    ms.get(at).free((Sequence) done[1]);
                    router.reportLoad(ids.get(at), --load[at]);
                }
                KvCacheManager m = ms.get(target);
                Sequence s = m.open("q" + q);
                int got = m.append(s, prompt);
                if (got < 0) {
                    m.free(s);
                    total += prompt.length;
                    continue;
                }
                served += got;
                total += prompt.length;
                for (int d = 0; d < 32; d++) {
                    m.append(s, 200_000 + d);
                }
                live.add(new Object[]{target, s});
                router.reportLoad(ids.get(target), ++load[target]);
            }
            while (!live.isEmpty()) {
                Object[] done = live.poll();
                ms.get((int) done[0]).free((Sequence) done[1]);
            }
            return (double) served / total;
        } finally {
            ms.forEach(KvCacheManager::close);
        }
    }

    @Test
    void fourInstancesBehindTheRouterHitAtLeast09xOfOneHoldingEverything() {
        for (long seed : new long[]{1, 2, 3}) {
            double one = replay(0, seed);
            double routed = replay(1, seed);
            double random = replay(2, seed);
            System.out.printf("router hit rate, seed %d: one instance holding everything %.4f, 4 instances behind the router %.4f"
                    + " (%.3fx), random routing %.4f (%.3fx)%n", seed, one, routed, routed / one, random, random / one);
            assertTrue(routed >= 0.9 * one, "router " + routed + " vs one instance " + one);
            assertTrue(routed > random, "the router beats random routing: " + routed + " vs " + random);
        }
    }
}
