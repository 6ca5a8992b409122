package dev.kvcache.cli;

import com.fasterxml.jackson.jr.ob.JSON;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.StringReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Latency, the composable levers, arrivals and lengths, and the exports of {@code simulate}. */
class SchedulerTest {

    /** 1 layer x 1 KV head x 32 at F16: 128 bytes per token, 2,048 bytes per 16-token block. */
    private static final KvLayout TINY = new KvLayout(1, 1, 32, 16, KvFormats.F16);

    private static Simulator.Settings settings(long budget, int steps, int decodeChunk, int maxLen, boolean truncate,
                                               int longThreshold, double longShare) {
        return new Simulator.Settings(budget, steps, decodeChunk, 8192, maxLen, 0, 64, 10, 0.0, 1L << 30, 64,
                Simulator.DEFAULT_TIME, truncate, false, longThreshold, longShare);
    }

    @Test
    void latency_is_stamped_from_the_time_model() {
        // one request: a 48-token prompt and 32 decoded tokens in 8-token steps, alone on the GPU
        var route = new Workload.Route("r", 1, 80, 0, 32, false, 0, 0, 100);
        var sim = new Simulator(TINY, List.of(route), settings(1 << 20, 6, 8, 128, false, 8192, 0.75));
        SimResult r = sim.run(ConfigRegistry.parse("paged"), new Simulator.Observer() { });
        RouteLedger l = r.routes().getFirst();
        StepTimeModel t = Simulator.DEFAULT_TIME;
        assertEquals(1, l.completions);
        assertEquals(0.0, l.queueWait.percentile(50));
        // step 0 is the prefill alone: its one iteration is the whole step and the first token ends it
        double prefill = t.iterationSeconds(0, 0, 0, t.prefillFlops(0, 48));
        assertEquals(prefill, r.stepSeconds()[0], 1e-12);
        assertEquals(prefill, l.ttft.percentile(50), 1e-12);
        // step 1 decodes 8 tokens in 8 iterations of batch 1 reading 48 tokens of KV
        double step1 = 8 * t.iterationSeconds(1, 48 * TINY.bytesPerToken(), 48, 0);
        assertEquals(step1, r.stepSeconds()[1], 1e-12);
        assertEquals(step1 / 8, l.itl.percentile(50), 1e-9);
        assertEquals(32, l.generatedTokens);
        assertEquals(1, l.sloMet); // a few ms against the default 2 s / 100 ms
    }

    @Test
    void longpool_keeps_short_requests_flowing_past_long_ones() {
        // a pool of 64 blocks; two long sessions of 700 tokens (44 blocks each) and short sessions of 40
        var longRoute = new Workload.Route("long", 2, 720, 0, 20, false, 0, 0, 0);
        var shortRoute = new Workload.Route("short", 4, 48, 0, 16, false, 1, 0, 0);
        var s = settings(64 * TINY.bytesPerBlock(), 60, 8, 1024, false, 256, 0.7);
        var sim = new Simulator(TINY, List.of(longRoute, shortRoute), s);
        SimResult plain = sim.run(ConfigRegistry.parse("paged+prefix"), new Simulator.Observer() { });
        SimResult pool = sim.run(ConfigRegistry.parse("paged+prefix+longpool"), new Simulator.Observer() { });
        assertTrue(pool.route("short").completions > plain.route("short").completions,
                pool.route("short").completions + " vs " + plain.route("short").completions);
        // the long tenant never held more than its quota: 70% of 64 blocks = 44 blocks
        long quota = 44L * TINY.bytesPerBlock();
        assertTrue(pool.route("long").peakHeldBytes <= quota, pool.route("long").peakHeldBytes + " > " + quota);
        assertTrue(pool.route("short").ttft.percentile(99) <= plain.route("short").ttft.percentile(99));
        assertEquals(pool.preemptions(), pool.finalLedger().preemptions());
    }

