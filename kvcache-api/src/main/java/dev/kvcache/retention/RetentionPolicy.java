package dev.kvcache.retention;

import dev.kvcache.Sequence;

/**
 * Which tokens of a live sequence to drop: the one interface behind sliding window with sinks
 * ({@link SlidingWindowRetention}), H2O ({@link HeavyHitterRetention}) and SnapKV
 * ({@link SnapKvRetention}). A policy only chooses; {@link dev.kvcache.KvCacheManager#dropTokens}
 * drops, so every policy gets the same all-or-nothing release, the same masking in attention and
 * the same rule that a sequence that dropped tokens publishes nothing more.
 */
public interface RetentionPolicy {

    /**
     * Positions of {@code s} to drop, ascending, never one already dropped; calling again on the
     * result of the drop chooses nothing more.
     *
     * @param scores      attention each position received (policies that do not rank by attention
     *                    ignore it; null is allowed for them)
     * @param blockTokens the manager's block size (for block-granular choices)
     * @param s the sequence
     * @return positions of {@code s} to drop, ascending, never one already dropped; calling again on the result of the drop chooses nothing more
     */
    int[] select(Sequence s, AttentionMass scores, int blockTokens);
}
