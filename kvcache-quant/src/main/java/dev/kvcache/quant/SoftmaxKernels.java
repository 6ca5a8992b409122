package dev.kvcache.quant;

/**
 * The softmax arithmetic of an online-softmax attention step, over a short run of scores (one
 * block's positions for one query head): the maximum, the shifted exponentials with their sum, and
 * the rescale of an accumulator when the running maximum moves.
 *
 * <p>Why this lives beside the quantizer kernels: in paged decode the dot products and weighted
 * sums are vectorized and fused with dequantization; what was left was one scalar
 * {@link Math#exp} per position and query head, and vectorizing it took a 32k-token decode step to
 * 0.73-0.91x of its time (PagedAttentionBenchmark, 2026-11-25).
 * {@link Quantizers#softmaxKernels()} returns the Vector API implementation when
 * {@code jdk.incubator.vector} is present (exponentials sixteen lanes at a time at 512 bits) and
 * the scalar one otherwise, chosen with the slice kernels, so callers such as
 * {@code dev.kvcache.offheap.PagedAttention} never link against the incubator module.
 *
 * <p>Results agree with the scalar implementation to a few ulps, not bit for bit: the vector
 * exponential may round differently from {@link Math#exp} in the last place and sums run in a
 * different order. {@code -Infinity} scores (masked positions) give weight 0 on both paths.
 *
 * <p>Hot-path methods: they check only what the JVM checks anyway (array bounds), so a bad
 * offset throws {@link IndexOutOfBoundsException} before anything is written.
 */
public interface SoftmaxKernels {

    /**
     * The largest of {@code a[off .. off+n)}; {@code -Infinity} when {@code n == 0}. NaN-free input assumed.
     *
     * @param a the values (attention scores)
     * @param off index in {@code a} of the first value
     * @param n values to scan, at least 0
     * @return the maximum of the {@code n} values, or {@code -Infinity} when {@code n == 0}
     */
    float max(float[] a, int off, int n);

    /**
     * Replaces {@code a[i]} by {@code exp(a[i] - shift)} for {@code i} in {@code [off, off+n)} and
     * returns their sum. {@code shift} must be finite and {@code >=} every finite {@code a[i]} (the
     * online softmax passes the running maximum), so no result exceeds 1 and nothing overflows;
     * {@code -Infinity} entries become 0.
     *
     * @param a the values, replaced in place by their shifted exponentials
     * @param off index in {@code a} of the first value
     * @param n values to transform, at least 0
     * @param shift subtracted before exponentiation: finite and at least every finite value
     * @return the sum of the {@code n} exponentials (0 when {@code n == 0})
     */
    float expSum(float[] a, int off, int n, float shift);

    /**
     * {@code a[i] *= c} for {@code i} in {@code [off, off+n)}.
     *
     * @param a the values, scaled in place
     * @param off index in {@code a} of the first value
     * @param n values to scale, at least 0
     * @param c the factor (the online softmax passes {@code exp(oldMax - newMax)})
     */
    void scale(float[] a, int off, int n, float c);
}
