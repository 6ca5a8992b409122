package dev.kvcache.cli;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The {@code + host tier} row of {@code kvcache simulate} and its {@link SimulatedTier}. */
class HostTierRowTest {

    /** 1 layer x 1 KV head x 32 at F16: 2,048 bytes per 16-token block. */
    private static final KvLayout TINY = new KvLayout(1, 1, 32, 16, KvFormats.F16);

    private static final String PREFIX = "paged + prefix sharing";
    private static final String TIER = "  + host tier";

    private static Map<String, SimResult> run(Simulator sim, String... names) {
        List<String> want = List.of(names);
        return ConfigRegistry.defaults(KvFormats.F16).stream().filter(c -> want.contains(c.name()))
                .collect(Collectors.toMap(SimConfig::name, c -> sim.run(c, new Simulator.Observer() { }),
                        (a, b) -> a, java.util.LinkedHashMap::new));
    }

    @Test
    void the_row_follows_prefix_sharing_with_its_settings_plus_the_tier() {
        List<SimConfig> cs = ConfigRegistry.defaults(KvFormats.F16);
        List<String> names = cs.stream().map(SimConfig::name).toList();
        assertEquals(names.indexOf(PREFIX) + 1, names.indexOf(TIER), names.toString());
        SimConfig p = cs.get(names.indexOf(PREFIX));
        SimConfig t = cs.get(names.indexOf(TIER));
        assertEquals(new SimConfig(TIER, p.paged(), p.format(), p.prefixCaching(), p.window(), p.idleRelease(),
                PREFIX, true), t);
        assertEquals(1, cs.stream().filter(SimConfig::hostTier).count());
        assertThrows(IllegalArgumentException.class,
                () -> new SimConfig("x", true, null, false, false, false, null, true));
    }

    @Test
    void on_the_default_workload_evicted_prefixes_come_back_from_the_host_tier() {
        KvLayout base = ModelCatalog.byName("Qwen2.5-32B").layout(16, KvFormats.F16);
        var s = new Simulator.Settings(80L << 30, 120, 64, 8192, 40_960, 4, 4096, 10, 0.0);
        assertEquals(160L << 30, s.hostBudgetBytes()); // default: twice the GPU budget
        assertEquals(64.0, s.hostLinkGBps());
        Map<String, SimResult> rs = run(new Simulator(base, Workload.defaults(), s), PREFIX, TIER);
        SimResult prefix = rs.get(PREFIX);
        SimResult tier = rs.get(TIER);
        KvCacheLedger l = tier.finalLedger();

        assertTrue(l.demotedBlocks() > 0, "evicted published blocks go to the tier");
        assertTrue(l.demotedBlocks() <= tier.evictedBlocks());
        assertTrue(l.promotedBlocks() > 0, "some come back");
        assertTrue(l.tierHitTokens() > 0);
        assertEquals(l.promotedBlocks() * base.blockTokens(), l.tierHitTokens()); // whole blocks
        assertEquals(0, l.tierErrors());
        assertEquals(0, l.tierLoadMisses());
        // the tier's hits are prompt tokens the prefix-sharing row computes again
        assertTrue(tier.recomputedTokens() <= prefix.recomputedTokens(),
                tier.recomputedTokens() + " vs " + prefix.recomputedTokens());
        assertEquals(tier.recomputedTokens(), l.recomputedTokens());
        long hits = tier.routes().stream().mapToLong(r -> r.prefixHitTokens).sum();
        long prefixHits = prefix.routes().stream().mapToLong(r -> r.prefixHitTokens).sum();
        assertTrue(hits > prefixHits, hits + " vs " + prefixHits);
        assertNotNull(prefix.finalLedger());
        assertEquals(0, prefix.finalLedger().demotedBlocks());
        assertTrue(prefix.finalLedger().tiers().isEmpty());

        TierStats t = l.tiers().getFirst();
        assertEquals("host", t.tier());
        assertEquals((160L << 30), t.capacityBytes());
        assertTrue(t.blocks() <= t.capacityBytes() / base.bytesPerBlock());
        assertEquals(t.blocks() * base.bytesPerBlock(), t.bytes());
        assertEquals(l.promotedBlocks(), t.loads());
        assertEquals(l.demotedBlocks(), t.puts());
        // one block per copying put and per load; a put of a block still held copies nothing
        assertEquals(0, t.bytesMoved() % base.bytesPerBlock());
        assertTrue(t.bytesMoved() >= t.loads() * base.bytesPerBlock());
        assertTrue(t.bytesMoved() <= (t.puts() + t.loads()) * base.bytesPerBlock());
        assertTrue(t.evictions() > 0, "the default run fills a 160 GiB tier");
        assertEquals(t.bytesMoved() / 64e9, s.copySeconds(t.bytesMoved()));
    }

