package dev.kvcache.cli;

import dev.kvcache.CapacityPlanner;
import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvFormat;
import dev.kvcache.KvLayout;
import dev.kvcache.TierStats;
import dev.kvcache.quant.AccuracyReport;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The text tables of {@code kvcache simulate}, apart from the replay: the header, the
 * configurations side by side with what each relieved and what it cost (memory, seconds, quality),
 * latency per route, the memory ledger per route, and memory over time. Output only: every figure
 * comes from a {@link SimResult}, the {@link StepTimeModel} or the {@link QualityFigures}.
 */
final class SimulationReport {
    final LayoutOptions.Resolved model;
    final KvLayout base;
    final Simulator.Settings settings;
    final List<Workload.Route> routes;
    final String workloadName;
    final QualityFigures quality;

    SimulationReport(LayoutOptions.Resolved model, KvLayout base, Simulator.Settings settings,
                     List<Workload.Route> routes, String workloadName, QualityFigures quality) {
        this.model = model;
        this.base = base;
        this.settings = settings;
        this.routes = routes;
        this.workloadName = workloadName;
        this.quality = quality;
    }

    void header(PrintWriter out) {
        Simulator.Settings s = settings;
        StepTimeModel t = s.time();
        out.printf(Locale.ROOT, "model     %s: %d layers x %d KV heads x %d head dim, %s = %s bytes/token (%s); max context %s%n",
                model.name(), base.layers(), base.kvHeads(), base.headDim(), base.format().name(),
                Sizes.count(base.bytesPerToken()), Sizes.human(base.bytesPerToken()), Sizes.count(model.maxContext()));
        out.printf(Locale.ROOT, "budget    %s of KV memory; blocks of %d tokens (%s each)%n",
                Sizes.human(s.budgetBytes()), base.blockTokens(), Sizes.human(base.bytesPerBlock()));
        out.printf(Locale.ROOT, "host      %s of host memory for '+ host tier' (%s blocks); host link %s GB/s per direction%n",
                Sizes.human(s.hostBudgetBytes()), Sizes.count(s.hostBudgetBytes() / base.bytesPerBlock()),
                HardwareProfile.num(s.hostLinkGBps()));
        out.printf(Locale.ROOT, "shared    %s for '+ shared tier' (%s blocks) across the network at %s GB/s%n",
                Sizes.human(s.sharedBudgetBytes()), Sizes.count(s.sharedBudgetBytes() / base.bytesPerBlock()),
                HardwareProfile.num(t.hardware().networkGBps()));
        out.printf(Locale.ROOT, "hardware  %s%n", t.hardware().describe());
        out.printf(Locale.ROOT, "time      %s%s%n", t.describe(), model.estimated() ? " (parameters estimated from the shape)" : "");
        double gpuBytes = t.hardware().memoryGB() * 1e9 * t.gpus();
        if (t.weightBytes() + s.budgetBytes() > gpuBytes) {
            out.printf(Locale.ROOT, "note      weights %s + KV budget %s exceed %d x %.0f GB of %s memory%n",
                    Sizes.human(t.weightBytes()), Sizes.human(s.budgetBytes()), t.gpus(), t.hardware().memoryGB(),
                    t.hardware().name());
        }
        out.printf(Locale.ROOT, "steps     %d; a step = %d engine iterations (each running request appends %d decode tokens), "
                        + "prompts prefilled in chunks of %s tokens mixed into them; max model length %s (%s above it)%n",
                s.steps(), s.decodeChunk(), s.decodeChunk(), Sizes.count(s.prefillChunk()), Sizes.count(s.maxModelLen()),
                s.truncate() ? "truncated" : "refused");
        out.printf(Locale.ROOT, "workload  %s%n", workloadName);
        Table tb = new Table("route", "sessions", "<arrival", "<active tokens", "shared prefix", "<decode", "<idle",
                "priority", "<SLO TTFT / ITL", "<longpool", "KV at full concurrency");
        long sessions = 0;
        List<CapacityPlanner.Route> planned = new ArrayList<>();
        for (Workload.Route r : routes) {
            CapacityPlanner.Route pr = new CapacityPlanner.Route(r.name(), r.sessions(), r.activeTokens());
            planned.add(pr);
            sessions += r.sessions();
            tb.row(r.name(), r.sessions(), Workload.describeArrival(r), r.active(), Sizes.count(r.sharedPrefix()),
                    r.decodeLength(), r.idle() ? "yes (never finishes)" : "no", r.priority(),
                    String.format(Locale.ROOT, "%s / %s", seconds(r.ttftSlo()), seconds(r.itlSlo())),
                    s.isLong(r) ? "long" : "short", Sizes.human(pr.kvBytes(base)));
        }
        tb.print(out, "  ");
        out.printf(Locale.ROOT, "  all routes at once: %s sessions, %s of KV at %s (CapacityPlanner.kvBytes, typical lengths) against a %s budget%n",
                Sizes.count(sessions), Sizes.human(CapacityPlanner.kvBytes(base, planned)), base.format().name(),
                Sizes.human(s.budgetBytes()));
        out.println();
    }

