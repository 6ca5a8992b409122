package dev.kvcache.quant;

import java.util.Objects;

/* The plain-Java softmax arithmetic: the reference the vector one is tested against. */
final class ScalarSoftmax implements SoftmaxKernels {

    static final ScalarSoftmax INSTANCE = new ScalarSoftmax();

    private ScalarSoftmax() {
    }

    @Override
    public float max(float[] a, int off, int n) {
        Objects.checkFromIndexSize(off, n, a.length);
        float m = Float.NEGATIVE_INFINITY;
        for (int i = off, end = off + n; i < end; i++) {
            m = Math.max(m, a[i]);
        }
        return m;
    }

    @Override
    public float expSum(float[] a, int off, int n, float shift) {
        Objects.checkFromIndexSize(off, n, a.length);
        float sum = 0f;
        for (int i = off, end = off + n; i < end; i++) {
            float w = (float) Math.exp(a[i] - shift);
            a[i] = w;
            sum += w;
        }
        return sum;
    }

    @Override
    public void scale(float[] a, int off, int n, float c) {
        Objects.checkFromIndexSize(off, n, a.length);
        for (int i = off, end = off + n; i < end; i++) {
            a[i] *= c;
        }
    }
}
