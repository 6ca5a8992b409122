package dev.kvcache.cli;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.FlightRecorder;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.Period;
import jdk.jfr.StackTrace;

import java.util.Objects;

/**
 * Makes a running {@link KvCacheManager}'s ledger visible to Java Flight Recorder, so that JMC,
 * {@code jfr print} or a {@code RecordingStream} shows the KV cache next to GC and CPU.
 *
 * <p>Two sources:
 * <ul>
 *   <li>the manager's {@link KvCacheListener} events become {@code dev.kvcache.BlockStored},
 *       {@code dev.kvcache.BlockRemoved} and {@code dev.kvcache.PrefixCacheCleared} events (committed
 *       on the mutating thread, under the manager's lock: each costs one JFR commit, and while a
 *       listener is registered the manager allocates one event object per store/remove);</li>
 *   <li>a periodic {@code dev.kvcache.Ledger} event (every second by default, configurable with the
 *       usual {@code period} setting) snapshots {@link KvCacheManager#ledger()}. Allocation failures
 *       and window releases have no listener event, so they are visible only here, as counters.
 *       {@link #emit()} commits one on demand (the simulator does so once per step).</li>
 * </ul>
 * Events are disabled unless a recording enables them (e.g. {@code -XX:StartFlightRecording} with a
 * settings file, or {@code Recording.enable("dev.kvcache.Ledger")}), and then cost nothing beyond
 * the {@code isEnabled} check.
 *
 * <p>This belongs in {@code kvcache-api} next to the listener interface; it lives here until the
 * API module takes it (the API module would then need {@code requires jdk.jfr}).
 */
public final class JfrLedgerBridge implements KvCacheListener, AutoCloseable {

    @Name("dev.kvcache.Ledger")
    @Label("KV Cache Ledger")
    @Category({"kvcache"})
    @Description("Periodic snapshot of a KV cache manager's blocks, tokens and counters")
    @Period("1 s")
    @StackTrace(false)
    static final class LedgerEvent extends Event {
        @Label("Cache") String cache;
        @Label("Total Blocks") int totalBlocks;
        @Label("Used Blocks") int usedBlocks;
        @Label("Cached Blocks") int cachedBlocks;
        @Label("Empty Blocks") int emptyBlocks;
        @Label("Live Sequences") int liveSequences;
        @Label("Live Tokens") long liveTokens;
        @Label("Used") @DataAmount long usedBytes;
        @Label("Cached") @DataAmount long cachedBytes;
        @Label("Peak Used") @DataAmount long peakUsedBytes;
        @Label("Prefix Query Tokens") long prefixQueryTokens;
        @Label("Prefix Hit Tokens") long prefixHitTokens;
        @Label("Allocation Failures") long allocationFailures;
        @Label("Evicted Blocks") long evictedBlocks;
        @Label("Copy-on-Writes") long copyOnWrites;
        @Label("Window-Released Blocks") long windowReleasedBlocks;
        @Label("Slot Waste") double slotWaste;
    }

    @Name("dev.kvcache.BlockStored")
    @Label("KV Block Stored")
    @Category({"kvcache"})
    @Description("A full block was published to the prefix cache")
    @StackTrace(false)
    static final class BlockStoredEvent extends Event {
        @Label("Cache") String cache;
        @Label("Block") int block;
        @Label("Hash") long hash;
        @Label("Parent Hash") long parentHash;
        @Label("Cache Salt") long cacheSalt;
        @Label("Tokens") int tokens;
    }

    @Name("dev.kvcache.BlockRemoved")
    @Label("KV Block Removed")
    @Category({"kvcache"})
    @Description("A cached block's content was dropped so the block could be reused")
    @StackTrace(false)
    static final class BlockRemovedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Block") int block;
        @Label("Hash") long hash;
    }

    @Name("dev.kvcache.PrefixCacheCleared")
    @Label("KV Prefix Cache Cleared")
    @Category({"kvcache"})
    @StackTrace(false)
    static final class ClearedEvent extends Event {
        @Label("Cache") String cache;
    }

    private final KvCacheManager manager;
    private final String name;
    private final Runnable periodic = this::emit;
    private boolean closed;

    private JfrLedgerBridge(KvCacheManager manager, String name) {
        this.manager = manager;
        this.name = name;
    }

    /** Registers a listener on {@code manager} and a periodic ledger event; {@code name} tells caches apart. */
    public static JfrLedgerBridge attach(KvCacheManager manager, String name) {
        Objects.requireNonNull(manager, "manager");
        Objects.requireNonNull(name, "name");
        JfrLedgerBridge b = new JfrLedgerBridge(manager, name);
        manager.addListener(b);
        FlightRecorder.addPeriodicEvent(LedgerEvent.class, b.periodic);
        return b;
    }

    @Override
    public void onEvent(KvCacheEvent event) {
        switch (event) {
            case KvCacheEvent.BlockStored s -> {
                BlockStoredEvent e = new BlockStoredEvent();
                if (e.isEnabled()) {
                    e.cache = name;
                    e.block = s.block();
                    e.hash = s.hash();
                    e.parentHash = s.parentHash();
                    e.cacheSalt = s.cacheSalt();
                    e.tokens = s.tokenIds().length;
                    e.commit();
                }
            }
            case KvCacheEvent.BlockRemoved r -> {
                BlockRemovedEvent e = new BlockRemovedEvent();
                if (e.isEnabled()) {
                    e.cache = name;
                    e.block = r.block();
                    e.hash = r.hash();
                    e.commit();
                }
            }
            case KvCacheEvent.AllBlocksCleared c -> {
                ClearedEvent e = new ClearedEvent();
                if (e.isEnabled()) {
                    e.cache = name;
                    e.commit();
                }
            }
        }
    }

    /** Commits one ledger event now (when enabled); a no-op after {@link #close()}. */
    public void emit() {
        LedgerEvent e = new LedgerEvent();
        if (!e.isEnabled()) {
            return;
        }
        KvCacheLedger l;
        synchronized (this) {
            if (closed) {
                return;
            }
            l = manager.ledger();
        }
        KvCacheStats s = l.stats();
        e.cache = name;
        e.totalBlocks = s.totalBlocks();
        e.usedBlocks = s.usedBlocks();
        e.cachedBlocks = s.cachedBlocks();
        e.emptyBlocks = s.emptyBlocks();
        e.liveSequences = s.liveSequences();
        e.liveTokens = s.liveTokens();
        e.usedBytes = l.usedBytes();
        e.cachedBytes = l.cachedBytes();
        e.peakUsedBytes = l.peakUsedBytes();
        e.prefixQueryTokens = s.prefixQueryTokens();
        e.prefixHitTokens = s.prefixHitTokens();
        e.allocationFailures = s.allocationFailures();
        e.evictedBlocks = s.evictedBlocks();
        e.copyOnWrites = l.copyOnWrites();
        e.windowReleasedBlocks = l.windowReleasedBlocks();
        e.slotWaste = l.slotWaste();
        e.commit();
    }

    /** Unregisters the listener and the periodic event. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        manager.removeListener(this);
        FlightRecorder.removePeriodicEvent(periodic);
    }
}
