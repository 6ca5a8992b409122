package dev.kvcache.retention;

import dev.kvcache.Sequence;

import java.util.Arrays;

/**
 * H2O-style retention ("Heavy-Hitter Oracle", Zhang et al. 2023): keep the attention sinks, the
 * most recent tokens, and the {@code heavyTokens} older tokens that have received the most
 * attention; drop the rest.
 *
 * <p>Protected positions are never chosen: the first {@code sinkTokens} and the last
 * {@code recentTokens} of the sequence. Among the others, not already dropped, the ones outside
 * the top {@code heavyTokens} by {@link AttentionMass} are chosen (ties keep the older token, as
 * sinks do). With {@code blockGranular}, candidates are whole blocks lying entirely between the
 * sinks and the recent window, ranked by their total mass, and the top
 * {@code ceil(heavyTokens / blockTokens)} blocks are kept: every chosen position then belongs to a
 * block that is released, so memory really shrinks.
 *
 * <p>Stateless and thread-safe; {@link #select} allocates only its scratch.
 */
public final class HeavyHitterRetention implements RetentionPolicy {

    private final int sinkTokens;
    private final int recentTokens;
    private final int heavyTokens;
    private final boolean blockGranular;

    /**
     * The policy; every count must be >= 0.
     *
     * @param sinkTokens    leading positions never chosen (attention sinks)
     * @param recentTokens  trailing positions never chosen
     * @param heavyTokens   older positions kept, those with the most attention mass
     * @param blockGranular choose whole blocks (ranked by total mass), so that memory shrinks
     */
    public HeavyHitterRetention(int sinkTokens, int recentTokens, int heavyTokens, boolean blockGranular) {
        if (sinkTokens < 0) {
            throw new IllegalArgumentException("sinkTokens must be >= 0, got " + sinkTokens);
        }
        if (recentTokens < 0) {
            throw new IllegalArgumentException("recentTokens must be >= 0, got " + recentTokens);
        }
        if (heavyTokens < 0) {
            throw new IllegalArgumentException("heavyTokens must be >= 0, got " + heavyTokens);
        }
        this.sinkTokens = sinkTokens;
        this.recentTokens = recentTokens;
        this.heavyTokens = heavyTokens;
        this.blockGranular = blockGranular;
    }

    /**
     * Leading positions never chosen.
     *
     * @return the attention sinks
     */
    public int sinkTokens() {
        return sinkTokens;
    }

    /**
     * Trailing positions never chosen.
     *
     * @return the recent window
     */
    public int recentTokens() {
        return recentTokens;
    }

    /**
     * Positions of {@code s} to drop, ascending, given the mass each received; the same call on the
     * result of the drop chooses nothing more (idempotent).
     *
     * @param blockTokens the manager's block size (for block-granular choice)
     */
    @Override
    public int[] select(Sequence s, AttentionMass mass, int blockTokens) {
        if (blockTokens <= 0) {
            throw new IllegalArgumentException("blockTokens must be > 0, got " + blockTokens);
        }
        int length = s.length();
        int from = Math.min(sinkTokens, length);
        int to = Math.max(from, length - recentTokens);
        return blockGranular ? selectBlocks(s, mass, blockTokens, from, to) : selectTokens(s, mass, from, to);
    }

    private int[] selectTokens(Sequence s, AttentionMass mass, int from, int to) {
        int[] cand = new int[to - from];
        int n = 0;
        for (int p = from; p < to; p++) {
            if (!s.isDropped(p)) {
                cand[n++] = p;
            }
        }
        if (n <= heavyTokens) {
            return new int[0];
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = cand[i];
        }
        // heaviest first; older first among equals
        Arrays.sort(order, (a, b) -> {
            int c = Float.compare(mass.get(b), mass.get(a));
            return c != 0 ? c : Integer.compare(a, b);
        });
        int[] drop = new int[n - heavyTokens];
        for (int i = heavyTokens; i < n; i++) {
            drop[i - heavyTokens] = order[i];
        }
        Arrays.sort(drop);
        return drop;
    }

    private int[] selectBlocks(Sequence s, AttentionMass mass, int B, int from, int to) {
        int firstBlock = (from + B - 1) / B;
        int endBlock = to / B; // blocks [firstBlock, endBlock) lie wholly inside [from, to)
        int blocks = Math.max(0, endBlock - firstBlock);
        int[] cand = new int[blocks];
        double[] score = new double[blocks];
        int n = 0;
        for (int blk = firstBlock; blk < endBlock; blk++) {
            double sum = 0;
            boolean anyKept = false;
            for (int p = blk * B; p < (blk + 1) * B; p++) {
                if (!s.isDropped(p)) {
                    anyKept = true;
                    sum += mass.get(p);
                }
            }
            if (anyKept) {
                cand[n] = blk;
                score[n] = sum;
                n++;
            }
        }
        int keepBlocks = (heavyTokens + B - 1) / B;
        if (n <= keepBlocks) {
            return new int[0];
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> {
            int c = Double.compare(score[b], score[a]);
            return c != 0 ? c : Integer.compare(cand[a], cand[b]);
        });
        int[] dropBlocks = new int[n - keepBlocks];
        for (int i = keepBlocks; i < n; i++) {
            dropBlocks[i - keepBlocks] = cand[order[i]];
        }
        Arrays.sort(dropBlocks);
        int[] out = new int[dropBlocks.length * B];
        int k = 0;
        for (int blk : dropBlocks) {
            for (int p = blk * B; p < (blk + 1) * B; p++) {
                if (!s.isDropped(p)) {
                    out[k++] = p;
                }
            }
        }
        return Arrays.copyOf(out, k);
    }
}
