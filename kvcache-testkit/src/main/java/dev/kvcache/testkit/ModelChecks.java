package dev.kvcache.testkit;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheStats;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;
import dev.kvcache.SequenceOptions;
import dev.kvcache.testkit.ManagerModel.Checks;
import dev.kvcache.testkit.ManagerModel.Config;

import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What the contract fixes about the state after every step of a {@link ManagerModel} run: the
 * block counts, reference counts recomputed from the live block tables, every live slot and
 * published block holding KV of its own prefix (the trust model), the mirror of published
 * blocks, the reuse queue and the ledger; plus the checks of what a commit published and of a
 * copy-on-write whose copier threw.
 */
abstract class ModelChecks extends ModelState {

    ModelChecks(Config c, Checks checks) {
        super(c, checks);
    }

    /**
     * Checks everything the contract fixes about the current state: block counts, reference
     * counts, every live slot and published block holding KV of its own prefix (and, with a
     * store under test, the store reading it back), the reuse queue and the ledger.
     *
     * @throws AssertionError what differs, after which step
     */
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

    /**
     * Checks the memory bound of a sliding window under single-token appends: every live
     * sequence holds at most {@code ceil(sinks/B) + ceil(window/B) + 2} blocks.
     *
     * @throws AssertionError a sequence holds more
     */
    public void checkWindowBound() {
        int bound = ceilDiv(c.sinks(), B) + ceilDiv(c.window(), B) + 2;
        for (Seq q : live) {
            check(q.s.heldBlocks() <= bound, () -> q.id + " holds " + q.s.heldBlocks() + " blocks at length "
                    + q.s.length() + ", bound " + bound);
        }
    }

    /**
     * Every block stored in this operation is block i of {@code q} (in {@code table}) for some
     * committed position {@code from <= i < to}, its KV written for q's own prefix, under the
     * PrefixKey chain of q's tokens.
     */
    void checkStored(Seq q, int[] table, int from, int to) {
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
    void failedCopyChecks(Seq q, KvCacheStats before, Map<String, int[]> tablesBefore) {
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
}
