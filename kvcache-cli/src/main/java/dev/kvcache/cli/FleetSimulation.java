package dev.kvcache.cli;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.TierEntry;
import dev.kvcache.redis.PrefixRouter;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * The fleet rows of {@code kvcache simulate} (issue #14): N engine instances, each a real
 * {@link KvCacheManager} of the whole GPU budget, serve one workload's requests; a request goes
 * to an instance chosen at random or by a {@link PrefixRouter} fed by the instances' own KV events
 * (in process, as it would be from their Redis streams), and the instances may share one tier
 * across the network (a {@link SimulatedTier} standing for the Redis tier: every block an instance
 * publishes is written to it, as {@code RedisTier.writeOnPublish} does, and every instance
 * promotes from it).
 *
 * <h2>What is replayed</h2>
 * Requests in a fixed interleaved order: request {@code k} of every session of every route, then
 * request {@code k+1}, with the token ids of {@link Request} (the routes' system prompts really
 * are shared token runs). Each request appends its prompt (the hits are the manager's answer:
 * store hits plus promoted tier blocks), commits it (its blocks are published, so other requests
 * and, through the shared tier, other instances hit them) and appends its decode tokens. The
 * fleet holds as many requests in flight as the workload has sessions; the oldest one finishes
 * (is freed) when that is exceeded, and on an instance whose pool refuses an append its oldest
 * request finishes early to make room. There is no clock: this measures where prefixes are
 * found, not queueing (the main table's scheduler does that for one instance).
 *
 * <h2>What it reports</h2>
 * Prompt tokens, tokens served from an instance's own pool, tokens served from the shared tier,
 * the prefill seconds that the misses cost ({@link StepTimeModel#recomputeSeconds}, per request),
 * the bytes loaded from the shared tier and their seconds at the hardware's network bandwidth
 * ({@link Simulator.Settings#networkSeconds}: time on the request's path before its first token),
 * and the bytes written to it on publish (write-behind: network traffic, off the request's path).
 */
final class FleetSimulation {

    /** The most requests one fleet replay issues. */
    static final int MAX_REQUESTS = 4096;

    /**
     * The most prompt tokens one fleet replay issues: with {@link #MAX_REQUESTS}, a bound on its
     * time (every prompt block is hashed by the manager and by the router).
     */
    static final long MAX_PROMPT_TOKENS = 2_000_000;

    /** One fleet row's figures. */
    record Row(String name, int instances, long requests, long refused, long promptTokens, long localHitTokens,
               long tierHitTokens, double prefillSeconds, long networkReadBytes, double networkReadSeconds,
               long networkWrittenBytes) {
        double hitRate() {
            return promptTokens == 0 ? 0 : (double) (localHitTokens + tierHitTokens) / promptTokens;
        }
    }

    /** How a fleet row places requests. */
    enum Routing { RANDOM, ROUTER }

    private final KvLayout layout;
    private final List<Workload.Route> routes;
    private final Simulator.Settings settings;

    FleetSimulation(KvLayout layout, List<Workload.Route> routes, Simulator.Settings settings) {
        this.layout = Objects.requireNonNull(layout, "layout");
        this.routes = List.copyOf(routes);
        this.settings = Objects.requireNonNull(settings, "settings");
    }

    /** The default fleet rows: random routing and the router, each without and with a shared tier. */
    List<Row> defaultRows(int instances) {
        return List.of(run(instances, Routing.RANDOM, false), run(instances, Routing.RANDOM, true),
                run(instances, Routing.ROUTER, false), run(instances, Routing.ROUTER, true));
    }

    /**
     * Replays the workload over {@code instances} instances.
     *
     * @throws IllegalArgumentException {@code instances} outside [1, 64] (the router's limit)
     */
    Row run(int instances, Routing routing, boolean sharedTier) {
        if (instances < 1 || instances > 64) {
            throw new IllegalArgumentException("--instances must be in [1, 64], got " + instances);
        }
        String name = instances + " instances, " + (routing == Routing.ROUTER ? "prefix router" : "random routing")
                + (sharedTier ? " + shared tier" : "");
        List<String> ids = new ArrayList<>();
        for (int i = 0; i < instances; i++) {
            ids.add("i" + i);
        }
        List<KvCacheManager> managers = new ArrayList<>();
        SimulatedTier shared = sharedTier ? new SimulatedTier(layout, settings.sharedBudgetBytes()) : null;
        try (PrefixRouter router = new PrefixRouter(layout.blockTokens(), ids)) {
            int blocks = (int) Math.min(Integer.MAX_VALUE, settings.budgetBytes() / layout.bytesPerBlock());
            for (int i = 0; i < instances; i++) {
                KvCacheManager.Builder b = KvCacheManager.builder(layout).memoryBudget(settings.budgetBytes())
                        .prefixCaching(true);
                BytelessStore store = null;
                if (shared != null) {
                    store = new BytelessStore(layout, blocks);
                    b.store(store).tier(shared);
                }
                KvCacheManager m = b.build();
                managers.add(m);
                m.addListener(router.listener(ids.get(i)));
                if (shared != null) {
                    BytelessStore st = store;
                    long fingerprint = TierEntry.fingerprint(layout);
                    m.addListener(ev -> {
                        if (ev instanceof KvCacheEvent.BlockStored s && s.key() != null) {
                            shared.put(new TierEntry(s.key(), s.parentKey(), s.cacheSalt(), s.scope(), s.tokenIds(),
                                    fingerprint), st, s.block());
                        }
                    });
                }
            }
            return replay(name, instances, routing, managers, router, ids, shared);
        } finally {
            for (KvCacheManager m : managers) {
                for (String id : m.liveSequenceIds()) {
                    m.free(m.sequence(id));
                }
                m.close();
            }
            if (shared != null) {
                shared.close();
            }
        }
    }

    private Row replay(String name, int n, Routing routing, List<KvCacheManager> managers, PrefixRouter router,
                       List<String> ids, SimulatedTier shared) {
        int sessions = 0;
        int widest = 0;
        for (Workload.Route r : routes) {
            sessions += r.sessions();
            widest = Math.max(widest, r.sessions());
        }
        int rounds = Math.max(1, Math.min(8, MAX_REQUESTS / Math.max(1, sessions)));
        SplittableRandom random = new SplittableRandom(0x5EEDL);
        ArrayDeque<InFlight> inFlight = new ArrayDeque<>();
        int[] load = new int[n];
        long requests = 0;
        long refused = 0;
        long prompt = 0;
        long hits = 0;
        double prefill = 0;
        long serial = 0;
        for (int k = 0; k < rounds && within(requests, prompt); k++) {
            for (int s = 0; s < widest && within(requests, prompt); s++) {
                for (int ri = 0; ri < routes.size() && within(requests, prompt); ri++) {
                    Workload.Route spec = routes.get(ri);
                    if (s >= spec.sessions()) {
                        continue;
                    }
                    Request q = new Request(ri, s, k, spec, 0, settings.maxModelLen());
                    int[] promptIds = new int[q.promptTokens()];
                    for (int t = 0; t < promptIds.length; t++) {
                        promptIds[t] = q.tokenAt(t);
                    }
                    int target = routing == Routing.ROUTER ? ids.indexOf(router.route(promptIds, 0L).instance())
                            : random.nextInt(n);
                    while (inFlight.size() >= sessions) {
                        finish(inFlight.poll(), managers, router, ids, load);
                    }
                    KvCacheManager m = managers.get(target);
                    Sequence seq = m.open("f" + serial++);
                    int got = m.append(seq, promptIds);
                    while (got < 0 && finishOldestOn(target, inFlight, managers, router, ids, load)) {
                        got = m.append(seq, promptIds);
                    }
                    requests++;
                    prompt += promptIds.length;
                    if (got < 0) {
                        m.free(seq);
                        refused++;
                        prefill += settings.time().recomputeSeconds(0, promptIds.length);
                        continue;
                    }
                    hits += got;
                    prefill += settings.time().recomputeSeconds(got, promptIds.length - got);
                    m.commit(seq);
                    int[] decode = new int[q.decodeTokens];
                    for (int t = 0; t < decode.length; t++) {
                        decode[t] = q.tokenAt(promptIds.length + t);
                    }
                    int d = m.append(seq, decode);
                    while (d < 0 && finishOldestOn(target, inFlight, managers, router, ids, load)) {
                        d = m.append(seq, decode);
                    }
                    if (d < 0) {
                        m.free(seq); // its prompt stays published: only the decode did not fit
                        continue;
                    }
                    inFlight.add(new InFlight(target, seq));
                    router.reportLoad(ids.get(target), ++load[target]);
                }
            }
        }
        long tierHits = 0;
        for (KvCacheManager m : managers) {
            tierHits += m.ledger().tierHitTokens();
        }
        // loads are on the request's path (before its first token); writes on publish go behind
        long read = shared == null ? 0 : shared.stats().loads() * layout.bytesPerBlock();
        long written = shared == null ? 0 : shared.stats().bytesMoved() - read;
        return new Row(name, n, requests, refused, prompt, hits - tierHits, tierHits, prefill, read,
                settings.networkSeconds(read), written);
    }

    /** A request in flight: the instance serving it and its sequence there. */
    private record InFlight(int instance, Sequence seq) {
    }

    private static void finish(InFlight f, List<KvCacheManager> managers, PrefixRouter router, List<String> ids,
                               int[] load) {
        managers.get(f.instance()).free(f.seq());
        router.reportLoad(ids.get(f.instance()), --load[f.instance()]);
    }

    /** Finishes the oldest request in flight on {@code instance}; false when it has none. */
    private static boolean finishOldestOn(int instance, ArrayDeque<InFlight> inFlight, List<KvCacheManager> managers,
                                          PrefixRouter router, List<String> ids, int[] load) {
        for (var it = inFlight.iterator(); it.hasNext(); ) {
            InFlight f = it.next();
            if (f.instance() == instance) {
                it.remove();
                finish(f, managers, router, ids, load);
                return true;
            }
        }
        return false;
    }

    /** Whether a row may replay another request: both bounds of one row's work. */
    private static boolean within(long requests, long promptTokens) {
        return requests < MAX_REQUESTS && promptTokens < MAX_PROMPT_TOKENS;
    }
}
