package dev.kvcache.testkit;

import dev.kvcache.AppendEstimate;
import dev.kvcache.EvictionPolicy;
import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PreemptedSequence;
import dev.kvcache.PreemptionMode;
import dev.kvcache.PrefixKey;
import dev.kvcache.Refusal;
import dev.kvcache.Sequence;
import dev.kvcache.SequenceOptions;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

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
public final class ManagerModel implements KvCacheListener, AutoCloseable {

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
     * Optional checks: {@code windowBound} (heldBlocks within the sliding-window bound; only for
     * single-token workloads) and {@code cachedTokens} ({@link Sequence#cachedTokens()} keeps the
     * hits of the sequence's first append).
     */
    public record Checks(boolean windowBound, boolean cachedTokens) {
    }

    private static final class Seq {
        final Sequence s;
        final String id;
        final int priority;
        final long salt;
        final List<Integer> tokens;
        int lenBeforeLastAppend;
        int cachedTokens;
        /** Full blocks offered for publication (committed), the rest of the full ones are pending. */
        int committed;

        Seq(Sequence s, String id, int priority, long salt, List<Integer> tokens) {
            this.s = s;
            this.id = id;
            this.priority = priority;
            this.salt = salt;
            this.tokens = tokens;
        }
    }

    private record Key(long parent, long salt, List<Integer> tokens) {
    }

    /** A published block; {@code parent} is the publication it was stored after (null: the root). */
    private record Pub(int block, long hash, Key key, Pub parent, List<Integer> prefix) {
    }

    private record Queued(int block, int priority) {
    }

    /** A preemption record the model keeps, with what the sequence was. */
    private static final class Kept {
        final PreemptedSequence record;
        final Seq seq;
        final boolean swap;
        boolean resumed;

        Kept(PreemptedSequence record, Seq seq, boolean swap) {
            this.record = record;
            this.seq = seq;
            this.swap = swap;
        }
    }

    private final Config c;
    private final Checks checks;
    private final ModelEngine engine;
    private final KvCacheManager m;
    private final int B;
    private final int total;
    private final List<Seq> live = new ArrayList<>();
    private final List<Kept> kept = new ArrayList<>();
    private int nextId;

    // mirror of the published blocks, fed by events
    private final Map<Key, Pub> byKey = new HashMap<>();
    private final Map<Integer, Pub> byBlock = new HashMap<>();
    private final Map<Long, Pub> byHash = new HashMap<>();
    private final List<Integer> removedThisOp = new ArrayList<>();
    private final List<Pub> removedPubsThisOp = new ArrayList<>();
    private final List<Pub> storedThisOp = new ArrayList<>();
    /** Stores and removals of this operation in event order. */
    private final List<Logged> publicationLog = new ArrayList<>();

    private record Logged(boolean stored, Pub pub) {
    }
    private final List<KvCacheEvent.AppendRefused> refusedThisOp = new ArrayList<>();
    private int eventsThisOp;
    private long storedEvents;
    private long injectedListenerThrows;

    // cached blocks in the order the policy must reuse them (before priority)
    private final List<Queued> queue = new ArrayList<>();
    /** Highest priority among the holders of a held block since it was last free. */
    private final int[] prio;

    // ledger model
    private long forks;
    private long copyOnWrites;
    private long windowReleased;
    private long appendedTokens;
    private int peakUsed;
    private int hitAppends;
    private int failedAppends;
    private int resets;
    private int failedCopies;
    private int doubleResumes;
    private int aborts;
    private boolean counting;

    private String where = "initial state";
    private boolean closed;

    public ManagerModel(Config c, Checks checks) {
        this.c = c;
        this.checks = checks;
        this.engine = new ModelEngine(c.blockTokens(), c.blocks(), c.store(), c.blocks());
        KvCacheManager built;
        try {
            built = c.build(engine);
        } catch (RuntimeException | Error e) {
            engine.close();
            throw e;
        }
        this.m = built;
        this.B = c.blockTokens();
        this.total = c.blocks();
        this.prio = new int[total];
        m.addListener(this);
        if (c.faults()) {
            m.addListener(new KvCacheListener() {
                private int n;

                @Override
                public void onEvent(KvCacheEvent e) {
                    if (++n % 3 == 0) {
                        injectedListenerThrows++;
                        throw new IllegalStateException("injected listener failure on " + e);
                    }
                }
            });
        }
    }

    /** What a run exercised, so properties can require that their workloads reach every mechanism. */
    public record Coverage(int prefixHits, int failedAppends, int evictions, int copyOnWrites,
                           int windowReleases, int resets, int failedCopies, int doubleResumes, int aborts,
                           int promotions) {
    }

    /**
     * Runs {@code ops}, checking everything after each, then frees all, resets the prefix cache and
     * closes the manager.
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

    // ------------------------------------------------------------------ events

    @Override
    public void onEvent(KvCacheEvent e) {
        if (e instanceof KvCacheEvent.AppendRefused r) {
            refusedThisOp.add(r);
            return;
        }
        if (e instanceof KvCacheEvent.SequencePreempted) {
            return;
        }
        eventsThisOp++;
        switch (e) {
            case KvCacheEvent.BlockStored s -> {
                storedEvents++;
                Key k = new Key(s.parentHash(), s.cacheSalt(), boxed(s.tokenIds()));
                check(s.tokenIds().length == B, () -> "stored block with " + s.tokenIds().length + " tokens: " + s);
                check(s.key() != null && s.hash() == s.key().hi(), () -> "stored without its key: " + s);
                check(!byKey.containsKey(k), () -> "content published twice: " + s + ", already " + byKey.get(k));
                check(!byBlock.containsKey(s.block()), () -> "block published twice: " + s);
                Pub parent = null;
                if (s.parentKey() != null) {
                    parent = byHash.get(s.parentHash());
                    check(parent != null, () -> "stored after a parent that is not published: " + s);
                } else {
                    check(s.parentHash() == KvCacheManager.ROOT_HASH, () -> "first block without ROOT_HASH: " + s);
                }
                List<Integer> prefix = new ArrayList<>(parent == null ? List.of() : parent.prefix());
                prefix.addAll(k.tokens());
                Pub p = new Pub(s.block(), s.hash(), k, parent, List.copyOf(prefix));
                byKey.put(k, p);
                byBlock.put(s.block(), p);
                byHash.put(s.hash(), p);
                storedThisOp.add(p);
                publicationLog.add(new Logged(true, p));
            }
            case KvCacheEvent.BlockRemoved r -> {
                Pub p = byBlock.remove(r.block());
                check(p != null && p.hash() == r.hash(), () -> "removed a block that was not published: " + r);
                byKey.remove(p.key());
                byHash.remove(p.hash());
                removedThisOp.add(r.block());
                removedPubsThisOp.add(p);
                publicationLog.add(new Logged(false, p));
            }
            case KvCacheEvent.AllBlocksCleared a -> {
                byKey.clear();
                byBlock.clear();
                byHash.clear();
            }
            default -> check(false, () -> "unexpected event " + e);
        }
    }

    // ------------------------------------------------------------------ steps

    public void apply(Op op) {
        eventsThisOp = 0;
        removedThisOp.clear();
        removedPubsThisOp.clear();
        storedThisOp.clear();
        publicationLog.clear();
        refusedThisOp.clear();
        switch (op) {
            case Op.Open o -> open(o);
            case Op.Append a -> append(a.pick(), a.tokens(), Mode.WRITE);
            case Op.AbortedAppend a -> append(a.pick(), a.tokens(), Mode.ABORT);
            case Op.FailingCopyAppend a -> append(a.pick(), a.tokens(), Mode.FAILING_COPY);
            case Op.BadAppend a -> badAppend(a);
            case Op.Fork f -> fork(f);
            case Op.Free f -> free(f.pick());
            case Op.Commit k -> commit(k);
            case Op.Preempt p -> preempt(p);
            case Op.Resume r -> resume(r);
            case Op.ResetPrefixCache r -> reset();
        }
        updatePriorities();
    }

    private void open(Op.Open o) {
        String id = "s" + nextId++;
        Sequence s = m.open(id, SequenceOptions.DEFAULT.withPriority(o.priority()).withCacheSalt(o.salt()));
        check(s.length() == 0 && s.blockCount() == 0 && s.heldBlocks() == 0 && s.isLive(),
                () -> "fresh sequence not empty: " + s);
        live.add(new Seq(s, id, o.priority(), o.salt(), new ArrayList<>()));
        check(eventsThisOp == 0, () -> "open fired events");
    }

    private enum Mode { WRITE, ABORT, FAILING_COPY }

    private void append(int pick, List<Integer> tokens, Mode mode) {
        if (live.isEmpty()) {
            return;
        }
        Seq q = live.get(at(pick));
        int n = tokens.size();
        int oldLen = q.tokens.size();
        int[] occ = occurrences();
        Set<Integer> publishedBefore = new HashSet<>(byBlock.keySet());
        KvCacheStats before = m.stats();
        Map<String, int[]> tablesBefore = tables();
        int[] oldTable = tablesBefore.get(q.id);
        int oldBlocks = oldTable.length;
        int newBlocks = ceilDiv(oldLen + n, B);

        // what the contract says this append needs and could get
        List<Integer> windowReleases = new ArrayList<>();
        int winFreed = 0;
        if (c.window() > 0 && n > 0) {
            for (int i = 0; i < oldBlocks; i++) {
                if (released(i, oldLen) && oldTable[i] >= 0) {
                    windowReleases.add(oldTable[i]);
                    if (occ[oldTable[i]] == 1) {
                        winFreed++;
                    }
                }
            }
        }
        List<Integer> hits = new ArrayList<>();
        if (c.prefixCaching() && oldLen == 0 && n > 0) {
            hits = mirrorChain(q.salt, tokens, (n - 1) / B);
        }
        int hitsFromCache = 0;
        for (int b : hits) {
            if (occ[b] == 0) {
                hitsFromCache++;
            }
        }
        boolean cow = oldLen % B != 0 && occ[oldTable[oldBlocks - 1]] > 1;
        int need = newBlocks - oldBlocks - hits.size() + (cow ? 1 : 0);
        int free = before.emptyBlocks() + before.cachedBlocks() - hitsFromCache + winFreed;

        // the estimate must predict all of that and change nothing
        int[] tokenArray = tokens.stream().mapToInt(Integer::intValue).toArray();
        Refusal refusalBefore = m.lastRefusal();
        int eventsBefore = eventsThisOp;
        AppendEstimate est = m.estimateAppend(q.s, tokenArray);
        check(m.stats().equals(before), () -> "estimateAppend changed stats: " + before + " -> " + m.stats());
        checkTablesUnchanged(tablesBefore, "estimateAppend");
        check(eventsThisOp == eventsBefore && refusedThisOp.isEmpty(), () -> "estimateAppend fired events");
        check(m.lastRefusal() == refusalBefore, () -> "estimateAppend set lastRefusal " + m.lastRefusal());
        if (n > 0) {
            final int needF = need;
            final int freeF = free;
            final int hitBlocks = hits.size();
            final int revived = hitsFromCache;
            final int winFreedF = winFreed;
            check(est.newBlocks() == needF && est.availableBlocks() == freeF && est.revivedBlocks() == revived
                            && est.prefixHitTokens() == hitBlocks * B && est.windowFreedBlocks() == winFreedF,
                    () -> est + " but the model expects newBlocks " + needF + ", available " + freeF
                            + ", revived " + revived + ", hit tokens " + hitBlocks * B + ", window frees " + winFreedF);
        }

        // a failing copier only matters when this append copies; the pool must have a block to copy into
        boolean failCopy = mode == Mode.FAILING_COPY && n > 0 && cow && need <= free && before.freeBlocks() > 0;
        engine.failCopies(failCopy);
        int r;
        try {
            r = m.append(q.s, tokenArray);
            check(!failCopy, () -> "append whose copy-on-write copier threw returned normally");
        } catch (IllegalStateException ex) {
            check(failCopy && String.valueOf(ex.getMessage()).startsWith("injected copy failure"),
                    () -> "append threw " + ex);
            engine.failCopies(false);
            failedCopyChecks(q, before, tablesBefore);
            return;
        } finally {
            engine.failCopies(false);
        }
        check(est.admitted() == (r >= 0) && (r >= 0 || est.refusal() == m.lastRefusal()),
                () -> "estimate " + est + " but append returned " + r + " (" + m.lastRefusal() + ")");

        KvCacheStats after = m.stats();
        final List<Integer> hitList = hits;
        if (n == 0) {
            check(r == 0, () -> "empty append returned " + r);
            check(after.equals(before), () -> "empty append changed stats: " + before + " -> " + after);
            checkTablesUnchanged(tablesBefore, "empty append");
            check(eventsThisOp == 0, () -> "empty append fired events");
            return;
        }
        if (r == -1) {
            check(need > free, () -> "append refused although it needed " + need + " blocks and "
                    + free + " were free (external fragmentation?): " + before);
            KvCacheStats expected = new KvCacheStats(before.totalBlocks(), before.usedBlocks(),
                    before.cachedBlocks(), before.emptyBlocks(), before.liveSequences(), before.liveTokens(),
                    before.prefixQueryTokens(), before.prefixHitTokens(), before.allocationFailures() + 1,
                    before.evictedBlocks());
            check(after.equals(expected), () -> "failed append changed stats: " + before + " -> " + after);
            checkTablesUnchanged(tablesBefore, "failed append");
            check(eventsThisOp == 0, () -> "failed append fired " + eventsThisOp + " events");
            // default builder: no quotas, reservations or watermark, so want of blocks is the only reason
            check(m.lastRefusal() == Refusal.NO_BLOCKS, () -> "refused for " + m.lastRefusal());
            check(refusedThisOp.size() == 1 && refusedThisOp.getFirst().equals(new KvCacheEvent.AppendRefused(
                            q.id, q.s.tenant(), Refusal.NO_BLOCKS, n, before.freeBlocks())),
                    () -> "refusal events " + refusedThisOp + " for " + n + " tokens, " + before.freeBlocks() + " free");
            if (mode == Mode.ABORT) {
                abortSeq(q);
            }
            failedAppends++;
            return;
        }
        check(need <= free, () -> "append succeeded although it needed " + need + " blocks and only "
                + free + " were free: " + before);
        peakUsed = Math.max(peakUsed, after.usedBlocks());
        // with a tier the blocks after the store's hits may come from it (checked below: they must
        // read KV of this very prefix)
        check(r == hits.size() * B || (c.tierBlocks() > 0 && r > hits.size() * B),
                () -> "append returned " + r + ", the prefix cache holds "
                + hitList.size() + " hit blocks " + hitList + " (blockTokens " + B + ")");
        check(r % B == 0 && r < n && (r == 0 || oldLen == 0),
                () -> "append returned " + r + " for " + n + " tokens at length " + oldLen);
        if (!c.prefixCaching()) {
            check(r == 0, () -> "prefix caching off but append returned " + r);
        }
        int[] newTable = q.s.blockTable();
        for (int j = 0; j < hits.size(); j++) {
            final int jj = j;
            check(newTable[j] == hitList.get(j), () -> "hit block " + jj + " is " + newTable[jj]
                    + ", expected " + hitList.get(jj));
        }
        check(after.allocationFailures() == before.allocationFailures(), () -> "failure counted on success");
        check(after.liveTokens() == before.liveTokens() + n, () -> "liveTokens " + before + " -> " + after);
        if (oldLen == 0 && c.prefixCaching()) {
            check(after.prefixQueryTokens() == before.prefixQueryTokens() + n
                            && after.prefixHitTokens() == before.prefixHitTokens() + r,
                    () -> "prefix counters " + before + " -> " + after + " for " + n + " tokens, hit " + r);
        } else {
            check(after.prefixQueryTokens() == before.prefixQueryTokens()
                            && after.prefixHitTokens() == before.prefixHitTokens(),
                    () -> "prefix counters moved without a lookup: " + before + " -> " + after);
        }
        for (Seq o : live) {
            if (o != q) {
                check(Arrays.equals(o.s.blockTable(), tablesBefore.get(o.id)) && o.s.length() == o.tokens.size(),
                        () -> "append to " + q.id + " changed " + o.id);
            }
        }

        // publication: this append committed the blocks the previous calls filled, nothing of its own
        // promoted blocks are published at once, as blocks [hits, r/B) of the new prompt
        List<Pub> promoted = new ArrayList<>();
        if (r > hits.size() * B) {
            List<Integer> all = new ArrayList<>(q.tokens);
            all.addAll(tokens);
            for (Pub p : storedThisOp) {
                for (int j = hits.size(); j < r / B; j++) {
                    if (newTable[j] == p.block()) {
                        promoted.add(p);
                        final int jj = j;
                        check(p.prefix().equals(all.subList(0, (j + 1) * B)),
                                () -> "promoted block " + jj + " published as " + p.prefix());
                    }
                }
            }
        }
        storedThisOp.removeAll(promoted);
        checkStored(q, oldTable, q.committed, oldLen / B);
        storedThisOp.addAll(promoted);

        // the reuse queue, in the manager's order: the copy-on-write target first, then commit's
        // replacements, window releases, hits, and the new blocks' evictions
        boolean windowFirst = cow && before.freeBlocks() == 0;
        Set<Integer> publishedAtRelease = new HashSet<>(publishedBefore);
        int windowToEmpty = windowFirst ? queueWindowReleases(windowReleases, occ, publishedAtRelease) : 0;
        Pub cowVictim = null;
        if (cow && before.emptyBlocks() == 0 && windowToEmpty == 0) {
            check(!removedPubsThisOp.isEmpty(), () -> "copy-on-write with no empty block evicted nothing");
            cowVictim = removedPubsThisOp.getFirst();
            checkEviction(cowVictim.block());
        }
        Set<Integer> stale = staleReplacements(cowVictim);
        List<Integer> evictions = new ArrayList<>();
        for (Pub p : removedPubsThisOp) {
            if (p != cowVictim && !stale.contains(p.block())) {
                evictions.add(p.block());
            }
        }
        int e = 0;
        if (!windowFirst) {
            // published when the window releases: after the commit
            publishedAtRelease.removeAll(stale);
            storedThisOp.forEach(p -> publishedAtRelease.add(p.block()));
        }
        for (int b : stale) {
            queue.removeIf(x -> x.block() == b);
        }
        if (!windowFirst) {
            queueWindowReleases(windowReleases, occ, publishedAtRelease);
        }
        for (int b : hits) {
            queue.removeIf(x -> x.block() == b);
        }
        if (e < evictions.size()) {
            // promoted blocks are published after the allocations: a stale entry their publication
            // replaces may go to the empty pool then (only then)
            long lateEmpties = r > hits.size() * B
                    ? removedPubsThisOp.stream().filter(p -> stale.contains(p.block()) && occ[p.block()] == 0).count() : 0;
            check(after.emptyBlocks() <= lateEmpties,
                    () -> "evicted a cached block while an empty one was left: " + after);
        }
        while (e < evictions.size()) {
            checkEviction(evictions.get(e++));
        }
        long staleCached = removedPubsThisOp.stream().filter(p -> stale.contains(p.block()) && occ[p.block()] == 0).count();
        int cowEvicted = cowVictim == null ? 0 : 1;
        check(after.evictedBlocks() - before.evictedBlocks() == evictions.size() + staleCached + cowEvicted,
                () -> "evictedBlocks moved by " + (after.evictedBlocks() - before.evictedBlocks())
                        + " but " + removedThisOp.size() + " BlockRemoved events, stale " + stale);
        for (int b : hits) {
            check(!removedThisOp.contains(b), () -> "append evicted its own hit block " + b);
        }
        if (cow) {
            copyOnWrites++;
        }
        check(m.lastRefusal() == Refusal.NONE, () -> "lastRefusal after a success: " + m.lastRefusal());
        windowReleased += windowReleases.size();
        appendedTokens += n;
        q.tokens.addAll(tokens);
        q.lenBeforeLastAppend = oldLen;
        q.committed = Math.max(Math.max(q.committed, oldLen / B), r / B);
        if (oldLen == 0) {
            q.cachedTokens = r;
        }
        if (r > 0) {
            hitAppends++;
        }

        // the engine: hits must read KV of this very prefix; it computes the rest
        for (int p = oldLen; p < oldLen + r; p++) {
            long slot = q.s.slot(p);
            final int pp = p;
            check(id(q.salt, q.tokens, p).equals(engine.at(slot)),
                    () -> q.id + " hit position " + pp + " reads KV computed for " + engine.at(slot)
                            + ", not for " + q.tokens.subList(0, pp + 1));
        }
        if (mode == Mode.ABORT) {
            updatePriorities(); // blocks this append took carry its priority into the queue
            abortSeq(q);
            return;
        }
        for (int p = oldLen + r; p < q.tokens.size(); p++) {
            long slot = q.s.slot(p);
            if (slot >= 0) {
                engine.write(slot, id(q.salt, q.tokens, p));
            }
        }
    }

    /** Window releases join the reuse queue when published; returns how many went to the empty pool. */
    private int queueWindowReleases(List<Integer> windowReleases, int[] occ, Set<Integer> published) {
        int toEmpty = 0;
        for (int b : windowReleases) {
            if (--occ[b] == 0) {
                if (published.contains(b)) {
                    queue.add(new Queued(b, prio[b]));
                } else {
                    toEmpty++;
                }
                prio[b] = -1; // free now: if this append takes it again, its holders start afresh
            }
        }
        return toEmpty;
    }

    private void checkEviction(int evicted) {
        int expected = pollQueue();
        check(evicted == expected, () -> "evicted block " + evicted + " but the " + policyName()
                + " policy's next victim is " + expected + "; queue was " + queue);
    }

    /**
     * Blocks whose publication ended only so that fresh content could take their key: a removal
     * followed, in the same operation, by a store under the same key.
     */
    private Set<Integer> staleReplacements() {
        return staleReplacements(null);
    }

    /** The manager replaces a stale entry right before it publishes under the same key: adjacent events. */
    private Set<Integer> staleReplacements(Pub notThis) {
        Set<Integer> out = new HashSet<>();
        for (int i = 0; i + 1 < publicationLog.size(); i++) {
            Logged removed = publicationLog.get(i);
            Logged next = publicationLog.get(i + 1);
            if (!removed.stored() && removed.pub() != notThis && next.stored()
                    && next.pub().key().equals(removed.pub().key())) {
                out.add(removed.pub().block());
            }
        }
        return out;
    }

    /**
     * Every block stored in this operation is block i of {@code q} (in {@code table}) for some
     * committed position {@code from <= i < to}, its KV written for q's own prefix, under the
     * PrefixKey chain of q's tokens.
     */
    private void checkStored(Seq q, int[] table, int from, int to) {
        for (Pub p : storedThisOp) {
            int i = -1;
            for (int j = from; j < to && j < table.length; j++) {
                if (table[j] == p.block()) {
                    i = j;
                }
            }
            final int pos = i;
            check(i >= 0, () -> "published block " + p.block() + " is not a committed block of " + q.id
                    + " (blocks " + from + ".." + (to - 1) + " of " + Arrays.toString(table) + ")");
            check(p.prefix().equals(q.tokens.subList(0, (pos + 1) * B)),
                    () -> "block " + p.block() + " published as " + p.prefix() + " but " + q.id + " holds "
                            + q.tokens.subList(0, (pos + 1) * B));
            PrefixKey key = PrefixKey.root(q.salt, SequenceOptions.DEFAULT_TENANT);
            int[] toks = q.tokens.stream().mapToInt(Integer::intValue).toArray();
            for (int j = 0; j <= pos; j++) {
                key = PrefixKey.chain(key, toks, j * B, B);
            }
            final PrefixKey expected = key;
            check(p.hash() == expected.hi(), () -> "block " + p.block() + " key " + Long.toHexString(p.hash())
                    + ", the SHA-256 chain of its tokens is " + expected);
        }
    }

    /** A failed copy-on-write: the append threw and nothing moved but, maybe, its target's old content. */
    private void failedCopyChecks(Seq q, KvCacheStats before, Map<String, int[]> tablesBefore) {
        KvCacheStats after = m.stats();
        checkTablesUnchanged(tablesBefore, "failed copy-on-write");
        check(q.s.length() == q.tokens.size(), () -> "failed copy-on-write changed the length");
        check(storedThisOp.isEmpty(), () -> "failed copy-on-write published " + storedThisOp);
        boolean victim = before.emptyBlocks() == 0;
        check(removedThisOp.size() == (victim ? 1 : 0), () -> "failed copy-on-write removed " + removedThisOp);
        if (victim) {
            checkEviction(removedThisOp.getFirst());
        }
        KvCacheStats expected = new KvCacheStats(before.totalBlocks(), before.usedBlocks(),
                before.cachedBlocks() - (victim ? 1 : 0), before.emptyBlocks() + (victim ? 1 : 0),
                before.liveSequences(), before.liveTokens(), before.prefixQueryTokens(), before.prefixHitTokens(),
                before.allocationFailures(), before.evictedBlocks() + (victim ? 1 : 0));
        check(after.equals(expected), () -> "failed copy-on-write changed " + before + " -> " + after);
        if (counting) {
            failedCopies++;
        }
    }

    private void abortSeq(Seq q) {
        int[] table = q.s.blockTable();
        int[] occ = occurrences();
        int events = eventsThisOp;
        m.abort(q.s);
        check(eventsThisOp == events, () -> "abort fired events");
        live.remove(q);
        for (int i = table.length - 1; i >= 0; i--) {
            int b = table[i];
            if (b >= 0 && --occ[b] == 0 && byBlock.containsKey(b)) {
                queue.add(new Queued(b, prio[b]));
            }
        }
        if (counting) {
            aborts++;
        }
    }

    private void badAppend(Op.BadAppend a) {
        if (live.isEmpty()) {
            return;
        }
        Seq q = live.get(at(a.pick()));
        KvCacheStats before = m.stats();
        Map<String, int[]> tablesBefore = tables();
        int bad = a.tokens().stream().filter(t -> t < 0).findFirst().orElseThrow();
        try {
            m.append(q.s, a.tokens().stream().mapToInt(Integer::intValue).toArray());
            check(false, () -> "append of a negative token id did not throw");
        } catch (IllegalArgumentException expected) {
            check(String.valueOf(expected.getMessage()).contains(String.valueOf(bad)),
                    () -> "message does not name the value " + bad + ": " + expected.getMessage());
        }
        KvCacheStats after = m.stats();
        check(after.equals(before), () -> "rejected append changed stats: " + before + " -> " + after);
        checkTablesUnchanged(tablesBefore, "rejected append");
        check(eventsThisOp == 0, () -> "rejected append fired events");
    }

    private void fork(Op.Fork f) {
        if (live.isEmpty()) {
            return;
        }
        Seq p = live.get(at(f.pick()));
        String id = "s" + nextId++;
        KvCacheStats before = m.stats();
        Sequence child = m.fork(p.s, id);
        check(Arrays.equals(child.blockTable(), p.s.blockTable()) && child.length() == p.s.length(),
                () -> "fork " + id + " does not share " + p.id + "'s blocks");
        check(m.stats().usedBlocks() == before.usedBlocks(), () -> "fork took blocks");
        check(eventsThisOp == 0, () -> "fork fired events");
        Seq c2 = new Seq(child, id, p.priority, p.salt, new ArrayList<>(p.tokens));
        c2.lenBeforeLastAppend = p.lenBeforeLastAppend;
        c2.cachedTokens = p.cachedTokens;
        c2.committed = p.committed;
        live.add(c2);
        forks++;
    }

    private void free(int pick) {
        if (live.isEmpty()) {
            return;
        }
        Seq q = live.get(at(pick));
        int[] occ = occurrences();
        int[] table = q.s.blockTable();
        m.free(q.s);
        check(!q.s.isLive() && m.sequence(q.id) == null, () -> q.id + " still live after free");
        try {
            q.s.blockTable();
            check(false, () -> "blockTable() of a freed sequence did not throw");
        } catch (IllegalStateException expected) {
            // the contract
        }
        try {
            m.free(q.s);
            check(false, () -> "second free did not throw");
        } catch (IllegalStateException expected) {
            // the contract
        }
        // free commits what the last append filled (the engine wrote it), then releases tail first
        checkStored(q, table, q.committed, q.tokens.size() / B);
        Set<Integer> stale = staleReplacements();
        check(stale.size() == removedThisOp.size(), () -> "free evicted " + removedThisOp);
        for (int b : stale) {
            queue.removeIf(x -> x.block() == b);
        }
        live.remove(q);
        for (int i = table.length - 1; i >= 0; i--) {
            int b = table[i];
            if (b >= 0 && --occ[b] == 0 && byBlock.containsKey(b)) {
                queue.add(new Queued(b, prio[b]));
            }
        }
    }

    private void commit(Op.Commit k) {
        if (live.isEmpty()) {
            return;
        }
        Seq q = live.get(at(k.pick()));
        int[] table = q.s.blockTable();
        KvCacheStats before = m.stats();
        m.commit(q.s);
        checkStored(q, table, q.committed, q.tokens.size() / B);
        Set<Integer> stale = staleReplacements();
        check(stale.size() == removedThisOp.size(), () -> "commit evicted " + removedThisOp);
        for (int b : stale) {
            queue.removeIf(x -> x.block() == b);
        }
        KvCacheStats after = m.stats();
        check(after.usedBlocks() == before.usedBlocks() && after.liveTokens() == before.liveTokens(),
                () -> "commit moved blocks: " + before + " -> " + after);
        q.committed = Math.max(q.committed, q.tokens.size() / B);
    }

    private void preempt(Op.Preempt p) {
        if (live.isEmpty()) {
            return;
        }
        Seq q = live.get(at(p.pick()));
        int[] occ = occurrences();
        int[] table = q.s.blockTable();
        KvCacheStats before = m.stats();
        PreemptedSequence rec;
        boolean swap = p.swap() && engine.swap.freeBlocks() >= q.s.heldBlocks();
        rec = m.preempt(q.s, swap ? PreemptionMode.SWAP : PreemptionMode.RECOMPUTE);
        check(storedThisOp.isEmpty() && removedThisOp.isEmpty(), () -> "preempt changed publications");
        check(!q.s.isLive() && m.stats().liveSequences() == before.liveSequences() - 1, () -> "preempt left it live");
        live.remove(q);
        for (int i = table.length - 1; i >= 0; i--) {
            int b = table[i];
            if (b >= 0 && --occ[b] == 0 && byBlock.containsKey(b)) {
                queue.add(new Queued(b, prio[b]));
            }
        }
        kept.add(new Kept(rec, q, swap));
    }

    private void resume(Op.Resume r) {
        if (kept.isEmpty()) {
            return;
        }
        Kept k = kept.get(kept.size() - 1 - r.pick() % kept.size());
        KvCacheStats before = m.stats();
        Map<String, int[]> tablesBefore = tables();
        if (k.resumed) {
            try {
                m.resume(k.record);
                check(false, () -> "a record resumed twice");
            } catch (IllegalStateException expected) {
                // the contract: at most once
            }
            check(m.stats().equals(before), () -> "second resume changed " + before + " -> " + m.stats());
            checkTablesUnchanged(tablesBefore, "second resume");
            check(eventsThisOp == 0, () -> "second resume fired events");
            if (counting) {
                doubleResumes++;
            }
            return;
        }
        Seq old = k.seq;
        int[] occ = occurrences();
        List<Integer> hits = k.swap || !c.prefixCaching() ? List.of()
                : mirrorChain(old.salt, old.tokens, Math.max(0, (old.tokens.size() - 1) / B));
        int hitsFromCache = 0;
        for (int b : hits) {
            if (occ[b] == 0) {
                hitsFromCache++;
            }
        }
        int need = k.swap ? k.record.releasedBlocks() : ceilDiv(old.tokens.size(), B) - hits.size();
        int free = before.freeBlocks() - hitsFromCache;
        Sequence s = m.resume(k.record);
        if (s == null) {
            check(need > free, () -> "resume refused with " + need + " needed and " + free + " free");
            check(eventsThisOp == 0, () -> "refused resume fired events");
            checkTablesUnchanged(tablesBefore, "refused resume");
            return;
        }
        check(need <= free, () -> "resume succeeded with " + need + " needed and " + free + " free");
        k.resumed = true;
        Seq q = new Seq(s, old.id, old.priority, old.salt, new ArrayList<>(old.tokens));
        q.lenBeforeLastAppend = old.lenBeforeLastAppend;
        int[] table = s.blockTable();
        if (k.swap) {
            q.cachedTokens = s.cachedTokens();
            checkStored(q, table, 0, old.committed);
            q.committed = old.committed;
        } else {
            check(s.cachedTokens() == hits.size() * B || (c.tierBlocks() > 0 && s.cachedTokens() > hits.size() * B),
                    () -> "resume hit " + s.cachedTokens() + ", mirror says " + hits.size() * B);
            q.cachedTokens = s.cachedTokens();
            q.committed = s.cachedTokens() / B;
            q.lenBeforeLastAppend = 0;
            check(storedThisOp.size() == s.cachedTokens() / B - hits.size(),
                    () -> "recompute resume published " + storedThisOp + " beyond its tier hits");
        }
        Set<Integer> stale = staleReplacements();
        for (int b : stale) {
            queue.removeIf(x -> x.block() == b);
        }
        for (int b : hits) {
            queue.removeIf(x -> x.block() == b);
        }
        for (int b : removedThisOp) {
            if (!stale.contains(b)) {
                checkEviction(b);
            }
        }
        live.add(q);
        for (int p = 0; p < q.cachedTokens; p++) {
            final int pp = p;
            check(id(q.salt, q.tokens, p).equals(engine.at(s.slot(p))),
                    () -> q.id + " resumed hit position " + pp + " reads KV for " + engine.at(s.slot(pp)));
        }
        if (!k.swap) {
            appendedTokens += q.tokens.size();
            for (int p = q.cachedTokens; p < q.tokens.size(); p++) {
                engine.write(s.slot(p), id(q.salt, q.tokens, p));
            }
        }
    }

    private void reset() {
        KvCacheStats before = m.stats();
        boolean r = m.resetPrefixCache();
        KvCacheStats after = m.stats();
        check(r == (before.usedBlocks() == 0), () -> "resetPrefixCache returned " + r + " with " + before);
        if (r) {
            resets += counting ? 1 : 0;
            queue.clear();
            check(after.cachedBlocks() == 0 && after.emptyBlocks() == after.totalBlocks() && byBlock.isEmpty(),
                    () -> "reset left " + after + ", published " + byBlock.keySet());
        } else {
            check(after.equals(before) && eventsThisOp == 0, () -> "refused reset changed " + before + " -> " + after);
        }
    }

    // ------------------------------------------------------------------ checks

    /** Everything the contract fixes about the current state. */
    public void checkInvariants() {
        KvCacheStats st = m.stats();
        check(st.totalBlocks() == total, () -> "totalBlocks " + st);
        check(st.usedBlocks() >= 0 && st.cachedBlocks() >= 0 && st.emptyBlocks() >= 0,
                () -> "negative counts " + st);
        check(st.usedBlocks() + st.cachedBlocks() + st.emptyBlocks() == st.totalBlocks(),
                () -> "used + cached + empty != total: " + st);
        check(st.liveSequences() == live.size(), () -> "liveSequences " + st + ", model has " + live.size());
        Set<String> ids = new HashSet<>();
        for (Seq q : live) {
            ids.add(q.id);
        }
        check(new HashSet<>(m.liveSequenceIds()).equals(ids), () -> "live ids " + m.liveSequenceIds() + " vs " + ids);

        int[] occ = new int[total];
        long sumLen = 0;
        Map<Long, Integer> slotToken = new HashMap<>();
        for (Seq q : live) {
            Sequence s = q.s;
            int len = q.tokens.size();
            sumLen += len;
            check(s.isLive() && m.sequence(q.id) == s, () -> q.id + " not live in the manager");
            check(s.length() == len, () -> q.id + " length " + s.length() + ", model " + len);
            int[] t = s.blockTable();
            check(t.length == s.blockCount() && t.length == ceilDiv(len, B),
                    () -> q.id + " has " + t.length + " blocks / blockCount " + s.blockCount() + " for " + len + " tokens");
            int held = 0;
            for (int i = 0; i < t.length; i++) {
                final int ii = i;
                boolean rel = c.window() > 0 && released(i, q.lenBeforeLastAppend);
                if (rel) {
                    check(t[i] == -1, () -> q.id + " still holds block " + ii + " = " + t[ii]
                            + " which the window released (length before last append " + q.lenBeforeLastAppend + ")");
                } else {
                    check(t[i] >= 0 && t[i] < total, () -> q.id + " table[" + ii + "] = " + t[ii]
                            + " but the window keeps it (length before last append " + q.lenBeforeLastAppend + ")");
                    occ[t[i]]++;
                    held++;
                }
            }
            final int h = held;
            check(s.heldBlocks() == held, () -> q.id + " heldBlocks " + s.heldBlocks() + ", table holds " + h);
            check(!checks.cachedTokens() || s.cachedTokens() == q.cachedTokens, () -> q.id + " cachedTokens " + s.cachedTokens()
                    + ", expected " + q.cachedTokens);
            for (int p = 0; p < len; p++) {
                final int pp = p;
                int tok = q.tokens.get(p);
                check(s.token(p) == tok, () -> q.id + " token(" + pp + ")");
                long slot = s.slot(p);
                long expected = t[p / B] < 0 ? -1 : (long) t[p / B] * B + p % B;
                check(slot == expected, () -> q.id + " slot(" + pp + ") = " + slot + ", table says " + expected);
                if (c.window() > 0 && (p < c.sinks() || p >= len - c.window())) {
                    check(slot >= 0, () -> q.id + " lost sink/window token " + pp);
                }
                if (slot >= 0) {
                    // the trust model: a live sequence reads only KV of its own prefix
                    check(id(q.salt, q.tokens, p).equals(engine.at(slot)),
                            () -> q.id + " position " + pp + " (slot " + slot + ") holds KV computed for "
                                    + engine.at(slot) + ", not for " + q.tokens.subList(0, pp + 1));
                    checkStore(slot, q.id + " position " + pp);
                    Integer prev = slotToken.putIfAbsent(slot, tok);
                    if (prev != null) {
                        check(m.refCount((int) (slot / B)) > 1 && prev == tok,
                                () -> "slot " + slot + " is mapped by two sequences but block " + slot / B
                                        + " has refCount " + m.refCount((int) (slot / B)));
                    }
                }
            }
            Pub before = null;
            for (int i = 0; (i + 1) * B <= len; i++) {
                Pub p = t[i] >= 0 ? byBlock.get(t[i]) : null;
                if (p != null) {
                    final int ii = i;
                    final Pub pb = before;
                    check(p.key().tokens().equals(q.tokens.subList(i * B, (i + 1) * B)) && p.key().salt() == q.salt
                                    && p.prefix().equals(q.tokens.subList(0, (i + 1) * B))
                                    && (i > 0 || p.parent() == null)
                                    && (pb == null || p.parent() == pb || byBlock.get(p.parent().block()) != p.parent()),
                            () -> q.id + " block " + ii + " is published as " + p + " after " + pb + " but holds "
                                    + q.tokens.subList(0, (ii + 1) * B));
                }
                before = p;
            }
            int cpl = m.cachedPrefixLength(q.salt, q.tokens.stream().mapToInt(Integer::intValue).toArray());
            int expectCpl = c.prefixCaching() ? mirrorChain(q.salt, q.tokens, Integer.MAX_VALUE).size() * B : 0;
            check(cpl == expectCpl, () -> "cachedPrefixLength(" + q.id + ") = " + cpl + ", mirror says " + expectCpl);
        }
        final long sum = sumLen;
        check(st.liveTokens() == sumLen, () -> "liveTokens " + st.liveTokens() + ", sum of lengths " + sum);

        // the trust model: every published block holds KV of exactly the prefix it was published for
        for (Pub p : byBlock.values()) {
            for (int o = 0; o < B; o++) {
                final int oo = o;
                List<Integer> want = id(p.key().salt(), p.prefix(), p.prefix().size() - B + o);
                List<Integer> has = engine.at((long) p.block() * B + o);
                check(want.equals(has), () -> "published block " + p.block() + " slot " + oo + " holds KV for "
                        + has + ", published for " + want);
                checkStore((long) p.block() * B + o, "published block " + p.block() + " slot " + o);
            }
        }

        int distinct = 0;
        int cachedCount = 0;
        int emptyCount = 0;
        Set<Integer> cachedSet = new HashSet<>();
        for (int b = 0; b < total; b++) {
            final int bb = b;
            int rc = m.refCount(b);
            check(rc == occ[b], () -> "refCount(" + bb + ") = " + rc + " but it occurs " + occ[bb]
                    + " times in live block tables");
            boolean pub = m.isPublished(b);
            check(pub == byBlock.containsKey(b), () -> "isPublished(" + bb + ") = " + pub + ", events say "
                    + byBlock.containsKey(bb));
            if (occ[b] > 0) {
                distinct++;
            } else if (pub) {
                cachedCount++;
                cachedSet.add(b);
            } else {
                emptyCount++;
            }
        }
        final int d = distinct;
        final int cc = cachedCount;
        final int ec = emptyCount;
        check(st.usedBlocks() == distinct, () -> "usedBlocks " + st.usedBlocks() + ", distinct held blocks " + d);
        check(st.cachedBlocks() == cachedCount && st.emptyBlocks() == emptyCount,
                () -> "cached/empty " + st + ", expected " + cc + "/" + ec);
        if (!c.prefixCaching()) {
            check(st.cachedBlocks() == 0 && byBlock.isEmpty(), () -> "prefix caching off but " + st);
        }
        Set<Integer> queued = new HashSet<>();
        for (Queued e : queue) {
            queued.add(e.block());
        }
        check(queued.equals(cachedSet), () -> "model reuse queue " + queue + ", cached blocks " + cachedSet);

        peakUsed = Math.max(peakUsed, st.usedBlocks());
        KvCacheLedger l = m.ledger();
        check(l.stats().equals(st), () -> "ledger stats " + l.stats() + " vs " + st);
        check(l.forks() == forks && l.copyOnWrites() == copyOnWrites && l.windowReleasedBlocks() == windowReleased
                        && l.appendedTokens() == appendedTokens && l.publishedBlocks() == storedEvents
                        && l.peakUsedBlocks() == peakUsed && l.blockTokens() == B,
                () -> "ledger " + l + ", model forks=" + forks + " cow=" + copyOnWrites + " window=" + windowReleased
                        + " appended=" + appendedTokens + " published=" + storedEvents + " peak=" + peakUsed);
    }

    /** The memory bound of a sliding window under single-token appends. */
    public void checkWindowBound() {
        int bound = ceilDiv(c.sinks(), B) + ceilDiv(c.window(), B) + 2;
        for (Seq q : live) {
            check(q.s.heldBlocks() <= bound, () -> q.id + " holds " + q.s.heldBlocks() + " blocks at length "
                    + q.s.length() + ", bound " + bound);
        }
    }

    private void checkTablesUnchanged(Map<String, int[]> before, String what) {
        for (Seq o : live) {
            check(Arrays.equals(o.s.blockTable(), before.get(o.id)) && o.s.length() == o.tokens.size(),
                    () -> what + " changed " + o.id + ": " + Arrays.toString(before.get(o.id)) + " -> "
                            + Arrays.toString(o.s.blockTable()) + ", length " + o.s.length());
        }
    }

    // ------------------------------------------------------------------ helpers

    /** Block i lies wholly outside the sinks and the last {@code window} tokens of length {@code len}. */
    private boolean released(int i, int len) {
        return (long) i * B >= c.sinks() && (long) (i + 1) * B <= (long) len - c.window();
    }

    /**
     * Published blocks matching {@code tokens} block by block from the root, at most {@code max},
     * each stored after the one matched before it (still the same publication).
     */
    private List<Integer> mirrorChain(long salt, List<Integer> tokens, int max) {
        List<Integer> out = new ArrayList<>();
        Pub prev = null;
        for (int j = 0; j < max && (j + 1) * B <= tokens.size(); j++) {
            long parent = prev == null ? KvCacheManager.ROOT_HASH : prev.hash();
            Pub p = byKey.get(new Key(parent, salt, tokens.subList(j * B, (j + 1) * B)));
            if (p == null || p.parent() != prev) {
                break;
            }
            out.add(p.block());
            prev = p;
        }
        return out;
    }

    /** {@code pick} counts live sequences from the newest: 0 is the one opened or forked last. */
    private int at(int pick) {
        return live.size() - 1 - pick % live.size();
    }

    private int pollQueue() {
        if (queue.isEmpty()) {
            return -1;
        }
        int at = 0;
        if (c.priorityPolicy()) {
            for (int i = 1; i < queue.size(); i++) {
                if (queue.get(i).priority() < queue.get(at).priority()) {
                    at = i;
                }
            }
        }
        return queue.remove(at).block();
    }

    private String policyName() {
        return c.priorityPolicy() ? "priority" : "lru";
    }

    /** After a step: a held block's priority is the highest of its holders since it was last free. */
    private void updatePriorities() {
        int[] max = new int[total];
        Arrays.fill(max, -1);
        for (Seq q : live) {
            for (int b : q.s.blockTable()) {
                if (b >= 0) {
                    max[b] = Math.max(max[b], q.priority);
                }
            }
        }
        for (int b = 0; b < total; b++) {
            if (max[b] < 0) {
                prio[b] = -1; // free: the next holder starts afresh
            } else {
                prio[b] = Math.max(prio[b], max[b]);
            }
        }
    }

    private int[] occurrences() {
        int[] occ = new int[total];
        for (Seq q : live) {
            for (int b : q.s.blockTable()) {
                if (b >= 0) {
                    occ[b]++;
                }
            }
        }
        return occ;
    }

    private Map<String, int[]> tables() {
        Map<String, int[]> t = new HashMap<>();
        for (Seq q : live) {
            t.put(q.id, q.s.blockTable());
        }
        return t;
    }

    /**
     * What the KV at position {@code p} of a sequence with {@code salt} and {@code tokens} was
     * computed from: the salt (it stands for an adapter or a modality, so equal tokens under
     * another salt are other KV) and the tokens up to and including {@code p}.
     */
    private static List<Integer> id(long salt, List<Integer> tokens, int p) {
        List<Integer> out = new ArrayList<>(p + 2);
        out.add((int) salt);
        out.addAll(tokens.subList(0, p + 1));
        return out;
    }

    private static List<Integer> boxed(int[] a) {
        List<Integer> l = new ArrayList<>(a.length);
        for (int x : a) {
            l.add(x);
        }
        return List.copyOf(l);
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /** The store under test holds at {@code slot} what the engine wrote there. */
    private void checkStore(long slot, String what) {
        String wrong = engine.checkStore(slot);
        check(wrong == null, () -> what + ": " + wrong);
    }

    private void check(boolean ok, Supplier<String> message) {
        if (!ok) {
            throw new AssertionError(where + ": " + message.get());
        }
    }
}