    @Test
    void copy_time_is_bytes_moved_over_the_host_link() {
        var s = new Simulator.Settings(80L << 30, 10, 64, 8192, 40_960, 4, 4096, 10, 0.0, 1L << 40, 32);
        assertEquals(2.0, s.copySeconds(64_000_000_000L));
        assertEquals(0.0, s.copySeconds(0));
        assertEquals(1.5, new Simulator.Settings(1 << 20, 1, 1, 1, 1, 0, 1, 1, 0.0, 1 << 20, 12.5)
                .copySeconds(18_750_000_000L), 1e-12);

        // the CLI prints the same computation: bytes moved (from the run) / --host-link
        CliRun r = CliRun.of("simulate", "--steps", "40", "--host-link", "32", "--host-budget", "100GiB");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.line("host ").contains("100 GiB of host memory for '+ host tier' (25,600 blocks); host link 32 GB/s per direction"),
                r.line("host "));
        KvLayout base = ModelCatalog.byName("Qwen2.5-32B").layout(16, KvFormats.F16);
        var same = new Simulator.Settings(80L << 30, 40, 64, 8192, 40_960, 4, 4096, 10, 0.0, 100L << 30, 32);
        SimResult tier = run(new Simulator(base, Workload.defaults(), same), TIER).get(TIER);
        TierStats t = tier.finalLedger().tiers().getFirst();
        assertTrue(t.bytesMoved() > 0);
        String cost = r.out().lines().filter(x -> x.strip().startsWith("+ host tier ") && x.contains("over the host link"))
                .findFirst().orElseThrow(() -> new AssertionError(r.out()));
        String expected = String.format(Locale.ROOT, "%s over the host link", Sizes.human(t.bytesMoved()));
        assertTrue(cost.contains(expected), expected + " not in " + cost);
        String seconds = String.format(Locale.ROOT, "= %.2f s of copies at 32 GB/s", t.bytesMoved() / 32e9);
        assertTrue(cost.contains(seconds), seconds + " not in " + cost);
        assertTrue(cost.contains(Sizes.count(tier.finalLedger().demotedBlocks()) + " blocks demoted, "
                + Sizes.count(tier.finalLedger().promotedBlocks()) + " promoted"), cost);
        String relieved = String.format(Locale.ROOT, "%s prompt tokens served from the host tier",
                Sizes.count(tier.finalLedger().tierHitTokens()));
        assertTrue(cost.contains(relieved), relieved + " not in " + cost);
    }

    @Test
    void bad_host_flags_are_one_line_and_exit_2() {
        String[][] bad = {
                {"--host-link", "0"}, {"--host-link", "0.0"}, {"--host-link", "-64"}, {"--host-link", "abc"},
                {"--host-link", "NaN"}, {"--host-link", "Infinity"}, {"--host-link", ""},
                {"--host-budget", "0"}, {"--host-budget", "0GiB"}, {"--host-budget", "-1GiB"},
                {"--host-budget", "abc"}, {"--host-budget", "1KiB"},
        };
        for (String[] a : bad) {
            CliRun r = CliRun.of("simulate", a[0], a[1]);
            String what = String.join(" ", a);
            assertEquals(2, r.exitCode(), what + ": " + r.err());
            assertEquals(1, r.err().strip().lines().count(), what + ": " + r.err());
            assertTrue(r.err().startsWith("kvcache simulate: " + a[0]), what + ": " + r.err());
            assertTrue(r.out().isEmpty(), what + " printed\n" + r.out());
        }
    }

    @Test
    void the_simulated_tier_is_an_lru_of_verified_entries() {
        SimulatedTier t = new SimulatedTier(TINY, 2 * TINY.bytesPerBlock() + 100); // 2 blocks
        assertEquals(2, t.capacityBlocks());
        long fp = TierEntry.fingerprint(TINY);
        PrefixKey k1 = new PrefixKey(1, 1);
        PrefixKey k2 = new PrefixKey(2, 2);
        PrefixKey k3 = new PrefixKey(3, 3);
        TierEntry e1 = new TierEntry(k1, null, 0, null, new int[16], fp);
        TierEntry e2 = new TierEntry(k2, k1, 0, null, new int[16], fp);
        TierEntry e3 = new TierEntry(k3, k2, 0, null, new int[16], fp);
        assertTrue(t.put(e1, null, 0));
        assertTrue(t.put(e2, null, 1));
        assertEquals(2, t.leadingHits(new PrefixKey[] {k1, k2, k3}, 0, 3));
        assertTrue(t.load(e1, null, 5)); // k1 used: k2 is now the least recently used
        assertTrue(t.put(e3, null, 2));  // evicts k2
        assertEquals(1, t.leadingHits(new PrefixKey[] {k1, k2, k3}, 0, 3));
        assertEquals(1, t.leadingHits(new PrefixKey[] {k1, k2, k3}, 2, 1));
        assertFalse(t.load(e2, null, 6)); // not held: a plain miss
        assertTrue(t.put(e3, null, 2));   // held and matching: a touch, nothing copied

        // a held copy that does not match what the manager expects is a miss, and dropped
        int[] other = new int[16];
        other[3] = 7;
        assertFalse(t.load(new TierEntry(k3, k2, 0, null, other, fp), null, 7));
        assertFalse(t.load(e3, null, 7));
        assertFalse(t.put(new TierEntry(k2, k1, 0, null, new int[16], fp + 1), null, 1)); // another layout

        TierStats s = t.stats();
        assertEquals(1, s.blocks());
        assertEquals(TINY.bytesPerBlock(), s.bytes());
        assertEquals(2L * TINY.bytesPerBlock(), s.capacityBytes());
        assertEquals(4, s.puts());
        assertEquals(1, s.refusedPuts());
        assertEquals(1, s.loads());
        assertEquals(1, s.verificationMisses());
        assertEquals(1, s.evictions());
        assertEquals(4L * TINY.bytesPerBlock(), s.bytesMoved()); // 3 copying puts + 1 load
        assertEquals(0, s.copyNanos());
        assertTrue(t.remove(k1));
        assertFalse(t.remove(k1));
        assertThrows(IllegalArgumentException.class, () -> new SimulatedTier(TINY, TINY.bytesPerBlock() - 1));
        t.close();
        assertThrows(IllegalStateException.class, () -> t.put(e1, null, 0));
    }
}
