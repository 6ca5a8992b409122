package dev.kvcache.metrics;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheManager;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.binder.MeterBinder;

import java.util.Objects;
import java.util.function.ToDoubleFunction;

/**
 * Binds a {@link KvCacheManager}'s ledger to a Micrometer {@link MeterRegistry}: gauges for what is
 * held now (blocks by kind, bytes, live sequences and tokens, hit rate, idle bytes) and function
 * counters for what happened (prefix query and hit tokens, allocation failures, evictions,
 * preemptions, recomputed tokens, swapped bytes, idle releases, dropped tokens, published and
 * aborted blocks, copy/swap/callback failures; outstanding preemption records as a gauge). Every meter is
 * named {@code kvcache.*} and tagged {@code cache=<name>}.
 *
 * <p>Meters read {@link KvCacheManager#ledger()} when scraped (it takes the manager's read lock);
 * nothing is added to the append path. Needs micrometer-core on the class or module path.
 */
public final class KvCacheMetrics implements MeterBinder {

    private final KvCacheManager manager;
    private final Tags tags;

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
