package dev.kvcache.metrics;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierStats;
import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Enabled;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.FlightRecorder;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.Period;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

import java.util.List;
import java.util.Objects;

/**
 * Makes a running {@link KvCacheManager}'s ledger visible to Java Flight Recorder, so that JMC,
 * {@code jfr print} or a {@code RecordingStream} shows the KV cache next to GC and CPU.
 *
 * <p>Two sources:
 * <ul>
 *   <li>each {@link KvCacheEvent} becomes a JFR event of the same name under {@code dev.kvcache}:
 *       {@code BlockStored}, {@code BlockRemoved}, {@code PrefixCacheCleared}, {@code AppendRefused}
 *       (with the {@link dev.kvcache.Refusal reason}), {@code SequencePreempted},
 *       {@code IdleReleased} and {@code TokensDropped}. They are committed on the mutating thread,
 *       under the manager's lock: each costs one JFR commit, and while a listener is registered the
 *       manager allocates one event object per change;</li>
 *   <li>a periodic {@code dev.kvcache.Ledger} event (every second by default, configurable with the
 *       usual {@code period} setting) snapshots {@link KvCacheManager#ledger()}: the counters
 *       (window releases, refusals by kind, recomputed tokens, swapped bytes, idle-held memory)
 *       that no single event carries, and the tier counters (demoted and promoted blocks, tier hit
 *       tokens, load misses, tier errors). {@link #emit()} commits one on demand (the simulator
 *       does so once per step);</li>
 *   <li>with each ledger event, from the same snapshot, one {@code dev.kvcache.Tier} event per tier
 *       ({@link KvCacheLedger#tiers()}, in order): its name and level, blocks and bytes held,
 *       capacity, puts and refused puts, loads, verification misses, evictions, bytes moved and
 *       time spent copying. It has no period of its own: the ledger's hook commits it, so it
 *       comes at the ledger's period and only while the ledger event is enabled (a recording
 *       that wants tiers without ledgers can still call {@link #emit()}).</li>
 * </ul>
 * The ledger and lever events are on in any recording (they are few: one per refusal,
 * preemption or release, one ledger a second); {@code BlockStored} and {@code BlockRemoved} come
 * once per published or evicted block (a block is published once its KV is written: at its
 * sequence's next append, {@link KvCacheManager#commit} or {@link KvCacheManager#free}; each carries
 * its 128-bit {@link PrefixKey} and its parent's as 32 hex digits, {@code key} and
 * {@code parentKey}, beside the 64-bit {@code hash} and {@code parentHash}), so they are off
 * unless a recording enables them ({@code Recording.enable("dev.kvcache.BlockStored")}, or
 * {@code enabled=true} in a .jfc file).
 * A disabled event costs the {@code isEnabled} check.
 *
 * <pre>{@code
 * try (KvCacheJfr jfr = KvCacheJfr.attach(manager, "decode-pool")) {
 *     ... serve ...
 * }
 * // java -XX:StartFlightRecording:filename=kv.jfr ...; jfr print --categories kvcache kv.jfr
 * }</pre>
 */
