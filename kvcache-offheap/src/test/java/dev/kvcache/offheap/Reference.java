package dev.kvcache.offheap;

import java.util.SplittableRandom;

/** Float64 reference attention and test data helpers. */
final class Reference {

    private Reference() {
    }

    /**
     * Attention in double precision with a two-pass (max, then sum) softmax over the positions
     * {@code p < length} with {@code kept[p]}; keys/values are {@code [position][kvHeads*headDim]}.
     * Heads with no kept position get zeros.
     */
    static double[] attention(float[][] keys, float[][] values, boolean[] kept, int length,
                              float[] q, int queryHeads, int kvHeads, int headDim) {
        double[] out = new double[queryHeads * headDim];
        int group = queryHeads / kvHeads;
        double scale = 1.0 / Math.sqrt(headDim);
        double[] s = new double[length];
        for (int h = 0; h < queryHeads; h++) {
            int kv = (h / group) * headDim;
            double max = Double.NEGATIVE_INFINITY;
            for (int p = 0; p < length; p++) {
                if (kept != null && !kept[p]) {
                    continue;
                }
                double d = 0;
                for (int i = 0; i < headDim; i++) {
                    d += (double) q[h * headDim + i] * keys[p][kv + i];
                }
                s[p] = d * scale;
                max = Math.max(max, s[p]);
            }
            if (max == Double.NEGATIVE_INFINITY) {
                continue;
            }
            double sum = 0;
            for (int p = 0; p < length; p++) {
                if (kept != null && !kept[p]) {
                    continue;
                }
                double w = Math.exp(s[p] - max);
                sum += w;
                for (int i = 0; i < headDim; i++) {
                    out[h * headDim + i] += w * values[p][kv + i];
                }
            }
            for (int i = 0; i < headDim; i++) {
                out[h * headDim + i] /= sum;
            }
        }
        return out;
    }

    /** Largest |a - b|. */
    static double maxAbsDiff(float[] a, double[] b) {
        double m = 0;
        for (int i = 0; i < b.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    static float[] gaussian(SplittableRandom r, int n, double sigma) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (nextGaussian(r) * sigma);
        }
        return a;
    }

    static double nextGaussian(SplittableRandom r) {
        // Box-Muller; SplittableRandom has no nextGaussian on every JDK level we target
        double u = 1.0 - r.nextDouble();
        double v = r.nextDouble();
        return Math.sqrt(-2.0 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }
}
