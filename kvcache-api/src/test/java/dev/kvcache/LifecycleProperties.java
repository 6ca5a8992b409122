package dev.kvcache;

import dev.kvcache.retention.AttentionMass;
import dev.kvcache.retention.HeavyHitterRetention;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The guarantees of the lifecycle levers over random workloads: a quota is never exceeded; the
 * reaper never releases a sequence inside its lease; preemption returns every block; retention
 * never drops a sink token or a token inside the recent window.
 */
class LifecycleProperties {

    private static final KvLayout LAYOUT = new KvLayout(1, 1, 8, 4, KvFormats.F32);
    private static final String[] TENANTS = {"a", "b", "c"};

    /** One step of a random multi-tenant workload. */
    record Step(int kind, int seq, int tenant, int tokens, int advanceSeconds) {
        @Override
        public String toString() {
            return switch (kind) {
                case 0 -> "open(s" + seq + ", " + TENANTS[tenant] + ")";
                case 1 -> "append(s" + seq + ", " + tokens + ")";
                case 2 -> "free(s" + seq + ")";
                case 3 -> "preempt(s" + seq + ")";
                case 4 -> "resume(s" + seq + ")";
                case 5 -> "advance(" + advanceSeconds + "s)+reap";
                default -> "fork(s" + seq + ")";
            };
        }
    }

    @Provide
    Arbitrary<List<Step>> workloads() {
        Arbitrary<Step> step = Combinators.combine(
                Arbitraries.integers().between(0, 6),
                Arbitraries.integers().between(0, 5),
                Arbitraries.integers().between(0, 2),
                Arbitraries.integers().between(1, 9),
                Arbitraries.integers().between(0, 40)).as(Step::new);
        return step.list().ofMinSize(1).ofMaxSize(60);
    }

