package dev.kvcache;

import java.util.Arrays;

/**
 * Releasing what a sequence no longer attends to: blocks outside a sliding window (with attention
 * sinks), and tokens a retention policy ({@link dev.kvcache.retention.HeavyHitterRetention H2O},
 * {@link dev.kvcache.retention.SnapKvRetention SnapKV}) chose to drop. Both end in the same
 * place: a table entry of -1, a released block, positions that read as {@code slot(p) == -1}.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>A window releases only blocks wholly outside the sinks and the last {@code window} tokens
 *       of the length before the append, so what the previous call added stays readable while the
 *       engine computes it.</li>
 *   <li>A dropped token's block is released once every token of that full block is dropped; a
 *       partly dropped block stays, its dropped positions masked.</li>
 *   <li>A sequence that dropped tokens publishes nothing more: KV computed after a drop saw a
 *       pruned context, which is not the KV its prefix has for anyone else.</li>
 * </ul>
 */
final class Retention {

    private final BlockPool pool;
    private final Admission admission;
    private final Counters counters;
    private final int blockTokens;

    Retention(BlockPool pool, Admission admission, Counters counters, int blockTokens) {
        this.pool = pool;
        this.admission = admission;
        this.counters = counters;
        this.blockTokens = blockTokens;
    }

    /** Releases the blocks {@link AppendPlan} found outside {@code q}'s window. */
    void releaseWindow(PagedSequence q, AppendPlan plan) {
        for (int i = plan.winFrom; i < plan.winTo; i++) {
            int b = q.table[i];
            if (b >= 0) {
                q.table[i] = -1;
                q.held--;
                counters.windowReleasedBlocks++;
                pool.release(b, q);
            }
        }
        if (plan.winTo > q.windowReleasedTo) {
            q.windowReleasedTo = plan.winTo;
        }
    }

    /** Drops the (validated) positions; returns the blocks released. */
    int drop(PagedSequence q, int[] positions, int offset, int count) {
        int words = (q.length + 63) >>> 6;
        if (q.dropped == null || q.dropped.length < words) {
            q.dropped = q.dropped == null ? new long[words]
                    : Arrays.copyOf(q.dropped, Math.max(words, q.dropped.length * 2));
        }
        int B = blockTokens;
        int released = 0;
        for (int i = offset; i < offset + count; i++) {
            int p = positions[i];
            long bit = 1L << p;
            if ((q.dropped[p >>> 6] & bit) != 0) {
                continue;
            }
            q.dropped[p >>> 6] |= bit;
            q.droppedCount++;
            counters.droppedTokens++;
            q.chainBlock = PrefixIndex.BROKEN;
            int blk = p / B;
            if ((blk + 1) * B <= q.length && q.table[blk] >= 0 && allDropped(q, blk * B, B)) {
                int b = q.table[blk];
                q.table[blk] = -1;
                q.held--;
                counters.retentionReleasedBlocks++;
                released++;
                pool.release(b, q);
            }
        }
        admission.update(q);
        return released;
    }

    private static boolean allDropped(PagedSequence q, int from, int count) {
        for (int p = from; p < from + count; p++) {
            if ((q.dropped[p >>> 6] & (1L << p)) == 0) {
                return false;
            }
        }
        return true;
    }
}
