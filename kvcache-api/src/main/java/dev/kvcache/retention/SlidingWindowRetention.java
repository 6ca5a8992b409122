package dev.kvcache.retention;

import dev.kvcache.Sequence;

import java.util.Arrays;

/**
 * Sliding window with attention sinks (StreamingLLM) as a {@link RetentionPolicy}: keep the first
 * {@code sinkTokens} and the last {@code windowTokens} positions, drop the rest. The block
 * manager's built-in window ({@link dev.kvcache.KvCacheManager.Builder#slidingWindow}) does the
 * same at every append without allocating; this form lets an engine apply it per sequence, or
 * combine it with the attention-ranked policies through one interface.
 *
 * <p>Stateless and thread-safe.
 */
public final class SlidingWindowRetention implements RetentionPolicy {

    private final int sinkTokens;
    private final int windowTokens;

    /**
     * The policy.
     *
     * @param sinkTokens   leading positions kept, >= 0
     * @param windowTokens trailing positions kept, >= 0
     */
    public SlidingWindowRetention(int sinkTokens, int windowTokens) {
        if (sinkTokens < 0) {
            throw new IllegalArgumentException("sinkTokens must be >= 0, got " + sinkTokens);
        }
        if (windowTokens <= 0) {
            throw new IllegalArgumentException("windowTokens must be > 0, got " + windowTokens);
        }
        this.sinkTokens = sinkTokens;
        this.windowTokens = windowTokens;
    }

    @Override
    public int[] select(Sequence s, AttentionMass scores, int blockTokens) {
        if (blockTokens <= 0) {
            throw new IllegalArgumentException("blockTokens must be > 0, got " + blockTokens);
        }
        int length = s.length();
        int from = Math.min(sinkTokens, length);
        int to = Math.max(from, length - windowTokens);
        int[] out = new int[to - from];
        int n = 0;
        for (int p = from; p < to; p++) {
            if (!s.isDropped(p)) {
                out[n++] = p;
            }
        }
        return n == out.length ? out : Arrays.copyOf(out, n);
    }
}
