package dev.kvcache.metrics;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.FlightRecorder;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.Percentage;
import jdk.jfr.Period;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

import java.util.Objects;

/**
 * Streams a {@link KvCacheManager}'s ledger into JDK Flight Recorder: one event per lever pulled
 * (append refused, block evicted, sequence preempted, idle release, tokens dropped) and a periodic
 * {@code dev.kvcache.CacheStats} snapshot (every second by default; JFR settings may change it).
 *
 * <pre>{@code
 * try (var jfr = KvCacheJfr.install(manager, "decode-pool")) {
 *     ... serve ...
 * }
 * // java -XX:StartFlightRecording:filename=kv.jfr ...; jfr print --categories kvcache kv.jfr
 * }</pre>
 *
 * Events cost a field check when JFR is not recording ({@code isEnabled()} guards each commit).
 * Evictions are reported per block and may be frequent under pressure: they are disabled unless a
 * recording enables {@code dev.kvcache.BlockEvicted}.
 */
public final class KvCacheJfr implements AutoCloseable {

    private final KvCacheManager manager;
    private final String cache;
    private final KvCacheListener listener;
    private final Runnable periodic;

    private KvCacheJfr(KvCacheManager manager, String cache) {
        this.manager = manager;
        this.cache = cache;
        this.listener = this::onEvent;
        this.periodic = this::emitStats;
    }

    /** Starts reporting {@code manager} under the name {@code cache}; close to stop. */
    public static KvCacheJfr install(KvCacheManager manager, String cache) {
        Objects.requireNonNull(manager, "manager");
        Objects.requireNonNull(cache, "cache");
        KvCacheJfr jfr = new KvCacheJfr(manager, cache);
        manager.addListener(jfr.listener);
        FlightRecorder.addPeriodicEvent(CacheStatsEvent.class, jfr.periodic);
        return jfr;
    }

    @Override
    public void close() {
        manager.removeListener(listener);
        FlightRecorder.removePeriodicEvent(periodic);
    }

    private void onEvent(KvCacheEvent e) {
        switch (e) {
            case KvCacheEvent.AppendRefused r -> {
                AppendRefusedEvent ev = new AppendRefusedEvent();
                if (ev.isEnabled()) {
                    ev.cache = cache;
                    ev.sequence = r.id();
                    ev.tenant = r.tenant();
                    ev.reason = r.reason().name();
                    ev.tokens = r.tokens();
                    ev.freeBlocks = r.freeBlocks();
                    ev.commit();
                }
            }
            case KvCacheEvent.BlockRemoved r -> {
                BlockEvictedEvent ev = new BlockEvictedEvent();
                if (ev.isEnabled()) {
                    ev.cache = cache;
                    ev.block = r.block();
                    ev.hash = r.hash();
                    ev.commit();
                }
            }
            case KvCacheEvent.SequencePreempted p -> {
                PreemptionEvent ev = new PreemptionEvent();
                if (ev.isEnabled()) {
                    ev.cache = cache;
                    ev.sequence = p.id();
                    ev.tenant = p.tenant();
                    ev.mode = p.mode().name();
                    ev.tokens = p.tokens();
                    ev.blocks = p.blocks();
                    ev.commit();
                }
            }
            case KvCacheEvent.IdleReleased i -> {
                IdleReleaseEvent ev = new IdleReleaseEvent();
                if (ev.isEnabled()) {
                    ev.cache = cache;
                    ev.sequence = i.release().id();
                    ev.tenant = i.release().tenant();
                    ev.idle = i.release().idleNanos();
                    ev.tokens = i.release().tokens();
                    ev.bytes = i.release().bytes();
                    ev.commit();
                }
            }
            case KvCacheEvent.TokensDropped d -> {
                TokensDroppedEvent ev = new TokensDroppedEvent();
                if (ev.isEnabled()) {
                    ev.cache = cache;
                    ev.sequence = d.id();
                    ev.tokens = d.tokens();
                    ev.blocks = d.blocks();
                    ev.commit();
                }
            }
            default -> {
                // BlockStored and AllBlocksCleared are for routers, not for the ledger
            }
        }
    }