    @Test
    void swap_preemption_moves_bytes_instead_of_recomputing() {
        var route = new Workload.Route("r", 3, 32, 0, 16, false, 0, 0, 5);
        var sim = new Simulator(TINY, List.of(route), settings(4 * TINY.bytesPerBlock(), 3, 8, 64, false, 8192, 0.75));
        SimResult recompute = sim.run(ConfigRegistry.parse("paged"), new Simulator.Observer() { });
        SimResult swap = sim.run(ConfigRegistry.parse("paged+swap"), new Simulator.Observer() { });
        assertEquals(1, recompute.preemptions());
        assertEquals(16, recompute.recomputedTokens());
        assertEquals(1, swap.swaps());
        assertEquals(0, swap.recomputedTokens());
        assertEquals(0, swap.finalLedger().recomputedTokens());
        // one block out, one block back in, priced at the host link in the steps that moved them
        assertEquals(2 * TINY.bytesPerBlock(), swap.transferBytes());
        assertEquals(2 * TINY.bytesPerBlock() / 64e9, swap.transferSeconds(), 1e-18);
        assertEquals(swap.completions(), recompute.completions());
    }

    @Test
    void lengths_over_the_max_model_length_are_refused_or_truncated() {
        var route = new Workload.Route("r", 4, LengthDist.uniform(40, 200), 0, LengthDist.fixed(8), false, 0, 0, 0,
                0, 5, 2, 0.1);
        var refuse = new Simulator(TINY, List.of(route), settings(1 << 20, 20, 8, 100, false, 8192, 0.75));
        RouteLedger r = refuse.run(ConfigRegistry.parse("paged"), new Simulator.Observer() { }).routes().getFirst();
        assertTrue(r.refused > 0 && r.truncated == 0, r.refused + " refused");
        var cut = new Simulator(TINY, List.of(route), settings(1 << 20, 20, 8, 100, true, 8192, 0.75));
        RouteLedger c = cut.run(ConfigRegistry.parse("paged"), new Simulator.Observer() { }).routes().getFirst();
        assertTrue(c.truncated > 0 && c.refused == 0);
        assertTrue(c.peakHeldBytes <= 4 * 7 * TINY.bytesPerBlock()); // 4 sessions of at most 100 tokens (7 blocks)
        // a fixed-length route over the limit is an error when refusing
        var fixed = new Workload.Route("long", 1, 300, 0, 8, false, 0, 0, 0);
        assertThrows(IllegalArgumentException.class,
                () -> new Simulator(TINY, List.of(fixed), settings(1 << 20, 2, 8, 100, false, 8192, 0.75)));
    }

    @Test
    void poisson_arrivals_and_sampled_lengths() throws Exception {
        List<Workload.Route> rs = Workload.parse(new StringReader("""
                {"name": "p", "arrival": "poisson", "rate": 50, "activeTokens": {"dist": "lognormal", "median": 60, "sigma": 0.5, "max": 120}, "decode": {"dist": "uniform", "min": 4, "max": 12}, "seed": 9, "ttftSloMs": 500, "itlSloMs": 20}
                """), "w.jsonl");
        Workload.Route p = rs.getFirst();
        assertTrue(p.poisson());
        assertEquals(1000, p.sessions());
        assertEquals(0.5, p.ttftSlo());
        int[] a = p.sample(0, 3);
        assertEquals(Arrays.toString(a), Arrays.toString(p.sample(0, 3))); // the same request every time
        assertTrue(a[0] >= 2 && a[0] <= 120 && a[1] >= 1 && a[1] < a[0]);
        var sim = new Simulator(TINY, rs, settings(1 << 22, 200, 8, 128, false, 8192, 0.75));
        SimResult r = sim.run(ConfigRegistry.parse("paged"), new Simulator.Observer() { });
        RouteLedger l = r.routes().getFirst();
        // arrivals at 50/s over the simulated time, within 5 standard deviations
        double expected = 50 * r.simulatedSeconds();
        assertTrue(Math.abs(l.arrivals - expected) < 5 * Math.sqrt(expected) + 2, l.arrivals + " vs " + expected);
        // sampled lengths are not all multiples of the block size: slots go empty
        assertTrue(r.avgSlotWaste() > 0);
        assertEquals(List.of(p), Workload.parse(new StringReader(Workload.toJsonLine(p)), "again"));
        String bad = assertThrows(IllegalArgumentException.class, () -> Workload.parse(new StringReader(
                "{\"name\":\"a\",\"sessions\":1,\"activeTokens\":{\"dist\":\"zipf\"}}"), "w")).getMessage();
        assertTrue(bad.contains("line 1") && bad.contains("zipf"), bad);
    }

