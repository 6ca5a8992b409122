package dev.kvcache;

/**
 * What one append would do, worked out before anything changes: what a sliding window releases,
 * which leading blocks are prefix hits, whether a shared partial block must be copied, how many
 * blocks it takes against how many it could get, and whether the tenant's quota, the reservations
 * and the watermark allow it. {@link KvCacheManager#append} applies it; {@link
 * KvCacheManager#estimateAppend} only reports it, so the two can never disagree.
 *
 * <h2>Invariants</h2>
 * After {@link #plan} returns {@link Refusal#NONE}, applying it cannot run out of blocks: every
 * block it allocates is counted in {@code demand <= supply}, and hits are taken before any
 * allocation so an append never evicts its own hits. One instance is reused (under the lock), so
 * planning allocates nothing once its hit scratch has grown.
 */
final class AppendPlan {

    private final BlockPool pool;
    private final PrefixIndex index;
    private final TenantAccounts accounts;
    private final Admission admission;
    private final int blockTokens;
    private final boolean prefixCaching;
    private final int sinkTokens;
    private final int sinkBlocks;
    private final int windowTokens;

    int winFrom;
    int winTo;
    int winFreed;
    int hits;
    /** Blocks the lookup may take from the prompt: (n-1)/B, never the call's last token. */
    int maxHits;
    int hitsFromCache;
    boolean lookup;
    boolean cow;
    int demand;
    int supply;
    int reserve;
    int newBlocks;
    long[] hitHashes = new long[16];
    int[] hitBlocks = new int[16];

    AppendPlan(BlockPool pool, PrefixIndex index, TenantAccounts accounts, Admission admission, int blockTokens,
               boolean prefixCaching, int sinkTokens, int windowTokens) {
        this.pool = pool;
        this.index = index;
        this.accounts = accounts;
        this.admission = admission;
        this.blockTokens = blockTokens;
        this.prefixCaching = prefixCaching;
        this.sinkTokens = sinkTokens;
        this.sinkBlocks = (int) (((long) sinkTokens + blockTokens - 1) / blockTokens);
        this.windowTokens = windowTokens;
    }

    /** Plans appending {@code n > 0} tokens to {@code q}; returns why it would be refused, or NONE. */
    Refusal plan(PagedSequence q, int[] tokens, int off, int n) {
        final int B = blockTokens;
        final int oldLen = q.length;
        long newLenL = (long) oldLen + n;
        if (newLenL > Integer.MAX_VALUE - B) {
            throw new IllegalArgumentException("sequence '" + q.id + "' would reach " + newLenL
                    + " tokens; the limit is " + (Integer.MAX_VALUE - B));
        }
        final int newLen = (int) newLenL;
        final TenantAccounts.Tenant t = q.tenant;
        // the charge this append adds only matters under a quota (an unlimited tenant's charge can
        // never exceed it: it is at most the pool)
        final boolean quota = t.quota != Integer.MAX_VALUE;

        // what a sliding window releases
        winFrom = 0;
        winTo = 0;
        winFreed = 0;
        int winReleased = 0;
        int tenantRelief = 0;
        if (windowTokens > 0 && oldLen > windowTokens) {
            winFrom = Math.max(q.windowReleasedTo, sinkBlocks);
            winTo = (oldLen - windowTokens) / B; // blocks [winFrom, winTo) lie wholly outside
            for (int i = winFrom; i < winTo; i++) {
                int b = q.table[i];
                if (b >= 0) {
                    winReleased++;
                    if (pool.refCount(b) == 1) {
                        winFreed++;
                    }
                    if (quota && accounts.refs(b, t) == 1) {
                        tenantRelief++;
                    }
                }
            }
        }

        // prefix hits: first append only, never the call's last token, each proven structurally
        hits = 0;
        maxHits = 0;
        hitsFromCache = 0;
        int hitsNewToTenant = 0;
        lookup = prefixCaching && oldLen == 0;
        if (lookup) {
            maxHits = (n - 1) / B;
            ensureScratch(maxHits);
            hits = index.match(q.salt, q.scope, tokens, off, maxHits, hitBlocks, hitHashes);
            for (int j = 0; j < hits; j++) {
                int b = hitBlocks[j];
                if (pool.refCount(b) == 0) {
                    hitsFromCache++;
                }
                if (quota && accounts.refs(b, t) == 0) {
                    hitsNewToTenant++;
                }
            }
        }

        // blocks needed against blocks available
        int oldBlocks = q.tableSize;
        newBlocks = ceilDiv(newLen, B);
        cow = oldLen % B != 0 && pool.refCount(q.table[oldBlocks - 1]) > 1;
        if (cow && quota && accounts.refs(q.table[oldBlocks - 1], t) == 1) {
            tenantRelief++;
        }
        int fresh = newBlocks - oldBlocks - hits;
        demand = fresh + (cow ? 1 : 0);
        supply = pool.free() - hitsFromCache + winFreed;
        reserve = q.reserve;
        if (quota && (long) t.used + demand + hitsNewToTenant - tenantRelief > t.quota) {
            return Refusal.TENANT_QUOTA;
        }
        if (demand > supply) {
            return Refusal.NO_BLOCKS;
        }
        // guaranteed sequences: blocks set aside for the others must stay free after this append
        reserve = admission.reserveAfterAppend(q, B);
        int heldAfter = q.held - winReleased + hits + fresh;
        int outAfter = Math.max(0, reserve - heldAfter);
        int others = admission.outstanding() - q.outstanding;
        long slack = (long) supply - demand - others - outAfter;
        if (slack < 0) {
            return Refusal.RESERVED;
        }
        if (oldLen == 0 && !q.forked && slack < admission.watermarkBlocks()) {
            return Refusal.WATERMARK;
        }
        return Refusal.NONE;
    }

    private void ensureScratch(int n) {
        if (hitBlocks.length < n) {
            int cap = Math.max(n, hitBlocks.length * 2);
            hitBlocks = new int[cap];
            hitHashes = new long[cap];
        }
    }

    /** ceil(a / b) for {@code 0 <= a <= Integer.MAX_VALUE - b} (an int division: this is on the decode path). */
    static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }
}