    private void emitStats() {
        CacheStatsEvent ev = new CacheStatsEvent();
        if (!ev.isEnabled()) {
            return;
        }
        KvCacheLedger l = manager.ledger();
        ev.cache = cache;
        ev.totalBlocks = l.stats().totalBlocks();
        ev.usedBlocks = l.stats().usedBlocks();
        ev.cachedBlocks = l.stats().cachedBlocks();
        ev.emptyBlocks = l.stats().emptyBlocks();
        ev.usedBytes = l.usedBytes();
        ev.liveSequences = l.stats().liveSequences();
        ev.liveTokens = l.stats().liveTokens();
        ev.prefixHitRate = l.stats().prefixHitRate();
        ev.allocationFailures = l.stats().allocationFailures();
        ev.evictedBlocks = l.stats().evictedBlocks();
        ev.preemptions = l.preemptions();
        ev.idleHeldBytes = l.idleHeldBytes();
        ev.commit();
    }

    @Name("dev.kvcache.AppendRefused")
    @Label("KV Append Refused")
    @Category("kvcache")
    @Description("An append returned -1: not enough blocks, reserved blocks, the watermark or a tenant quota")
    @StackTrace(false)
    static final class AppendRefusedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Sequence") String sequence;
        @Label("Tenant") String tenant;
        @Label("Reason") String reason;
        @Label("Tokens") int tokens;
        @Label("Free Blocks") int freeBlocks;
    }

    @Name("dev.kvcache.BlockEvicted")
    @Label("KV Block Evicted")
    @Category("kvcache")
    @Description("A cached block's content was dropped so the block could be reused")
    @StackTrace(false)
    @jdk.jfr.Enabled(false)
    static final class BlockEvictedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Block") int block;
        @Label("Prefix Hash") long hash;
    }

    @Name("dev.kvcache.Preemption")
    @Label("KV Sequence Preempted")
    @Category("kvcache")
    @StackTrace(false)
    static final class PreemptionEvent extends Event {
        @Label("Cache") String cache;
        @Label("Sequence") String sequence;
        @Label("Tenant") String tenant;
        @Label("Mode") String mode;
        @Label("Tokens") int tokens;
        @Label("Blocks Returned") int blocks;
    }

    @Name("dev.kvcache.IdleRelease")
    @Label("KV Idle Sequence Released")
    @Category("kvcache")
    @StackTrace(false)
    static final class IdleReleaseEvent extends Event {
        @Label("Cache") String cache;
        @Label("Sequence") String sequence;
        @Label("Tenant") String tenant;
        @Label("Idle") @Timespan(Timespan.NANOSECONDS) long idle;
        @Label("Tokens") int tokens;
        @Label("Bytes") @DataAmount long bytes;
    }

    @Name("dev.kvcache.TokensDropped")
    @Label("KV Tokens Dropped")
    @Category("kvcache")
    @StackTrace(false)
    static final class TokensDroppedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Sequence") String sequence;
        @Label("Tokens") int tokens;
        @Label("Blocks Released") int blocks;
    }

    @Name("dev.kvcache.CacheStats")
    @Label("KV Cache Statistics")
    @Category("kvcache")
    @Period("1 s")
    @StackTrace(false)
    static final class CacheStatsEvent extends Event {
        @Label("Cache") String cache;
        @Label("Total Blocks") int totalBlocks;
        @Label("Used Blocks") int usedBlocks;
        @Label("Cached Blocks") int cachedBlocks;
        @Label("Empty Blocks") int emptyBlocks;
        @Label("Used") @DataAmount long usedBytes;
        @Label("Live Sequences") int liveSequences;
        @Label("Live Tokens") long liveTokens;
        @Label("Prefix Hit Rate") @Percentage double prefixHitRate;
        @Label("Allocation Failures") long allocationFailures;
        @Label("Evicted Blocks") long evictedBlocks;
        @Label("Preemptions") long preemptions;
        @Label("Idle Held") @DataAmount long idleHeldBytes;
    }
}