    void summary(PrintWriter out, Map<String, SimResult> results) {
        int sessions = routes.stream().mapToInt(Workload.Route::sessions).sum();
        out.println("Configurations (side by side; times are simulated seconds of the time model):");
        Table t = new Table("config", "<format", "bytes/token", "peak sessions", "completed", "queued at end",
                "alloc failures", "preemptions", "recomputed tok", "evicted blocks", "idle held (end)",
                "peak used", "min headroom", "sim time", "out tok/s", "SLO met");
        for (SimResult r : results.values()) {
            t.row(r.config().name(), r.layout().format().name(), Sizes.count(r.layout().bytesPerToken()),
                    r.peakRunning() + "/" + sessions, Sizes.count(r.completions()), r.waitingAtEnd(),
                    Sizes.count(r.allocationFailures()), Sizes.count(r.preemptions()), Sizes.count(r.recomputedTokens()),
                    r.config().paged() ? Sizes.count(r.evictedBlocks()) : "-", Sizes.human(r.idleHeldBytesEnd()),
                    Sizes.human(r.peakUsedBytes()), Sizes.human(r.minHeadroomBytes()),
                    String.format(Locale.ROOT, "%.1f s", r.simulatedSeconds()),
                    Sizes.count(Math.round(r.generatedTokens() / r.simulatedSeconds())), percent(sloAttainment(r)));
        }
        t.print(out, "  ");
        out.println();
        out.println("What each row relieved and what it cost (against the row named):");
        Table rc = new Table("config", "<against", "<relieved", "<cost");
        for (SimResult r : results.values()) {
            SimResult b = r.config().comparedTo() == null ? null : results.get(r.config().comparedTo());
            rc.row(r.config().name(), b == null ? "-" : b.config().name().strip(), relieved(r, b), cost(r, b));
        }
        rc.print(out, "  ");
        out.println();
    }

    /** Share of decided requests, all routes, that met both SLOs. */
    static double sloAttainment(SimResult r) {
        long met = r.routes().stream().mapToLong(l -> l.sloMet).sum();
        long decided = r.routes().stream().mapToLong(l -> l.sloDecided).sum();
        return decided == 0 ? Double.NaN : (double) met / decided;
    }

