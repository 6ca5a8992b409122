package dev.kvcache.testkit;

import dev.kvcache.EvictionPolicy;
import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;

import java.util.List;

/**
 * Drives a {@link KvCacheManager} through a list of {@link Op}s and checks the block manager
 * contract (API.md, "The block manager" and "Integrity rules") after every step.
 *
 * <p>The model does not choose physical blocks (that is the manager's business); it keeps what the
 * contract determines and checks the manager against it:
 * <ul>
 *   <li>each live sequence's token ids, the length before its last append (which fixes what a
 *       sliding window has released), its priority, salt and cache-served token count;</li>
 *   <li>the engine's side ({@link ModelEngine}): for every physical slot, the token prefix its KV
 *       was computed for. The <b>trust model</b> is checked on it after every step: every slot a
 *       live sequence maps holds KV of that sequence's own prefix, every published block holds KV of
 *       exactly the prefix its key names, and every prefix hit reads KV of the reader's prefix;</li>
 *   <li>a mirror of the published prefix blocks, fed only by {@link KvCacheEvent}s: key (parent
 *       hash, salt, token ids) to block, with the published parent each was stored after. Prefix
 *       hits are predicted by walking it from the root through parents that are still the same
 *       publication, so the expected return value of every append is known before the call;</li>
 *   <li>publish after write: a BlockStored event names a block of the committing sequence that its
 *       engine has written, at a position its previous calls filled, under the {@link PrefixKey}
 *       chain of its own tokens; an aborted append publishes nothing;</li>
 *   <li>the reuse queue of cached blocks (release order, with the priority each block was queued
 *       with), so every eviction the manager reports can be checked against LRU or priority order;</li>
 *   <li>all or nothing under faults: a copy-on-write whose copier throws, a preemption record resumed
 *       twice, listeners that throw;</li>
 *   <li>the ledger counters.</li>
 * </ul>
 * Reference counts are recomputed from scratch after every step as the number of occurrences of
 * each block in the live block tables, and compared with {@link KvCacheManager#refCount}.
 */
public final class ManagerModel extends ModelSteps implements AutoCloseable {

    /**
     * A manager configuration for one run.
     *
     * @param blocks         the pool's blocks (4..24 make refusals and evictions common)
     * @param blockTokens    tokens per block
     * @param prefixCaching  {@link KvCacheManager.Builder#prefixCaching}
     * @param priorityPolicy {@link EvictionPolicy#priority()} instead of {@link EvictionPolicy#lru()}
     * @param sinks          attention-sink tokens of the sliding window (with {@code window > 0})
     * @param window         the sliding window in tokens; 0: no sliding window
     * @param faults         adds a listener that throws on every third event (the model must see no
     *                       difference), and with a tier, makes every fifth tier call throw
     * @param tierBlocks     blocks of an LRU {@link dev.kvcache.KvTier} below the store; 0: none
     * @param store          your store, wired in as {@link StoreUnderTest} describes; null: the
     *                       model's byte-less engine alone
     */
    public record Config(int blocks, int blockTokens, boolean prefixCaching, boolean priorityPolicy,
                         int sinks, int window, boolean faults, int tierBlocks, StoreUnderTest store) {

        /**
         * A configuration without faults, tier or store under test.
         *
         * @param blocks         the pool's blocks
         * @param blockTokens    tokens per block
         * @param prefixCaching  prefix caching on
         * @param priorityPolicy the priority eviction policy instead of LRU
         * @param sinks          attention-sink tokens of the sliding window
         * @param window         the sliding window in tokens; 0: none
         */
        public Config(int blocks, int blockTokens, boolean prefixCaching, boolean priorityPolicy, int sinks,
                      int window) {
            this(blocks, blockTokens, prefixCaching, priorityPolicy, sinks, window, false, 0, null);
        }

        /**
         * A configuration without tier or store under test.
         *
         * @param blocks         the pool's blocks
         * @param blockTokens    tokens per block
         * @param prefixCaching  prefix caching on
         * @param priorityPolicy the priority eviction policy instead of LRU
         * @param sinks          attention-sink tokens of the sliding window
         * @param window         the sliding window in tokens; 0: none
         * @param faults         a listener that throws on every third event
         */
        public Config(int blocks, int blockTokens, boolean prefixCaching, boolean priorityPolicy, int sinks,
                      int window, boolean faults) {
            this(blocks, blockTokens, prefixCaching, priorityPolicy, sinks, window, faults, 0, null);
        }

        /**
         * A configuration without a store under test.
         *
         * @param blocks         the pool's blocks
         * @param blockTokens    tokens per block
         * @param prefixCaching  prefix caching on
         * @param priorityPolicy the priority eviction policy instead of LRU
         * @param sinks          attention-sink tokens of the sliding window
         * @param window         the sliding window in tokens; 0: none
         * @param faults         a throwing listener, and a tier that throws on every fifth call
         * @param tierBlocks     blocks of the model's tier; 0: none
         */
        public Config(int blocks, int blockTokens, boolean prefixCaching, boolean priorityPolicy, int sinks,
                      int window, boolean faults, int tierBlocks) {
            this(blocks, blockTokens, prefixCaching, priorityPolicy, sinks, window, faults, tierBlocks, null);
        }

        /**
         * This configuration with {@code store} under test.
         *
         * @param store the store under test, or null for none
         * @return a copy with that store
         */
        public Config withStore(StoreUnderTest store) {
            return new Config(blocks, blockTokens, prefixCaching, priorityPolicy, sinks, window, faults, tierBlocks,
                    store);
        }

        KvCacheManager build(ModelEngine engine) {
            KvLayout layout = store != null ? store.layout(blockTokens) : new KvLayout(1, 1, 4, blockTokens, KvFormats.F16);
            KvCacheManager.Builder b = KvCacheManager.builder(layout)
                    .blocks(blocks)
                    .prefixCaching(prefixCaching)
                    .swapSpace(engine.swap)
                    .evictionPolicy(priorityPolicy ? EvictionPolicy.priority() : EvictionPolicy.lru());
            if (tierBlocks > 0 || store != null) {
                // a tier needs a store: the engine's view of one, whose copies are the engine's (and
                // go on to the store under test, if any)
                b.store(engine.storeView(layout, blocks));
                if (tierBlocks > 0) {
                    b.tier(engine.tier(tierBlocks, faults));
                }
            } else {
                b.blockCopier(engine);
            }
            if (window > 0) {
                b.slidingWindow(sinks, window);
            }
            return b.build();
        }
    }

