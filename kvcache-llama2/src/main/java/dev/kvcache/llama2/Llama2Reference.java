package dev.kvcache.llama2;

import java.util.Arrays;
import java.util.Objects;

/**
 * The oracle: run.c's forward pass with run.c's own KV cache, a contiguous float32
 * {@code key_cache[layer][pos][kvDim]} (and the same for values), and run.c's greedy loop.
 *
 * <p>Attention per query head h, reading KV head {@code h / kvMul} (grouped-query attention):
 * scores {@code q.k_t / sqrtf(headSize)} for t = 0..pos (float accumulator, index order), softmax,
 * then {@code out = sum_t a_t v_t} accumulated in t order. {@link Llama2Engine} must produce the
 * same token ids at F32 through the paged store; tests hold it to that.
 *
 * <p>Memory: {@code 2 * layers * seqLen * kvDim} floats, allocated up front like run.c's
 * {@code malloc_run_state}. Not thread-safe.
 */
public final class Llama2Reference {

    /** llama2.c's beginning-of-sequence token; generation also stops when the model emits it. */
    public static final int BOS = 1;

    private final Llama2Model.Config c;
    private final Llama2Forward fwd;
    private final float[][] keyCache;
    private final float[][] valueCache;
    private final float[] att;
    private final Llama2Forward.Attention attention = this::attend;

    /**
     * A reference decoder for {@code model} with an empty cache, allocated up front for seq_len positions.
     *
     * @param model the checkpoint to run; not null
     * @throws NullPointerException     if {@code model} is null
     * @throws IllegalArgumentException if {@code seq_len * kvDim} floats exceed the on-heap array limit
     */
    public Llama2Reference(Llama2Model model) {
        Objects.requireNonNull(model, "model");
        this.c = model.config();
        this.fwd = new Llama2Forward(model);
        long perLayer = (long) c.seqLen() * c.kvDim();
        if (perLayer > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("seq_len * kvDim = " + perLayer
                    + " exceeds the on-heap array limit " + (Integer.MAX_VALUE - 8));
        }
        keyCache = new float[c.layers()][(int) perLayer];
        valueCache = new float[c.layers()][(int) perLayer];
        att = new float[c.seqLen()];
    }

    /**
     * Logits after {@code token} at {@code pos} (positions must be fed in order 0, 1, 2, ...).
     *
     * @param token the token id, in {@code [0, vocabSize)}
     * @param pos   the token's position, in {@code [0, seqLen)}: one more than the last call's
     *              (0 first); the cache holds positions {@code 0 .. pos} afterwards
     * @return the {@code vocabSize} logits after {@code token}: the forward pass's buffer,
     *         overwritten by the next call (clone it to keep it)
     * @throws IllegalArgumentException if {@code token} is outside the vocabulary or {@code pos}
     *                                  outside {@code [0, seqLen)}
     */
    public float[] forward(int token, int pos) {
        return fwd.forward(token, pos, attention);
    }

    private void attend(int layer, int pos, float[] q, float[] k, float[] v, float[] out) {
        int kvDim = c.kvDim();
        int hs = c.headSize();
        int kvMul = c.kvMul();
        float[] kc = keyCache[layer];
        float[] vc = valueCache[layer];
        System.arraycopy(k, 0, kc, pos * kvDim, kvDim);
        System.arraycopy(v, 0, vc, pos * kvDim, kvDim);
        float scale = (float) Math.sqrt(hs);
        for (int h = 0; h < c.heads(); h++) {
            int qo = h * hs;
            int kvo = (h / kvMul) * hs;
            for (int t = 0; t <= pos; t++) {
                int ko = t * kvDim + kvo;
                float score = 0.0f;
                for (int i = 0; i < hs; i++) {
                    score += q[qo + i] * kc[ko + i];
                }
                score /= scale;
                att[t] = score;
            }
            Llama2Forward.softmax(att, pos + 1);
            Arrays.fill(out, qo, qo + hs, 0.0f);
            for (int t = 0; t <= pos; t++) {
                int vo = t * kvDim + kvo;
                float a = att[t];
                for (int i = 0; i < hs; i++) {
                    out[qo + i] += a * vc[vo + i];
                }
            }
        }
    }

    /**
     * run.c's generate loop at temperature 0: feeds {@code prompt} (which must start the sequence,
     * normally {@code {BOS}}), then the argmax of each step's logits, for at most {@code steps}
     * positions in all (clamped to seq_len), stopping early when BOS comes out.
     *
     * @param prompt the prompt's token ids: at least one, at most seq_len, each in {@code [0, vocabSize)}
     * @param steps  positions to run in all, prompt included, {@code >= 0}; 0 or more than seq_len
     *               means seq_len
     * @return the generated ids (prompt excluded, the stopping BOS excluded)
     * @throws NullPointerException     if {@code prompt} is null
     * @throws IllegalArgumentException if {@code steps < 0}, or the prompt is empty, longer than
     *                                  seq_len or holds a token outside the vocabulary
     */
    public int[] generate(int[] prompt, int steps) {
        return Greedy.generate(c, prompt, steps, this::forward);
    }

    /**
     * Greedy ids from BOS with a fresh reference: what run.c prints at temperature 0, as ids.
     *
     * @param model the checkpoint to run; not null
     * @param steps positions to run in all, BOS included, {@code >= 0}; 0 or more than seq_len means seq_len
     * @return the generated ids, BOS and the stopping BOS excluded
     * @throws NullPointerException     if {@code model} is null
     * @throws IllegalArgumentException if {@code steps < 0}
     */
    public static int[] greedyFromBos(Llama2Model model, int steps) {
        return new Llama2Reference(model).generate(new int[] {BOS}, steps);
    }
}
