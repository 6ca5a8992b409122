package dev.kvcache.jlama;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A float64 port of llama2.c's run.c forward pass, read straight from the original checkpoint (no
 * conversion, interleaved RoPE pairs as run.c rotates them). It is the independent reference that
 * says whether the converted safetensors make Jlama compute the same model.
 */
final class Llama2cReference {
    final Llama2cConverter.Config c;
    private final float[] emb, rmsFinal, cls;
    private final float[][] rmsAtt, wq, wk, wv, wo, rmsFfn, w1, w2, w3;
    private final double[][][] keyCache, valueCache; // [layer][pos][kvDim]

    Llama2cReference(Path checkpoint) throws IOException {
        c = Llama2cConverter.readConfig(checkpoint);
        ByteBuffer bb = ByteBuffer.wrap(Files.readAllBytes(checkpoint)).order(ByteOrder.LITTLE_ENDIAN);
        FloatBuffer f = bb.position(28).slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        int d = c.dim(), h = c.hiddenDim(), L = c.layers(), kv = c.kvDim();
        emb = take(f, c.vocab() * d);
        rmsAtt = stack(f, L, d);
        wq = stack(f, L, d * d);
        wk = stack(f, L, kv * d);
        wv = stack(f, L, kv * d);
        wo = stack(f, L, d * d);
        rmsFfn = stack(f, L, d);
        w1 = stack(f, L, h * d);
        w2 = stack(f, L, d * h);
        w3 = stack(f, L, h * d);
        rmsFinal = take(f, d);
        f.position(f.position() + c.seqLen() * c.headSize());
        cls = c.sharedClassifier() ? emb : take(f, c.vocab() * d);
        keyCache = new double[L][c.seqLen()][kv];
        valueCache = new double[L][c.seqLen()][kv];
    }

    private static float[] take(FloatBuffer f, int n) {
        float[] a = new float[n];
        f.get(a);
        return a;
    }

    private static float[][] stack(FloatBuffer f, int L, int n) {
        float[][] a = new float[L][];
        for (int l = 0; l < L; l++) a[l] = take(f, n);
        return a;
    }

    /** Logits for {@code token} at {@code pos}; earlier positions must have been fed in order. */
    double[] forward(int token, int pos) {
        int d = c.dim(), hs = c.headSize(), kvDim = c.kvDim(), heads = c.heads(), group = c.heads() / c.kvHeads();
        double[] x = new double[d];
        for (int i = 0; i < d; i++) x[i] = emb[token * d + i];
        for (int l = 0; l < c.layers(); l++) {
            double[] xb = rmsnorm(x, rmsAtt[l]);
            double[] q = matmul(wq[l], xb, d, d);
            double[] k = matmul(wk[l], xb, kvDim, d);
            double[] v = matmul(wv[l], xb, kvDim, d);
            for (int i = 0; i < d; i += 2) {
                int headDim = i % hs;
                double freq = 1.0 / Math.pow(10000.0, headDim / (double) hs);
                double fcr = Math.cos(pos * freq), fci = Math.sin(pos * freq);
                rotate(q, i, fcr, fci);
                if (i < kvDim) rotate(k, i, fcr, fci);
            }
            keyCache[l][pos] = k;
            valueCache[l][pos] = v;
            double[] att = new double[d];
            for (int hh = 0; hh < heads; hh++) {
                int kvh = hh / group;
                double[] score = new double[pos + 1];
                double max = Double.NEGATIVE_INFINITY;
                for (int t = 0; t <= pos; t++) {
                    double s = 0;
                    for (int i = 0; i < hs; i++) s += q[hh * hs + i] * keyCache[l][t][kvh * hs + i];
                    score[t] = s / Math.sqrt(hs);
                    max = Math.max(max, score[t]);
                }
                double sum = 0;
                for (int t = 0; t <= pos; t++) sum += (score[t] = Math.exp(score[t] - max));
                for (int t = 0; t <= pos; t++) {
                    double a = score[t] / sum;
                    for (int i = 0; i < hs; i++) att[hh * hs + i] += a * valueCache[l][t][kvh * hs + i];
                }
            }
            double[] o = matmul(wo[l], att, d, d);
            for (int i = 0; i < d; i++) x[i] += o[i];
            xb = rmsnorm(x, rmsFfn[l]);
            double[] g = matmul(w1[l], xb, c.hiddenDim(), d);
            double[] u = matmul(w3[l], xb, c.hiddenDim(), d);
            for (int i = 0; i < g.length; i++) g[i] = g[i] / (1 + Math.exp(-g[i])) * u[i];
            double[] down = matmul(w2[l], g, d, c.hiddenDim());
            for (int i = 0; i < d; i++) x[i] += down[i];
        }
        return matmul(cls, rmsnorm(x, rmsFinal), c.vocab(), d);
    }

    /** Greedy ids after feeding {@code prompt} from position 0. */
    int[] greedy(int[] prompt, int n) {
        double[] logits = null;
        for (int p = 0; p < prompt.length; p++) logits = forward(prompt[p], p);
        int[] out = new int[n];
        int pos = prompt.length;
        for (int i = 0; i < n; i++) {
            out[i] = argmax(logits);
            if (i + 1 < n) logits = forward(out[i], pos++);
        }
        return out;
    }

    static int argmax(double[] v) {
        int best = 0;
        for (int i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    private static void rotate(double[] v, int i, double fcr, double fci) {
        double v0 = v[i], v1 = v[i + 1];
        v[i] = v0 * fcr - v1 * fci;
        v[i + 1] = v0 * fci + v1 * fcr;
    }

    private static double[] rmsnorm(double[] x, float[] w) {
        double ss = 0;
        for (double v : x) ss += v * v;
        ss = 1.0 / Math.sqrt(ss / x.length + 1e-5);
        double[] o = new double[x.length];
        for (int i = 0; i < x.length; i++) o[i] = w[i] * (ss * x[i]);
        return o;
    }

    private static double[] matmul(float[] w, double[] x, int rows, int cols) {
        double[] o = new double[rows];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int j = 0; j < cols; j++) s += w[r * cols + j] * x[j];
            o[r] = s;
        }
        return o;
    }
}
