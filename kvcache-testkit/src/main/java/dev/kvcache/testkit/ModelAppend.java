package dev.kvcache.testkit;

import dev.kvcache.AppendEstimate;
import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheStats;
import dev.kvcache.Refusal;
import dev.kvcache.testkit.ManagerModel.Checks;
import dev.kvcache.testkit.ManagerModel.Config;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The append step of a {@link ManagerModel} run: what the contract says an append needs and may
 * get (prefix hits from the published mirror, window releases, a copy-on-write) is computed before
 * the call, {@code estimateAppend} must predict it and change nothing, and the call's result,
 * stats, publications, evictions (in the policy's order) and the KV its hits read are checked
 * after it; an aborted append and a throwing copier must leave nothing behind.
 */
abstract class ModelAppend extends ModelChecks {

    ModelAppend(Config c, Checks checks) {
        super(c, checks);
    }

    enum Mode { WRITE, ABORT, FAILING_COPY }

    void append(int pick, List<Integer> tokens, Mode mode) {
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
    int queueWindowReleases(List<Integer> windowReleases, int[] occ, Set<Integer> published) {
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

    void abortSeq(Seq q) {
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

    void badAppend(Op.BadAppend a) {
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
}