    String relieved(SimResult r, SimResult b) {
        SimConfig c = r.config();
        if (b == null) {
            return "- (baseline)";
        }
        String deltas = deltas(r, b);
        List<String> parts = new ArrayList<>();
        boolean newTier = c.hostTier() && !b.config().hostTier() || c.sharedTier() && !b.config().sharedTier();
        if (newTier) {
            KvCacheLedger l = r.finalLedger();
            parts.add(String.format(Locale.ROOT, "%s prompt tokens served from the %s tier, not recomputed; recomputed tok %s -> %s",
                    Sizes.count(l.tierHitTokens()), c.hostTier() ? "host" : "shared", Sizes.count(b.recomputedTokens()),
                    Sizes.count(r.recomputedTokens())));
        }
        if (c.paged() && !b.config().paged()) {
            parts.add("blocks only for written tokens");
        }
        if (c.prefixCaching() && !b.config().prefixCaching()) {
            long hits = r.routes().stream().mapToLong(l -> l.prefixHitTokens).sum();
            parts.add(Sizes.count(hits) + " prompt tokens of admitted requests served from cache");
        }
        if (c.format() != null && c.format() != b.config().format()) {
            parts.add(String.format(Locale.ROOT, "bytes/token %s -> %s", Sizes.human(b.layout().bytesPerToken()),
                    Sizes.human(r.layout().bytesPerToken())));
        }
        if (c.window() && !b.config().window()) {
            parts.add(Sizes.count(r.windowReleasedBlocks()) + " blocks released from live sequences");
        }
        if (c.idleRelease() && !b.config().idleRelease()) {
            parts.add(String.format(Locale.ROOT,
                    "freed %d stalled streams after %d idle steps, holding %s between them (a shared block counted in each)",
                    r.idleReleased(), settings.idleDeadlineSteps(), Sizes.human(r.idleReleasedBytes())));
        }
        if (c.longPool() && !b.config().longPool()) {
            parts.add(String.format(Locale.ROOT, "long-context routes capped at %.0f%% of the pool, admitted apart",
                    settings.longShare() * 100));
        }
        if (c.swap() && !b.config().swap()) {
            parts.add(String.format(Locale.ROOT, "%s of %s preemptions swapped instead of recomputed; recomputed tok %s -> %s",
                    Sizes.count(r.swaps()), Sizes.count(r.preemptions()), Sizes.count(b.recomputedTokens()),
                    Sizes.count(r.recomputedTokens())));
        }
        parts.add(deltas);
        parts.add(latencyDeltas(r, b));
        parts.removeIf(String::isEmpty);
        return String.join("; ", parts);
    }

    String cost(SimResult r, SimResult b) {
        SimConfig c = r.config();
        List<String> parts = new ArrayList<>();
        if (!c.paged()) {
            return "reserves " + Sizes.count(settings.maxModelLen()) + " tokens ("
                    + Sizes.human(CapacityPlanner.contiguousBytes(r.layout(), 1, settings.maxModelLen()))
                    + ") per request up front";
        }
        if (c.hostTier() && (b == null || !b.config().hostTier()) || c.sharedTier() && (b == null || !b.config().sharedTier())) {
            KvCacheLedger l = r.finalLedger();
            TierStats t = l.tiers().getFirst();
            long up = t.loads() * r.layout().bytesPerBlock();
            long down = t.bytesMoved() - up;
            boolean host = c.hostTier();
            parts.add(String.format(Locale.ROOT, "%s blocks demoted, %s promoted: %s over the %s (%s down, %s up) "
                            + "= %.2f s of copies at %s GB/s; %s of %s %s tier held at the end, %s evicted from it",
                    Sizes.count(l.demotedBlocks()), Sizes.count(l.promotedBlocks()), Sizes.human(t.bytesMoved()),
                    host ? "host link" : "network", Sizes.human(down), Sizes.human(up),
                    host ? settings.copySeconds(t.bytesMoved()) : settings.networkSeconds(t.bytesMoved()),
                    HardwareProfile.num(host ? settings.hostLinkGBps() : settings.time().hardware().networkGBps()),
                    Sizes.human(t.bytes()), Sizes.human(t.capacityBytes()), host ? "host" : "shared",
                    Sizes.count(t.evictions())));
        }
        if (b != null && !b.config().paged()) {
            parts.add(String.format(Locale.ROOT, "%.2f%% of held slots empty on average (partial last blocks); "
                            + "%s preemptions recompute %s tokens = %.2f s of prefill", r.avgSlotWaste() * 100,
                    Sizes.count(r.preemptions()), Sizes.count(r.recomputedTokens()), r.recomputeSeconds()));
        }
        if (c.prefixCaching() && b != null && b.config().paged() && !b.config().prefixCaching()) {
            parts.add(String.format(Locale.ROOT, "%s cached blocks evicted for reuse; a hash per full block",
                    Sizes.count(r.evictedBlocks())));
        }
        if (c.format() != null && (b == null || c.format() != b.config().format())) {
            parts.add(quality(c.format(), r.layout()));
        }
        if (c.window() && (b == null || !b.config().window())) {
            parts.add(String.format(Locale.ROOT, "attention sees only %d sinks + the last %s tokens: %s tokens lost (%s)",
                    settings.sinkTokens(), Sizes.count(settings.windowTokens()),
                    Sizes.count(r.routes().stream().mapToLong(l -> l.tokensLost).sum()), lostPerRoute(r)));
        }
        if (c.idleRelease() && (b == null || !b.config().idleRelease())) {
            long tokens = r.routes().stream().mapToLong(l -> l.tokensLost).sum();
            parts.add("a stream that was only slow loses its KV: " + Sizes.count(tokens) + " tokens to re-prefill");
        }
        if (c.longPool() && (b == null || !b.config().longPool())) {
            parts.add("long-context requests wait for their share instead of the whole pool");
        }
        if (c.swap() && (b == null || !b.config().swap())) {
            parts.add(String.format(Locale.ROOT, "%s over the host link = %.2f s of stalled steps; %.2f s of recompute left",
                    Sizes.human(r.transferBytes()), r.transferSeconds(), r.recomputeSeconds()));
        }
        if (b != null) {
            parts.add(latencyCosts(r, b));
        }
        parts.removeIf(String::isEmpty);
        return parts.isEmpty() ? "-" : String.join("; ", parts);
    }

