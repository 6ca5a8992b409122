package dev.kvcache.cli;

import dev.kvcache.CapacityPlanner;
import dev.kvcache.EvictionPolicy;
import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.IdleRelease;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.PreemptedSequence;
import dev.kvcache.PreemptionMode;
import dev.kvcache.Sequence;
import dev.kvcache.SequenceOptions;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Replays a {@link Workload} through a memory pool in coarse time steps and keeps the ledger.
 *
 * <h2>What is real and what is coarse</h2>
 * The paged configurations drive a real {@link KvCacheManager}, sized with
 * {@code memoryBudget(budget)} at full scale (one manager block is one block of the layout): every
 * allocation failure, prefix hit, eviction and window release below is the manager's own answer.
 * Only time is coarse. One step is one scheduler round in which every running request decodes
 * {@code decodeChunk} tokens in a single {@code append} (standing for that many decode
 * iterations), and an admitted request prefills its prompt in appends of {@code prefillChunk}
 * tokens (chunked prefill) within its admission step. Token ids are a deterministic hash of
 * (route, position) inside the shared prefix and of (route, session, request, position) after it,
 * so shared system prompts really are identical token runs and a preempted request re-prefills
 * exactly the tokens it had.
 *
 * <h2>The scheduler (the same for every configuration)</h2>
 * The manager's clock is the step counter (one step = one second), so its idle leases count
 * steps. Each step: (1) with idle release, {@link KvCacheManager#reapIdle()} frees the sequences
 * untouched for more than {@code idleDeadlineSteps} (the manager's lease; only stalled streams stop
 * appending); (2) queue the requests that arrive now; (3) every running request, oldest admission
 * first, appends its next decode chunk; when an append fails, the manager's first
 * {@link KvCacheManager#preemptionVictims preemption victim} (lowest priority, then newest, sparing
 * sequences its thrash guard protects) is preempted by {@link PreemptionMode#RECOMPUTE} and queued
 * at the head, and the append is retried; when the request itself is the newest of the lowest
 * priority (or there is no victim) it is the one preempted. A preempted request comes back through
 * {@link KvCacheManager#resume}, which re-appends its tokens; those the prefix cache does not serve
 * are recomputed. Every successful append stands for KV the simulated engine computes within that
 * step, and the manager publishes a block only once its KV is written, so the simulator
 * {@link KvCacheManager#commit commits} a request after its prefill (and its re-prefill on resume)
 * and before preempting it; a decode chunk's blocks are published by the request's next append,
 * its {@code free}, or the idle reaper. A request that reaches its length finishes (freed) and its session sends the next
 * one {@code thinkSteps} later, except on idle routes, whose requests stall there forever. (4)
 * Admit queued requests first-come first-served while the free blocks (empty plus cached) cover
 * the prompt's blocks, stopping at the first that does not fit; the manager's
 * {@code admissionWatermark} may refuse it too. (5) Record memory.
 *
 * <h2>The contiguous baseline</h2>
 * No manager: each admitted request reserves
 * {@link CapacityPlanner#contiguousBytes contiguousBytes(layout, 1, maxModelLen)} up front, as an
 * engine without paging preallocates its maximum length, and never needs more.
 *
 * <h2>The host tier</h2>
 * The {@code + host tier} row is {@code paged + prefix sharing} with a {@link SimulatedTier} of
 * {@link Settings#hostBudgetBytes} below the pool, through a store that holds no KV (the manager
 * needs one for tiers): the manager demotes every published block it evicts for reuse to the tier
 * and promotes a prompt's blocks the pool no longer holds from it, and those tokens
 * ({@link KvCacheLedger#tierHitTokens()}) are served instead of computed. Its cost is copy time:
 * the tier's bytes moved (one block per copying put and per load) over a host link of
 * {@link Settings#hostLinkGBps} GB/s ({@link Settings#copySeconds}), computed, not measured.
 * Blocks still count the same: a promoted block takes the fresh block a miss would have taken.
 */
final class Simulator {

    /** The host tier's default host-link bandwidth, GB/s (10^9 bytes/s) per direction: PCIe Gen5 x16. */
    static final double DEFAULT_HOST_LINK_GBPS = 64;

    /**
     * Run-wide knobs; see the class comment. {@code hostBudgetBytes} is the host memory of the
     * {@code + host tier} row's tier, {@code hostLinkGBps} the host link's bandwidth per direction
     * in GB/s (10^9 bytes per second), which prices the tier's copies.
     */
    record Settings(long budgetBytes, int steps, int decodeChunk, int prefillChunk, int maxModelLen,
                    int sinkTokens, int windowTokens, int idleDeadlineSteps, double watermark,
                    long hostBudgetBytes, double hostLinkGBps) {

        /** Host tier of twice the GPU budget, on a PCIe Gen5 x16 link. */
        Settings(long budgetBytes, int steps, int decodeChunk, int prefillChunk, int maxModelLen,
                 int sinkTokens, int windowTokens, int idleDeadlineSteps, double watermark) {
            this(budgetBytes, steps, decodeChunk, prefillChunk, maxModelLen, sinkTokens, windowTokens,
                    idleDeadlineSteps, watermark,
                    budgetBytes > Long.MAX_VALUE / 2 ? Long.MAX_VALUE : 2 * budgetBytes, DEFAULT_HOST_LINK_GBPS);
        }

        Settings {
            positive("steps", steps);
            atMost("steps", steps, MAX_STEPS, "the per-step series: 20 bytes a step per configuration");
            positive("decodeChunk", decodeChunk);
            atMost("decodeChunk", decodeChunk, MAX_TOKENS, "the token buffer, 4 bytes a token");
            positive("prefillChunk", prefillChunk);
            positive("maxModelLen", maxModelLen);
            positive("windowTokens", windowTokens);
            positive("idleDeadlineSteps", idleDeadlineSteps);
            if (budgetBytes <= 0) {
                throw new IllegalArgumentException("budget must be > 0 bytes, got " + budgetBytes);
            }
            if (sinkTokens < 0) {
                throw new IllegalArgumentException("sinkTokens must be >= 0, got " + sinkTokens);
            }
            if (!(watermark >= 0 && watermark < 1)) {
                throw new IllegalArgumentException("watermark must be in [0, 1), got " + watermark);
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

    /**
     * One configuration row. {@code format} null means the base layout's format. {@code hostTier}:
     * a {@link SimulatedTier} of {@link Settings#hostBudgetBytes} below the pool (needs prefix
     * caching), so evicted published blocks are demoted to it and come back from it.
     */
    record Config(String name, boolean paged, KvFormat format, boolean prefixCaching, boolean window,
                  boolean idleRelease, String comparedTo, boolean hostTier) {

        Config {
            if (hostTier && !(paged && prefixCaching)) {
                throw new IllegalArgumentException("config '" + name + "': a host tier needs paging and prefix caching");
            }
        }

        /** A row without a host tier. */
        Config(String name, boolean paged, KvFormat format, boolean prefixCaching, boolean window,
               boolean idleRelease, String comparedTo) {
            this(name, paged, format, prefixCaching, window, idleRelease, comparedTo, false);
        }
    }

    /** The side-by-side rows: contiguous, paged, then each mechanism on top of paged + prefix sharing. */
    static List<Config> defaultConfigs(KvFormat base) {
        List<Config> c = new ArrayList<>();
        c.add(new Config("contiguous", false, null, false, false, false, null));
        c.add(new Config("paged", true, null, false, false, false, "contiguous"));
        c.add(new Config("paged + prefix sharing", true, null, true, false, false, "paged"));
        c.add(new Config("  + host tier", true, null, true, false, false, "paged + prefix sharing", true));
        for (KvFormat f : List.of(KvFormats.FP8_E4M3, KvFormats.Q4_0, KvFormats.KIVI_2)) {
            if (f != base) {
                c.add(new Config("  + " + f.name(), true, f, true, false, false, "paged + prefix sharing"));
            }
        }
        c.add(new Config("  + sliding window", true, null, true, true, false, "paged + prefix sharing"));
        c.add(new Config("  + idle release", true, null, true, false, true, "paged + prefix sharing"));
        return c;
    }

    /** Told about each manager and each step (for the JFR bridge); all methods optional. */
    interface Observer {
        default void managerCreated(Config config, KvCacheManager manager) {
        }

        default void stepDone(Config config, int step) {
        }

        default void managerClosing(Config config, KvCacheManager manager) {
        }
    }

    /** One route's ledger under one configuration. */
    static final class RouteLedger {
        final Workload.Route route;
        long admissions;
        long completions;
        long allocationFailures;
        long preemptions;
        long recomputedTokens;
        long prefixHitTokens;
        long evictedBlocks;
        long requestSteps;        // running requests summed over steps
        long tokenSteps;          // their tokens summed over steps
        long heldByteSteps;       // route memory summed over steps
        long peakHeldBytes;
        int peakRunning;
        int waitingAtEnd;
        int runningAtEnd;
        long idleHeldBytesEnd;
        long idleHeldByteSteps;
        long idleReleased;
        long idleReleasedBytes;
        long rolledBackTokens;

        RouteLedger(Workload.Route route) {
            this.route = route;
        }

        double avgActiveTokens() {
            return requestSteps == 0 ? 0 : (double) tokenSteps / requestSteps;
        }

        long avgHeldBytes(int steps) {
            return heldByteSteps / steps;
        }
    }

    /** Everything one configuration produced. */
    record Result(Config config, KvLayout layout, long poolBytes, int totalBlocks, List<RouteLedger> routes,
                  long[] usedBytes, long[] cachedBytes, int[] running, long allocationFailures,
                  long evictedBlocks, long prefixHitTokens, long windowReleasedBlocks, long copyOnWrites,
                  long idleReleased, long idleReleasedBytes, double avgSlotWaste, KvCacheLedger finalLedger,
                  long elapsedNanos) {

        long peakUsedBytes() {
            return Arrays.stream(usedBytes).max().orElse(0);
        }

        long minHeadroomBytes() {
            return poolBytes - peakUsedBytes();
        }

        int peakRunning() {
            return Arrays.stream(running).max().orElse(0);
        }

        long completions() {
            return routes.stream().mapToLong(r -> r.completions).sum();
        }

        long admissions() {
            return routes.stream().mapToLong(r -> r.admissions).sum();
        }

        long preemptions() {
            return routes.stream().mapToLong(r -> r.preemptions).sum();
        }

        long recomputedTokens() {
            return routes.stream().mapToLong(r -> r.recomputedTokens).sum();
        }

        long idleHeldBytesEnd() {
            return routes.stream().mapToLong(r -> r.idleHeldBytesEnd).sum();
        }

        int waitingAtEnd() {
            return routes.stream().mapToInt(r -> r.waitingAtEnd).sum();
        }
    }

    /**
     * Largest {@link Settings#steps}: each run keeps three per-step series (20 bytes a step) and
     * each result keeps one (8 bytes), so a million steps cost about 100 MB over the nine default
     * configurations; checked before anything is allocated.
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
            if (r.activeTokens() > settings.maxModelLen()) {
                throw new IllegalArgumentException("route '" + r.name() + "' needs " + r.activeTokens()
                        + " tokens per request but max model length is " + settings.maxModelLen());
            }
        }
    }

    // ------------------------------------------------------------------ requests

    /** One request of one session; survives preemption (then {@code seq} is null and it waits again). */
    private static final class Request {
        final int route;
        final int session;
        final int serial;
        final Workload.Route spec;
        int length;          // tokens it holds (running) or must re-prefill (waiting after preemption)
        PreemptedSequence preempted; // paged, while waiting after a preemption
        Sequence seq;        // paged
        boolean reserved;    // contiguous
        long admitOrder;
        int lastAppendStep;

        Request(int route, int session, int serial, Workload.Route spec) {
            this.route = route;
            this.session = session;
            this.serial = serial;
            this.spec = spec;
        }

        String id() {
            return route + "/" + session + "/" + serial;
        }

        int tokenAt(int pos) {
            long h = pos < spec.sharedPrefix()
                    ? mix(0x5EED_0000_0000L + ((long) route << 32) + pos)
                    : mix(mix(((long) route << 48) ^ ((long) session << 24) ^ serial) + pos);
            return (int) (h >>> 33);
        }

        boolean stalled() {
            return spec.idle() && length >= spec.activeTokens();
        }
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 33)) * 0xFF51AFD7ED558CCDL;
        z = (z ^ (z >>> 33)) * 0xC4CEB9FE1A85EC53L;
        return z ^ (z >>> 33);
    }

    // ------------------------------------------------------------------ pools

    /** Where KV memory comes from: the real block manager, or contiguous reservations. */
    private interface Pool {
        /** Starts holding memory for {@code r}; false if that is refused (contiguous only). */
        boolean open(Request r);

        /** Appends tokens; -1 when memory ran out (nothing changed), else prefix-hit tokens. */
        int append(Request r, int[] tokens, int n);

        /**
         * Says that {@code r}'s KV is written for every token appended so far (the simulated engine
         * has computed it), so its full blocks may serve other requests now.
         */
        void commit(Request r);

        void release(Request r);

        /**
         * Whether admitting {@code r} with a prefill of {@code tokens} tokens should be tried now:
         * the blocks it needs (less the prefix cache's hits) leave the watermark free.
         */
        boolean canAdmit(Request r, int tokens, int[] buf);

        long usedBytes();

        long cachedBytes();

        long capacityBytes();

        int totalBlocks();

        /** Bytes held by these requests, each block counted once. */
        long heldBytes(List<Request> rs);

        long evictedBlocks();

        /** The request to preempt so that {@code q}'s append can go on ({@code q} itself if it ranks lowest). */
        Request victim(Request q, Map<String, Request> running);

        /** Preempts {@code v} (recompute). */
        void preempt(Request v);

        /** Brings a preempted request back; -1 when it does not fit now, else its prefix-hit tokens. */
        int resume(Request q);

        /** Releases what idles past the deadline; returns (request, bytes) pairs. */
        List<Map.Entry<Request, Long>> reapIdle(Map<String, Request> running, int step);

        /** Bytes held by running requests untouched for more than {@code deadline} steps, per route. */
        long[] idleHeld(List<Request> running, int step, int deadline, int routes);
    }

    private static final class PagedPool implements Pool {
        final KvCacheManager m;
        final KvLayout layout;
        final int watermarkBlocks;
        final int[] stamp;
        int currentStamp;

        final Settings settings;
        final boolean window;

        PagedPool(KvCacheManager m, Settings settings, boolean window) {
            this.m = m;
            this.settings = settings;
            this.window = window;
            this.layout = m.layout();
            double watermark = settings.watermark();
            int total = m.stats().totalBlocks();
            this.watermarkBlocks = (int) Math.ceil(total * watermark);
            this.stamp = new int[total];
        }

        @Override
        public boolean open(Request r) {
            r.seq = m.open(r.id(), SequenceOptions.DEFAULT.withPriority(r.spec.priority()));
            return true;
        }

        @Override
        public int append(Request r, int[] tokens, int n) {
            return m.append(r.seq, tokens, 0, n);
        }

        @Override
        public void commit(Request r) {
            m.commit(r.seq);
        }

        @Override
        public void release(Request r) {
            m.free(r.seq);
            r.seq = null;
        }

        @Override
        public boolean canAdmit(Request r, int tokens, int[] buf) {
            long need;
            if (window) {
                // a chunked prefill under a window holds at most the sinks, the window and one chunk
                need = CapacityPlanner.kvBytesWithWindow(layout, tokens, settings.sinkTokens(),
                        settings.windowTokens() + settings.prefillChunk()) / layout.bytesPerBlock();
            } else {
                need = layout.blocksFor(tokens);
            }
            // Prefix hits are not subtracted: a hit on a block only the cache holds (no live
            // sequence) takes that block out of the free supply all the same, and the API does not
            // say which hits are which; subtracting them all over-admits, and the partial prefill
            // is rolled back. Not subtracting errs the other way only for blocks live sequences share.
            return m.stats().freeBlocks() - need >= watermarkBlocks;
        }

        @Override
        public long usedBytes() {
            return (long) m.stats().usedBlocks() * layout.bytesPerBlock();
        }

        @Override
        public long cachedBytes() {
            return (long) m.stats().cachedBlocks() * layout.bytesPerBlock();
        }

        @Override
        public long capacityBytes() {
            return (long) m.stats().totalBlocks() * layout.bytesPerBlock();
        }

        @Override
        public int totalBlocks() {
            return m.stats().totalBlocks();
        }

        @Override
        public long heldBytes(List<Request> rs) {
            int s = ++currentStamp;
            long blocks = 0;
            for (Request r : rs) {
                for (int b : r.seq.blockTable()) {
                    if (b >= 0 && stamp[b] != s) {
                        stamp[b] = s;
                        blocks++;
                    }
                }
            }
            return blocks * layout.bytesPerBlock();
        }

        @Override
        public long evictedBlocks() {
            return m.stats().evictedBlocks();
        }

        @Override
        public Request victim(Request q, Map<String, Request> running) {
            List<Sequence> v = m.preemptionVictims(1, q.seq);
            if (v.isEmpty()) {
                return q;
            }
            Request other = running.get(v.getFirst().id());
            if (other == null) {
                throw new AssertionError("victim " + v.getFirst().id() + " is not a running request");
            }
            int byPriority = Integer.compare(q.spec.priority(), other.spec.priority());
            return byPriority < 0 || byPriority == 0 && q.admitOrder > other.admitOrder ? q : other;
        }

        @Override
        public void preempt(Request v) {
            // every token a request appended was computed within its step: publish the blocks of
            // its last append before preempting, which by itself publishes nothing pending
            m.commit(v.seq);
            v.preempted = m.preempt(v.seq, PreemptionMode.RECOMPUTE);
            v.seq = null;
        }

        @Override
        public int resume(Request q) {
            Sequence s = m.resume(q.preempted);
            if (s == null) {
                return -1;
            }
            q.seq = s;
            q.preempted = null;
            m.commit(s); // the re-prefill is computed within the admission step
            return s.cachedTokens();
        }

        @Override
        public List<Map.Entry<Request, Long>> reapIdle(Map<String, Request> running, int step) {
            List<Map.Entry<Request, Long>> out = new ArrayList<>();
            for (IdleRelease r : m.reapIdle()) {
                Request q = running.get(r.id());
                q.seq = null;
                out.add(Map.entry(q, r.bytes()));
            }
            return out;
        }

        @Override
        public long[] idleHeld(List<Request> running, int step, int deadline, int routes) {
            long[] out = new long[routes];
            Map<String, Request> byId = new HashMap<>();
            for (Request q : running) {
                byId.put(q.id(), q);
            }
            for (IdleRelease r : m.idleSequences(Duration.ofSeconds(deadline))) {
                out[byId.get(r.id()).route] += r.bytes();
            }
            return out;
        }
    }

    private static final class ContiguousPool implements Pool {
        final long perRequest;
        final long capacity;
        long used;

        ContiguousPool(KvLayout layout, long budget, int maxModelLen) {
            this.perRequest = CapacityPlanner.contiguousBytes(layout, 1, maxModelLen);
            this.capacity = budget;
        }

        @Override
        public boolean open(Request r) {
            if (used + perRequest > capacity) {
                return false;
            }
            used += perRequest;
            r.reserved = true;
            return true;
        }

        @Override
        public int append(Request r, int[] tokens, int n) {
            return 0; // the reservation already covers maxModelLen tokens
        }

        @Override
        public void release(Request r) {
            if (r.reserved) {
                used -= perRequest;
                r.reserved = false;
            }
        }

        @Override
        public boolean canAdmit(Request r, int tokens, int[] buf) {
            return used + perRequest <= capacity;
        }

        @Override
        public long usedBytes() {
            return used;
        }

        @Override
        public long cachedBytes() {
            return 0;
        }

        @Override
        public long capacityBytes() {
            return capacity;
        }

        @Override
        public int totalBlocks() {
            return 0;
        }

        @Override
        public long heldBytes(List<Request> rs) {
            return rs.size() * perRequest;
        }

        @Override
        public long evictedBlocks() {
            return 0;
        }

        @Override
        public Request victim(Request q, Map<String, Request> running) {
            throw new AssertionError("contiguous appends never fail");
        }

        @Override
        public void commit(Request r) {
            // nothing is shared between contiguous reservations
        }

        @Override
        public void preempt(Request v) {
            throw new AssertionError("contiguous appends never fail");
        }

        @Override
        public int resume(Request q) {
            throw new AssertionError("contiguous appends never fail");
        }

        @Override
        public List<Map.Entry<Request, Long>> reapIdle(Map<String, Request> running, int step) {
            throw new AssertionError("no idle release without the manager");
        }

        @Override
        public long[] idleHeld(List<Request> running, int step, int deadline, int routes) {
            long[] out = new long[routes];
            for (Request q : running) {
                if (step - q.lastAppendStep > deadline) {
                    out[q.route] += perRequest;
                }
            }
            return out;
        }
    }

    // ------------------------------------------------------------------ the run

    /** Runs one configuration. */
    Result run(Config c, Observer observer) {
        long t0 = System.nanoTime();
        KvLayout layout = c.format() == null ? baseLayout : baseLayout.withFormat(c.format());
        KvCacheManager manager = null;
        SimulatedTier tier = null;
        Pool pool;
        long[] clock = {0};
        if (c.paged()) {
            KvCacheManager.Builder b = KvCacheManager.builder(layout)
                    .memoryBudget(settings.budgetBytes())
                    .prefixCaching(c.prefixCaching())
                    .evictionPolicy(EvictionPolicy.lru())
                    .admissionWatermark(settings.watermark())
                    .clock(() -> clock[0]);
            if (c.window()) {
                b.slidingWindow(settings.sinkTokens(), settings.windowTokens());
            }
            if (c.idleRelease()) {
                b.idleLease(Duration.ofSeconds(settings.idleDeadlineSteps()));
            }
            if (c.hostTier()) {
                // the manager demotes to and promotes from a tier only through a store
                int blocks = (int) Math.min(Integer.MAX_VALUE, settings.budgetBytes() / layout.bytesPerBlock());
                tier = new SimulatedTier(layout, settings.hostBudgetBytes());
                b.store(new BytelessStore(layout, blocks)).tier(tier);
            }
            manager = b.build();
            observer.managerCreated(c, manager);
            pool = new PagedPool(manager, settings, c.window());
        } else {
            pool = new ContiguousPool(layout, settings.budgetBytes(), settings.maxModelLen());
        }
        try {
            return replay(c, layout, pool, manager, observer, t0, clock);
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
        }
    }

    /**
     * The store of the {@code + host tier} row: the layout and block count of the pool and no KV.
     * Block copies (copy-on-write, export to a tier, import from it) do nothing, since the
     * simulator computes no KV; reading or writing KV is a bug and throws.
     */
    private static final class BytelessStore implements KvStore {
        private final KvLayout layout;
        private final int blocks;

        BytelessStore(KvLayout layout, int blocks) {
            this.layout = layout;
            this.blocks = blocks;
        }

        @Override
        public KvLayout layout() {
            return layout;
        }

        @Override
        public int blocks() {
            return blocks;
        }

        @Override
        public void write(int layer, long slot, float[] k, float[] v) {
            throw new UnsupportedOperationException("the simulator's store holds no KV");
        }

        @Override
        public void readKey(int layer, long slot, float[] out) {
            throw new UnsupportedOperationException("the simulator's store holds no KV");
        }

        @Override
        public void readValue(int layer, long slot, float[] out) {
            throw new UnsupportedOperationException("the simulator's store holds no KV");
        }

        @Override
        public void copyBlock(int srcBlock, int dstBlock) {
            // no bytes to copy
        }

        @Override
        public void exportBlock(int block, java.lang.foreign.MemorySegment dst) {
            // no bytes to export
        }

        @Override
        public void importBlock(int block, java.lang.foreign.MemorySegment src) {
            // no bytes to import
        }

        @Override
        public void close() {
        }
    }

    private Result replay(Config c, KvLayout layout, Pool pool, KvCacheManager manager, Observer observer, long t0,
                          long[] clock) {
        int steps = settings.steps();
        List<RouteLedger> ledgers = new ArrayList<>();
        int sessionsTotal = 0;
        int longest = 0;
        for (Workload.Route r : routes) {
            ledgers.add(new RouteLedger(r));
            sessionsTotal += r.sessions();
            longest = Math.max(longest, r.activeTokens());
        }
        // arrival schedule per session: the step its next request arrives, -1 when it sends no more
        int[][] nextArrival = new int[routes.size()][];
        int[][] serials = new int[routes.size()][];
        for (int ri = 0; ri < routes.size(); ri++) {
            Workload.Route r = routes.get(ri);
            nextArrival[ri] = new int[r.sessions()];
            serials[ri] = new int[r.sessions()];
            for (int s = 0; s < r.sessions(); s++) {
                nextArrival[ri][s] = (int) ((long) s * r.rampSteps() / r.sessions());
            }
        }
        int[] buf = new int[Math.max(longest, settings.decodeChunk())];
        Deque<Request> waiting = new ArrayDeque<>();
        List<Request> running = new ArrayList<>();
        Map<String, Request> runningById = new HashMap<>();
        long[] used = new long[steps];
        long[] cached = new long[steps];
        int[] runningCount = new int[steps];
        long admitCounter = 0;
        long idleReleased = 0;
        long idleReleasedBytes = 0;
        double slotWasteSum = 0;
        List<List<Request>> byRoute = new ArrayList<>();
        for (int ri = 0; ri < routes.size(); ri++) {
            byRoute.add(new ArrayList<>());
        }

        for (int step = 0; step < steps; step++) {
            clock[0] = step * 1_000_000_000L;
            // (1) idle release by the manager's lease
            if (c.idleRelease()) {
                for (Map.Entry<Request, Long> e : pool.reapIdle(runningById, step)) {
                    Request q = e.getKey();
                    running.remove(q);
                    runningById.remove(q.id());
                    RouteLedger rl = ledgers.get(q.route);
                    rl.idleReleased++;
                    rl.idleReleasedBytes += e.getValue();
                    idleReleased++;
                    idleReleasedBytes += e.getValue();
                    // the client is gone: its session sends nothing more
                }
            }
            // (2) arrivals
            for (int ri = 0; ri < routes.size(); ri++) {
                for (int s = 0; s < nextArrival[ri].length; s++) {
                    if (nextArrival[ri][s] == step) {
                        nextArrival[ri][s] = -1;
                        waiting.addLast(new Request(ri, s, serials[ri][s]++, routes.get(ri)));
                    }
                }
            }
            // (3) decode, oldest admission first
            List<Request> order = new ArrayList<>(running);
            for (Request q : order) {
                if (q.seq == null && !q.reserved) {
                    continue; // preempted earlier in this step
                }
                if (q.stalled()) {
                    continue;
                }
                int n = Math.min(settings.decodeChunk(), q.spec.activeTokens() - q.length);
                fill(q, q.length, n, buf);
                while (true) {
                    long ev = pool.evictedBlocks();
                    int rc = pool.append(q, buf, n);
                    ledgers.get(q.route).evictedBlocks += pool.evictedBlocks() - ev;
                    if (rc >= 0) {
                        q.length += n;
                        q.lastAppendStep = step;
                        break;
                    }
                    ledgers.get(q.route).allocationFailures++;
                    Request victim = pool.victim(q, runningById);
                    pool.preempt(victim);
                    running.remove(victim);
                    runningById.remove(victim.id());
                    waiting.addFirst(victim);
                    ledgers.get(victim.route).preemptions++;
                    if (victim == q) {
                        break;
                    }
                }
                if ((q.seq != null || q.reserved) && q.length >= q.spec.activeTokens() && !q.spec.idle()) {
                    pool.release(q);
                    running.remove(q);
                    runningById.remove(q.id());
                    ledgers.get(q.route).completions++;
                    nextArrival[q.route][q.session] = step + 1 + q.spec.thinkSteps();
                }
            }
            // (4) admission, first come first served
            while (!waiting.isEmpty()) {
                Request q = waiting.peekFirst();
                RouteLedger rl = ledgers.get(q.route);
                int target = q.preempted != null ? q.length : q.spec.promptTokens();
                if (!pool.canAdmit(q, target, buf)) {
                    break;
                }
                if (q.preempted != null) {
                    int hits = pool.resume(q);
                    if (hits < 0) {
                        rl.allocationFailures++;
                        break;
                    }
                    waiting.pollFirst();
                    rl.prefixHitTokens += hits;
                    rl.recomputedTokens += target - hits;
                    q.lastAppendStep = step;
                    q.admitOrder = admitCounter++;
                    running.add(q);
                    runningById.put(q.id(), q);
                    rl.admissions++;
                    continue;
                }
                if (!pool.open(q)) {
                    rl.allocationFailures++;
                    break;
                }
                int hits = 0;
                boolean ok = true;
                long ev = pool.evictedBlocks();
                for (int from = 0; from < target; from += settings.prefillChunk()) {
                    int n = Math.min(settings.prefillChunk(), target - from);
                    fill(q, from, n, buf);
                    int rc = pool.append(q, buf, n);
                    if (rc < 0) {
                        ok = false;
                        break;
                    }
                    hits += rc;
                }
                rl.evictedBlocks += pool.evictedBlocks() - ev;
                if (!ok) {
                    // the check above was optimistic (a hit block it counted was evicted, or a
                    // window released less than planned): roll back, the prefilled work is lost
                    // to this request (free publishes the chunks computed before the refused one;
                    // the refused append changed nothing)
                    rl.allocationFailures++;
                    rl.rolledBackTokens += q.seq != null ? q.seq.length() : 0;
                    pool.release(q);
                    break;
                }
                // the prompt's KV is computed now: its full blocks may serve the next requests
                // (each chunk's append already published the chunk before it)
                pool.commit(q);
                waiting.pollFirst();
                rl.prefixHitTokens += hits;
                q.length = target;
                q.lastAppendStep = step;
                q.admitOrder = admitCounter++;
                running.add(q);
                runningById.put(q.id(), q);
                rl.admissions++;
            }
            // (5) record
            used[step] = pool.usedBytes();
            cached[step] = pool.cachedBytes();
            runningCount[step] = running.size();
            for (List<Request> l : byRoute) {
                l.clear();
            }
            for (Request q : running) {
                byRoute.get(q.route).add(q);
            }
            for (int ri = 0; ri < routes.size(); ri++) {
                RouteLedger rl = ledgers.get(ri);
                List<Request> rs = byRoute.get(ri);
                rl.peakRunning = Math.max(rl.peakRunning, rs.size());
                rl.requestSteps += rs.size();
                for (Request q : rs) {
                    rl.tokenSteps += q.length;
                }
                long held = pool.heldBytes(rs);
                rl.heldByteSteps += held;
                rl.peakHeldBytes = Math.max(rl.peakHeldBytes, held);
            }
            long[] idleHeld = pool.idleHeld(running, step, settings.idleDeadlineSteps(), routes.size());
            for (int ri = 0; ri < routes.size(); ri++) {
                RouteLedger rl = ledgers.get(ri);
                rl.idleHeldByteSteps += idleHeld[ri];
                if (step == steps - 1) {
                    rl.idleHeldBytesEnd = idleHeld[ri];
                }
            }
            if (manager != null) {
                slotWasteSum += manager.ledger().slotWaste();
            }
            observer.stepDone(c, step);
        }
        for (Request q : waiting) {
            ledgers.get(q.route).waitingAtEnd++;
        }
        for (Request q : running) {
            ledgers.get(q.route).runningAtEnd++;
        }
        long allocationFailures;
        long evicted;
        long hitTokens;
        long windowReleased = 0;
        long cow = 0;
        KvCacheLedger finalLedger = null;
        if (manager != null) {
            finalLedger = manager.ledger();
            KvCacheStats st = finalLedger.stats();
            allocationFailures = st.allocationFailures();
            evicted = st.evictedBlocks();
            hitTokens = st.prefixHitTokens();
            windowReleased = finalLedger.windowReleasedBlocks();
            cow = finalLedger.copyOnWrites();
        } else {
            allocationFailures = ledgers.stream().mapToLong(r -> r.allocationFailures).sum();
            evicted = 0;
            hitTokens = 0;
        }
        return new Result(c, layout, pool.capacityBytes(), pool.totalBlocks(), ledgers, used, cached, runningCount,
                allocationFailures, evicted, hitTokens, windowReleased, cow, idleReleased, idleReleasedBytes,
                slotWasteSum / steps, finalLedger, System.nanoTime() - t0);
    }

    private static void fill(Request q, int from, int n, int[] buf) {
        for (int i = 0; i < n; i++) {
            buf[i] = q.tokenAt(from + i);
        }
    }
}
