package dev.kvcache.cli;

import dev.kvcache.CapacityPlanner;
import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheManager;
import dev.kvcache.TierStats;
import dev.kvcache.metrics.KvCacheJfr;
import dev.kvcache.KvFormat;
import dev.kvcache.KvLayout;
import jdk.jfr.Recording;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code kvcache simulate}: replays a serving workload through the real block manager under each
 * configuration and prints, side by side, what each one relieved and what it cost; then the
 * per-route ledger and memory over time. See {@link Simulator} for the model and {@link Workload}
 * for the JSONL schema.
 */
@Command(name = "simulate", mixinStandardHelpOptions = true,
        description = {"Replay a serving workload through the real KvCacheManager, configurations side by side.",
                "Contiguous preallocation (the baseline), paged, + prefix sharing, + host tier,",
                "+ FP8 / Q4_0 / KIVI-2, + sliding window, + idle release: what each relieved",
                "and what it cost, per route and over time."})
final class SimulateCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    @Mixin
    LayoutOptions layoutOptions;

    @Option(names = "--budget", paramLabel = "SIZE", defaultValue = "80GiB", converter = LayoutOptions.SizeConverter.class,
            description = "KV memory of the GPU (default: ${DEFAULT-VALUE})")
    long budget;

    @Option(names = "--workload", paramLabel = "FILE.jsonl",
            description = "routes, one JSON object per line (default: the built-in workload)")
    Path workload;

    @Option(names = "--steps", defaultValue = "120", description = "scheduler steps to replay (default: ${DEFAULT-VALUE})")
    int steps;

    @Option(names = "--decode-chunk", paramLabel = "TOKENS", defaultValue = "64",
            description = "decode tokens each running request appends per step (default: ${DEFAULT-VALUE})")
    int decodeChunk;

    @Option(names = "--prefill-chunk", paramLabel = "TOKENS", defaultValue = "8192",
            description = "tokens per prefill append (chunked prefill) (default: ${DEFAULT-VALUE})")
    int prefillChunk;

    @Option(names = "--max-model-len", paramLabel = "TOKENS",
            description = "what the contiguous baseline preallocates per request (default: the longest route's activeTokens)")
    Integer maxModelLen;

    @Option(names = "--window", paramLabel = "TOKENS", defaultValue = "4096",
            description = "sliding window of the '+ sliding window' row (default: ${DEFAULT-VALUE})")
    int window;

    @Option(names = "--sinks", paramLabel = "TOKENS", defaultValue = "4",
            description = "attention-sink tokens kept besides the window (default: ${DEFAULT-VALUE})")
    int sinks;

    @Option(names = "--idle-deadline", paramLabel = "STEPS", defaultValue = "10",
            description = "steps without an append before '+ idle release' frees a stalled stream (default: ${DEFAULT-VALUE})")
    int idleDeadline;

    @Option(names = "--watermark", defaultValue = "0",
            description = "fraction of the pool kept free when admitting; 0 fills the pool and lets decode growth preempt (default: ${DEFAULT-VALUE})")
    double watermark;

    @Option(names = "--host-budget", paramLabel = "SIZE",
            description = "host memory of the '+ host tier' row's tier, which keeps evicted prefix blocks (default: 2x --budget)")
    String hostBudget;

    @Option(names = "--host-link", paramLabel = "GB/s", defaultValue = "64",
            description = "host-link bandwidth per direction in GB/s (10^9 bytes/s), which prices the host tier's copies (default: ${DEFAULT-VALUE}, PCIe Gen5 x16)")
    String hostLink;

    @Option(names = "--chart", paramLabel = "FILE.svg", description = "write memory in use over time as an SVG chart")
    Path chart;

    @Option(names = "--jfr", paramLabel = "FILE.jfr",
            description = "record JFR events into this file: a dev.kvcache.Ledger per step and configuration, and every refusal, preemption and idle release")
    Path jfr;

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        // output paths are checked before the run, not found unwritable after it
        checkWritable("--chart", chart);
        checkWritable("--jfr", jfr);
        LayoutOptions.Resolved model = layoutOptions.resolve("Qwen2.5-32B");
        KvLayout base = model.layout();
        List<Workload.Route> routes = workload == null ? Workload.defaults() : Workload.read(workload);
        int longest = routes.stream().mapToInt(Workload.Route::activeTokens).max().orElseThrow();
        int maxLen = maxModelLen != null ? maxModelLen : longest;
        Simulator.Settings settings = new Simulator.Settings(budget, steps, decodeChunk, prefillChunk, maxLen,
                sinks, window, idleDeadline, watermark, hostBudgetBytes(), hostLinkGBps());
        if (settings.hostBudgetBytes() < base.bytesPerBlock()) {
            throw new IllegalArgumentException("--host-budget of " + Sizes.human(settings.hostBudgetBytes())
                    + " holds less than one block (" + Sizes.human(base.bytesPerBlock()) + ")");
        }
        Simulator sim = new Simulator(base, routes, settings);

        header(out, model, base, routes, settings);

        List<Simulator.Config> configs = Simulator.defaultConfigs(base.format());
        Map<String, Simulator.Result> results = new LinkedHashMap<>();
        Recording recording = null;
        Simulator.Observer observer = new Simulator.Observer() {
        };
        if (jfr != null) {
            recording = new Recording();
            recording.setName("kvcache simulate");
            // BlockStored/BlockRemoved are left out: a default run publishes and evicts over a
            // million blocks, which would make the file hundreds of MB; the ledger counts them
            for (String e : List.of("dev.kvcache.PrefixCacheCleared", "dev.kvcache.AppendRefused",
                    "dev.kvcache.SequencePreempted", "dev.kvcache.IdleReleased", "dev.kvcache.TokensDropped")) {
                recording.enable(e);
            }
            // committed once per simulated step by JfrObserver; the wall-clock period would only add noise
            recording.enable("dev.kvcache.Ledger").withPeriod(java.time.Duration.ofHours(1));
            recording.start();
            observer = new JfrObserver();
        }
        long t0 = System.nanoTime();
        try {
            for (Simulator.Config c : configs) {
                results.put(c.name(), sim.run(c, observer));
            }
        } finally {
            if (recording != null) {
                recording.stop();
                recording.dump(jfr);
                recording.close();
            }
        }
        long elapsedMs = (System.nanoTime() - t0) / 1_000_000;

        summary(out, results, settings, routes);
        perRoute(out, results, settings);
        overTime(out, results);
        out.printf(Locale.ROOT, "%n%d configurations replayed in %,d ms (%s, %d CPUs).%n", results.size(), elapsedMs,
                "Java " + Runtime.version().feature(), Runtime.getRuntime().availableProcessors());
        if (chart != null) {
            List<SvgChart.Series> series = new ArrayList<>();
            for (Simulator.Result r : results.values()) {
                series.add(new SvgChart.Series(r.config().name().strip(), r.usedBytes()));
            }
            String title = "KV memory in use: " + model.name() + ", " + Sizes.human(budget) + " budget";
            Files.writeString(chart, SvgChart.render(title, budget, series), StandardCharsets.UTF_8);
            out.println("chart written to " + chart);
        }
        if (jfr != null) {
            out.println("JFR recording written to " + jfr + " (jfr print --events dev.kvcache.Ledger " + jfr + ")");
        }
        out.flush();
        return 0;
    }

    /**
     * One line naming the flag when {@code file} could not be written: a directory, in a directory
     * that does not exist, or not writable. Nothing is created.
     */
    static void checkWritable(String flag, Path file) {
        if (file == null) {
            return;
        }
        if (Files.isDirectory(file)) {
            throw new IllegalArgumentException(flag + " " + file + " is a directory; give a file name");
        }
        Path dir = file.toAbsolutePath().getParent();
        if (dir == null || !Files.isDirectory(dir)) {
            throw new IllegalArgumentException(flag + " " + file + ": directory " + dir + " does not exist");
        }
        if (Files.exists(file) ? !Files.isWritable(file) : !Files.isWritable(dir)) {
            throw new IllegalArgumentException(flag + " " + file + " is not writable");
        }
    }

    /** {@code --host-budget}, or twice {@code --budget}; one line naming the flag when it is not a size > 0. */
    private long hostBudgetBytes() {
        if (hostBudget == null) {
            return budget > Long.MAX_VALUE / 2 ? Long.MAX_VALUE : 2 * budget;
        }
        long b;
        try {
            b = Sizes.parse(hostBudget);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--host-budget: " + e.getMessage());
        }
        if (b <= 0) {
            throw new IllegalArgumentException("--host-budget must be > 0 bytes, got " + hostBudget);
        }
        return b;
    }

    private static final java.util.regex.Pattern DECIMAL = java.util.regex.Pattern.compile("-?\\d+(\\.\\d+)?");

    /** {@code --host-link} in GB/s; one line naming the flag when it is not a number > 0. */
    private double hostLinkGBps() {
        String v = hostLink.strip();
        if (!DECIMAL.matcher(v).matches()) {
            throw new IllegalArgumentException("--host-link: '" + hostLink
                    + "' is not a bandwidth; give GB/s per direction, e.g. 64 (PCIe Gen5 x16) or 32 (Gen4)");
        }
        double g = Double.parseDouble(v);
        if (!(g > 0) || !Double.isFinite(g)) {
            throw new IllegalArgumentException("--host-link must be a finite number > 0 (GB/s), got " + hostLink);
        }
        return g;
    }

    /** Attaches a JFR bridge to each manager and commits one ledger event per step. */
    private static final class JfrObserver implements Simulator.Observer {
        private final Map<Simulator.Config, KvCacheJfr> bridges = new HashMap<>();

        @Override
        public void managerCreated(Simulator.Config config, KvCacheManager manager) {
            bridges.put(config, KvCacheJfr.attach(manager, config.name().strip()));
        }

        @Override
        public void stepDone(Simulator.Config config, int step) {
            KvCacheJfr b = bridges.get(config);
            if (b != null) {
                b.emit();
            }
        }

        @Override
        public void managerClosing(Simulator.Config config, KvCacheManager manager) {
            KvCacheJfr b = bridges.remove(config);
            if (b != null) {
                b.close();
            }
        }
    }

    private void header(PrintWriter out, LayoutOptions.Resolved model, KvLayout base, List<Workload.Route> routes,
                        Simulator.Settings s) {
        out.printf(Locale.ROOT, "model     %s: %d layers x %d KV heads x %d head dim, %s = %s bytes/token (%s)%n",
                model.name(), base.layers(), base.kvHeads(), base.headDim(), base.format().name(),
                Sizes.count(base.bytesPerToken()), Sizes.human(base.bytesPerToken()));
        out.printf(Locale.ROOT, "budget    %s of KV memory; blocks of %d tokens (%s each)%n",
                Sizes.human(s.budgetBytes()), base.blockTokens(), Sizes.human(base.bytesPerBlock()));
        out.printf(Locale.ROOT, "host      %s of host memory for '+ host tier' (%s blocks); host link %s GB/s per direction%n",
                Sizes.human(s.hostBudgetBytes()), Sizes.count(s.hostBudgetBytes() / base.bytesPerBlock()),
                gbps(s.hostLinkGBps()));
        out.printf(Locale.ROOT, "time      %d steps; a step = each running request appends %d decode tokens; "
                        + "prefill in appends of %s tokens%n", s.steps(), s.decodeChunk(), Sizes.count(s.prefillChunk()));
        out.printf(Locale.ROOT, "workload  %s%n", workload == null ? "built-in" : workload.toString());
        Table t = new Table("route", "sessions", "active tokens", "shared prefix", "decode", "<idle", "priority",
                "KV at full concurrency");
        long sessions = 0;
        List<CapacityPlanner.Route> planned = new ArrayList<>();
        for (Workload.Route r : routes) {
            CapacityPlanner.Route pr = new CapacityPlanner.Route(r.name(), r.sessions(), r.activeTokens());
            planned.add(pr);
            sessions += r.sessions();
            t.row(r.name(), r.sessions(), Sizes.count(r.activeTokens()), Sizes.count(r.sharedPrefix()),
                    Sizes.count(r.decode()), r.idle() ? "yes (never finishes)" : "no", r.priority(),
                    Sizes.human(pr.kvBytes(base)));
        }
        t.print(out, "  ");
        out.printf(Locale.ROOT, "  all routes at once: %s sessions, %s of KV at %s (CapacityPlanner.kvBytes) against a %s budget%n",
                Sizes.count(sessions), Sizes.human(CapacityPlanner.kvBytes(base, planned)), base.format().name(),
                Sizes.human(s.budgetBytes()));
        out.println();
    }

    private void summary(PrintWriter out, Map<String, Simulator.Result> results, Simulator.Settings s,
                         List<Workload.Route> routes) {
        int sessions = routes.stream().mapToInt(Workload.Route::sessions).sum();
        out.println("Configurations (side by side):");
        Table t = new Table("config", "<format", "bytes/token", "peak sessions", "completed", "queued at end",
                "alloc failures", "preemptions", "recomputed tok", "evicted blocks", "idle held (end)",
                "peak used", "min headroom");
        for (Simulator.Result r : results.values()) {
            t.row(r.config().name(), r.layout().format().name(), Sizes.count(r.layout().bytesPerToken()),
                    r.peakRunning() + "/" + sessions, Sizes.count(r.completions()), r.waitingAtEnd(),
                    Sizes.count(r.allocationFailures()), Sizes.count(r.preemptions()), Sizes.count(r.recomputedTokens()),
                    r.config().paged() ? Sizes.count(r.evictedBlocks()) : "-", Sizes.human(r.idleHeldBytesEnd()),
                    Sizes.human(r.peakUsedBytes()), Sizes.human(r.minHeadroomBytes()));
        }
        t.print(out, "  ");
        out.println();
        out.println("What each row relieved and what it cost (against the row named):");
        Table rc = new Table("config", "<against", "<relieved", "<cost");
        for (Simulator.Result r : results.values()) {
            Simulator.Result b = r.config().comparedTo() == null ? null : results.get(r.config().comparedTo());
            rc.row(r.config().name(), b == null ? "-" : b.config().name().strip(), relieved(r, b, s), cost(r, b, s));
        }
        rc.print(out, "  ");
        out.println();
    }

    private static String relieved(Simulator.Result r, Simulator.Result b, Simulator.Settings s) {
        Simulator.Config c = r.config();
        if (b == null) {
            return "- (baseline)";
        }
        String deltas = deltas(r, b);
        if (c.hostTier()) {
            KvCacheLedger l = r.finalLedger();
            return String.format(Locale.ROOT, "%s prompt tokens served from the host tier, not recomputed; recomputed tok %s -> %s; %s",
                    Sizes.count(l.tierHitTokens()), Sizes.count(b.recomputedTokens()), Sizes.count(r.recomputedTokens()),
                    deltas);
        }
        if (!c.prefixCaching() && c.paged()) {
            return "blocks only for written tokens; " + deltas;
        }
        if (c.prefixCaching() && !b.config().prefixCaching()) {
            long hits = r.routes().stream().mapToLong(l -> l.prefixHitTokens).sum();
            return Sizes.count(hits) + " prompt tokens of admitted requests served from cache; " + deltas;
        }
        if (c.format() != null) {
            return String.format(Locale.ROOT, "bytes/token %s -> %s; %s", Sizes.human(b.layout().bytesPerToken()),
                    Sizes.human(r.layout().bytesPerToken()), deltas);
        }
        if (c.window()) {
            return Sizes.count(r.windowReleasedBlocks()) + " blocks released from live sequences; " + deltas;
        }
        if (c.idleRelease()) {
            return String.format(Locale.ROOT, "freed %d stalled streams holding %s after %d idle steps; %s",
                    r.idleReleased(), Sizes.human(r.idleReleasedBytes()), s.idleDeadlineSteps(), deltas);
        }
        return deltas;
    }

    private static String cost(Simulator.Result r, Simulator.Result b, Simulator.Settings s) {
        Simulator.Config c = r.config();
        if (c.hostTier()) {
            KvCacheLedger l = r.finalLedger();
            TierStats t = l.tiers().getFirst();
            long up = t.loads() * r.layout().bytesPerBlock();
            long down = t.bytesMoved() - up;
            return String.format(Locale.ROOT, "%s blocks demoted, %s promoted: %s over the host link (%s down, %s up) "
                            + "= %.2f s of copies at %s GB/s; %s of %s host tier held at the end, %s evicted from it",
                    Sizes.count(l.demotedBlocks()), Sizes.count(l.promotedBlocks()), Sizes.human(t.bytesMoved()),
                    Sizes.human(down), Sizes.human(up), s.copySeconds(t.bytesMoved()), gbps(s.hostLinkGBps()),
                    Sizes.human(t.bytes()), Sizes.human(t.capacityBytes()), Sizes.count(t.evictions()));
        }
        if (!c.paged()) {
            return "reserves " + Sizes.count(s.maxModelLen()) + " tokens ("
                    + Sizes.human(CapacityPlanner.contiguousBytes(r.layout(), 1, s.maxModelLen()))
                    + ") per request up front";
        }
        if (!c.prefixCaching()) {
            return String.format(Locale.ROOT, "%.2f%% of held slots empty on average (partial last blocks); "
                    + "%s preemptions recompute %s tokens", r.avgSlotWaste() * 100, Sizes.count(r.preemptions()),
                    Sizes.count(r.recomputedTokens()));
        }
        if (c.format() != null) {
            KvFormat f = c.format();
            return String.format(Locale.ROOT, "lossy: %.2f bits/element with scales (base %.2f)",
                    f.bitsPerElement(r.layout().headDim(), r.layout().blockTokens()),
                    b.layout().format().bitsPerElement(b.layout().headDim(), b.layout().blockTokens()));
        }
        if (c.window()) {
            return String.format(Locale.ROOT, "attention sees only %d sinks + the last %s tokens: %s tokens dropped",
                    s.sinkTokens(), Sizes.count(s.windowTokens()),
                    Sizes.count(r.windowReleasedBlocks() * r.layout().blockTokens()));
        }
        if (c.idleRelease()) {
            long tokens = r.routes().stream().mapToLong(l -> l.idleReleased * l.route.activeTokens()).sum();
            return "a stream that was only slow loses its KV: " + Sizes.count(tokens) + " tokens to re-prefill";
        }
        return String.format(Locale.ROOT, "%s cached blocks evicted for reuse; a hash per full block",
                Sizes.count(r.evictedBlocks()));
    }

    /** "64", "12.5": a bandwidth as typed, without a trailing ".0". */
    private static String gbps(double g) {
        return g == Math.rint(g) && g < 1e15 ? String.format(Locale.ROOT, "%.0f", g) : String.valueOf(g);
    }

    private static String deltas(Simulator.Result r, Simulator.Result b) {
        List<String> parts = new ArrayList<>();
        delta(parts, "peak sessions", r.peakRunning(), b.peakRunning());
        delta(parts, "completed", r.completions(), b.completions());
        delta(parts, "preemptions", r.preemptions(), b.preemptions());
        delta(parts, "alloc failures", r.allocationFailures(), b.allocationFailures());
        return parts.isEmpty() ? "no change in sessions, completions or failures" : String.join(", ", parts);
    }

    private static void delta(List<String> parts, String what, long now, long before) {
        if (now != before) {
            parts.add(String.format(Locale.ROOT, "%s %,d -> %,d", what, before, now));
        }
    }

    private void perRoute(PrintWriter out, Map<String, Simulator.Result> results, Simulator.Settings s) {
        out.println("Ledger per route (KV: distinct blocks the route's running requests hold, averaged over steps):");
        Table t = new Table("config", "<route", "sessions", "peak running", "avg active tok", "KV avg", "KV peak",
                "admitted", "completed", "alloc fail", "preempted", "recomputed", "rolled back", "prefix hits", "evicted",
                "idle held avg");
        for (Simulator.Result r : results.values()) {
            boolean first = true;
            for (Simulator.RouteLedger l : r.routes()) {
                t.row(first ? r.config().name() : "", l.route.name(), l.route.sessions(), l.peakRunning,
                        Sizes.count(Math.round(l.avgActiveTokens())), Sizes.human(l.avgHeldBytes(s.steps())),
                        Sizes.human(l.peakHeldBytes), Sizes.count(l.admissions), Sizes.count(l.completions),
                        Sizes.count(l.allocationFailures), Sizes.count(l.preemptions), Sizes.count(l.recomputedTokens),
                        Sizes.count(l.rolledBackTokens), Sizes.count(l.prefixHitTokens), r.config().paged() ? Sizes.count(l.evictedBlocks) : "-",
                        l.route.idle() ? Sizes.human(l.idleHeldByteSteps / s.steps()) : "-");
                first = false;
            }
        }
        t.print(out, "  ");
        out.println();
    }

    private static final String RAMP = " .:-=+*#%@";

    private void overTime(PrintWriter out, Map<String, Simulator.Result> results) {
        int cols = Math.min(60, steps);
        out.printf(Locale.ROOT, "Memory in use over time (%d steps in %d columns, each the column's peak; ' ' empty .. '@' full pool):%n",
                steps, cols);
        Table t = new Table("config", "<used", "min headroom", "<at step");
        for (Simulator.Result r : results.values()) {
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
}