    private String quality(KvFormat f, KvLayout l) {
        String bits = String.format(Locale.ROOT, "%.2f bits/element", f.bitsPerElement(l.headDim(), l.blockTokens()));
        AccuracyReport.Row row = quality == null ? null : quality.row(f);
        if (row == null) {
            return "lossy: " + bits + " (" + (quality != null && quality.failure() != null ? quality.failure()
                    : "the accuracy harness does not measure " + f.name()) + ")";
        }
        return String.format(Locale.ROOT, "lossy: %s, attention-output error %.2f%%, K error %.2f%%, V error %.2f%% (%s)",
                bits, row.outputError() * 100, row.keyError() * 100, row.valueError() * 100, QualityFigures.source());
    }

    private static String lostPerRoute(SimResult r) {
        List<String> p = new ArrayList<>();
        for (RouteLedger l : r.routes()) {
            if (l.tokensLost > 0) {
                p.add(l.route.name() + " " + Sizes.count(l.tokensLost));
            }
        }
        return p.isEmpty() ? "none" : String.join(", ", p);
    }

    private static String deltas(SimResult r, SimResult b) {
        List<String> parts = new ArrayList<>();
        delta(parts, "peak sessions", r.peakRunning(), b.peakRunning());
        delta(parts, "completed", r.completions(), b.completions());
        delta(parts, "preemptions", r.preemptions(), b.preemptions());
        delta(parts, "alloc failures", r.allocationFailures(), b.allocationFailures());
        return parts.isEmpty() ? "no change in sessions, completions or failures" : String.join(", ", parts);
    }

    /** The latency changes that improved: TTFT p99 and ITL p99 per route, and SLO attainment. */
    private static String latencyDeltas(SimResult r, SimResult b) {
        return latencyChanges(r, b, true);
    }

    /** The latency changes that got worse. */
    private static String latencyCosts(SimResult r, SimResult b) {
        return latencyChanges(r, b, false);
    }

    private static String latencyChanges(SimResult r, SimResult b, boolean better) {
        List<String> parts = new ArrayList<>();
        for (RouteLedger l : r.routes()) {
            RouteLedger o = b.route(l.route.name());
            change(parts, l.route.name() + " TTFT p99", o.ttft.percentile(99), l.ttft.percentile(99), better, false);
            change(parts, l.route.name() + " ITL p99", o.itl.percentile(99), l.itl.percentile(99), better, true);
        }
        double was = sloAttainment(b);
        double is = sloAttainment(r);
        if (!Double.isNaN(was) && !Double.isNaN(is) && Math.abs(is - was) >= 0.005 && (is > was) == better) {
            parts.add("SLO met " + percent(was) + " -> " + percent(is));
        }
        return String.join(", ", parts);
    }

