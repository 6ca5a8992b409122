package dev.kvcache.cli;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SimulatorTest {

    /** 1 layer x 1 KV head x 32 at F16: 128 bytes per token, 2,048 bytes per 16-token block. */
    private static final KvLayout TINY = new KvLayout(1, 1, 32, 16, KvFormats.F16);

    private static Simulator.Settings settings(long budget, int steps, int decodeChunk) {
        return new Simulator.Settings(budget, steps, decodeChunk, 8192, 64, 0, 64, 10, 0.0);
    }

    private static final SimConfig PAGED = new SimConfig("paged", true, null, false, false, false, null);
    private static final SimConfig CONTIGUOUS = new SimConfig("contiguous", false, null, false, false, false, null);

    @Test
    void preemption_frees_the_newest_and_recomputes_its_tokens() {
        // 4 blocks; three requests of a 16-token prompt + 16 decoded tokens, all arriving at step 0.
        // step 0: A, B, C admitted (1 block each, 1 left). step 1 (8 tokens each): A takes the last
        // block, B fails -> C (newest, same priority) is preempted and B retries into C's block.
        // step 2: A and B reach 32 tokens and finish (4 blocks free); C re-prefills its 16 tokens.
        var route = new Workload.Route("r", 3, 32, 0, 16, false, 0, 0, 5);
        var sim = new Simulator(TINY, List.of(route), settings(4 * TINY.bytesPerBlock(), 3, 8));
        SimResult r = sim.run(PAGED, new Simulator.Observer() { });
        RouteLedger l = r.routes().getFirst();
        assertEquals(1, l.preemptions);
        assertEquals(16, l.recomputedTokens);
        assertEquals(1, l.allocationFailures);
        assertEquals(1, r.allocationFailures()); // the manager's own counter agrees
        assertEquals(2, l.completions);
        assertEquals(4, l.admissions); // A, B, C, then C again
        assertEquals(1, r.finalLedger().preemptions());
        assertEquals(16, r.finalLedger().recomputedTokens());
        assertEquals(3, r.peakRunning());
        assertEquals(4 * TINY.bytesPerBlock(), r.peakUsedBytes());
    }

    @Test
    void a_preempted_request_comes_back_from_its_own_committed_blocks() {
        // 7 blocks; three requests of a 32-token prompt (2 full blocks) + 16 decoded, all at step 0.
        // step 0: A, B, C prefill (6 blocks; the simulator commits each prompt: its KV is computed).
        // step 1 (8 tokens each): A takes the last block, B fails -> C (newest) is preempted; C's
        // committed blocks stay cached and B's retry evicts C's tail. step 2: A and B finish; C
        // resumes, its head block served by the cache: 16 tokens recomputed, not 32. (The manager
        // publishes a block only once its KV is written; had the simulator committed C neither after
        // its prefill nor before preempting it, C's blocks would still be pending when it is
        // preempted, and nothing would come back.)
        var route = new Workload.Route("r", 3, 48, 0, 16, false, 0, 0, 5);
        var sim = new Simulator(TINY, List.of(route), settings(7 * TINY.bytesPerBlock(), 3, 8));
        var prefix = new SimConfig("prefix", true, null, true, false, false, null);
        SimResult r = sim.run(prefix, new Simulator.Observer() { });
        RouteLedger l = r.routes().getFirst();
        assertEquals(1, l.preemptions);
        assertEquals(2, l.completions);
        assertEquals(4, l.admissions); // A, B, C, then C again
        assertEquals(16, l.prefixHitTokens);
        assertEquals(16, l.recomputedTokens);
        assertEquals(16, r.finalLedger().recomputedTokens());
        assertEquals(0, r.finalLedger().abortedBlocks());
        SimResult plain = sim.run(PAGED, new Simulator.Observer() { });
        assertEquals(1, plain.routes().getFirst().preemptions);
        assertEquals(32, plain.routes().getFirst().recomputedTokens); // no cache: all of it
    }

    @Test
    void contiguous_reserves_the_max_model_length() {
        // 64-token reservation = 8,192 bytes each; a 4-block pool (8,192 bytes) holds one request
        var route = new Workload.Route("r", 3, 32, 0, 16, false, 0, 0, 5);
        var sim = new Simulator(TINY, List.of(route), settings(4 * TINY.bytesPerBlock(), 3, 8));
        SimResult r = sim.run(CONTIGUOUS, new Simulator.Observer() { });
        assertEquals(1, r.peakRunning());
        assertEquals(1, r.completions());
        assertEquals(0, r.preemptions());
    }

    @Test
    void idle_streams_hold_memory_until_released() {
        var idle = new Workload.Route("gone", 2, 32, 0, 16, true, 0, 0, 0);
        var sim = new Simulator(TINY, List.of(idle), new Simulator.Settings(64 * TINY.bytesPerBlock(), 20, 16, 8192,
                64, 0, 64, 5, 0.0));
        SimResult held = sim.run(PAGED, new Simulator.Observer() { });
        assertEquals(4 * TINY.bytesPerBlock(), held.idleHeldBytesEnd()); // 2 streams x 2 blocks, forever
        var release = new SimConfig("idle", true, null, false, false, true, null);
        SimResult freed = sim.run(release, new Simulator.Observer() { });
        assertEquals(0, freed.idleHeldBytesEnd());
        assertEquals(2, freed.idleReleased());
        assertEquals(4 * TINY.bytesPerBlock(), freed.idleReleasedBytes());
        assertEquals(0, freed.usedBytes()[19]);
    }

    @Test
    void shared_prefixes_are_served_from_the_cache() {
        // 4 sessions with a 32-token shared prefix (2 full blocks) in a 48-token prompt
        var route = new Workload.Route("r", 4, 64, 32, 16, false, 0, 0, 0);
        var sim = new Simulator(TINY, List.of(route), settings(64 * TINY.bytesPerBlock(), 2, 16));
        var prefix = new SimConfig("prefix", true, null, true, false, false, null);
        SimResult r = sim.run(prefix, new Simulator.Observer() { });
        assertEquals(3 * 32, r.routes().getFirst().prefixHitTokens); // every session but the first
        SimResult plain = sim.run(PAGED, new Simulator.Observer() { });
        assertEquals(0, plain.routes().getFirst().prefixHitTokens);
        assertTrue(r.peakUsedBytes() < plain.peakUsedBytes());
    }

    @Test
    void routes_longer_than_the_model_are_refused() {
        var route = new Workload.Route("long", 1, 100, 0, 16, false, 0, 0, 0);
        var e = assertThrows(IllegalArgumentException.class,
                () -> new Simulator(TINY, List.of(route), settings(1 << 20, 2, 8)));
        assertTrue(e.getMessage().contains("'long' needs 100 tokens") && e.getMessage().contains("64"), e.getMessage());
    }

    @Test
    void default_run_completes_and_paging_admits_more_than_contiguous(@TempDir Path dir) throws Exception {
        Path svg = dir.resolve("mem.svg");
        Path jfr = dir.resolve("sim.jfr");
        long t0 = System.nanoTime();
        CliRun run = CliRun.of("simulate", "--chart", svg.toString(), "--jfr", jfr.toString());
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(ms < 60_000, "default simulate took " + ms + " ms");

        // "peak sessions" is the 4th column of the side-by-side table: "26/91"
        Map<String, String> peak = run.out().lines()
                .filter(l -> l.startsWith("  contiguous ") || l.startsWith("  paged "))
                .limit(2)
                .collect(Collectors.toMap(l -> l.strip().split("\\s{2,}")[0], l -> l.strip().split("\\s{2,}")[3]));
        int contiguous = Integer.parseInt(peak.get("contiguous").split("/")[0]);
        int paged = Integer.parseInt(peak.get("paged").split("/")[0]);
        assertTrue(paged > contiguous, "paged " + paged + " vs contiguous " + contiguous + "\n" + run.out());

        String chart = Files.readString(svg);
        // XChart through VectorGraphics2D: an SVG document with one path per series
        assertTrue(chart.contains("<svg") && chart.contains("<path") && chart.strip().endsWith("</svg>"), chart.substring(0, 200));

        var events = jdk.jfr.consumer.RecordingFile.readAllEvents(jfr);
        var ledgers = events.stream().filter(e -> e.getEventType().getName().equals("dev.kvcache.Ledger")).toList();
        // one per step for each of the 11 paged configurations
        assertEquals(11 * 120, ledgers.size());
        long maxFailures = ledgers.stream().mapToLong(e -> e.getLong("allocationFailures")).max().orElse(0);
        assertTrue(maxFailures > 0, "the default run has allocation failures; JFR shows them");
        // the levers' own events: refusals, preemptions (their count matches the ledger), idle releases
        long preempted = events.stream().filter(e -> e.getEventType().getName().equals("dev.kvcache.SequencePreempted")).count();
        long ledgerPreemptions = ledgers.stream().filter(e -> e.getString("cache").equals("paged"))
                .mapToLong(e -> e.getLong("preemptions")).max().orElse(0);
        assertTrue(ledgerPreemptions > 0);
        assertTrue(preempted >= ledgerPreemptions);
        assertEquals(7, events.stream().filter(e -> e.getEventType().getName().equals("dev.kvcache.IdleReleased")).count());
        assertTrue(events.stream().anyMatch(e -> e.getEventType().getName().equals("dev.kvcache.AppendRefused")));
        assertTrue(events.stream().noneMatch(e -> e.getEventType().getName().equals("dev.kvcache.BlockStored")));
    }

    @Test
    void every_default_config_keeps_memory_within_the_pool() {
        var base = ModelCatalog.byName("Qwen2.5-32B").layout(16, KvFormats.F16);
        var s = new Simulator.Settings(80L << 30, 40, 64, 8192, 40_960, 4, 4096, 10, 0.0);
        var sim = new Simulator(base, Workload.defaults(), s);
        Map<String, SimResult> rs = ConfigRegistry.defaults(KvFormats.F16).stream()
                .collect(Collectors.toMap(SimConfig::name, c -> sim.run(c, new Simulator.Observer() { }),
                        (a, b) -> a, java.util.LinkedHashMap::new));
        for (SimResult r : rs.values()) {
            for (long u : r.usedBytes()) {
                assertTrue(u <= r.poolBytes(), r.config().name());
            }
            if (r.config().paged()) {
                // the simulator's per-route accounting agrees with the manager's own ledger
                var ledger = r.finalLedger();
                assertEquals(r.routes().stream().mapToLong(l -> l.allocationFailures).sum(), r.allocationFailures(),
                        r.config().name() + ": allocation failures");
                assertEquals(r.preemptions(), ledger.preemptions(), r.config().name() + ": preemptions");
                assertEquals(r.recomputedTokens(), ledger.recomputedTokens(), r.config().name() + ": recomputed tokens");
                assertEquals(r.idleReleased(), ledger.idleReleasedSequences(), r.config().name() + ": idle releases");
            }
        }
        Function<String, SimResult> get = rs::get;
        assertTrue(get.apply("paged").peakRunning() > get.apply("contiguous").peakRunning());
    }
}