    @Test
    void configurations_compose_from_lever_names() {
        SimConfig c = ConfigRegistry.parse("paged+prefix+fp8+idle");
        assertTrue(c.paged() && c.prefixCaching() && c.idleRelease() && c.format() == KvFormats.FP8_E4M3);
        List<SimConfig> list = ConfigRegistry.parseList("paged+prefix, paged+prefix+fp8+idle,paged+prefix+longpool,contiguous");
        assertEquals("paged+prefix", list.get(1).comparedTo());
        assertEquals("paged+prefix", list.get(2).comparedTo());
        assertEquals(null, list.get(3).comparedTo());
        for (String bad : new String[] {"paged+turbo", "contiguous+prefix", "paged+tier", "fp8+q4", "", "paged,paged"}) {
            var e = assertThrows(IllegalArgumentException.class, () -> ConfigRegistry.parseList(bad), bad);
            assertTrue(e.getMessage().startsWith("--configs"), e.getMessage());
        }
        CliRun r = CliRun.of("simulate", "--configs", "paged+warp");
        assertEquals(2, r.exitCode());
        assertTrue(r.err().contains("unknown lever 'warp'") && r.err().contains("longpool"), r.err());
        assertEquals(1, r.err().strip().lines().count());
    }

    @Test
    void percentiles_match_a_sorted_reference() {
        SplittableRandom rnd = new SplittableRandom(3);
        Samples s = new Samples();
        List<Double> expanded = new java.util.ArrayList<>();
        for (int i = 0; i < 500; i++) {
            double v = rnd.nextDouble();
            int w = 1 + rnd.nextInt(5);
            s.add(v, w);
            for (int j = 0; j < w; j++) {
                expanded.add(v);
            }
        }
        expanded.sort(null);
        for (double p : new double[] {1, 50, 90, 99, 100}) {
            int rank = (int) Math.max(1, Math.ceil(p / 100 * expanded.size()));
            assertEquals(expanded.get(rank - 1), s.percentile(p), "p" + p);
        }
        assertTrue(Double.isNaN(new Samples().percentile(50)));
    }