    @Property(tries = 300)
    void quotasLeasesAndPreemptionHold(@ForAll("workloads") List<Step> steps,
                                       @ForAll @IntRange(min = 4, max = 20) int blocks,
                                       @ForAll @IntRange(min = 0, max = 8) int quotaA) {
        AtomicLong now = new AtomicLong();
        long lease = Duration.ofSeconds(30).toNanos();
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(blocks).clock(now::get)
                .idleLease(Duration.ofNanos(lease)).tenantQuota("a", quotaA).tenantQuota("b", blocks / 2).build()) {
            Map<Integer, Sequence> live = new HashMap<>();
            Map<Integer, PreemptedSequence> parked = new HashMap<>();
            Map<String, Long> lastTouch = new HashMap<>();
            int forks = 0;
            for (Step st : steps) {
                Sequence s = live.get(st.seq());
                switch (st.kind()) {
                    case 0 -> {
                        if (s == null && !parked.containsKey(st.seq())) {
                            live.put(st.seq(), m.open("s" + st.seq(),
                                    SequenceOptions.DEFAULT.withTenant(TENANTS[st.tenant()])));
                            lastTouch.put("s" + st.seq(), now.get());
                        }
                    }
                    case 1 -> {
                        if (s != null) {
                            int[] toks = new int[st.tokens()];
                            for (int i = 0; i < toks.length; i++) {
                                toks[i] = (s.length() + i) % 7;
                            }
                            if (m.append(s, toks) >= 0) {
                                lastTouch.put(s.id(), now.get());
                            }
                        }
                    }
                    case 2 -> {
                        if (s != null) {
                            m.free(s);
                            live.remove(st.seq());
                        }
                    }
                    case 3 -> {
                        if (s != null) {
                            int usedBefore = m.stats().usedBlocks();
                            int alone = 0;
                            for (int b : s.blockTable()) {
                                if (b >= 0 && m.refCount(b) == 1) {
                                    alone++;
                                }
                            }
                            parked.put(st.seq(), m.preempt(s, PreemptionMode.RECOMPUTE));
                            live.remove(st.seq());
                            assertEquals(usedBefore - alone, m.stats().usedBlocks(),
                                    "preemption returns every block it held alone");
                            assertFalse(s.isLive());
                        }
                    }
                    case 4 -> {
                        PreemptedSequence p = parked.get(st.seq());
                        if (p != null && s == null) {
                            Sequence back = m.resume(p);
                            if (back != null) {
                                parked.remove(st.seq());
                                live.put(st.seq(), back);
                                lastTouch.put(back.id(), now.get());
                                assertEquals(p.length(), back.length());
                            }
                        }
                    }
                    case 5 -> {
                        now.addAndGet(Duration.ofSeconds(st.advanceSeconds()).toNanos());
                        List<IdleRelease> reaped = m.reapIdle();
                        for (IdleRelease r : reaped) {
                            long idle = now.get() - lastTouch.get(r.id());
                            assertTrue(idle > lease, r.id() + " reaped after only " + idle + " ns");
                            live.values().removeIf(q -> q.id().equals(r.id()));
                        }
                        for (Sequence q : live.values()) {
                            assertTrue(now.get() - lastTouch.get(q.id()) <= lease,
                                    q.id() + " outlived its lease");
                        }
                    }
                    default -> {
                        if (s != null && live.size() < 12) {
                            int id = 100 + forks++;
                            live.put(id, m.fork(s, "s" + id));
                            lastTouch.put("s" + id, now.get());
                        }
                    }
                }
                // quotas hold and charges add up
                int charged = 0;
                for (TenantStats t : m.tenantStats()) {
                    assertTrue(t.usedBlocks() <= t.quotaBlocks(), t + " over quota after " + st);
                    charged += t.usedBlocks();
                }
                KvCacheStats stats = m.stats();
                assertEquals(stats.usedBlocks(), charged, "every used block is charged to one tenant");
                assertEquals(stats.totalBlocks(), stats.usedBlocks() + stats.cachedBlocks() + stats.emptyBlocks());
            }
            for (Sequence s : live.values()) {
                m.free(s);
            }
            assertEquals(0, m.stats().usedBlocks());
        }
    }

    @Property(tries = 300)
    void retentionNeverDropsSinksOrRecentTokens(@ForAll @IntRange(min = 1, max = 120) int length,
                                                @ForAll @IntRange(min = 0, max = 12) int sinks,
                                                @ForAll @IntRange(min = 0, max = 24) int recent,
                                                @ForAll @IntRange(min = 0, max = 20) int heavy,
                                                @ForAll boolean blockGranular,
                                                @ForAll @Size(max = 40) List<@IntRange(min = 0, max = 119) Integer> hot,
                                                @ForAll @IntRange(min = 1, max = 3) int rounds) {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(64).build()) {
            Sequence s = m.open("s");
            int[] toks = new int[length];
            m.append(s, toks);
            HeavyHitterRetention h2o = new HeavyHitterRetention(sinks, recent, heavy, blockGranular);
            AttentionMass mass = new AttentionMass(length);
            for (int p : hot) {
                mass.add(p, 1f + p % 3);
            }
            for (int r = 0; r < rounds; r++) {
                int[] drop = h2o.select(s, mass, LAYOUT.blockTokens());
                for (int p : drop) {
                    assertTrue(p >= sinks, "dropped sink " + p);
                    assertTrue(p < s.length() - recent, "dropped recent " + p + " of " + s.length());
                    assertFalse(s.isDropped(p), "chose an already dropped " + p);
                }
                m.dropTokens(s, drop, 0, drop.length);
                int keptOld = 0;
                for (int p = Math.min(sinks, s.length()); p < s.length() - recent; p++) {
                    if (!s.isDropped(p)) {
                        keptOld++;
                    }
                }
                int cap = blockGranular ? ((heavy + 3) / 4) * 4 + 2 * 4 : heavy;
                    assertTrue(keptOld <= cap, "kept " + keptOld + " old tokens, cap " + cap);
                for (int p = 0; p < s.length(); p++) {
                    boolean protectedPos = p < sinks || p >= s.length() - recent;
                    if (protectedPos) {
                        assertTrue(s.slot(p) >= 0, "protected " + p + " lost its slot");
                    }
                }
                m.append(s, 1); // the sequence grows between rounds
            }
            m.free(s);
        }
    }

    @Property(tries = 100)
    void guaranteedSequencesNeverFail(@ForAll @Size(min = 1, max = 6) List<@IntRange(min = 1, max = 40) Integer> maxima,
                                      @ForAll @IntRange(min = 4, max = 24) int blocks,
                                      @ForAll @IntRange(min = 0, max = 30) int noise) {
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(blocks).build()) {
            List<Sequence> admitted = new ArrayList<>();
            List<Integer> max = new ArrayList<>();
            for (int i = 0; i < maxima.size(); i++) {
                Sequence g = m.open("g" + i, SequenceOptions.DEFAULT.withMaxTokens(maxima.get(i)));
                if (m.append(g, 1) >= 0) {
                    admitted.add(g);
                    max.add(maxima.get(i));
                } else {
                    m.free(g);
                }
                Sequence x = m.open("x" + i);
                for (int t = 0; t < noise; t++) {
                    m.append(x, t); // unguaranteed traffic grabs what it can
                }
                m.free(x);
            }
            boolean progress = true;
            while (progress) {
                progress = false;
                for (int i = 0; i < admitted.size(); i++) {
                    Sequence g = admitted.get(i);
                    if (g.length() < max.get(i)) {
                        assertTrue(m.append(g, 3) >= 0, g.id() + " failed at " + g.length() + " of " + max.get(i));
                        progress = true;
                    }
                }
            }
            for (Sequence g : admitted) {
                m.free(g);
            }
        }
    }
}
