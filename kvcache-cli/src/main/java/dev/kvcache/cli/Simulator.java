package dev.kvcache.cli;

import dev.kvcache.EvictionPolicy;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvLayout;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Replays a {@link Workload} through a memory model in coarse steps, prices each step in seconds,
 * and keeps the ledger.
 *
 * <h2>What is real and what is modelled</h2>
 * The paged configurations drive a real {@link KvCacheManager}, sized with
 * {@code memoryBudget(budget)} at full scale (one manager block is one block of the layout): every
 * allocation failure, prefix hit, eviction, window release, quota refusal, swap and idle release
 * is the manager's own answer ({@link PagedMemory}). Time is modelled: one step is
 * {@code decodeChunk} engine iterations ({@link Scheduler}), whose seconds come from a roofline
 * {@link StepTimeModel} of the hardware and the model's weights, so a 30k-token prefill costs its
 * FLOPs, a batch of 80 reads 80 requests' KV, a recompute costs its prefill and a swap or tier copy
 * costs bytes over the host link. Token ids are a deterministic hash (see {@link Request}).
 *
 * <h2>The parts</h2>
 * {@link MemoryModel} with its capability interfaces ({@link PagedMemory}, {@link ContiguousMemory}),
 * {@link Scheduler} (one method per phase), {@link ConfigRegistry} (levers by name, composed into
 * {@link SimConfig}s), {@link SimResult}/{@link RouteLedger} (what a run produced) and, apart from the
 * replay, the reporters ({@link SimulationReport}, {@link SimulationExport}, {@link SimulationCharts}).
 *
 * <h2>The manager's clock</h2>
 * The manager's clock is the step counter (one step = one second to the manager), so its idle
 * leases count steps ({@code --idle-deadline}); latencies use the simulated seconds.
 *
 * <h2>The host tier and the swap space</h2>
 * The {@code + host tier} row is {@code paged + prefix sharing} with a {@link SimulatedTier} of
 * {@link Settings#hostBudgetBytes} below the pool, through a {@link BytelessStore}: the manager
 * demotes every published block it evicts for reuse to the tier and promotes a prompt's blocks
 * the pool no longer holds from it. The {@code + shared tier} row is the same with a tier of
 * {@link Settings#sharedBudgetBytes} across the network (a shared cache such as the Redis tier of
 * issue #14), its copies priced at the hardware's network bandwidth. The {@code swap} lever gives the manager a
 * {@link SimulatedSwapSpace} of the same host budget. Both move no bytes; their counted bytes are
 * priced at {@link Settings#hostLinkGBps} into the step that moved them.
 */
final class Simulator {

    /** The host tier's default host-link bandwidth, GB/s (10^9 bytes/s) per direction: PCIe Gen5 x16. */
    static final double DEFAULT_HOST_LINK_GBPS = 64;

    /** The time model of tests and of Settings built without one: Llama-3-8B BF16 on one H100-SXM. */
    static final StepTimeModel DEFAULT_TIME = StepTimeModel.of(HardwareProfile.byName("H100-SXM"), 1,
            ModelCatalog.byName("Llama-3-8B"), false);

    /**
     * Run-wide knobs; see the class comment. {@code hostBudgetBytes} is the host memory of the
     * host tier and of the swap space, {@code hostLinkGBps} the host link per direction (GB/s),
     * which prices their copies. {@code truncate}: requests over {@code maxModelLen} are cut to it
     * (else refused). {@code priorityEviction}: {@link EvictionPolicy#priority()} instead of LRU.
     * {@code longThreshold}: a route whose typical prompt has at least this many tokens is
     * long-context for {@code longpool}, whose tenant may hold {@code longShare} of the pool.
     */
    record Settings(long budgetBytes, int steps, int decodeChunk, int prefillChunk, int maxModelLen,
                    int sinkTokens, int windowTokens, int idleDeadlineSteps, double watermark,
                    long hostBudgetBytes, double hostLinkGBps, StepTimeModel time, boolean truncate,
                    boolean priorityEviction, int longThreshold, double longShare, long sharedBudgetBytes) {

        /** A shared tier of four times the GPU budget. */
        Settings(long budgetBytes, int steps, int decodeChunk, int prefillChunk, int maxModelLen,
                 int sinkTokens, int windowTokens, int idleDeadlineSteps, double watermark,
                 long hostBudgetBytes, double hostLinkGBps, StepTimeModel time, boolean truncate,
                 boolean priorityEviction, int longThreshold, double longShare) {
            this(budgetBytes, steps, decodeChunk, prefillChunk, maxModelLen, sinkTokens, windowTokens,
                    idleDeadlineSteps, watermark, hostBudgetBytes, hostLinkGBps, time, truncate, priorityEviction,
                    longThreshold, longShare, budgetBytes > Long.MAX_VALUE / 4 ? Long.MAX_VALUE : 4 * budgetBytes);
        }

        /** Host tier of twice the GPU budget, on a PCIe Gen5 x16 link. */
        Settings(long budgetBytes, int steps, int decodeChunk, int prefillChunk, int maxModelLen,
                 int sinkTokens, int windowTokens, int idleDeadlineSteps, double watermark) {
            this(budgetBytes, steps, decodeChunk, prefillChunk, maxModelLen, sinkTokens, windowTokens,
                    idleDeadlineSteps, watermark,
                    budgetBytes > Long.MAX_VALUE / 2 ? Long.MAX_VALUE : 2 * budgetBytes, DEFAULT_HOST_LINK_GBPS);
        }

        /** The default time model and admission knobs. */
        Settings(long budgetBytes, int steps, int decodeChunk, int prefillChunk, int maxModelLen,
                 int sinkTokens, int windowTokens, int idleDeadlineSteps, double watermark,
                 long hostBudgetBytes, double hostLinkGBps) {
            this(budgetBytes, steps, decodeChunk, prefillChunk, maxModelLen, sinkTokens, windowTokens,
                    idleDeadlineSteps, watermark, hostBudgetBytes, hostLinkGBps, DEFAULT_TIME, false, false, 8192, 0.75);
        }

        Settings {
            Objects.requireNonNull(time, "time");
            positive("steps", steps);
            atMost("steps", steps, MAX_STEPS, "the per-step series: 28 bytes a step per configuration");
            positive("decodeChunk", decodeChunk);
            atMost("decodeChunk", decodeChunk, MAX_TOKENS, "the token buffer, 4 bytes a token");
            positive("prefillChunk", prefillChunk);
            positive("maxModelLen", maxModelLen);
            positive("windowTokens", windowTokens);
            positive("idleDeadlineSteps", idleDeadlineSteps);
            positive("longThreshold", longThreshold);
            if (budgetBytes <= 0) {
                throw new IllegalArgumentException("budget must be > 0 bytes, got " + budgetBytes);
            }
            if (sinkTokens < 0) {
                throw new IllegalArgumentException("sinkTokens must be >= 0, got " + sinkTokens);
            }
            if (!(watermark >= 0 && watermark < 1)) {
                throw new IllegalArgumentException("watermark must be in [0, 1), got " + watermark);
            }
            if (!(longShare > 0 && longShare <= 1)) {
                throw new IllegalArgumentException("--long-share must be in (0, 1], got " + longShare);
            }
            if (sharedBudgetBytes <= 0) {
                throw new IllegalArgumentException("shared budget must be > 0 bytes, got " + sharedBudgetBytes);
            }
            if (hostBudgetBytes <= 0) {
                throw new IllegalArgumentException("host budget must be > 0 bytes, got " + hostBudgetBytes);
            }
            if (!(hostLinkGBps > 0 && Double.isFinite(hostLinkGBps))) {
                throw new IllegalArgumentException("host link must be > 0 GB/s and finite, got " + hostLinkGBps);
            }
        }

        /** Seconds the host link takes to move {@code bytes} at {@link #hostLinkGBps}. */
        double copySeconds(long bytes) {
            return bytes / (hostLinkGBps * 1e9);
        }

        /** Seconds the network takes to move {@code bytes} at the hardware's network bandwidth. */
        double networkSeconds(long bytes) {
            return bytes / (time.hardware().networkGBps() * 1e9);
        }

        /** Whether {@code r} is long-context traffic for the {@code longpool} lever. */
        boolean isLong(Workload.Route r) {
            return r.promptTokens() >= longThreshold;
        }

        private static void atMost(String what, int v, int limit, String why) {
            if (v > limit) {
                throw new IllegalArgumentException(what + " " + v + " exceeds the limit of " + limit + " (" + why + ")");
            }
        }

        private static void positive(String what, int v) {
            if (v <= 0) {
                throw new IllegalArgumentException(what + " must be > 0, got " + v);
            }
        }
    }

    /** Told about each manager and each step (for the JFR bridge); all methods optional. */
    interface Observer {
        default void managerCreated(SimConfig config, KvCacheManager manager) {
        }

        default void stepDone(SimConfig config, int step) {
        }

        default void managerClosing(SimConfig config, KvCacheManager manager) {
        }
    }

    /**
     * Largest {@link Settings#steps}: each run keeps four per-step series (28 bytes a step) and
     * each result keeps them, so a million steps cost about 300 MB over the default rows; checked
     * before anything is allocated.
     */
    static final int MAX_STEPS = 1_000_000;

    /**
     * Largest number of sessions, one route's and all routes' together: per session the replay
     * keeps an arrival schedule and a queued request (about 100 bytes), so about 100 MB.
     */
    static final int MAX_SESSIONS = 1_000_000;

    /**
     * Largest {@code activeTokens} of a route and {@link Settings#decodeChunk}: the replay's token
     * buffer holds the longest request (4 bytes a token, 64 MiB).
     */
    static final int MAX_TOKENS = 1 << 24;

    private final KvLayout baseLayout;
    private final List<Workload.Route> routes;
    private final Settings settings;

    Simulator(KvLayout baseLayout, List<Workload.Route> routes, Settings settings) {
        this.baseLayout = Objects.requireNonNull(baseLayout, "layout");
        this.routes = List.copyOf(routes);
        this.settings = Objects.requireNonNull(settings, "settings");
        if (settings.hostBudgetBytes() < baseLayout.bytesPerBlock()) {
            throw new IllegalArgumentException("host budget of " + settings.hostBudgetBytes()
                    + " bytes holds less than one block of " + baseLayout.bytesPerBlock() + " bytes");
        }
        long sessions = 0;
        for (Workload.Route r : routes) {
            sessions += r.sessions();
        }
        if (sessions > MAX_SESSIONS) {
            throw new IllegalArgumentException("the routes' sessions add up to " + sessions + ", over the limit of "
                    + MAX_SESSIONS + " (the simulator keeps state per session)");
        }
        for (Workload.Route r : routes) {
            if (!settings.truncate() && r.active().isFixed() && r.activeTokens() > settings.maxModelLen()) {
                throw new IllegalArgumentException("route '" + r.name() + "' needs " + r.activeTokens()
                        + " tokens per request but max model length is " + settings.maxModelLen()
                        + " (--over-context truncate cuts such prompts)");
            }
        }
    }

    List<Workload.Route> routes() {
        return routes;
    }

    Settings settings() {
        return settings;
    }

    /** Runs one configuration. */
    SimResult run(SimConfig c, Observer observer) {
        long t0 = System.nanoTime();
        KvLayout layout = c.format() == null ? baseLayout : baseLayout.withFormat(c.format());
        KvCacheManager manager = null;
        SimulatedTier tier = null;
        SimulatedTier shared = null;
        MemoryModel mem;
        long[] clock = {0};
        if (c.paged()) {
            KvCacheManager.Builder b = KvCacheManager.builder(layout)
                    .memoryBudget(settings.budgetBytes())
                    .prefixCaching(c.prefixCaching())
                    .evictionPolicy(settings.priorityEviction() ? EvictionPolicy.priority() : EvictionPolicy.lru())
                    .admissionWatermark(settings.watermark())
                    .clock(() -> clock[0]);
            int blocks = (int) Math.min(Integer.MAX_VALUE, settings.budgetBytes() / layout.bytesPerBlock());
            int hostBlocks = (int) Math.min(Integer.MAX_VALUE, settings.hostBudgetBytes() / layout.bytesPerBlock());
            if (c.window()) {
                b.slidingWindow(settings.sinkTokens(), settings.windowTokens());
            }
            if (c.idleRelease()) {
                b.idleLease(Duration.ofSeconds(settings.idleDeadlineSteps()));
            }
            if (c.hostTier()) {
                // the manager demotes to and promotes from a tier only through a store
                tier = new SimulatedTier(layout, settings.hostBudgetBytes());
                b.store(new BytelessStore(layout, blocks)).tier(tier);
            }
            if (c.sharedTier()) {
                shared = new SimulatedTier(layout, settings.sharedBudgetBytes());
                b.store(new BytelessStore(layout, blocks)).tier(shared);
            }
            SimulatedSwapSpace swap = null;
            if (c.swap()) {
                swap = new SimulatedSwapSpace(layout.bytesPerBlock(), Math.max(1, hostBlocks));
                b.swapSpace(swap);
            }
            Map<String, Integer> quotas = new HashMap<>();
            if (c.longPool()) {
                int quota = (int) Math.floor(blocks * settings.longShare());
                quotas.put("long", quota);
                b.tenantQuota("long", quota);
            }
            manager = b.build();
            observer.managerCreated(c, manager);
            mem = new PagedMemory(manager, settings, c.window(), swap, tier, shared, quotas);
        } else {
            mem = new ContiguousMemory(layout, settings.budgetBytes(), settings.maxModelLen());
        }
        try {
            return new Scheduler(settings, c, layout, mem, manager, routes, observer).run(t0, clock);
        } finally {
            if (manager != null) {
                observer.managerClosing(c, manager);
                for (String id : manager.liveSequenceIds()) {
                    manager.free(manager.sequence(id));
                }
                manager.close();
            }
            if (tier != null) {
                tier.close();
            }
            if (shared != null) {
                shared.close();
            }
        }
    }
}
