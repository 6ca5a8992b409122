package dev.kvcache;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The tiers below the store: where an evicted published block goes, and where a prompt's next
 * blocks are looked for once the store's own prefix hits end.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li><b>Demotion</b>: a published block is copied to the first tier when it is evicted for
 *       reuse, before its publication ends and before anyone can write into it (the copy is
 *       synchronous, so a block is never reused while its copy is still reading it). A tier that
 *       refuses or throws keeps nothing; the manager's state does not depend on it.</li>
 *   <li><b>Promotion</b>: a tier hit is loaded into a fresh block the append took anyway (a miss
 *       would have needed the same block), so a failed load changes no block count: the append
 *       just serves fewer tokens and the engine computes the rest. Loads stop at the first miss;
 *       a block is served only if the tier verified its copy against the {@link TierEntry} this
 *       manager expects (key, parent key, salt, scope, token ids, layout).</li>
 *   <li>Keys are the chained {@link PrefixKey}s of the sequence's own tokens, so a tier shared
 *       with another manager of the same model and layout serves its blocks too.</li>
 *   <li>A tier that throws (an Error included, a {@link VirtualMachineError} excepted) is counted
 *       ({@link #errors()}), never propagated: failure is a miss, and a demotion that throws inside
 *       an allocation cannot leave the append half applied.</li>
 * </ul>
 */
final class Tiers {

    /** Keys asked of a tier per call while a prompt's blocks keep hitting. */
    private static final int KEY_BATCH = 32;

    private final KvTier[] tiers;
    private final KvStore store;
    private final long fingerprint;
    private final int blockTokens;
    private final TenantAccounts accounts;
    private final TierEntry[] entries;
    private final PrefixKeyHasher hasher = new PrefixKeyHasher();
    // lookup scratch, written by lookup() and read by promote()
    private PrefixKey[] keys = new PrefixKey[16];
    private int lookupTier = -1;
    private long demoted;
    private long demotionRefusals;
    private long promoted;
    private long loadMisses;
    private long errors;

    Tiers(List<KvTier> tiers, KvStore store, KvLayout layout, int blocks, TenantAccounts accounts) {
        this.tiers = tiers.toArray(new KvTier[0]);
        this.store = store;
        this.fingerprint = TierEntry.fingerprint(layout);
        this.blockTokens = layout.blockTokens();
        this.accounts = accounts;
        this.entries = new TierEntry[blocks];
    }

    /** Block {@code b} was published as {@code q}'s block {@code i} under {@code key} after {@code parentKey}. */
    void published(int b, PagedSequence q, int i, PrefixKey key, PrefixKey parentKey) {
        int from = i * blockTokens;
        entries[b] = new TierEntry(key, parentKey, q.salt, scopeName(q), Arrays.copyOfRange(q.tokens, from,
                from + blockTokens), fingerprint);
    }

    /** Block {@code b}'s publication is ending because it is being reused: copy it down first. */
    void demote(int b) {
        TierEntry e = entries[b];
        entries[b] = null;
        if (e == null) {
            return;
        }
        try {
            if (tiers[0].put(e, store, b)) {
                demoted++;
            } else {
                demotionRefusals++;
            }
        } catch (VirtualMachineError ex) {
            throw ex;
        } catch (Throwable ex) {
            errors++; // an Error too: it is thrown inside an allocation, which must not stop halfway
        }
    }

    /**
     * How many of the prompt's blocks {@code [hits, maxHits)} the first tier that has any holds,
     * counted from {@code hits} (the store's own hits end there).
     */
    int lookup(PagedSequence q, int[] tokens, int off, int hits, int maxHits, PrefixKey lastHitKey) {
        lookupTier = -1;
        if (hits >= maxHits) {
            return 0;
        }
        if (keys.length < maxHits) {
            keys = new PrefixKey[Math.max(maxHits, keys.length * 2)];
        }
        // the chain of the prompt's own tokens; from the last hit's key when the store knows it
        int start = lastHitKey != null ? hits : 0;
        long hi;
        long lo;
        if (start > 0) {
            hi = lastHitKey.hi();
            lo = lastHitKey.lo();
            keys[hits - 1] = lastHitKey;
        } else {
            hasher.root(q.salt, scopeName(q));
            hi = hasher.hi;
            lo = hasher.lo;
        }
        // keys in batches: a prompt whose next block no tier holds costs one batch of digests, not
        // one per block of the prompt
        int from = hits;
        int j = start;
        int found = 0;
        int tier = -1;
        while (from < maxHits) {
            int end = Math.min(maxHits, from + KEY_BATCH);
            for (; j < end; j++) {
                hasher.block(hi, lo, tokens, off + j * blockTokens, blockTokens);
                hi = hasher.hi;
                lo = hasher.lo;
                keys[j] = new PrefixKey(hi, lo);
            }
            int n = tier < 0 ? firstHolding(from, end - from, q.salt) : leading(tier, from, end - from, q.salt);
            if (tier < 0 && n > 0) {
                tier = lookupTier;
            }
            found += n;
            if (n < end - from) {
                break;
            }
            from = end;
        }
        lookupTier = found > 0 ? tier : -1;
        return found;
    }

    /** The first tier holding keys[from]: how many it holds from there (lookupTier set), or 0. */
    private int firstHolding(int from, int count, long salt) {
        for (int t = 0; t < tiers.length; t++) {
            int n = leading(t, from, count, salt);
            if (n > 0) {
                lookupTier = t;
                return n;
            }
        }
        return 0;
    }

    private int leading(int t, int from, int count, long salt) {
        try {
            return Math.min(count, tiers[t].leadingHits(keys, from, count, salt));
        } catch (VirtualMachineError e) {
            throw e;
        } catch (Throwable e) {
            errors++;
            return 0;
        }
    }

    /**
     * Loads {@code n} blocks found by {@link #lookup} into {@code q}'s blocks {@code [from, from+n)}
     * (already allocated); returns how many loaded, stopping at the first that does not.
     */
    int promote(PagedSequence q, int from, int n) {
        if (lookupTier < 0) {
            return 0;
        }
        KvTier tier = tiers[lookupTier];
        String scope = scopeName(q);
        for (int i = 0; i < n; i++) {
            int j = from + i;
            int t0 = j * blockTokens;
            TierEntry e = new TierEntry(keys[j], j == 0 ? null : keys[j - 1], q.salt, scope,
                    Arrays.copyOfRange(q.tokens, t0, t0 + blockTokens), fingerprint);
            boolean ok;
            try {
                ok = tier.load(e, store, q.table[j]);
            } catch (VirtualMachineError ex) {
                throw ex;
            } catch (Throwable ex) {
                errors++;
                ok = false;
            }
            if (!ok) {
                loadMisses++;
                return i;
            }
            promoted++;
        }
        return n;
    }

    /** The key {@link #lookup} computed for the prompt's block {@code j}. */
    PrefixKey key(int j) {
        return keys[j];
    }

    long demoted() {
        return demoted;
    }

    long demotionRefusals() {
        return demotionRefusals;
    }

    long promoted() {
        return promoted;
    }

    long loadMisses() {
        return loadMisses;
    }

    long errors() {
        return errors;
    }

    List<TierStats> stats() {
        List<TierStats> out = new ArrayList<>(tiers.length);
        for (KvTier t : tiers) {
            try {
                out.add(t.stats());
            } catch (RuntimeException e) {
                errors++;
            }
        }
        return out;
    }

    private String scopeName(PagedSequence q) {
        return q.scope == PrefixIndex.SHARED_SCOPE ? null : q.tenant.name;
    }
}
