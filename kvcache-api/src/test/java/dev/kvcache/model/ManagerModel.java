package dev.kvcache.model;

import dev.kvcache.AppendEstimate;

import dev.kvcache.EvictionPolicy;
import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
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
 * contract (API.md, "The block manager") after every step.
 *
 * <p>The model does not choose physical blocks (that is the manager's business); it keeps what the
 * contract determines and checks the manager against it:
 * <ul>
 *   <li>each live sequence's token ids, the length before its last append (which fixes what a
 *       sliding window has released), its priority, salt and cache-served token count;</li>
 *   <li>a mirror of the published prefix blocks, fed only by {@link KvCacheEvent}s: key (parent
 *       hash, salt, token ids) to block and hash. Prefix hits are predicted by walking this mirror,
 *       so the expected return value of every append is known before the call;</li>
 *   <li>the reuse queue of cached blocks (release order, with the priority each block was queued
 *       with), so every eviction the manager reports can be checked against LRU or priority order;</li>
 *   <li>the ledger counters (forks, copy-on-writes, window releases, appended tokens, published
 *       blocks, peak use).</li>
 * </ul>
 * Reference counts are recomputed from scratch after every step as the number of occurrences of
 * each block in the live block tables, and compared with {@link KvCacheManager#refCount}.
 */
public final class ManagerModel implements KvCacheListener {

    /** A manager configuration; {@code window == 0} means no sliding window. */
    public record Config(int blocks, int blockTokens, boolean prefixCaching, boolean priorityPolicy,
                         int sinks, int window) {

        public KvCacheManager build() {
            KvLayout layout = new KvLayout(1, 1, 4, blockTokens, KvFormats.F16);
            KvCacheManager.Builder b = KvCacheManager.builder(layout)
                    .blocks(blocks)
                    .prefixCaching(prefixCaching)
                    .evictionPolicy(priorityPolicy ? EvictionPolicy.priority() : EvictionPolicy.lru());
            if (window > 0) {
                b.slidingWindow(sinks, window);
            }
            return b.build();
        }
    }

    /**
     * Optional checks: {@code windowBound} (heldBlocks within the sliding-window bound; only for
     * single-token workloads) and {@code cachedTokens} ({@link Sequence#cachedTokens()} keeps the
     * hits of the sequence's first append; a switch so that, should it break again, the other
     * checks can be run without it).
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

    private record Pub(int block, long hash, Key key) {
    }

    private record Queued(int block, int priority) {
    }

    private final Config c;
    private final Checks checks;
    private final KvCacheManager m;
    private final int B;
    private final int total;
    private final List<Seq> live = new ArrayList<>();
    private int nextId;

    // mirror of the published blocks, fed by events
    private final Map<Key, Pub> byKey = new HashMap<>();
    private final Map<Integer, Pub> byBlock = new HashMap<>();
    private final List<Integer> removedThisOp = new ArrayList<>();
    private final List<KvCacheEvent.AppendRefused> refusedThisOp = new ArrayList<>();
    private int eventsThisOp;
    private long storedEvents;

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
    private boolean counting;

    private String where = "initial state";

    public ManagerModel(Config c, Checks checks) {
        this.c = c;
        this.checks = checks;
        this.m = c.build();
        this.B = c.blockTokens();
        this.total = c.blocks();
        this.prio = new int[total];
        m.addListener(this);
    }

    /** What a run exercised, so properties can require that their workloads reach every mechanism. */
    public record Coverage(int prefixHits, int failedAppends, int evictions, int copyOnWrites,
                           int windowReleases, int resets) {
    }

    /**
     * Runs {@code ops}, checking everything after each, then frees all, resets the prefix cache and
     * closes the manager.
     */
    public static Coverage run(Config c, List<Op> ops, Checks checks) {
        ManagerModel model = new ManagerModel(c, checks);
        model.checkInvariants();
        for (int i = 0; i < ops.size(); i++) {
            Op op = ops.get(i);
            model.where = "after op " + i + " " + op + " of " + c;
            model.counting = true;
            model.apply(op);
            model.checkInvariants();
            if (checks.windowBound()) {
                model.checkWindowBound();
            }
        }
        model.where = "after freeing everything, " + c;
        model.counting = false;
        while (!model.live.isEmpty()) {
            model.apply(new Op.Free(model.live.size() - 1));
        }
        model.checkInvariants();
        KvCacheStats st = model.m.stats();
        model.check(st.usedBlocks() == 0 && st.liveTokens() == 0 && st.liveSequences() == 0,
                () -> "pool not idle: " + st);
        model.apply(new Op.ResetPrefixCache());
        model.checkInvariants();
        KvCacheStats reset = model.m.stats();
        model.check(reset.emptyBlocks() == reset.totalBlocks(), () -> "reset left blocks: " + reset);
        model.m.close();
        return new Coverage(model.hitAppends, model.failedAppends, (int) st.evictedBlocks(),
                (int) model.copyOnWrites, (int) model.windowReleased, model.resets);
    }

    // ------------------------------------------------------------------ events

    /**
     * Prefix-cache events (stored, removed, cleared) update the mirror and count in
     * {@code eventsThisOp}; refusals are kept apart (a refused append notifies but changes
     * nothing). The workloads here never preempt, reap or drop tokens, so those events fail.
     */
    @Override
    public void onEvent(KvCacheEvent e) {
        if (e instanceof KvCacheEvent.AppendRefused r) {
            refusedThisOp.add(r);
            return;
        }
        eventsThisOp++;
        switch (e) {
            case KvCacheEvent.BlockStored s -> {
                storedEvents++;
                Key k = new Key(s.parentHash(), s.cacheSalt(), boxed(s.tokenIds()));
                check(s.tokenIds().length == B, () -> "stored block with " + s.tokenIds().length + " tokens: " + s);
                check(!byKey.containsKey(k), () -> "content published twice: " + s + ", already " + byKey.get(k));
                check(!byBlock.containsKey(s.block()), () -> "block published twice: " + s);
                Pub p = new Pub(s.block(), s.hash(), k);
                byKey.put(k, p);
                byBlock.put(s.block(), p);
            }
            case KvCacheEvent.BlockRemoved r -> {
                Pub p = byBlock.remove(r.block());
                check(p != null && p.hash() == r.hash(), () -> "removed a block that was not published: " + r);
                byKey.remove(p.key());
                removedThisOp.add(r.block());
            }
            case KvCacheEvent.AllBlocksCleared a -> {
                byKey.clear();
                byBlock.clear();
            }
            default -> check(false, () -> "unexpected event " + e);
        }
    }

    // ------------------------------------------------------------------ steps

    public void apply(Op op) {
        eventsThisOp = 0;
        removedThisOp.clear();
        refusedThisOp.clear();
        switch (op) {
            case Op.Open o -> open(o);
            case Op.Append a -> append(a);
            case Op.BadAppend a -> badAppend(a);
            case Op.Fork f -> fork(f);
            case Op.Free f -> free(f);
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

    private void append(Op.Append a) {
        if (live.isEmpty()) {
            return;
        }
        Seq q = live.get(at(a.pick()));
        List<Integer> tokens = a.tokens();
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

        int r = m.append(q.s, tokenArray);
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
            failedAppends++;
            return;
        }
        check(need <= free, () -> "append succeeded although it needed " + need + " blocks and only "
                + free + " were free: " + before);
        check(r == hits.size() * B, () -> "append returned " + r + ", the prefix cache holds "
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
        // other sequences are untouched
        for (Seq o : live) {
            if (o != q) {
                check(Arrays.equals(o.s.blockTable(), tablesBefore.get(o.id)) && o.s.length() == o.tokens.size(),
                        () -> "append to " + q.id + " changed " + o.id);
            }
        }
        // the reuse queue: window releases join it first, hits leave it, then evictions take from it
        for (int b : windowReleases) {
            if (--occ[b] == 0 && publishedBefore.contains(b)) {
                queue.add(new Queued(b, prio[b]));
            }
        }
        for (int b : hits) {
            queue.removeIf(e -> e.block() == b);
        }
        for (int evicted : removedThisOp) {
            int expected = pollQueue();
            check(evicted == expected, () -> "evicted block " + evicted + " but the " + policyName()
                    + " policy's next victim is " + expected + "; queue was " + queue);
        }
        check(after.evictedBlocks() - before.evictedBlocks() == removedThisOp.size(),
                () -> "evictedBlocks moved by " + (after.evictedBlocks() - before.evictedBlocks())
                        + " but " + removedThisOp.size() + " BlockRemoved events");
        if (!removedThisOp.isEmpty()) {
            check(after.emptyBlocks() == 0, () -> "evicted a cached block while an empty one was left: " + after);
        }
        for (int b : hits) {
            check(!removedThisOp.contains(b), () -> "append evicted its own hit block " + b);
        }
        if (cow) {
            copyOnWrites++;
        }
        check(m.lastRefusal() == Refusal.NONE, () -> "lastRefusal after a success: " + m.lastRefusal());
        if (c.prefixCaching()) {
            checkFilledBlocksPublished(q, tokens, oldLen, hits.size(), newTable);
        }
        windowReleased += windowReleases.size();
        appendedTokens += n;
        q.tokens.addAll(tokens);
        q.lenBeforeLastAppend = oldLen;
        if (oldLen == 0) {
            q.cachedTokens = r;
        }
        if (r > 0) {
            hitAppends++;
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
        check(eventsThisOp == 0 && refusedThisOp.isEmpty(), () -> "rejected append fired events");
    }

    private void fork(Op.Fork f) {
        if (live.isEmpty()) {
            return;
        }
        Seq p = live.get(at(f.pick()));
        KvCacheStats before = m.stats();
        String id = "s" + nextId++;
        Sequence s = m.fork(p.s, id);
        Seq child = new Seq(s, id, p.priority, p.salt, new ArrayList<>(p.tokens));
        child.lenBeforeLastAppend = p.lenBeforeLastAppend;
        child.cachedTokens = p.cachedTokens;
        live.add(child);
        forks++;
        check(Arrays.equals(s.blockTable(), p.s.blockTable()), () -> "fork does not share the parent's table");
        KvCacheStats after = m.stats();
        check(after.usedBlocks() == before.usedBlocks() && after.cachedBlocks() == before.cachedBlocks()
                        && after.liveTokens() == before.liveTokens() + p.tokens.size(),
                () -> "fork of " + p.id + ": " + before + " -> " + after);
        check(eventsThisOp == 0, () -> "fork fired events");
    }

    private void free(Op.Free f) {
        if (live.isEmpty()) {
            return;
        }
        int at = at(f.pick());
        Seq q = live.get(at);
        int[] occ = occurrences();
        live.remove(at);
        Set<Integer> published = new HashSet<>(byBlock.keySet());
        int[] table = q.s.blockTable();
        m.free(q.s);
        check(!q.s.isLive() && m.sequence(q.id) == null, () -> "freed sequence still live: " + q.id);
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
        // tail first: the tail of a released sequence is reused before its head
        for (int i = table.length - 1; i >= 0; i--) {
            int b = table[i];
            if (b >= 0 && --occ[b] == 0 && published.contains(b)) {
                queue.add(new Queued(b, prio[b]));
            }
        }
        check(eventsThisOp == 0, () -> "free fired events");
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
            check(t.length * B - len <= B - 1, () -> q.id + " wastes more than a block");
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
                    Integer prev = slotToken.putIfAbsent(slot, tok);
                    if (prev != null) {
                        // two sequences map this slot: only legitimate for a shared block with the same content
                        check(m.refCount((int) (slot / B)) > 1 && prev == tok,
                                () -> "slot " + slot + " is mapped by two sequences but block " + slot / B
                                        + " has refCount " + m.refCount((int) (slot / B)) + " / tokens " + prev + " vs " + tok);
                    }
                }
            }
            // published content held by this sequence is this sequence's content and chain
            Pub before = null;
            for (int i = 0; (i + 1) * B <= len; i++) {
                Pub p = t[i] >= 0 ? byBlock.get(t[i]) : null;
                if (p != null) {
                    final int ii = i;
                    final Pub pb = before;
                    check(p.key().tokens().equals(q.tokens.subList(i * B, (i + 1) * B)) && p.key().salt() == q.salt
                                    && (i > 0 || p.key().parent() == KvCacheManager.ROOT_HASH)
                                    && (pb == null || p.key().parent() == pb.hash()),
                            () -> q.id + " block " + ii + " is published as " + p + " after " + pb + " but holds "
                                    + q.tokens.subList(ii * B, (ii + 1) * B));
                }
                before = p;
            }
            int cpl = m.cachedPrefixLength(q.salt, q.tokens.stream().mapToInt(Integer::intValue).toArray());
            int expectCpl = c.prefixCaching() ? mirrorChain(q.salt, q.tokens, Integer.MAX_VALUE).size() * B : 0;
            check(cpl == expectCpl, () -> "cachedPrefixLength(" + q.id + ") = " + cpl + ", mirror says " + expectCpl);
        }
        final long sum = sumLen;
        check(st.liveTokens() == sumLen, () -> "liveTokens " + st.liveTokens() + ", sum of lengths " + sum);

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

    /**
     * Every block this append filled is published, unless a block with the same chain, salt and
     * tokens already was (then the earlier one is kept). Where the chain hash before a block is
     * not known to the model (the block before it is not published), it checks that some block
     * with the same salt and tokens is published.
     */
    private void checkFilledBlocksPublished(Seq q, List<Integer> added, int oldLen, int hits, int[] table) {
        List<Integer> all = new ArrayList<>(q.tokens);
        all.addAll(added);
        int newLen = all.size();
        Long parent = null;
        int first = Math.max(oldLen / B, hits);
        if (first == 0) {
            parent = KvCacheManager.ROOT_HASH;
        } else if (table[first - 1] >= 0 && byBlock.containsKey(table[first - 1])) {
            parent = byBlock.get(table[first - 1]).hash();
        }
        for (int i = first; i < newLen / B; i++) {
            final int ii = i;
            List<Integer> toks = all.subList(i * B, (i + 1) * B);
            Pub p = null;
            if (parent != null) {
                p = byKey.get(new Key(parent, q.salt, toks));
                check(p != null, () -> q.id + " filled block " + ii + " " + toks + " but nothing is published for it");
            } else {
                for (Pub x : byBlock.values()) {
                    if (x.key().salt() == q.salt && x.key().tokens().equals(toks)) {
                        p = x;
                    }
                }
                check(p != null, () -> q.id + " filled block " + ii + " " + toks + " but no block with those tokens is published");
                p = table[i] >= 0 ? byBlock.get(table[i]) : null;
            }
            parent = p == null ? null : p.hash();
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

    /** Published blocks matching {@code tokens} block by block from the root, at most {@code max}. */
    private List<Integer> mirrorChain(long salt, List<Integer> tokens, int max) {
        List<Integer> out = new ArrayList<>();
        long parent = KvCacheManager.ROOT_HASH;
        for (int j = 0; j < max && (j + 1) * B <= tokens.size(); j++) {
            Pub p = byKey.get(new Key(parent, salt, tokens.subList(j * B, (j + 1) * B)));
            if (p == null) {
                break;
            }
            out.add(p.block());
            parent = p.hash();
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

    private void check(boolean ok, Supplier<String> message) {
        if (!ok) {
            throw new AssertionError(where + ": " + message.get());
        }
    }
}
