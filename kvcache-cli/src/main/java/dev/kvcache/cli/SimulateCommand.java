package dev.kvcache.cli;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvLayout;
import dev.kvcache.metrics.KvCacheJfr;
import jdk.jfr.Recording;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.regex.Pattern;

/**
 * {@code kvcache simulate}: replays a serving workload through the real block manager under each
 * configuration and prints, side by side, what each one relieved and what it cost in memory,
 * seconds and quality; then the per-route ledger, latencies and memory over time. This class reads
 * the options and runs the {@link Simulator}; {@link SimulationReport} prints the tables,
 * {@link SimulationExport} writes JSON and CSV, {@link SimulationCharts} the charts.
 */
@Command(name = "simulate", mixinStandardHelpOptions = true,
        description = {"Replay a serving workload through the real KvCacheManager, configurations side by side.",
                "Contiguous preallocation (the baseline), paged, + prefix sharing, + host / shared tier, + FP8 / Q4_0 / KIVI-2,",
                "+ sliding window, + idle release, + long-context pool, + swap: what each relieved and what it cost",
                "in memory, seconds (a roofline time model of --gpu) and quality, per route and over time.",
                "Levers compose with --configs, e.g. \"paged+prefix+fp8+idle,paged+prefix+longpool\"; lever names:",
                "contiguous, paged, prefix, tier, shared, fp8|fp8e5|q8|q4|kivi4|kivi2, window, idle, longpool, swap."})
