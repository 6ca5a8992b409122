package dev.kvcache.retention;

import dev.kvcache.Sequence;

/**
 * SnapKV-style one-shot prompt compression (Li et al. 2024): after prefill, score each prompt
 * position by the attention it received from the prompt's last {@code observationTokens} queries
 * (the engine accumulates it in an {@link AttentionMass} while prefilling those queries),
 * max-pool the scores over a {@code poolKernel}-wide neighbourhood so that kept tokens come with
 * their context, keep the top {@code keepTokens} plus the sinks and the observation window, and
 * drop the rest.
 *
 * <p>Implemented as {@link HeavyHitterRetention} over pooled scores: the sinks and the observation
 * window are protected exactly as H2O protects sinks and recent tokens.
 */
public final class SnapKvRetention implements RetentionPolicy {

    private final int poolKernel;
    private final HeavyHitterRetention selector;

    /**
     * The policy.
     *
     * @param sinkTokens        leading prompt positions never chosen
     * @param observationTokens the prompt's last positions, whose attention votes (never chosen)
     * @param keepTokens        older prompt positions kept, those with the most pooled votes
     * @param poolKernel        width of the pooling over neighbouring positions, odd and > 0
     * @param blockGranular     choose whole blocks, so that memory shrinks
     */
    public SnapKvRetention(int sinkTokens, int observationTokens, int keepTokens, int poolKernel,
                           boolean blockGranular) {
        if (poolKernel <= 0 || poolKernel % 2 == 0) {
            throw new IllegalArgumentException("poolKernel must be odd and > 0, got " + poolKernel);
        }
        this.poolKernel = poolKernel;
        this.selector = new HeavyHitterRetention(sinkTokens, observationTokens, keepTokens, blockGranular);
    }

    /** Prompt positions of {@code s} to drop, ascending. */
    @Override
    public int[] select(Sequence s, AttentionMass observationScores, int blockTokens) {
        int length = s.length();
        AttentionMass pooled = new AttentionMass(length);
        int half = poolKernel / 2;
        for (int p = 0; p < length; p++) {
            float m = 0f;
            for (int j = Math.max(0, p - half); j <= Math.min(length - 1, p + half); j++) {
                m = Math.max(m, observationScores.get(j));
            }
            pooled.add(p, m);
        }
        return selector.select(s, pooled, blockTokens);
    }
}