public final class KvCacheJfr implements KvCacheListener, AutoCloseable {

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
        @Label("Watermark Refusals") long watermarkRefusals;
        @Label("Reservation Refusals") long reservationRefusals;
        @Label("Quota Refusals") long quotaRefusals;
        @Label("Preemptions") long preemptions;
        @Label("Recomputed Tokens") long recomputedTokens;
        @Label("Swapped Out") @DataAmount long swappedOutBytes;
        @Label("Swapped In") @DataAmount long swappedInBytes;
        @Label("Idle-Released Sequences") long idleReleasedSequences;
        @Label("Idle Held") @DataAmount long idleHeldBytes;
        @Label("Dropped Tokens") long droppedTokens;
        @Label("Slot Waste") double slotWaste;
        @Label("Published Blocks") long publishedBlocks;
        @Label("Aborted Blocks") @Description("Full blocks never published because their sequence was aborted")
        long abortedBlocks;
        @Label("Copy Failures") long copyFailures;
        @Label("Swap Failures") long swapFailures;
        @Label("Callback Errors") @Description("Listener and KvStore.blockReleased calls that threw") long callbackErrors;
        @Label("Outstanding Preemption Records") int outstandingRecords;
        @Label("Demoted Blocks") @Description("Evicted published blocks copied to the first tier") long demotedBlocks;
        @Label("Promoted Blocks") @Description("Blocks loaded from a tier instead of recomputed") long promotedBlocks;
        @Label("Tier Hit Tokens") @Description("Prompt tokens served by promoted blocks (also counted in prefix hit tokens)")
        long tierHitTokens;
        @Label("Tier Load Misses") @Description("Tier lookups that found a key but could not load it (verification, error)")
        long tierLoadMisses;
        @Label("Tier Errors") @Description("Tier calls that threw (each a miss)") long tierErrors;
    }

    // No @Period and no hook of its own: committed by the ledger's hook from the same snapshot, so a
    // Tier event always agrees with the Ledger event beside it and follows the Ledger's period.
    @Name("dev.kvcache.Tier")
    @Label("KV Cache Tier")
    @Category({"kvcache"})
    @Description("Periodic snapshot of one tier below a KV cache manager's store, one event per tier, committed with each Ledger event")
    @StackTrace(false)
    static final class TierEvent extends Event {
        @Label("Cache") String cache;
        @Label("Tier") @Description("The tier's name") String tier;
        @Label("Level") @Description("The tier's position below the store, 0 for the first (the one demotions go to)")
        int level;
        @Label("Blocks") @Description("Blocks held now") long blocks;
        @Label("Held") @DataAmount @Description("Bytes held now") long bytes;
        @Label("Capacity") @DataAmount @Description("The most it may hold") long capacityBytes;
        @Label("Puts") @Description("Blocks taken") long puts;
        @Label("Refused Puts") @Description("Puts refused (full, error)") long refusedPuts;
        @Label("Loads") @Description("Blocks loaded") long loads;
        @Label("Verification Misses") @Description("Loads refused because the held copy did not match or failed its checksum")
        long verificationMisses;
        @Label("Evictions") @Description("Blocks it dropped to make room") long evictions;
        @Label("Moved") @DataAmount @Description("Bytes copied in and out") long bytesMoved;
        @Label("Copy Time") @Timespan @Description("Time spent copying") long copyNanos;
    }

    @Name("dev.kvcache.AppendRefused")
    @Label("KV Append Refused")
    @Category({"kvcache"})
    @Description("An append returned -1: no blocks, reserved blocks, the admission watermark or a tenant quota")
    @StackTrace(false)
    static final class AppendRefusedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Sequence") String sequence;
        @Label("Tenant") String tenant;
        @Label("Reason") String reason;
        @Label("Tokens") int tokens;
        @Label("Free Blocks") int freeBlocks;
    }

    @Name("dev.kvcache.SequencePreempted")
    @Label("KV Sequence Preempted")
    @Category({"kvcache"})
    @StackTrace(false)
    static final class PreemptedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Sequence") String sequence;
        @Label("Tenant") String tenant;
        @Label("Mode") String mode;
        @Label("Tokens") int tokens;
        @Label("Blocks") int blocks;
    }

    @Name("dev.kvcache.IdleReleased")
    @Label("KV Idle Sequence Released")
    @Category({"kvcache"})
    @StackTrace(false)
    static final class IdleReleasedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Sequence") String sequence;
        @Label("Tenant") String tenant;
        @Label("Idle") @jdk.jfr.Timespan long idleNanos;
        @Label("Tokens") int tokens;
        @Label("Freed") @DataAmount long bytes;
    }

    @Name("dev.kvcache.TokensDropped")
    @Label("KV Tokens Dropped")
    @Category({"kvcache"})
    @StackTrace(false)
    static final class TokensDroppedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Sequence") String sequence;
        @Label("Tokens") int tokens;
        @Label("Blocks Released") int blocks;
    }

    @Name("dev.kvcache.BlockStored")
    @Label("KV Block Stored")
    @Category({"kvcache"})
    @Description("A full block was published to the prefix cache (once its KV is written: the sequence's next append, commit or free)")
    @StackTrace(false)
    @Enabled(false) // one per filled block: enable explicitly when mirroring the cache
    static final class BlockStoredEvent extends Event {
        @Label("Cache") String cache;
        @Label("Block") int block;
        @Label("Hash") @Description("The key's first 64 bits (PrefixKey.hi)") long hash;
        @Label("Parent Hash") @Description("The parent key's first 64 bits, or KvCacheManager.ROOT_HASH for a first block")
        long parentHash;
        @Label("Key") @Description("The 128-bit PrefixKey, 32 hex digits") String key;
        @Label("Parent Key") @Description("The parent block's PrefixKey, 32 hex digits; null for a first block")
        String parentKey;
        @Label("Scope") @Description("The tenant whose prefix cache holds the block; null when shared across tenants")
        String scope;
        @Label("Cache Salt") long cacheSalt;
        @Label("Tokens") int tokens;
    }

    @Name("dev.kvcache.BlockRemoved")
    @Label("KV Block Removed")
    @Category({"kvcache"})
    @Description("A cached block's content was dropped so the block could be reused")
    @StackTrace(false)
    @Enabled(false) // one per eviction: enable explicitly when mirroring the cache
    static final class BlockRemovedEvent extends Event {
        @Label("Cache") String cache;
        @Label("Block") int block;
        @Label("Hash") @Description("The key's first 64 bits (PrefixKey.hi); 0 when no key was computed") long hash;
        @Label("Key") @Description("The 128-bit PrefixKey, 32 hex digits; null when no key was computed") String key;
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

    private KvCacheJfr(KvCacheManager manager, String name) {
        this.manager = manager;
        this.name = name;
    }

    /**
     * Registers a listener on {@code manager} and a periodic ledger event; {@code name} tells caches apart.
     *
     * @param manager the manager whose events and ledger are recorded; not null
     * @param name the value of every event's {@code cache} field, to tell several managers apart in
     *             one recording; not null
     * @return the attached recorder; {@link #close()} it to unregister the listener and the periodic event
     * @throws NullPointerException if {@code manager} or {@code name} is null
     */
    public static KvCacheJfr attach(KvCacheManager manager, String name) {
        Objects.requireNonNull(manager, "manager");
        Objects.requireNonNull(name, "name");
        KvCacheJfr b = new KvCacheJfr(manager, name);
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
                    e.key = hex(s.key());
                    e.parentKey = hex(s.parentKey());
                    e.scope = s.scope();
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
                    e.key = hex(r.key());
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
            case KvCacheEvent.AppendRefused r -> {
                AppendRefusedEvent e = new AppendRefusedEvent();
                if (e.isEnabled()) {
                    e.cache = name;
                    e.sequence = r.id();
                    e.tenant = r.tenant();
                    e.reason = r.reason().name();
                    e.tokens = r.tokens();
                    e.freeBlocks = r.freeBlocks();
                    e.commit();
                }
            }
            case KvCacheEvent.SequencePreempted p -> {
                PreemptedEvent e = new PreemptedEvent();
                if (e.isEnabled()) {
                    e.cache = name;
                    e.sequence = p.id();
                    e.tenant = p.tenant();
                    e.mode = p.mode().name();
                    e.tokens = p.tokens();
                    e.blocks = p.blocks();
                    e.commit();
                }
            }
            case KvCacheEvent.IdleReleased i -> {
                IdleReleasedEvent e = new IdleReleasedEvent();
                if (e.isEnabled()) {
                    e.cache = name;
                    e.sequence = i.release().id();
                    e.tenant = i.release().tenant();
                    e.idleNanos = i.release().idleNanos();
                    e.tokens = i.release().tokens();
                    e.bytes = i.release().bytes();
                    e.commit();
                }
            }
            case KvCacheEvent.TokensDropped d -> {
                TokensDroppedEvent e = new TokensDroppedEvent();
                if (e.isEnabled()) {
                    e.cache = name;
                    e.sequence = d.id();
                    e.tokens = d.tokens();
                    e.blocks = d.blocks();
                    e.commit();
                }
            }
        }
    }

    private static String hex(PrefixKey k) {
        return k == null ? null : k.toHex();
    }

    /**
     * Commits one ledger event and one tier event per tier now (those enabled), all from one
     * {@link KvCacheManager#ledger()} snapshot; a no-op after {@link #close()}.
     */
    public void emit() {
        LedgerEvent e = new LedgerEvent();
        boolean tiers = new TierEvent().isEnabled();
        if (!e.isEnabled() && !tiers) {
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
        e.watermarkRefusals = l.watermarkRefusals();
        e.reservationRefusals = l.reservationRefusals();
        e.quotaRefusals = l.quotaRefusals();
        e.preemptions = l.preemptions();
        e.recomputedTokens = l.recomputedTokens();
        e.swappedOutBytes = l.swappedOutBytes();
        e.swappedInBytes = l.swappedInBytes();
        e.idleReleasedSequences = l.idleReleasedSequences();
        e.idleHeldBytes = l.idleHeldBytes();
        e.droppedTokens = l.droppedTokens();
        e.slotWaste = l.slotWaste();
        e.publishedBlocks = l.publishedBlocks();
        e.abortedBlocks = l.abortedBlocks();
        e.copyFailures = l.copyFailures();
        e.swapFailures = l.swapFailures();
        e.callbackErrors = l.callbackErrors();
        e.outstandingRecords = l.outstandingRecords();
        e.demotedBlocks = l.demotedBlocks();
        e.promotedBlocks = l.promotedBlocks();
        e.tierHitTokens = l.tierHitTokens();
        e.tierLoadMisses = l.tierLoadMisses();
        e.tierErrors = l.tierErrors();
        e.commit();
        if (tiers) {
            List<TierStats> ts = l.tiers();
            for (int i = 0; i < ts.size(); i++) {
                TierStats t = ts.get(i);
                TierEvent te = new TierEvent();
                te.cache = name;
                te.tier = t.tier();
                te.level = i;
                te.blocks = t.blocks();
                te.bytes = t.bytes();
                te.capacityBytes = t.capacityBytes();
                te.puts = t.puts();
                te.refusedPuts = t.refusedPuts();
                te.loads = t.loads();
                te.verificationMisses = t.verificationMisses();
                te.evictions = t.evictions();
                te.bytesMoved = t.bytesMoved();
                te.copyNanos = t.copyNanos();
                te.commit();
            }
        }
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