final class SimulateCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    @Mixin
    LayoutOptions layoutOptions;

    @Option(names = "--budget", paramLabel = "SIZE", defaultValue = "80GiB", converter = LayoutOptions.SizeConverter.class,
            description = "KV memory of the GPUs (default: ${DEFAULT-VALUE})")
    long budget;

    @Option(names = "--workload", paramLabel = "FILE.jsonl",
            description = "routes, one JSON object per line (default: the built-in workload)")
    Path workload;

    @Option(names = "--configs", paramLabel = "LIST",
            description = "comma-separated configurations of '+'-joined levers (default: the seed's comparison)")
    String configs;

    @Option(names = "--steps", defaultValue = "120", description = "scheduler steps to replay (default: ${DEFAULT-VALUE})")
    int steps;

    @Option(names = "--decode-chunk", paramLabel = "TOKENS", defaultValue = "64",
            description = "engine iterations per step: decode tokens each running request appends per step (default: ${DEFAULT-VALUE})")
    int decodeChunk;

    @Option(names = "--prefill-chunk", paramLabel = "TOKENS", defaultValue = "8192",
            description = "tokens per prefill append and per iteration's prefill budget (chunked prefill) (default: ${DEFAULT-VALUE})")
    int prefillChunk;

    @Option(names = "--max-model-len", paramLabel = "TOKENS",
            description = "the engine's max model length, what contiguous preallocates (default: the longest route, at most the model's max context)")
    Integer maxModelLen;

    @Option(names = "--over-context", paramLabel = "refuse|truncate", defaultValue = "refuse",
            description = "a request over the max model length is refused (a fixed-length route is an error) or truncated (default: ${DEFAULT-VALUE})")
    String overContext;

    @Option(names = "--window", paramLabel = "TOKENS", defaultValue = "4096",
            description = "sliding window of the 'window' lever (default: ${DEFAULT-VALUE})")
    int window;

    @Option(names = "--sinks", paramLabel = "TOKENS", defaultValue = "4",
            description = "attention-sink tokens kept besides the window (default: ${DEFAULT-VALUE})")
    int sinks;

    @Option(names = "--idle-deadline", paramLabel = "STEPS", defaultValue = "10",
            description = "steps without an append before 'idle' frees a stalled stream (default: ${DEFAULT-VALUE})")
    int idleDeadline;

    @Option(names = "--watermark", defaultValue = "0",
            description = "fraction of the pool kept free when admitting; 0 fills the pool and lets decode growth preempt (default: ${DEFAULT-VALUE})")
    double watermark;

    @Option(names = "--policy", paramLabel = "lru|priority", defaultValue = "lru",
            description = "eviction policy of the prefix cache (default: ${DEFAULT-VALUE})")
    String policy;

    @Option(names = "--long-threshold", paramLabel = "TOKENS", defaultValue = "8192",
            description = "'longpool': a route whose typical prompt has this many tokens is long-context (default: ${DEFAULT-VALUE})")
    int longThreshold;

    @Option(names = "--long-share", paramLabel = "FRACTION", defaultValue = "0.75",
            description = "'longpool': the share of the pool long-context routes may hold (tenant quota) (default: ${DEFAULT-VALUE})")
    double longShare;

    @Option(names = "--host-budget", paramLabel = "SIZE",
            description = "host memory of the host tier and of the swap space (default: 2x --budget)")
    String hostBudget;

    @Option(names = "--shared-budget", paramLabel = "SIZE",
            description = "capacity of the 'shared' tier across the network (default: 4x --budget)")
    String sharedBudget;

    @Option(names = "--gpu", paramLabel = "NAME", defaultValue = "H100-SXM",
            description = "hardware preset: A100-80GB, H100-SXM, H200, L40S (default: ${DEFAULT-VALUE})")
    String gpu;

    @Option(names = "--tp", paramLabel = "N", defaultValue = "2",
            description = "tensor-parallel GPUs serving the model (default: ${DEFAULT-VALUE})")
    int tp;

    @Option(names = "--weights", paramLabel = "bf16|fp8", defaultValue = "bf16",
            description = "weight precision: bytes read per parameter and the tensor rate (default: ${DEFAULT-VALUE})")
    String weights;

    @Option(names = "--hbm", paramLabel = "GB/s", description = "override the preset's memory bandwidth")
    String hbm;

    @Option(names = "--tflops-bf16", paramLabel = "TFLOPS", description = "override the preset's dense BF16 throughput")
    String tflopsBf16;

    @Option(names = "--tflops-fp8", paramLabel = "TFLOPS", description = "override the preset's dense FP8 throughput")
    String tflopsFp8;

    @Option(names = "--host-link", paramLabel = "GB/s",
            description = "host-link bandwidth per direction in GB/s (10^9 bytes/s), which prices swap and tier copies (default: the preset's, 64 = PCIe Gen5 x16)")
    String hostLink;

    @Option(names = "--network", paramLabel = "GB/s", description = "override the preset's network bandwidth, which prices the shared tier's copies")
    String network;

    @Option(names = "--chart", paramLabel = "FILE.svg|png", description = "write memory in use over simulated time (XChart)")
    Path chart;

    @Option(names = "--ttft-chart", paramLabel = "FILE.svg|png",
            description = "write a TTFT CDF per route, one file each: FILE-<route>.svg (XChart)")
    Path ttftChart;

    @Option(names = "--json", paramLabel = "FILE.json", description = "write every figure as JSON")
    Path json;

    @Option(names = "--csv", paramLabel = "FILE.csv", description = "write every figure per configuration and route as CSV")
    Path csv;

    @Option(names = "--instances", paramLabel = "N", defaultValue = "2",
            description = "engine instances of the fleet table (random routing vs the prefix router with a shared tier); 0 leaves it out (default: ${DEFAULT-VALUE})")
    int instances;

    @Option(names = "--jfr", paramLabel = "FILE.jfr",
            description = "record JFR events into this file: a dev.kvcache.Ledger per step and configuration, and every refusal, preemption and idle release")
    Path jfr;

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        // output paths are checked before the run, not found unwritable after it
        checkWritable("--chart", chart);
        checkWritable("--ttft-chart", ttftChart);
        checkWritable("--json", json);
        checkWritable("--csv", csv);
        checkWritable("--jfr", jfr);
        SimulationCharts.checkFormat("--chart", chart);
        SimulationCharts.checkFormat("--ttft-chart", ttftChart);
        boolean truncate = switch (overContext.strip().toLowerCase(Locale.ROOT)) {
            case "refuse" -> false;
            case "truncate" -> true;
            default -> throw new IllegalArgumentException("--over-context must be refuse or truncate, got '" + overContext + "'");
        };
        boolean priority = switch (policy.strip().toLowerCase(Locale.ROOT)) {
            case "lru" -> false;
            case "priority" -> true;
            default -> throw new IllegalArgumentException("--policy must be lru or priority, got '" + policy + "'");
        };
        boolean fp8 = switch (weights.strip().toLowerCase(Locale.ROOT)) {
            case "bf16" -> false;
            case "fp8" -> true;
            default -> throw new IllegalArgumentException("--weights must be bf16 or fp8, got '" + weights + "'");
        };
        if (instances < 0 || instances > 64) {
            throw new IllegalArgumentException("--instances must be in [0, 64], got " + instances);
        }
        LayoutOptions.Resolved model = layoutOptions.resolve("Qwen2.5-32B");
        KvLayout base = model.layout();
        List<SimConfig> rows = configs == null ? ConfigRegistry.defaults(base.format()) : ConfigRegistry.parseList(configs);
        List<Workload.Route> routes = workload == null ? Workload.defaults() : Workload.read(workload);
        int longest = routes.stream().mapToInt(Workload.Route::maxActiveTokens).max().orElseThrow();
        int maxLen = maxModelLen != null ? maxModelLen : Math.min(longest, model.maxContext());
        if (maxModelLen != null && maxModelLen > model.maxContext()) {
            throw new IllegalArgumentException("--max-model-len " + maxModelLen + " exceeds " + model.name()
                    + "'s max context of " + model.maxContext() + " (max_position_embeddings)");
        }
        HardwareProfile hw = HardwareProfile.byName(gpu).with(gbps("--hbm", hbm), gbps("--tflops-bf16", tflopsBf16),
                gbps("--tflops-fp8", tflopsFp8), gbps("--host-link", hostLink), gbps("--network", network));
        StepTimeModel time = StepTimeModel.of(hw, tp, model.model(), fp8);
        Simulator.Settings settings = new Simulator.Settings(budget, steps, decodeChunk, prefillChunk, maxLen,
                sinks, window, idleDeadline, watermark, hostBudgetBytes(), hw.hostLinkGBps(), time, truncate, priority,
                longThreshold, longShare, sharedBudgetBytes());
        if (settings.sharedBudgetBytes() < base.bytesPerBlock()) {
            throw new IllegalArgumentException("--shared-budget of " + Sizes.human(settings.sharedBudgetBytes())
                    + " holds less than one block (" + Sizes.human(base.bytesPerBlock()) + ")");
        }
        if (settings.hostBudgetBytes() < base.bytesPerBlock()) {
            throw new IllegalArgumentException("--host-budget of " + Sizes.human(settings.hostBudgetBytes())
                    + " holds less than one block (" + Sizes.human(base.bytesPerBlock()) + ")");
        }
        Simulator sim = new Simulator(base, routes, settings);
        boolean lossy = rows.stream().anyMatch(c -> c.format() != null);
        QualityFigures quality = lossy ? QualityFigures.cachedOrMeasured() : null;

        SimulationReport report = new SimulationReport(model, base, settings, routes,
                workload == null ? "built-in" : workload.toString(), quality);
        report.header(out);

        Map<String, SimResult> results = new LinkedHashMap<>();
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
            for (SimConfig c : rows) {
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

        report.summary(out, results);
        report.latency(out, results);
        if (instances > 0) {
            report.fleet(out, new FleetSimulation(base, routes, settings).defaultRows(instances));
        }
        report.perRoute(out, results);
        report.overTime(out, results);
        out.printf(Locale.ROOT, "%n%d configurations replayed in %,d ms (%s, %d CPUs)%s.%n", results.size(), elapsedMs,
                "Java " + Runtime.version().feature(), Runtime.getRuntime().availableProcessors(),
                quality == null ? "" : quality.cached() ? "; accuracy figures from " + shown(QualityFigures.cacheFile())
                        : "; accuracy harness " + quality.elapsedMillis() + " ms");
        if (chart != null) {
            SimulationCharts.memory(chart, model.name() + ", " + Sizes.human(budget) + " of KV", budget, results);
            out.println("chart written to " + chart);
        }
        if (ttftChart != null) {
            for (Path p : SimulationCharts.ttftCdf(ttftChart, routes, results)) {
                out.println("TTFT CDF written to " + p);
            }
        }
        if (json != null) {
            SimulationExport.json(json, report, results);
            out.println("JSON written to " + json);
        }
        if (csv != null) {
            SimulationExport.csv(csv, results);
            out.println("CSV written to " + csv);
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

    /** {@code file} relative to the checkout when it is inside it. */
    private static Path shown(Path file) {
        Path root = KvCacheHome.root();
        return file.startsWith(root) ? root.relativize(file) : file;
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

    /** {@code --shared-budget}, or four times {@code --budget}; one line naming the flag when it is not a size > 0. */
    private long sharedBudgetBytes() {
        if (sharedBudget == null) {
            return budget > Long.MAX_VALUE / 4 ? Long.MAX_VALUE : 4 * budget;
        }
        long b;
        try {
            b = Sizes.parse(sharedBudget);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--shared-budget: " + e.getMessage());
        }
        if (b <= 0) {
            throw new IllegalArgumentException("--shared-budget must be > 0 bytes, got " + sharedBudget);
        }
        return b;
    }

    private static final Pattern DECIMAL = Pattern.compile("-?\\d+(\\.\\d+)?");

    /** A bandwidth or throughput flag: null when not given; one line naming the flag when it is not a number > 0. */
    static Double gbps(String flag, String value) {
        if (value == null) {
            return null;
        }
        String v = value.strip();
        if (!DECIMAL.matcher(v).matches()) {
            throw new IllegalArgumentException(flag + ": '" + value + "' is not a number"
                    + (flag.equals("--host-link") ? "; give GB/s per direction, e.g. 64 (PCIe Gen5 x16) or 32 (Gen4)" : ""));
        }
        double g = Double.parseDouble(v);
        if (!(g > 0) || !Double.isFinite(g)) {
            throw new IllegalArgumentException(flag + " must be a finite number > 0, got " + value);
        }
        return g;
    }

    /** Attaches a JFR bridge to each manager and commits one ledger event per step. */
    private static final class JfrObserver implements Simulator.Observer {
        private final Map<SimConfig, KvCacheJfr> bridges = new HashMap<>();

        @Override
        public void managerCreated(SimConfig config, KvCacheManager manager) {
            bridges.put(config, KvCacheJfr.attach(manager, config.name().strip()));
        }

        @Override
        public void stepDone(SimConfig config, int step) {
            KvCacheJfr b = bridges.get(config);
            if (b != null) {
                b.emit();
            }
        }

        @Override
        public void managerClosing(SimConfig config, KvCacheManager manager) {
            KvCacheJfr b = bridges.remove(config);
            if (b != null) {
                b.close();
            }
        }
    }
}
