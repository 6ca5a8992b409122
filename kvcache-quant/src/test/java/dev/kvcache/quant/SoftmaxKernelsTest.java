package dev.kvcache.quant;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Both softmax implementations against float64 on fresh random runs whose lengths hit full
 * vectors, masked tails and empty runs, at offsets that are not vector aligned; masked (-inf)
 * positions; untouched neighbours.
 */
class SoftmaxKernelsTest {

    static Stream<SoftmaxKernels> kernels() {
        return Quantizers.availableProviders().stream().map(KernelProvider::softmax);
    }

    private static final int[] LENGTHS = {0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 48, 100};

    @ParameterizedTest
    @MethodSource("kernels")
    void expSumMatchesFloat64(SoftmaxKernels k) {
        SplittableRandom r = new SplittableRandom(System.nanoTime());
        for (int n : LENGTHS) {
            for (int off : new int[] {0, 1, 5}) {
                float[] a = new float[off + n + 3];
                for (int i = 0; i < a.length; i++) {
                    a[i] = (float) (r.nextGaussian() * 8);
                }
                for (int i = off; i < off + n; i++) {
                    if (r.nextInt(5) == 0) {
                        a[i] = Float.NEGATIVE_INFINITY; // masked position
                    }
                }
                float[] before = a.clone();
                double m = Double.NEGATIVE_INFINITY;
                for (int i = off; i < off + n; i++) {
                    m = Math.max(m, before[i]);
                }
                assertEquals((float) m, k.max(a, off, n), "max n=" + n + " off=" + off);
                float shift = n == 0 || m == Double.NEGATIVE_INFINITY ? 0f : (float) m + (float) r.nextDouble();
                float sum = k.expSum(a, off, n, shift);
                double refSum = 0;
                for (int i = off; i < off + n; i++) {
                    double e = Math.exp((double) (before[i] - shift)); // the contract: exp of the float difference
                    refSum += e;
                    if (before[i] == Float.NEGATIVE_INFINITY) {
                        assertEquals(0f, a[i], "masked position " + i);
                    } else {
                        assertEquals(e, a[i], 4e-7 * Math.max(e, 1e-30) + 1e-44, "exp at " + i + " n=" + n);
                    }
                }
                assertEquals(refSum, sum, 1e-5 * Math.max(refSum, 1), "sum n=" + n);
                for (int i = 0; i < off; i++) {
                    assertEquals(before[i], a[i], "before the run");
                }
                for (int i = off + n; i < a.length; i++) {
                    assertEquals(before[i], a[i], "after the run");
                }
            }
        }
    }

    /** A dense sweep of exp over the whole range a softmax sees, [-88, 0], and past the clamp. */
    @ParameterizedTest
    @MethodSource("kernels")
    void exponentialWithinTwoUlpsOverTheWholeRange(SoftmaxKernels k) {
        int n = 200_003; // not a multiple of any vector length
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = -88f * i / (n - 1);
        }
        float[] x = a.clone();
        k.expSum(a, 0, n, 0f);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double want = Math.exp(x[i]);
            if (want < Float.MIN_NORMAL * 2) {
                assertTrue(a[i] >= 0f && a[i] <= 2 * Float.MIN_NORMAL, "exp(" + x[i] + ") = " + a[i]);
                continue;
            }
            double ulps = Math.abs(a[i] - want) / Math.ulp((float) want);
            worst = Math.max(worst, ulps);
            assertTrue(ulps <= 2, "exp(" + x[i] + ") = " + a[i] + ", want " + want + " (" + ulps + " ulps)");
        }
        assertTrue(worst > 0 || k instanceof ScalarSoftmax, "suspiciously exact: " + worst);
        float[] inf = {Float.NEGATIVE_INFINITY, -1000f, -87.5f, 0f};
        k.expSum(inf, 0, inf.length, 0f);
        assertEquals(0f, inf[0]);
        assertEquals(0f, inf[1]);
        assertEquals(1f, inf[3]);
    }

    @ParameterizedTest
    @MethodSource("kernels")
    void scaleTouchesOnlyTheRun(SoftmaxKernels k) {
        SplittableRandom r = new SplittableRandom(System.nanoTime());
        for (int n : LENGTHS) {
            float[] a = new float[n + 10];
            for (int i = 0; i < a.length; i++) {
                a[i] = (float) r.nextGaussian();
            }
            float[] before = a.clone();
            float c = (float) r.nextDouble();
            k.scale(a, 4, n, c);
            for (int i = 0; i < a.length; i++) {
                float want = i >= 4 && i < 4 + n ? before[i] * c : before[i];
                assertEquals(want, a[i], "index " + i + " n=" + n);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("kernels")
    void maxOfOnlyMaskedIsMinusInfinity(SoftmaxKernels k) {
        float[] a = new float[20];
        Arrays.fill(a, Float.NEGATIVE_INFINITY);
        assertEquals(Float.NEGATIVE_INFINITY, k.max(a, 2, 17));
        assertEquals(Float.NEGATIVE_INFINITY, k.max(a, 2, 0));
        assertEquals(0f, k.expSum(a, 2, 17, 0f));
    }

    @ParameterizedTest
    @MethodSource("kernels")
    void badRangeThrowsBeforeWriting(SoftmaxKernels k) {
        float[] a = {1, 2, 3, 4};
        assertThrows(IndexOutOfBoundsException.class, () -> k.expSum(a, 2, 3, 0f));
        assertThrows(IndexOutOfBoundsException.class, () -> k.scale(a, -1, 2, 2f));
        assertThrows(IndexOutOfBoundsException.class, () -> k.max(a, 0, 5));
        assertEquals("[1.0, 2.0, 3.0, 4.0]", Arrays.toString(a));
    }

    @Test
    void activeProviderSuppliesItsOwnSoftmax() {
        assertEquals(Quantizers.activeProvider().softmax(), Quantizers.softmaxKernels());
        assertTrue(Quantizers.scalarSoftmaxKernels() instanceof ScalarSoftmax);
    }
}
