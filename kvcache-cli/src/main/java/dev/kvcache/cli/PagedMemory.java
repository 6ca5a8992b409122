package dev.kvcache.cli;

import dev.kvcache.CapacityPlanner;
import dev.kvcache.IdleRelease;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvLayout;
import dev.kvcache.PreemptionCostModel;
import dev.kvcache.PreemptionMode;
import dev.kvcache.Refusal;
import dev.kvcache.Sequence;
import dev.kvcache.SequenceOptions;
import dev.kvcache.TenantStats;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The paged configurations' memory: a real {@link KvCacheManager}. Every allocation failure,
 * prefix hit, eviction, window release, quota refusal, swap and idle release is the manager's own
 * answer; this class only asks.
 *
 * <p>Preemption ({@link MemoryModel.Preempting}): the victim is the manager's first
 * {@link KvCacheManager#preemptionVictims} choice, or the requester itself when it ranks lowest
 * (lowest priority, then newest); an append refused for its tenant's quota (the {@code longpool}
 * lever) preempts within that tenant, since freeing another tenant's blocks would not help. With
 * the {@code swap} lever the mode is the library's {@link PreemptionCostModel}'s choice for the
 * victim's bytes and tokens, with the host link as the swap rate and the {@link StepTimeModel}'s
 * recompute rate; SWAP falls back to RECOMPUTE when the swap space lacks room.
 */
final class PagedMemory implements MemoryModel, MemoryModel.Preempting, MemoryModel.IdleReleasing {
    private final KvCacheManager m;
    private final KvLayout layout;
    private final int watermarkBlocks;
    private final int[] stamp;
    private int currentStamp;
    private final Simulator.Settings settings;
    private final boolean window;
    private final SimulatedSwapSpace swap;
    private final SimulatedTier tier;
    private final SimulatedTier shared;
    private final Map<String, Integer> quotas;

    PagedMemory(KvCacheManager m, Simulator.Settings settings, boolean window, SimulatedSwapSpace swap,
                SimulatedTier tier, SimulatedTier shared, Map<String, Integer> quotas) {
        this.m = m;
        this.settings = settings;
        this.window = window;
        this.swap = swap;
        this.tier = tier;
        this.shared = shared;
        this.quotas = Map.copyOf(quotas);
        this.layout = m.layout();
        int total = m.stats().totalBlocks();
        this.watermarkBlocks = (int) Math.ceil(total * settings.watermark());
        this.stamp = new int[total];
    }

    @Override
    public boolean open(Request r) {
        SequenceOptions o = SequenceOptions.DEFAULT.withPriority(r.spec.priority());
        if (r.tenant != null) {
            o = o.withTenant(r.tenant);
        }
        r.seq = m.open(r.id(), o);
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
    public boolean canAdmit(Request r, int tokens) {
        long need;
        if (window) {
            // a chunked prefill under a window holds at most the sinks, the window and one chunk
            need = CapacityPlanner.kvBytesWithWindow(layout, tokens, settings.sinkTokens(),
                    settings.windowTokens() + settings.prefillChunk()) / layout.bytesPerBlock();
        } else {
            need = layout.blocksFor(tokens);
        }
        Integer quota = r.tenant == null ? null : quotas.get(r.tenant);
        if (quota != null) {
            TenantStats t = m.tenantStats(r.tenant); // null until the tenant opens its first sequence
            if ((t == null ? 0 : t.usedBlocks()) + need > quota) {
                return false;
            }
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
    public long kvBytesRead(Request r) {
        long tokens = window ? Math.min(r.length, (long) settings.sinkTokens() + settings.windowTokens()) : r.length;
        return tokens * layout.bytesPerToken();
    }

    @Override
    public long transferredBytes() {
        return (swap == null ? 0 : swap.bytesMoved()) + (tier == null ? 0 : tier.stats().bytesMoved());
    }

    @Override
    public long networkBytes() {
        return shared == null ? 0 : shared.stats().bytesMoved();
    }

    @Override
    public Request victim(Request q, Map<String, Request> running) {
        if (m.lastRefusal() == Refusal.TENANT_QUOTA) {
            // only the tenant's own blocks count against its quota
            Request worst = q;
            for (Request o : running.values()) {
                if (o != q && q.tenant.equals(o.tenant) && o.seq != null
                        && m.preemptionCount(o.id()) < THRASH_LIMIT && ranksBelow(o, worst)) {
                    worst = o;
                }
            }
            return worst;
        }
        List<Sequence> v = m.preemptionVictims(1, q.seq);
        if (v.isEmpty()) {
            return q;
        }
        Request other = running.get(v.getFirst().id());
        if (other == null) {
            throw new IllegalStateException("victim " + v.getFirst().id() + " is not a running request");
        }
        return ranksBelow(q, other) ? q : other;
    }

    /** The manager's default thrash guard: a sequence preempted this often is spared. */
    private static final int THRASH_LIMIT = 3;

    /** Lower priority, or the same priority and admitted later. */
    private static boolean ranksBelow(Request a, Request b) {
        int byPriority = Integer.compare(a.spec.priority(), b.spec.priority());
        return byPriority < 0 || byPriority == 0 && a.admitOrder > b.admitOrder;
    }

    @Override
    public PreemptionMode preempt(Request v) {
        // every token a request appended was computed within its step: publish the blocks of
        // its last append before preempting, which by itself publishes nothing pending
        m.commit(v.seq);
        PreemptionMode mode = PreemptionMode.RECOMPUTE;
        if (swap != null) {
            long bytes = (long) v.seq.heldBlocks() * layout.bytesPerBlock();
            PreemptionCostModel cost = new PreemptionCostModel(settings.hostLinkGBps() * 1e9,
                    settings.time().recomputeTokensPerSecond(v.length));
            if (cost.choose(bytes, v.length) == PreemptionMode.SWAP && swap.freeBlocks() >= v.seq.heldBlocks()) {
                mode = PreemptionMode.SWAP;
            }
        }
        v.preempted = m.preempt(v.seq, mode);
        v.seq = null;
        return mode;
    }

    @Override
    public int resume(Request q) {
        boolean swapped = q.preempted.mode() == PreemptionMode.SWAP;
        Sequence s = m.resume(q.preempted);
        if (s == null) {
            return -1;
        }
        q.seq = s;
        q.preempted = null;
        m.commit(s); // the re-prefill is computed within the admission step
        return swapped ? s.length() : s.cachedTokens();
    }

    @Override
    public List<Map.Entry<Request, Long>> reapIdle(Map<String, Request> running) {
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
        // distinct blocks per route: idle streams of one route share its system prompt's blocks, which
        // are held once (summing each stream's own figure counted them once per stream)
        List<java.util.Set<Integer>> seen = new ArrayList<>();
        for (int i = 0; i < routes; i++) {
            seen.add(new java.util.HashSet<>());
        }
        for (IdleRelease r : m.idleSequences(Duration.ofSeconds(deadline))) {
            Request q = byId.get(r.id());
            for (int b : q.seq.blockTable()) {
                if (b >= 0 && seen.get(q.route).add(b)) {
                    out[q.route] += layout.bytesPerBlock();
                }
            }
        }
        return out;
    }
}