    /**
     * Optional checks.
     *
     * @param windowBound  heldBlocks stays within the sliding-window bound (only for single-token
     *                     workloads, see {@link Ops#decodeOp()})
     * @param cachedTokens {@link Sequence#cachedTokens()} keeps the hits of the sequence's first append
     */
    public record Checks(boolean windowBound, boolean cachedTokens) {
    }

    /**
     * A model over a fresh manager (and a fresh store under test, if the configuration has one),
     * for driving step by step with {@link #apply} and {@link #checkInvariants}; {@link #run} does
     * that for a whole workload. Close it afterwards.
     *
     * @param c      the configuration
     * @param checks the optional checks
     * @throws IllegalArgumentException the store under test has another layout or block count
     */
    public ManagerModel(Config c, Checks checks) {
        super(c, checks);
    }

    /**
     * What a run exercised, so properties can require that their workloads reach every mechanism
     * (jqwik's {@code Statistics.label(...).coverage(...)}).
     *
     * @param prefixHits     appends that got prefix hits
     * @param failedAppends  appends refused for want of blocks
     * @param evictions      cached blocks evicted for reuse
     * @param copyOnWrites   copy-on-write copies
     * @param windowReleases blocks a sliding window released
     * @param resets         successful {@code resetPrefixCache()} calls
     * @param failedCopies   appends whose copier threw (and changed nothing)
     * @param doubleResumes  preemption records resumed a second time (and refused)
     * @param aborts         appends aborted before their KV was written
     * @param promotions     blocks loaded back from the tier
     */
    public record Coverage(int prefixHits, int failedAppends, int evictions, int copyOnWrites,
                           int windowReleases, int resets, int failedCopies, int doubleResumes, int aborts,
                           int promotions) {
    }

    /**
     * Runs {@code ops} on a fresh manager (and a fresh store under test), checking everything after
     * each step, then frees all, discards what is still preempted, resets the prefix cache and
     * closes the manager and the store (also when a check fails).
     *
     * @param c      the configuration
     * @param ops    the workload
     * @param checks the optional checks
     * @return what the run exercised
     * @throws AssertionError the manager (or the store under test) broke the contract: the
     *                        message names the step, the configuration and what differs
     */
    public static Coverage run(Config c, List<Op> ops, Checks checks) {
        try (ManagerModel model = new ManagerModel(c, checks)) {
            return model.runAll(ops);
        }
    }

    private Coverage runAll(List<Op> ops) {
        checkInvariants();
        for (int i = 0; i < ops.size(); i++) {
            Op op = ops.get(i);
            where = "after op " + i + " " + op + " of " + c;
            counting = true;
            apply(op);
            checkInvariants();
            if (checks.windowBound()) {
                checkWindowBound();
            }
        }
        where = "after freeing everything, " + c;
        counting = false;
        while (!live.isEmpty()) {
            apply(new Op.Free(live.size() - 1));
        }
        for (Kept k : kept) {
            if (!k.resumed) {
                m.discard(k.record);
            }
        }
        check(engine.swap.held() == 0, () -> "swap space still holds " + engine.swap.held());
        checkInvariants();
        KvCacheStats st = m.stats();
        check(st.usedBlocks() == 0 && st.liveTokens() == 0 && st.liveSequences() == 0,
                () -> "pool not idle: " + st);
        check(m.ledger().callbackErrors() == injectedListenerThrows,
                () -> "callbackErrors " + m.ledger().callbackErrors() + ", injected " + injectedListenerThrows);
        apply(new Op.ResetPrefixCache());
        checkInvariants();
        KvCacheStats reset = m.stats();
        check(reset.emptyBlocks() == reset.totalBlocks(), () -> "reset left blocks: " + reset);
        int promotions = (int) m.ledger().promotedBlocks();
        return new Coverage(hitAppends, failedAppends, (int) st.evictedBlocks(),
                (int) copyOnWrites, (int) windowReleased, resets, failedCopies,
                doubleResumes, aborts, promotions);
    }

    /**
     * Closes the manager (releasing the sequences the model still holds: its complaint about them
     * is expected here and swallowed) and the store under test, if any. Idempotent.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            m.close();
        } catch (IllegalStateException liveSequences) {
            // a run that failed midway leaves sequences live; the manager has released them
        } finally {
            engine.close();
        }
    }
}