    /** Adds "what a -> b" when the change is at least 5% in the asked direction. */
    private static void change(List<String> parts, String what, double was, double is, boolean better, boolean millis) {
        if (Double.isNaN(was) || Double.isNaN(is) || was == is) {
            return;
        }
        double rel = Math.abs(is - was) / Math.max(Math.abs(was), 1e-9);
        if (rel < 0.05 || (is < was) != better) {
            return;
        }
        parts.add(what + " " + (millis ? millis(was) + " -> " + millis(is) : seconds(was) + " -> " + seconds(is)));
    }

    private static void delta(List<String> parts, String what, long now, long before) {
        if (now != before) {
            parts.add(String.format(Locale.ROOT, "%s %,d -> %,d", what, before, now));
        }
    }

    void latency(PrintWriter out, Map<String, SimResult> results) {
        out.println("Latency per route (simulated seconds; queue wait and TTFT per request, ITL per generated token):");
        Table t = new Table("config", "<route", "arrived", "first tokens", "queue p50", "queue p99", "TTFT p50", "TTFT p99",
                "ITL p50", "ITL p99", "out tok/s", "SLO met", "tokens lost", "refused", "truncated");
        for (SimResult r : results.values()) {
            boolean first = true;
            double secs = r.simulatedSeconds();
            for (RouteLedger l : r.routes()) {
                t.row(first ? r.config().name() : "", l.route.name(), Sizes.count(l.arrivals), Sizes.count(l.ttft.count()),
                        seconds(l.queueWait.percentile(50)), seconds(l.queueWait.percentile(99)),
                        seconds(l.ttft.percentile(50)), seconds(l.ttft.percentile(99)),
                        millis(l.itl.percentile(50)), millis(l.itl.percentile(99)),
                        Sizes.count(Math.round(l.generatedTokens / secs)), percent(l.sloAttainment()),
                        Sizes.count(l.tokensLost), Sizes.count(l.refused), Sizes.count(l.truncated));
                first = false;
            }
        }
        t.print(out, "  ");
        // the requests over the max model length, named once per route (the counts are the same in every row)
        SimResult any = results.values().iterator().next();
        for (RouteLedger l : any.routes()) {
            if (l.refused > 0 || l.truncated > 0) {
                out.printf(Locale.ROOT, "  note: route '%s': %s of %s arrivals over the max model length of %s were %s%n",
                        l.route.name(), Sizes.count(l.refused + l.truncated), Sizes.count(l.arrivals),
                        Sizes.count(settings.maxModelLen()), settings.truncate() ? "truncated to it" : "refused");
            }
        }
        out.println();
    }

    /** The fleet table ({@link FleetSimulation}): N instances behind random routing or the prefix router. */
    void fleet(PrintWriter out, List<FleetSimulation.Row> rows) {
        out.println("Fleet (" + rows.get(0).instances() + " instances of the whole budget each, requests in a fixed interleaved order;"
                + " a shared tier is written on publish (behind) and its loads priced at the network, " + settings.time().hardware().networkGBps()
                + " GB/s):");
        Table t = new Table("fleet", "requests", "prompt tokens", "own-pool hits", "shared-tier hits", "hit rate",
                "refused", "prefill time", "tier loads", "load time", "tier writes");
        for (FleetSimulation.Row r : rows) {
            t.row(r.name(), Sizes.count(r.requests()), Sizes.count(r.promptTokens()), Sizes.count(r.localHitTokens()),
                    Sizes.count(r.tierHitTokens()), percent(r.hitRate()), Sizes.count(r.refused()),
                    seconds(r.prefillSeconds()), Sizes.human(r.networkReadBytes()), seconds(r.networkReadSeconds()),
                    Sizes.human(r.networkWrittenBytes()));
        }
        t.print(out, "  ");
        if (rows.size() >= 2) {
            FleetSimulation.Row a = rows.get(0);
            FleetSimulation.Row b = rows.get(rows.size() - 1);
            out.printf(Locale.ROOT, "  %s against %s: %s more prompt tokens served from cache, %s of prefill saved,"
                            + " %s of network loads spent%n", b.name(), a.name(),
                    Sizes.count(b.localHitTokens() + b.tierHitTokens() - a.localHitTokens() - a.tierHitTokens()),
                    seconds(a.prefillSeconds() - b.prefillSeconds()), seconds(b.networkReadSeconds() - a.networkReadSeconds()));
        }
        out.println();
    }