    @Test
    void json_and_csv_carry_every_figure(@TempDir Path dir) throws Exception {
        Path json = dir.resolve("sim.json");
        Path csv = dir.resolve("sim.csv");
        Path ttft = dir.resolve("ttft.png");
        CliRun r = CliRun.of("simulate", "--steps", "12", "--configs", "paged+prefix,paged+prefix+longpool,paged+prefix+swap",
                "--json", json.toString(), "--csv", csv.toString(), "--ttft-chart", ttft.toString());
        assertEquals(0, r.exitCode(), r.err());
        Map<String, Object> o = JSON.std.mapFrom(Files.readString(json));
        List<?> configs = (List<?>) o.get("configs");
        assertEquals(3, configs.size());
        Map<?, ?> first = (Map<?, ?>) configs.getFirst();
        assertEquals("paged+prefix", first.get("config"));
        List<?> routes = (List<?>) first.get("routes");
        assertEquals(4, routes.size());
        assertEquals(12, ((List<?>) ((Map<?, ?>) first.get("series")).get("stepSeconds")).size());
        List<String> lines = Files.readAllLines(csv);
        assertEquals(1 + 3 * 4, lines.size());
        List<String> header = List.of(lines.getFirst().split(","));
        Map<?, ?> route0 = (Map<?, ?>) routes.getFirst();
        String[] row = lines.get(1).split(",", -1);
        assertEquals(String.valueOf(route0.get("generatedTokens")), row[header.indexOf("route.generatedTokens")]);
        assertEquals(String.valueOf(first.get("completed")), row[header.indexOf("completed")]);
        // the text table shows the same TTFT p99 as the JSON (rounded)
        Object p99 = route0.get("ttftP99");
        String line = r.out().lines().filter(l -> l.startsWith("  paged+prefix ") && l.contains("short chat"))
                .findFirst().orElseThrow();
        assertTrue(p99 == null || line.contains(SimulationReport.seconds(((Number) p99).doubleValue())), line + " vs " + p99);
        for (String route : new String[] {"short-chat", "long-support", "agent-trace", "disconnected-streams"}) {
            byte[] png = Files.readAllBytes(dir.resolve("ttft-" + route + ".png"));
            assertTrue(png.length > 1000 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G');
        }
    }

    @Test
    void priority_eviction_keeps_the_higher_priority_route_s_prefix() {
        // a 30-block pool. step 0: "high" (priority 5, a 48-token shared prefix in a 64-token prompt)
        // and four "low" requests (priority 0, 80-token prompts) are admitted; step 1: all finish and
        // release, high first; step 2: four new low requests need 20 blocks from the cache. LRU takes
        // the oldest released blocks, high's; priority() takes low's. At step 6 high's next request
        // finds its prefix again only under priority().
        var high = new Workload.Route("high", 1, 80, 48, 16, false, 5, 0, 4);
        var low = new Workload.Route("low", 4, 96, 0, 16, false, 0, 0, 0);
        Simulator.Settings lru = settings(30 * TINY.bytesPerBlock(), 8, 16, 256, false, 8192, 0.75);
        Simulator.Settings prio = new Simulator.Settings(lru.budgetBytes(), lru.steps(), lru.decodeChunk(),
                lru.prefillChunk(), lru.maxModelLen(), 0, 64, 10, 0.0, 1L << 30, 64, Simulator.DEFAULT_TIME, false, true,
                8192, 0.75);
        SimConfig c = ConfigRegistry.parse("paged+prefix");
        SimResult a = new Simulator(TINY, List.of(high, low), lru).run(c, new Simulator.Observer() { });
        SimResult b = new Simulator(TINY, List.of(high, low), prio).run(c, new Simulator.Observer() { });
        assertEquals(2, b.route("high").admissions);
        assertEquals(0, a.route("high").prefixHitTokens);
        assertEquals(48, b.route("high").prefixHitTokens);
        CliRun r = CliRun.of("simulate", "--steps", "5", "--policy", "priority", "--configs", "paged+prefix");
        assertEquals(0, r.exitCode(), r.err());
    }

    @Test
    void the_poisson_example_parses_and_replays() throws Exception {
        List<Workload.Route> rs = Workload.read(Path.of("workloads/poisson-mix.jsonl"));
        assertEquals(List.of("chat api", "code completion", "document qa"), rs.stream().map(Workload.Route::name).toList());
        assertTrue(rs.stream().allMatch(Workload.Route::poisson));
        CliRun r = CliRun.of("simulate", "--workload", "workloads/poisson-mix.jsonl", "--model", "Qwen2.5-7B", "--steps", "20",
                "--configs", "paged+prefix");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().contains("Poisson 1.50/s"), r.out());
    }

    @Test
    void the_shared_tier_serves_evicted_prefixes_over_the_network() {
        KvLayout base = ModelCatalog.byName("Qwen2.5-32B").layout(16, KvFormats.F16);
        var s = new Simulator.Settings(80L << 30, 120, 64, 8192, 32_000, 4, 4096, 10, 0.0);
        assertEquals(320L << 30, s.sharedBudgetBytes()); // default: four times the GPU budget
        var sim = new Simulator(base, Workload.defaults(), s);
        SimResult prefix = sim.run(ConfigRegistry.parse("paged+prefix"), new Simulator.Observer() { });
        SimResult shared = sim.run(ConfigRegistry.parse("paged+prefix+shared"), new Simulator.Observer() { });
        var t = shared.finalLedger().tiers().getFirst();
        assertTrue(shared.finalLedger().tierHitTokens() > 0);
        assertTrue(shared.recomputedTokens() <= prefix.recomputedTokens());
        assertEquals(t.bytesMoved(), shared.transferBytes());
        // every copy over the network at the H100 preset's 50 GB/s, none over the host link
        assertEquals(t.bytesMoved() / 50e9, shared.transferSeconds(), 1e-9);
        assertTrue(shared.simulatedSeconds() > prefix.simulatedSeconds());
        assertEquals(prefix.completions(), shared.completions());
    }
}
