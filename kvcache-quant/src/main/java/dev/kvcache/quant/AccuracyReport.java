package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Accuracy of every format on synthetic KV, printed as a Markdown table.
 *
 * <p>Data (seeded): one KV head of {@code headDim} 128; keys Gaussian with a few outlier channels
 * about 10x larger (as observed in real models' keys), values Gaussian; queries Gaussian. The
 * context is split into blocks of {@code blockTokens}; each block slice is encoded with the
 * format's key or value codec (all blocks quantized, i.e. no full-precision residual window).
 *
 * <p>Columns: bits per element including metadata (K and V averaged, {@link KvFormat#bitsPerElement});
 * relative Frobenius error of decoded K and V; relative L2 error of the decode-attention output
 * (softmax(q K^T / sqrt(d)) V) computed by the fused kernels ({@code dotRows}, {@code accumulateRows})
 * against float64 on the original values, averaged over queries; and the KL divergence
 * KL(p || p_quantized) of the attention probabilities, averaged over queries. "+H" rows store keys
 * rotated by {@link HadamardRotation} and rotate the query instead.
 *
 * <p>Run: {@code java --add-modules jdk.incubator.vector -cp <kvcache-api.jar>:<kvcache-quant.jar>
 * dev.kvcache.quant.AccuracyReport [tokens] [blockTokens] [seed]}.
 */
public final class AccuracyReport {

    private AccuracyReport() {
    }

    /**
     * One table row.
     *
     * @param name the row's label: the format's name, with "+H" for Hadamard-rotated keys or
     *             "q8-query" for a Q8_0-quantized query
     * @param format the format measured
     * @param bitsPerElement stored bits per element of a full block, K and V averaged, metadata included
     * @param keyError relative Frobenius error of the decoded keys (0 = exact)
     * @param valueError relative Frobenius error of the decoded values (0 = exact)
     * @param outputError relative L2 error of the attention output against float64, averaged over queries
     * @param kl KL(p || p_quantized) of the attention probabilities in nats, averaged over queries
     */
    public record Row(String name, KvFormat format, double bitsPerElement, double keyError, double valueError,
                      double outputError, double kl) {
    }

    static final int HEAD_DIM = 128;
    static final int[] OUTLIER_CHANNELS = {3, 40, 77, 100};

    /** Synthetic keys [tokens][dim]: N(0,1), outlier channels 10 x N(0,1). */
    static float[] keys(SplittableRandom rnd, int tokens, int dim) {
        float[] k = new float[tokens * dim];
        for (int t = 0; t < tokens; t++) {
            for (int c = 0; c < dim; c++) {
                double g = rnd.nextGaussian();
                boolean outlier = false;
                for (int o : OUTLIER_CHANNELS) {
                    outlier |= o == c;
                }
                k[t * dim + c] = (float) (outlier ? 10 * g : g);
            }
        }
        return k;
    }

    static float[] gaussian(SplittableRandom rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return v;
    }

    /**
     * Measures every standard format plus Q8_0, Q4_0 and FP8_E4M3 with Hadamard-rotated keys, and
     * Q8_0 / Q5_0 / Q4_0 with the query quantized to Q8_0 ("q8-query": what an integer-domain dot
     * product computes).
     *
     * @param tokens context length in tokens, a positive multiple of {@code blockTokens}
     * @param blockTokens tokens per block (each block slice is encoded on its own), at least 1
     * @param seed seed of the synthetic keys, values and queries; equal seeds give equal tables
     * @return one row per measured configuration, in table order
     * @throws IllegalArgumentException if {@code tokens} is not a positive multiple of {@code blockTokens}
     */
    public static List<Row> measure(int tokens, int blockTokens, long seed) {
        if (tokens <= 0 || tokens % blockTokens != 0) {
            throw new IllegalArgumentException("tokens must be a positive multiple of blockTokens="
                    + blockTokens + ", got " + tokens);
        }
        int dim = HEAD_DIM;
        SplittableRandom rnd = new SplittableRandom(seed);
        float[] k = keys(rnd, tokens, dim);
        float[] v = gaussian(rnd, tokens * dim);
        int queries = 16;
        float[] q = gaussian(rnd, queries * dim);

        // float64 reference attention
        double[][] refP = new double[queries][];
        double[][] refOut = new double[queries][];
        for (int h = 0; h < queries; h++) {
            double[] s = new double[tokens];
            for (int t = 0; t < tokens; t++) {
                double dot = 0;
                for (int c = 0; c < dim; c++) {
                    dot += (double) q[h * dim + c] * k[t * dim + c];
                }
                s[t] = dot / Math.sqrt(dim);
            }
            refP[h] = softmax(s);
            double[] o = new double[dim];
            for (int t = 0; t < tokens; t++) {
                for (int c = 0; c < dim; c++) {
                    o[c] += refP[h][t] * v[t * dim + c];
                }
            }
            refOut[h] = o;
        }

        List<Row> rows = new ArrayList<>();
        for (KvFormat f : KvFormats.all()) {
            rows.add(measureOne(f.name(), f, false, k, v, q, refP, refOut, tokens, blockTokens, dim));
        }
        rows.add(measureOne("Q8_0+H", KvFormats.Q8_0, true, k, v, q, refP, refOut, tokens, blockTokens, dim));
        rows.add(measureOne("Q4_0+H", KvFormats.Q4_0, true, k, v, q, refP, refOut, tokens, blockTokens, dim));
        // a float format's error is relative per element, so the rotation should not help it: measured, not assumed
        rows.add(measureOne("FP8_E4M3+H", KvFormats.FP8_E4M3, true, k, v, q, refP, refOut, tokens, blockTokens, dim));
        // integer-domain dot products (llama.cpp's vec_dot_q4_0_q8_0 style, issue #17) score the keys
        // against the query quantized to Q8_0 blocks: the same attention as the float kernels with
        // the query replaced by its Q8_0 round trip, up to summation order
        for (KvFormat f : List.of(KvFormats.Q8_0, KvFormats.Q5_0, KvFormats.Q4_0)) {
            rows.add(measureOne(f.name() + " q8-query", f, false, true, k, v, q, refP, refOut, tokens, blockTokens, dim));
        }
        return rows;
    }

    private static Row measureOne(String name, KvFormat f, boolean hadamard, float[] k, float[] v, float[] q,
                                  double[][] refP, double[][] refOut, int tokens, int bt, int dim) {
        return measureOne(name, f, hadamard, false, k, v, q, refP, refOut, tokens, bt, dim);
    }

    private static Row measureOne(String name, KvFormat f, boolean hadamard, boolean q8Query, float[] k, float[] v,
                                  float[] q, double[][] refP, double[][] refOut, int tokens, int bt, int dim) {
        SliceKernels kk = Quantizers.keyKernels(f);
        SliceKernels vk = Quantizers.valueKernels(f);
        long kb = kk.sliceBytes(bt, dim), vb = vk.sliceBytes(bt, dim);
        int blocks = tokens / bt;
        float[] stored = k.clone();
        if (hadamard) {
            HadamardRotation.rotateRows(stored, 0, tokens, dim);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ks = arena.allocate(kb * blocks), vs = arena.allocate(vb * blocks);
            for (int b = 0; b < blocks; b++) {
                kk.encode(stored, b * bt * dim, bt, dim, ks, b * kb);
                vk.encode(v, b * bt * dim, bt, dim, vs, b * vb);
            }
            float[] kd = new float[tokens * dim], vd = new float[tokens * dim];
            for (int b = 0; b < blocks; b++) {
                kk.decode(ks, b * kb, bt, dim, kd, b * bt * dim);
                vk.decode(vs, b * vb, bt, dim, vd, b * bt * dim);
            }
            if (hadamard) {
                HadamardRotation.rotateRows(kd, 0, tokens, dim);  // back to the original space
            }
            double keyErr = relError(k, kd), valErr = relError(v, vd);

            double outErr = 0, kl = 0;
            int queries = refP.length;
            float scale = (float) (1 / Math.sqrt(dim));
            float[] scores = new float[tokens];
            float[] qh = new float[dim];
            for (int h = 0; h < queries; h++) {
                System.arraycopy(q, h * dim, qh, 0, dim);
                if (hadamard) {
                    HadamardRotation.rotate(qh, 0, dim);
                }
                if (q8Query) {
                    SliceKernels q8 = Quantizers.scalarKernels(KvFormats.Q8_0);
                    MemorySegment qs = arena.allocate(q8.rowBytes(dim));
                    q8.encodeRow(qh, 0, dim, qs, 0);
                    q8.decodeRow(qs, 0, 1, 0, dim, qh, 0);
                }
                for (int b = 0; b < blocks; b++) {
                    kk.dotRows(ks, b * kb, bt, bt, dim, qh, 0, scale, scores, b * bt);
                }
                double[] s = new double[tokens];
                for (int t = 0; t < tokens; t++) {
                    s[t] = scores[t];
                }
                double[] p = softmax(s);
                float[] w = new float[tokens];
                for (int t = 0; t < tokens; t++) {
                    w[t] = (float) p[t];
                }
                float[] out = new float[dim];
                for (int b = 0; b < blocks; b++) {
                    vk.accumulateRows(vs, b * vb, bt, bt, dim, w, b * bt, out, 0);
                }
                double num = 0, den = 0;
                for (int c = 0; c < dim; c++) {
                    num += (out[c] - refOut[h][c]) * (out[c] - refOut[h][c]);
                    den += refOut[h][c] * refOut[h][c];
                }
                outErr += Math.sqrt(num / den);
                double d = 0;
                for (int t = 0; t < tokens; t++) {
                    if (refP[h][t] > 0) {
                        d += refP[h][t] * Math.log(refP[h][t] / p[t]);
                    }
                }
                kl += d;
            }
            return new Row(name, f, f.bitsPerElement(dim, bt), keyErr, valErr, outErr / queries, kl / queries);
        }
    }

    static double[] softmax(double[] s) {
        double max = Double.NEGATIVE_INFINITY;
        for (double x : s) {
            max = Math.max(max, x);
        }
        double sum = 0;
        double[] p = new double[s.length];
        for (int i = 0; i < s.length; i++) {
            p[i] = Math.exp(s[i] - max);
            sum += p[i];
        }
        for (int i = 0; i < s.length; i++) {
            p[i] /= sum;
        }
        return p;
    }

    static double relError(float[] x, float[] y) {
        double num = 0, den = 0;
        for (int i = 0; i < x.length; i++) {
            double d = (double) y[i] - x[i];
            num += d * d;
            den += (double) x[i] * x[i];
        }
        return Math.sqrt(num / den);
    }

    /**
     * The table in Markdown.
     *
     * @param rows the rows to print, usually from {@link #measure}
     * @return a Markdown table with a header and one line per row, each line ending in a newline
     */
    public static String table(List<Row> rows) {
        StringBuilder sb = new StringBuilder();
        sb.append("| format | bits/elem | K rel err | V rel err | attn out rel err | KL(p||p^) |\n");
        sb.append("|---|---:|---:|---:|---:|---:|\n");
        for (Row r : rows) {
            sb.append(String.format(Locale.ROOT, "| %s | %.3f | %.4f | %.4f | %.4f | %.2e |%n",
                    r.name(), r.bitsPerElement(), r.keyError(), r.valueError(), r.outputError(), r.kl()));
        }
        return sb.toString();
    }

    /**
     * Prints the data description and the table for the arguments to standard output.
     *
     * @param args optional {@code [tokens] [blockTokens] [seed]}; defaults 1024, 16 and 1
     */
    public static void main(String[] args) {
        int tokens = args.length > 0 ? Integer.parseInt(args[0]) : 1024;
        int blockTokens = args.length > 1 ? Integer.parseInt(args[1]) : 16;
        long seed = args.length > 2 ? Long.parseLong(args[2]) : 1;
        List<Row> rows = measure(tokens, blockTokens, seed);
        System.out.println("Synthetic KV: head_dim " + HEAD_DIM + ", " + tokens + " tokens, blockTokens "
                + blockTokens + ", seed " + seed + ", keys N(0,1) with channels " + java.util.Arrays.toString(OUTLIER_CHANNELS)
                + " x10, values N(0,1), 16 Gaussian queries; kernels: " + Quantizers.provider());
        System.out.println();
        System.out.print(table(rows));
    }
}
