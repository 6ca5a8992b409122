package dev.kvcache.testkit;

import dev.kvcache.KvCacheStats;
import dev.kvcache.PreemptedSequence;
import dev.kvcache.PreemptionMode;
import dev.kvcache.Sequence;
import dev.kvcache.SequenceOptions;
import dev.kvcache.testkit.ManagerModel.Checks;
import dev.kvcache.testkit.ManagerModel.Config;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Every step of a {@link ManagerModel} run but the append: open, fork, free, commit, preempt,
 * resume (twice on purpose) and resetPrefixCache, each checked against the contract.
 */
abstract class ModelSteps extends ModelAppend {

    ModelSteps(Config c, Checks checks) {
        super(c, checks);
    }

    /**
     * Applies one step to the manager and checks what the contract says about that step (its
     * result, what it may and may not change, the events it fires); a step on a sequence when
     * none is live does nothing.
     *
     * @param op the step
     * @throws AssertionError the manager broke the contract (the message names the step)
     */
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

    void open(Op.Open o) {
        String id = "s" + nextId++;
        Sequence s = m.open(id, SequenceOptions.DEFAULT.withPriority(o.priority()).withCacheSalt(o.salt()));
        check(s.length() == 0 && s.blockCount() == 0 && s.heldBlocks() == 0 && s.isLive(),
                () -> "fresh sequence not empty: " + s);
        live.add(new Seq(s, id, o.priority(), o.salt(), new ArrayList<>()));
        check(eventsThisOp == 0, () -> "open fired events");
    }

    void fork(Op.Fork f) {
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

    void free(int pick) {
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

    void commit(Op.Commit k) {
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

    void preempt(Op.Preempt p) {
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

    void resume(Op.Resume r) {
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

    void reset() {
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
}
