package dev.kvcache.quant;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;

import java.util.Objects;

import static dev.kvcache.quant.VectorProvider.F;
import static dev.kvcache.quant.VectorProvider.L;
import static jdk.incubator.vector.VectorOperators.ADD;
import static jdk.incubator.vector.VectorOperators.EXP;
import static jdk.incubator.vector.VectorOperators.MAX;

/*
 * Vector API softmax arithmetic. A paged-attention block is 16 positions, one 512-bit vector, so
 * the common call is a single full chunk; shorter runs (the partial last block, 256-bit machines'
 * second chunk) use a masked chunk rather than a scalar tail so that every position takes the same
 * exponential (HotSpot lowers lanewise(EXP) to the SVML-derived vector routine on x86).
 * Masked-off lanes load 0 and are excluded from the maximum and the sum; masked stores leave them
 * untouched.
 */
final class VectorSoftmax implements SoftmaxKernels {

    static final VectorSoftmax INSTANCE = new VectorSoftmax();

    private VectorSoftmax() {
    }

    @Override
    public float max(float[] a, int off, int n) {
        Objects.checkFromIndexSize(off, n, a.length);
        FloatVector m = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            m = m.max(FloatVector.fromArray(F, a, off + i));
        }
        if (i < n) {
            VectorMask<Float> k = F.indexInRange(i, n);
            m = m.lanewise(MAX, FloatVector.fromArray(F, a, off + i, k), k);
        }
        return m.reduceLanes(MAX);
    }

    @Override
    public float expSum(float[] a, int off, int n, float shift) {
        Objects.checkFromIndexSize(off, n, a.length);
        FloatVector sum = FloatVector.zero(F);
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            FloatVector w = FloatVector.fromArray(F, a, off + i).sub(shift).lanewise(EXP);
            w.intoArray(a, off + i);
            sum = sum.add(w);
        }
        if (i < n) {
            VectorMask<Float> k = F.indexInRange(i, n);
            FloatVector w = FloatVector.fromArray(F, a, off + i, k).sub(shift).lanewise(EXP);
            w.intoArray(a, off + i, k);
            sum = sum.add(w, k);
        }
        return sum.reduceLanes(ADD);
    }

    @Override
    public void scale(float[] a, int off, int n, float c) {
        Objects.checkFromIndexSize(off, n, a.length);
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            FloatVector.fromArray(F, a, off + i).mul(c).intoArray(a, off + i);
        }
        if (i < n) {
            VectorMask<Float> k = F.indexInRange(i, n);
            FloatVector.fromArray(F, a, off + i, k).mul(c).intoArray(a, off + i, k);
        }
    }
}
