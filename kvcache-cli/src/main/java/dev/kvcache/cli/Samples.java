package dev.kvcache.cli;

import java.util.Arrays;

/**
 * Weighted latency samples (seconds) and their percentiles: a value with a weight (an
 * inter-token gap counts once per token it spaced). Percentiles are the lower value at the
 * weighted rank, as {@code numpy.percentile(..., method='inverted_cdf')}; NaN when empty.
 */
final class Samples {
    private double[] values = new double[64];
    private long[] weights = new long[64];
    private int n;
    private long total;
    private boolean sorted = true;

    void add(double value, long weight) {
        if (weight <= 0) {
            return;
        }
        if (n == values.length) {
            values = Arrays.copyOf(values, n * 2);
            weights = Arrays.copyOf(weights, n * 2);
        }
        values[n] = value;
        weights[n] = weight;
        n++;
        total += weight;
        sorted = false;
    }

    void add(double value) {
        add(value, 1);
    }

    long count() {
        return total;
    }

    /** The {@code p}-th percentile, p in [0, 100]. */
    double percentile(double p) {
        if (n == 0) {
            return Double.NaN;
        }
        sort();
        double rank = Math.max(1, Math.ceil(p / 100.0 * total));
        long seen = 0;
        for (int i = 0; i < n; i++) {
            seen += weights[i];
            if (seen >= rank) {
                return values[i];
            }
        }
        return values[n - 1];
    }

    /** Sorted values and the cumulative fraction at each (the empirical CDF), for charts. */
    double[][] cdf() {
        sort();
        double[] x = Arrays.copyOf(values, n);
        double[] y = new double[n];
        long seen = 0;
        for (int i = 0; i < n; i++) {
            seen += weights[i];
            y[i] = (double) seen / total;
        }
        return new double[][] {x, y};
    }

    private void sort() {
        if (sorted) {
            return;
        }
        Integer[] idx = new Integer[n];
        for (int i = 0; i < n; i++) {
            idx[i] = i;
        }
        Arrays.sort(idx, (a, b) -> Double.compare(values[a], values[b]));
        double[] v = new double[values.length];
        long[] w = new long[weights.length];
        for (int i = 0; i < n; i++) {
            v[i] = values[idx[i]];
            w[i] = weights[idx[i]];
        }
        values = v;
        weights = w;
        sorted = true;
    }
}
