package dev.kvcache.llama2;

/**
 * One token's trip through a llama2.c transformer: the algorithm of run.c's {@code forward},
 * ported operation for operation in float32 so that it rounds the same way.
 *
 * <h2>Per layer</h2>
 * <pre>
 *   xb = rmsnorm(x, rms_att[l])               eps 1e-5, sum of squares in float, in index order
 *   q = wq xb;  k = wk xb;  v = wv xb         matmul: one float accumulator per row, in index order
 *   RoPE on q (all dim values) and k (kvDim): pairs (i, i+1), angle pos / 10000^((i % hs) / hs)
 *   xb = attention(q, k, v)                   delegated to {@link Attention}: stores k, v at pos and
 *                                             attends over positions 0..pos
 *   x += wo xb
 *   xb = rmsnorm(x, rms_ffn[l]);  x += w2 (silu(w1 xb) * (w3 xb))
 * </pre>
 * then {@code logits = wcls rmsnorm(x, rms_final)}.
 *
 * <p>Only the attention is pluggable: {@link Llama2Reference} keeps run.c's contiguous
 * {@code [layer][pos][kvDim]} cache, {@link Llama2Engine} writes into a paged {@code KvStore} and
 * calls {@code PagedAttention.decode}. Everything else is shared, so any difference between the two
 * comes from the KV path alone. The transcendental functions are computed in double and rounded
 * once to float, which matches correctly rounded libm {@code expf/powf/cosf/sinf} (glibc's are)
 * except in rare double-rounding cases.
 *
 * <p>Holds its scratch buffers: one instance computes one token at a time (not thread-safe).
 */
final class Llama2Forward {

    /** Stores one token's keys and values and computes its attention output. */
    interface Attention {
        /**
         * @param layer layer index
         * @param pos   position of the token being computed (0-based)
         * @param q     queries after RoPE, {@code heads * headSize} floats
         * @param k     keys after RoPE, {@code kvDim} floats, to be stored at {@code pos}
         * @param v     values, {@code kvDim} floats, to be stored at {@code pos}
         * @param out   receives the attention output, {@code heads * headSize} floats
         */
        void attend(int layer, int pos, float[] q, float[] k, float[] v, float[] out);
    }

    private final Llama2Model m;
    private final Llama2Model.Config c;
    private final float[] x;
    private final float[] xb;
    private final float[] xb2;
    private final float[] hb;
    private final float[] hb2;
    private final float[] q;
    private final float[] k;
    private final float[] v;
    private final float[] logits;

    Llama2Forward(Llama2Model model) {
        this.m = model;
        this.c = model.config();
        x = new float[c.dim()];
        xb = new float[c.dim()];
        xb2 = new float[c.dim()];
        hb = new float[c.hiddenDim()];
        hb2 = new float[c.hiddenDim()];
        q = new float[c.dim()];
        k = new float[c.kvDim()];
        v = new float[c.kvDim()];
        logits = new float[c.vocabSize()];
    }

    /**
     * Computes the logits after {@code token} at {@code pos}. Returns this instance's buffer,
     * overwritten by the next call.
     */
    float[] forward(int token, int pos, Attention attention) {
        if (token < 0 || token >= c.vocabSize()) {
            throw new IllegalArgumentException("token " + token + " outside 0.." + (c.vocabSize() - 1));
        }
        if (pos < 0 || pos >= c.seqLen()) {
            throw new IllegalArgumentException("position " + pos + " outside 0.." + (c.seqLen() - 1)
                    + " (the model's seq_len is " + c.seqLen() + ")");
        }
        int dim = c.dim();
        int kvDim = c.kvDim();
        int hidden = c.hiddenDim();
        int hs = c.headSize();
        System.arraycopy(m.tokenEmbedding, token * dim, x, 0, dim);

        for (int l = 0; l < c.layers(); l++) {
            rmsnorm(xb, x, m.rmsAtt[l], dim);
            matmul(q, xb, m.wq[l], dim, dim);
            matmul(k, xb, m.wk[l], dim, kvDim);
            matmul(v, xb, m.wv[l], dim, kvDim);

            for (int i = 0; i < dim; i += 2) {
                int headDim = i % hs;
                float freq = 1.0f / (float) Math.pow(10000.0f, headDim / (float) hs);
                float val = pos * freq;
                float fcr = (float) Math.cos(val);
                float fci = (float) Math.sin(val);
                rotate(q, i, fcr, fci);
                if (i < kvDim) {
                    rotate(k, i, fcr, fci);
                }
            }

            attention.attend(l, pos, q, k, v, xb);

            matmul(xb2, xb, m.wo[l], dim, dim);
            for (int i = 0; i < dim; i++) {
                x[i] += xb2[i];
            }

            rmsnorm(xb, x, m.rmsFfn[l], dim);
            matmul(hb, xb, m.w1[l], dim, hidden);
            matmul(hb2, xb, m.w3[l], dim, hidden);
            for (int i = 0; i < hidden; i++) {
                float val = hb[i];
                val *= (1.0f / (1.0f + (float) Math.exp(-val)));   // SiLU
                val *= hb2[i];
                hb[i] = val;
            }
            matmul(xb, hb, m.w2[l], hidden, dim);
            for (int i = 0; i < dim; i++) {
                x[i] += xb[i];
            }
        }
        rmsnorm(x, x, m.rmsFinal, dim);
        matmul(logits, x, m.wcls, dim, c.vocabSize());
        return logits;
    }

    private static void rotate(float[] vec, int i, float fcr, float fci) {
        float v0 = vec[i];
        float v1 = vec[i + 1];
        vec[i] = v0 * fcr - v1 * fci;
        vec[i + 1] = v0 * fci + v1 * fcr;
    }

    /** o = weight * (x / sqrt(mean(x^2) + 1e-5)); o may be x. */
    static void rmsnorm(float[] o, float[] x, float[] weight, int size) {
        float ss = 0.0f;
        for (int j = 0; j < size; j++) {
            ss += x[j] * x[j];
        }
        ss /= size;
        ss += 1e-5f;
        ss = 1.0f / (float) Math.sqrt(ss);
        for (int j = 0; j < size; j++) {
            o[j] = weight[j] * (ss * x[j]);
        }
    }

    /** xout[d] = W[d][n] x[n], one float accumulator per row, summed in index order. */
    static void matmul(float[] xout, float[] x, float[] w, int n, int d) {
        for (int i = 0; i < d; i++) {
            float val = 0.0f;
            int row = i * n;
            for (int j = 0; j < n; j++) {
                val += w[row + j] * x[j];
            }
            xout[i] = val;
        }
    }

    /** In-place softmax over x[0..size): max subtracted, exp in double rounded to float, float sum. */
    static void softmax(float[] x, int size) {
        float max = x[0];
        for (int i = 1; i < size; i++) {
            if (x[i] > max) {
                max = x[i];
            }
        }
        float sum = 0.0f;
        for (int i = 0; i < size; i++) {
            x[i] = (float) Math.exp(x[i] - max);
            sum += x[i];
        }
        for (int i = 0; i < size; i++) {
            x[i] /= sum;
        }
    }

    /** run.c's greedy sampler: the first index of the largest value. */
    static int argmax(float[] p) {
        int best = 0;
        float max = p[0];
        for (int i = 1; i < p.length; i++) {
            if (p[i] > max) {
                max = p[i];
                best = i;
            }
        }
        return best;
    }
}