    void perRoute(PrintWriter out, Map<String, SimResult> results) {
        out.println("Memory ledger per route (KV: distinct blocks the route's running requests hold, averaged over steps):");
        Table t = new Table("config", "<route", "sessions", "peak running", "avg active tok", "KV avg", "KV peak",
                "admitted", "completed", "alloc fail", "preempted", "swapped", "recomputed", "rolled back", "prefix hits",
                "evicted", "idle held avg");
        for (SimResult r : results.values()) {
            boolean first = true;
            for (RouteLedger l : r.routes()) {
                t.row(first ? r.config().name() : "", l.route.name(), l.route.sessions(), l.peakRunning,
                        Sizes.count(Math.round(l.avgActiveTokens())), Sizes.human(l.avgHeldBytes(settings.steps())),
                        Sizes.human(l.peakHeldBytes), Sizes.count(l.admissions), Sizes.count(l.completions),
                        Sizes.count(l.allocationFailures), Sizes.count(l.preemptions), Sizes.count(l.swaps),
                        Sizes.count(l.recomputedTokens), Sizes.count(l.rolledBackTokens), Sizes.count(l.prefixHitTokens),
                        r.config().paged() ? Sizes.count(l.evictedBlocks) : "-",
                        l.route.idle() ? Sizes.human(l.idleHeldByteSteps / settings.steps()) : "-");
                first = false;
            }
        }
        t.print(out, "  ");
        out.println();
    }

    private static final String RAMP = " .:-=+*#%@";

    void overTime(PrintWriter out, Map<String, SimResult> results) {
        int steps = settings.steps();
        int cols = Math.min(60, steps);
        out.printf(Locale.ROOT, "Memory in use over time (%d steps in %d columns, each the column's peak; ' ' empty .. '@' full pool):%n",
                steps, cols);
        Table t = new Table("config", "<used", "min headroom", "<at step");
        for (SimResult r : results.values()) {
            long[] used = r.usedBytes();
            StringBuilder sb = new StringBuilder("|");
            for (int c = 0; c < cols; c++) {
                int from = (int) ((long) c * used.length / cols);
                int to = (int) ((long) (c + 1) * used.length / cols);
                long peak = 0;
                for (int i = from; i < Math.max(to, from + 1); i++) {
                    peak = Math.max(peak, used[i]);
                }
                int level = (int) Math.min(RAMP.length() - 1, Math.round((double) peak / r.poolBytes() * (RAMP.length() - 1)));
                sb.append(RAMP.charAt(level));
            }
            sb.append('|');
            int at = 0;
            for (int i = 1; i < used.length; i++) {
                if (used[i] > used[at]) {
                    at = i;
                }
            }
            t.row(r.config().name(), sb, Sizes.human(r.minHeadroomBytes()), at);
        }
        t.print(out, "  ");
    }

    static String seconds(double s) {
        if (Double.isNaN(s)) {
            return "-";
        }
        if (s < 1) {
            return String.format(Locale.ROOT, "%.0f ms", s * 1000);
        }
        return String.format(Locale.ROOT, s < 100 ? "%.2f s" : "%.0f s", s);
    }

    static String millis(double s) {
        return Double.isNaN(s) ? "-" : String.format(Locale.ROOT, s * 1000 < 100 ? "%.1f ms" : "%.0f ms", s * 1000);
    }

    static String percent(double f) {
        return Double.isNaN(f) ? "-" : String.format(Locale.ROOT, "%.0f%%", f * 100);
    }
}
