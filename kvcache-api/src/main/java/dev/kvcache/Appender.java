package dev.kvcache;

import java.util.Arrays;
import java.util.function.LongSupplier;

/**
 * Applies an {@link AppendPlan}, all or nothing.
 *
 * <h2>Order</h2>
 * The only step that can fail, the copy-on-write copy (it runs the engine's {@link BlockCopier} or
 * the store), runs first, into a block taken for it; if it throws, that block goes back to the
 * empty pool and the exception propagates with the sequence, its references, charges and
 * publications as they were. (Two effects of a failed copy remain, both harmless: if the block
 * taken for it was a cached victim, its content is gone, since the copy may have overwritten part
 * of it; and when the pool is so full that only a block the sliding window frees in this call can
 * take the copy, that window release, which the next append would make anyway, stays.) Then the
 * previous call's blocks are published (their KV is written now), the window releases, hits are
 * taken before any allocation, and the new blocks are allocated; none of that can fail. Last,
 * blocks a tier holds are loaded into new blocks the append took anyway ({@link Tiers}): a tier
 * that misses, fails its verification or throws only means fewer served tokens, never a moved
 * block, reference or charge.
 */
final class Appender {

    private final BlockPool pool;
    private final Retention retention;
    private final Publisher publisher;
    private final Admission admission;
    private final AppendPlan plan;
    private final Tiers tiers;
    private final PrefixIndex index;
    private final Counters counters;
    private final BlockCopier copier;
    private final LongSupplier clock;
    private final int blockTokens;
    private int[] pendingCopies = new int[0];
    private int pendingCopyCount;

    Appender(BlockPool pool, Retention retention, Publisher publisher, Admission admission, AppendPlan plan,
             Tiers tiers, PrefixIndex index, Counters counters, BlockCopier copier, LongSupplier clock,
             int blockTokens) {
        this.pool = pool;
        this.retention = retention;
        this.publisher = publisher;
        this.admission = admission;
        this.plan = plan;
        this.tiers = tiers;
        this.index = index;
        this.counters = counters;
        this.copier = copier;
        this.clock = clock;
        this.blockTokens = blockTokens;
    }

    /** Applies the plan {@link AppendPlan#plan} just made for these tokens; returns the hit tokens. */
    int apply(PagedSequence q, int[] tokens, int off, int n) {
        final int B = blockTokens;
        final int oldLen = q.length;
        final int newLen = oldLen + n;
        final int oldBlocks = q.tableSize;
        final int newBlocks = plan.newBlocks;
        q.ensureCapacity(newLen, newBlocks);

        boolean windowDone = false;
        if (plan.cow) {
            if (pool.free() == 0) {
                retention.releaseWindow(q, plan); // only blocks the window frees can take the copy
                windowDone = true;
            }
            int src = q.table[oldBlocks - 1];
            int peak = pool.peakUsed();
            int dst = pool.allocate(q);
            try {
                copy(src, dst);
            } catch (RuntimeException | Error e) {
                pool.discardAllocated(dst, q, peak);
                counters.copyFailures++;
                throw e;
            }
            pool.release(src, q); // stays referenced: another sequence holds it
            q.table[oldBlocks - 1] = dst;
            counters.copyOnWrites++;
        }
        publisher.commit(q);
        if (!windowDone) {
            retention.releaseWindow(q, plan);
        }
        if (plan.lookup) {
            counters.prefixQueryTokens += n;
            counters.prefixHitTokens += (long) plan.hits * B;
        }
        if (oldLen == 0 && !q.forked) {
            q.admission = ++counters.admissions;
        }
        for (int j = 0; j < plan.hits; j++) {
            int b = plan.hitBlocks[j];
            pool.acquire(b, q);
            q.table[j] = b;
            publisher.hit(q, b, plan.hitHashes[j], j);
        }
        q.held += plan.hits;
        // tiers are asked only once the append is admitted, and only past the store's own hits
        // (a refused or estimated append never costs a tier lookup)
        int tierHits = tiers != null && plan.lookup && plan.hits < plan.maxHits
                ? tiers.lookup(q, tokens, off, plan.hits, plan.maxHits, plan.hits > 0 ? index.key(plan.hitBlocks[plan.hits - 1]) : null)
                : 0;
        System.arraycopy(tokens, off, q.tokens, oldLen, n);
        for (int i = oldBlocks + plan.hits; i < newBlocks; i++) {
            q.table[i] = pool.allocate(q);
            q.held++;
        }
        q.tableSize = newBlocks;
        q.length = newLen;
        int served = plan.hits;
        if (tierHits > 0) {
            // loaded into blocks taken anyway; a failed load only means the engine computes it
            int loaded = tiers.promote(q, plan.hits, tierHits);
            if (loaded > 0) {
                served += loaded;
                counters.prefixHitTokens += (long) loaded * B;
                counters.tierHitTokens += (long) loaded * B;
                publisher.commit(q, served); // verified KV: hit-able at once
            }
        }
        if (plan.lookup) {
            q.cached = served * B;
        }
        if (q.tracksIdle) {
            q.lastTouch = clock.getAsLong();
        }
        counters.liveTokens += n;
        q.tenant.liveTokens += n;
        counters.appendedTokens += n;
        q.reserve = plan.reserve;
        admission.update(q);
        if (counters.lastRefusal != Refusal.NONE) {
            counters.lastRefusal = Refusal.NONE; // a reference store only when it changes
        }
        return served * B;
    }

    private void copy(int src, int dst) {
        if (copier != null) {
            copier.copy(src, dst);
            return;
        }
        if (pendingCopies.length < (pendingCopyCount + 1) * 2) {
            pendingCopies = Arrays.copyOf(pendingCopies, Math.max(8, pendingCopies.length * 2));
        }
        pendingCopies[pendingCopyCount * 2] = src;
        pendingCopies[pendingCopyCount * 2 + 1] = dst;
        pendingCopyCount++;
    }

    /** Queued copies, {@code [src0, dst0, src1, dst1, ...]}; clears them. */
    int[] takePendingCopies() {
        int[] out = Arrays.copyOf(pendingCopies, pendingCopyCount * 2);
        pendingCopyCount = 0;
        return out;
    }
}
