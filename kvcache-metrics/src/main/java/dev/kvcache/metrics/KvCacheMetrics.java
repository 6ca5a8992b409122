package dev.kvcache.metrics;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheManager;
import dev.kvcache.TierStats;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.binder.BaseUnits;
import io.micrometer.core.instrument.binder.MeterBinder;

import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.ToDoubleFunction;

/**
 * Binds a {@link KvCacheManager}'s ledger to a Micrometer {@link MeterRegistry}: gauges for what is
 * held now (blocks by kind, bytes, live sequences and tokens, hit rate, idle bytes) and function
 * counters for what happened (prefix query and hit tokens, allocation failures, evictions,
 * preemptions, recomputed tokens, swapped bytes, idle releases, dropped tokens, published and
 * aborted blocks, copy/swap/callback failures; outstanding preemption records as a gauge). Every meter is
 * named {@code kvcache.*} and tagged {@code cache=<name>}.
 *
 * <p>Tiers: function counters {@code kvcache.tier.demoted.blocks}, {@code kvcache.tier.promoted.blocks},
 * {@code kvcache.tier.hit.tokens}, {@code kvcache.tier.load.misses} and {@code kvcache.tier.errors}
 * for the manager as a whole, and per tier, tagged {@code tier=<name>} as well: gauges
 * {@code kvcache.tier.blocks}, {@code kvcache.tier.memory.used} and {@code kvcache.tier.memory.capacity}
 * (bytes), function counters {@code kvcache.tier.puts}, {@code kvcache.tier.refused.puts},
 * {@code kvcache.tier.loads}, {@code kvcache.tier.verification.misses}, {@code kvcache.tier.evictions},
 * {@code kvcache.tier.moved.bytes} (bytes) and {@code kvcache.tier.copy.time} (seconds). A
 * manager's tiers are fixed when it is built, so they are registered once, at {@link #bindTo};
 * a name that an earlier tier of the same manager already has is tagged {@code <name>#<level>}
 * (level 0 is the first tier) so that two tiers never share a meter.
 *
 * <p>Meters read {@link KvCacheManager#ledger()} when scraped (it takes the manager's read lock);
 * nothing is added to the append path. Needs micrometer-core on the class or module path.
 */
public final class KvCacheMetrics implements MeterBinder {

    private final KvCacheManager manager;
    private final Tags tags;

    /**
     * Creates a binder; no meter is registered until {@link #bindTo(MeterRegistry)}.
     *
     * @param manager the manager whose {@link KvCacheManager#ledger()} the meters read when scraped; not null
     * @param cache the value of the {@code cache} tag on every meter, to tell several managers apart
     *              in one registry; not null
     * @throws NullPointerException if {@code manager} or {@code cache} is null
     */
    public KvCacheMetrics(KvCacheManager manager, String cache) {
        this.manager = Objects.requireNonNull(manager, "manager");
        this.tags = Tags.of(Tag.of("cache", Objects.requireNonNull(cache, "cache")));
    }

    @Override
    public void bindTo(MeterRegistry registry) {
        gauge(registry, "kvcache.blocks", "blocks by state", "kind", "used", l -> l.stats().usedBlocks());
        gauge(registry, "kvcache.blocks", "blocks by state", "kind", "cached", l -> l.stats().cachedBlocks());
        gauge(registry, "kvcache.blocks", "blocks by state", "kind", "empty", l -> l.stats().emptyBlocks());
        gauge(registry, "kvcache.blocks", "blocks by state", "kind", "reserved", KvCacheLedger::reservedBlocks);
        gauge(registry, "kvcache.memory.used", "bytes held by live sequences", null, null, KvCacheLedger::usedBytes);
        gauge(registry, "kvcache.memory.cached", "bytes held only by the prefix cache", null, null, KvCacheLedger::cachedBytes);
        gauge(registry, "kvcache.memory.idle", "bytes held by sequences idle past their lease", null, null, KvCacheLedger::idleHeldBytes);
        gauge(registry, "kvcache.memory.per.sequence", "used bytes per live sequence", null, null, KvCacheLedger::bytesPerLiveSequence);
        gauge(registry, "kvcache.sequences.live", "live sequences", null, null, l -> l.stats().liveSequences());
        gauge(registry, "kvcache.tokens.live", "active tokens x concurrency", null, null, l -> l.stats().liveTokens());
        gauge(registry, "kvcache.prefix.hit.ratio", "prefix hit tokens / query tokens", null, null, l -> l.stats().prefixHitRate());
        counter(registry, "kvcache.prefix.query.tokens", l -> l.stats().prefixQueryTokens());
        counter(registry, "kvcache.prefix.hit.tokens", l -> l.stats().prefixHitTokens());
        counter(registry, "kvcache.allocation.failures", l -> l.stats().allocationFailures());
        counter(registry, "kvcache.evicted.blocks", l -> l.stats().evictedBlocks());
        counter(registry, "kvcache.preemptions", KvCacheLedger::preemptions);
        counter(registry, "kvcache.recomputed.tokens", KvCacheLedger::recomputedTokens);
        counter(registry, "kvcache.swapped.out.bytes", KvCacheLedger::swappedOutBytes);
        counter(registry, "kvcache.swapped.in.bytes", KvCacheLedger::swappedInBytes);
        counter(registry, "kvcache.idle.released.sequences", KvCacheLedger::idleReleasedSequences);
        counter(registry, "kvcache.dropped.tokens", KvCacheLedger::droppedTokens);
        counter(registry, "kvcache.copy.on.writes", KvCacheLedger::copyOnWrites);
        counter(registry, "kvcache.published.blocks", KvCacheLedger::publishedBlocks);
        counter(registry, "kvcache.aborted.blocks", KvCacheLedger::abortedBlocks);
        counter(registry, "kvcache.copy.failures", KvCacheLedger::copyFailures);
        counter(registry, "kvcache.swap.failures", KvCacheLedger::swapFailures);
        counter(registry, "kvcache.callback.errors", KvCacheLedger::callbackErrors);
        gauge(registry, "kvcache.preemption.records", "preemption records issued and not yet resumed or discarded",
                null, null, KvCacheLedger::outstandingRecords);
        counter(registry, "kvcache.tier.demoted.blocks", KvCacheLedger::demotedBlocks);
        counter(registry, "kvcache.tier.promoted.blocks", KvCacheLedger::promotedBlocks);
        counter(registry, "kvcache.tier.hit.tokens", KvCacheLedger::tierHitTokens);
        counter(registry, "kvcache.tier.load.misses", KvCacheLedger::tierLoadMisses);
        counter(registry, "kvcache.tier.errors", KvCacheLedger::tierErrors);
        List<TierStats> tiers = manager.ledger().tiers();
        Set<String> names = new HashSet<>();
        for (int i = 0; i < tiers.size(); i++) {
            String name = tiers.get(i).tier();
            bindTier(registry, i, names.add(name) ? name : name + "#" + i);
        }
    }

