package dev.kvcache.quant;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

import java.util.Objects;

import static dev.kvcache.quant.VectorProvider.F;
import static dev.kvcache.quant.VectorProvider.L;
import static jdk.incubator.vector.VectorOperators.ADD;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LT;
import static jdk.incubator.vector.VectorOperators.MAX;

/*
 * Vector API softmax arithmetic. A paged-attention block is 16 positions, one 512-bit vector, so
 * the common call is a single full chunk. Shorter runs (the partial last block of a sequence) end
 * in a scalar tail, the ScalarSoftmax code: a masked chunk (indexInRange) allocated on every call
 * (PagedAttentionTest's allocation check: 768,000 B over 500 decodes of a sequence ending
 * mid-block), and Math.exp agrees with the vector exponential to 2 ulps.
 *
 * The exponential is computed inline (exp below) rather than with lanewise(EXP): that operation
 * is intrinsified only where HotSpot has a vector math library (x86 SVML) and otherwise falls back
 * to a per-lane scalar loop; inline it is the same speed as SVML on x86 (paged decode at 32k tokens,
 * 2026-11-25) and portable. Algorithm (Cody-Waite range reduction with the polynomial of Cephes'
 * expf): n = round(x / ln 2) by the 1.5 * 2^23 rounding trick, r = x - n ln 2 in two parts
 * (|r| <= ln 2 / 2), exp(r) by a degree-7 polynomial (those coefficients; measured within 2 ulps,
 * SoftmaxKernelsTest), times 2^n by adding n to the exponent bits. Inputs are clamped to [-87.3, 88.7] so
 * 2^n stays a normal float; below -87.3 (including -Infinity) the result is 0, which is what a
 * softmax weight that small is worth next to the maximum's weight of 1.
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
        return Math.max(m.reduceLanes(MAX), ScalarSoftmax.INSTANCE.max(a, off + i, n - i));
    }

    @Override
    public float expSum(float[] a, int off, int n, float shift) {
        Objects.checkFromIndexSize(off, n, a.length);
        FloatVector sum = FloatVector.zero(F);
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            FloatVector w = exp(FloatVector.fromArray(F, a, off + i).sub(shift));
            w.intoArray(a, off + i);
            sum = sum.add(w);
        }
        return sum.reduceLanes(ADD) + ScalarSoftmax.INSTANCE.expSum(a, off + i, n - i, shift);
    }

    @Override
    public void scale(float[] a, int off, int n, float c) {
        Objects.checkFromIndexSize(off, n, a.length);
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            FloatVector.fromArray(F, a, off + i).mul(c).intoArray(a, off + i);
        }
        ScalarSoftmax.INSTANCE.scale(a, off + i, n - i, c);
    }

    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HI = 0.693359375f;
    private static final float LN2_LO = -2.12194440e-4f;
    /** 1.5 * 2^23: adding it rounds a float of magnitude below 2^22 to an integer in the low mantissa bits. */
    private static final float ROUNDER = 0x1.8p23f;
    private static final float LOW = -87.3f;
    private static final float HIGH = 88.7f;

    /** e^x per lane; see the class comment. */
    static FloatVector exp(FloatVector x) {
        FloatVector c = x.max(LOW).min(HIGH);
        FloatVector t = c.fma(LOG2E, ROUNDER);          // round(c / ln 2) + 1.5 * 2^23
        IntVector n = t.reinterpretAsInts().sub(0x4B400000); // that integer, exactly
        FloatVector nf = t.sub(ROUNDER);
        FloatVector r = nf.fma(FloatVector.broadcast(F, -LN2_HI), c);
        r = nf.fma(FloatVector.broadcast(F, -LN2_LO), r);
        FloatVector p = FloatVector.broadcast(F, 1.9875691500e-4f);
        p = p.fma(r, FloatVector.broadcast(F, 1.3981999507e-3f));
        p = p.fma(r, FloatVector.broadcast(F, 8.3334519073e-3f));
        p = p.fma(r, FloatVector.broadcast(F, 4.1665795894e-2f));
        p = p.fma(r, FloatVector.broadcast(F, 1.6666665459e-1f));
        p = p.fma(r, FloatVector.broadcast(F, 5.0000001201e-1f));
        p = p.mul(r.mul(r)).add(r).add(1f);
        FloatVector e = p.reinterpretAsInts().add(n.lanewise(LSHL, 23)).reinterpretAsFloats();
        return e.blend(0f, x.compare(LT, LOW));
    }
}
