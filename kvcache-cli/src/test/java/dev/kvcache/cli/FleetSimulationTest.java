package dev.kvcache.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;

import java.util.List;

import org.junit.jupiter.api.Test;

/** The fleet rows of {@code simulate} (issue #14): random routing, the prefix router, a shared tier. */
class FleetSimulationTest {

    /** 1 layer x 1 KV head x 32 at F16: 2,048 bytes per 16-token block. */
    private static final KvLayout TINY = new KvLayout(1, 1, 32, 16, KvFormats.F16);

    /** Four routes, each with its own 320-token system prompt and 80 tokens of its own per request. */
    private static final List<Workload.Route> ROUTES = List.of(
            new Workload.Route("a", 6, 416, 320, 16, false, 0, 0, 0),
            new Workload.Route("b", 6, 416, 320, 16, false, 0, 0, 0),
            new Workload.Route("c", 6, 416, 320, 16, false, 0, 0, 0),
            new Workload.Route("d", 6, 416, 320, 16, false, 0, 0, 0));

    private static FleetSimulation fleet(long budgetBytes) {
        var s = new Simulator.Settings(budgetBytes, 10, 8, 8192, 4096, 0, 64, 10, 0.0, 1L << 30, 64,
                Simulator.DEFAULT_TIME, false, false, 8192, 0.75);
        return new FleetSimulation(TINY, ROUTES, s);
    }

    @Test
    void theRouterFindsMorePrefixesThanRandomRoutingUnderPressure() {
        // 160 blocks an instance: 8 requests in flight (26 blocks each) and no room for all four system prompts
        FleetSimulation f = fleet(160L * TINY.bytesPerBlock());
        var random = f.run(3, FleetSimulation.Routing.RANDOM, false);
        var router = f.run(3, FleetSimulation.Routing.ROUTER, false);
        System.out.println(random + "\n" + router);
        assertEquals(random.requests(), router.requests(), "every row replays the same requests");
        assertEquals(random.promptTokens(), router.promptTokens());
        assertEquals(8 * 24, random.requests());
        assertTrue(router.localHitTokens() > random.localHitTokens(),
                "router " + router.localHitTokens() + " vs random " + random.localHitTokens());
        // at most the system prompt's 20 full blocks of every request but the first of each route can hit
        assertTrue(router.localHitTokens() <= (router.requests() - ROUTES.size()) * 320L);
        assertTrue(router.prefillSeconds() < random.prefillSeconds());
        assertEquals(0, router.tierHitTokens());
        assertEquals(0, router.networkReadBytes());
    }

    @Test
    void aSharedTierServesAnInstanceThePrefixAnotherOneComputed() {
        FleetSimulation f = fleet(160L * TINY.bytesPerBlock());
        var random = f.run(3, FleetSimulation.Routing.RANDOM, false);
        var shared = f.run(3, FleetSimulation.Routing.RANDOM, true);
        System.out.println(random + "\n" + shared);
        assertTrue(shared.tierHitTokens() > 0, "random routing sends routes to instances that never saw them");
        assertEquals(0, shared.tierHitTokens() % 16, "tier hits are whole blocks");
        assertTrue(shared.localHitTokens() + shared.tierHitTokens() > random.localHitTokens());
        assertEquals(shared.tierHitTokens() / 16 * TINY.bytesPerBlock(), shared.networkReadBytes(),
                "one block's bytes loaded per promoted block");
        assertTrue(shared.networkReadSeconds() > 0);
        assertTrue(shared.networkWrittenBytes() > 0, "every published block is written on publish");
    }

    @Test
    void instancesAreBounded() {
        FleetSimulation f = fleet(1 << 20);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> f.run(65, FleetSimulation.Routing.ROUTER, false));
        assertTrue(e.getMessage().contains("65") && e.getMessage().contains("64"), e.getMessage());
    }
}