    private void bindTier(MeterRegistry r, int level, String name) {
        Tags t = tags.and("tier", name);
        tierGauge(r, "kvcache.tier.blocks", "blocks the tier holds", null, t, level, TierStats::blocks);
        tierGauge(r, "kvcache.tier.memory.used", "bytes the tier holds", BaseUnits.BYTES, t, level, TierStats::bytes);
        tierGauge(r, "kvcache.tier.memory.capacity", "the most bytes the tier may hold", BaseUnits.BYTES, t, level,
                TierStats::capacityBytes);
        tierCounter(r, "kvcache.tier.puts", "blocks the tier took", null, t, level, TierStats::puts);
        tierCounter(r, "kvcache.tier.refused.puts", "puts the tier refused (full, error)", null, t, level,
                TierStats::refusedPuts);
        tierCounter(r, "kvcache.tier.loads", "blocks loaded from the tier", null, t, level, TierStats::loads);
        tierCounter(r, "kvcache.tier.verification.misses",
                "loads refused because the held copy did not match or failed its checksum", null, t, level,
                TierStats::verificationMisses);
        tierCounter(r, "kvcache.tier.evictions", "blocks the tier dropped to make room", null, t, level,
                TierStats::evictions);
        tierCounter(r, "kvcache.tier.moved.bytes", "bytes copied into and out of the tier", BaseUnits.BYTES, t, level,
                TierStats::bytesMoved);
        // Copy time is a monotonic total with no matching count of copies in TierStats (a put of a
        // held key copies nothing, a refused put or a failed load may have copied part), so a
        // FunctionTimer would report a made-up count and mean. A function counter of seconds is the
        // honest shape: rate() of it is the fraction of wall time spent copying, and dividing its rate
        // by the rate of kvcache.tier.moved.bytes gives seconds per byte.
        tierCounter(r, "kvcache.tier.copy.time", "time spent copying blocks into and out of the tier",
                "seconds", t, level, s -> s.copyNanos() / (double) TimeUnit.SECONDS.toNanos(1));
    }

    private static TierStats tier(KvCacheManager m, int level) {
        return m.ledger().tiers().get(level);
    }

    private void tierGauge(MeterRegistry r, String name, String help, String unit, Tags t, int level,
                           ToDoubleFunction<TierStats> f) {
        Gauge.builder(name, manager, m -> f.applyAsDouble(tier(m, level))).description(help).baseUnit(unit).tags(t)
                .register(r);
    }

    private void tierCounter(MeterRegistry r, String name, String help, String unit, Tags t, int level,
                             ToDoubleFunction<TierStats> f) {
        FunctionCounter.builder(name, manager, m -> f.applyAsDouble(tier(m, level))).description(help).baseUnit(unit)
                .tags(t).register(r);
    }

    private void gauge(MeterRegistry r, String name, String help, String tagKey, String tagValue,
                       ToDoubleFunction<KvCacheLedger> f) {
        Tags t = tagKey == null ? tags : tags.and(tagKey, tagValue);
        Gauge.builder(name, manager, m -> f.applyAsDouble(m.ledger())).description(help).tags(t).register(r);
    }

    private void counter(MeterRegistry r, String name, ToDoubleFunction<KvCacheLedger> f) {
        FunctionCounter.builder(name, manager, m -> f.applyAsDouble(m.ledger())).tags(tags).register(r);
    }
}
