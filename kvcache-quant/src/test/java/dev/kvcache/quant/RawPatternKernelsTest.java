package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * F16/BF16 dotRows and accumulateRows on raw 16-bit patterns written straight into the segment
 * (not produced by the encoder): subnormals, infinities and NaNs included, against float64 on
 * Float.float16ToFloat / (bits << 16). Every count 0..rows is tried, so the four-row blocks, their
 * remainders and the 4-chunk / 1-chunk / scalar column paths are all hit at each dim. Also FP8
 * (a block format) at the same odd dims.
 */
class RawPatternKernelsTest {

    static final long SEED = new Random().nextLong();
    static final int[] DIMS = {1, 7, 16, 17, 33, 64, 100, 128, 160, 200};
    static final int ROWS = 13;

    static List<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (KernelProvider p : Quantizers.availableProviders()) {
            out.add(Arguments.of(p, KvFormats.F16));
            out.add(Arguments.of(p, KvFormats.BF16));
        }
        return out;
    }

    /** F16: any pattern, specials ~1/64 of the time. BF16: exponents within 2^+-20, plus specials. */
    static short pattern(SplittableRandom rnd, boolean f16) {
        int sign = rnd.nextBoolean() ? 0x8000 : 0;
        int special = rnd.nextInt(64);
        if (f16) {
            if (special == 0) {
                return (short) (sign | 0x7C00 | rnd.nextInt(0x400));   // infinity or NaN
            }
            return (short) (sign | rnd.nextInt(0x7C00));                 // zero, subnormal, normal
        }
        if (special == 0) {
            return (short) (sign | 0x7F80 | rnd.nextInt(0x80));          // infinity or NaN
        } else if (special == 1) {
            return (short) (sign | rnd.nextInt(0x80));                   // zero or subnormal
        }
        int exp = 127 + rnd.nextInt(-20, 21);
        return (short) (sign | exp << 7 | rnd.nextInt(0x80));
    }

    static double value(short h, boolean f16) {
        return f16 ? Float.float16ToFloat(h) : Float.intBitsToFloat((h & 0xFFFF) << 16);
    }

    /** NaN and infinity must match exactly (float and float64 agree there for these magnitudes). */
    static void check(double got, double exact, double tol, String where) {
        if (Double.isNaN(exact) || Double.isInfinite(exact)) {
            if (Double.compare(got, exact) != 0 && !(Double.isNaN(got) && Double.isNaN(exact))) {
                fail(where + ": " + got + ", float64 " + exact);
            }
        } else if (!(Math.abs(got - exact) <= tol)) {
            fail(where + ": " + got + ", float64 " + exact + ", tolerance " + tol);
        }
    }

    static List<Arguments> fp8Cases() {
        List<Arguments> out = new ArrayList<>();
        for (KernelProvider p : Quantizers.availableProviders()) {
            out.add(Arguments.of(p, KvFormats.FP8_E4M3));
            out.add(Arguments.of(p, KvFormats.FP8_E5M2));
        }
        return out;
    }

    /**
     * FP8 accepts any head dim, but KernelsTest only tries multiples of 32: here dims that leave
     * vector and scalar tails, every count, against float64 on the scalar provider's decode.
     */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("fp8Cases")
    void fp8KernelsAtOddDims(KernelProvider p, KvFormat f) {
        Codec c = KernelsTest.codecOrSkip(p, f, true);
        Codec ref = KernelsTest.codecOrSkip(ScalarProvider.INSTANCE, f, true);
        SplittableRandom rnd = new SplittableRandom(SEED ^ f.name().hashCode() ^ p.name().hashCode());
        for (int dim : DIMS) {
            float[] x = KernelsTest.randomInput(rnd, ROWS, dim);
            long off = 1 + rnd.nextInt(5);
            MemorySegment seg = MemorySegment.ofArray(new byte[(int) (off + c.sliceBytes(ROWS, dim) + 8)]);
            c.encode(x, 0, ROWS, dim, seg, off);
            float[] dec = new float[ROWS * dim];
            ref.decode(seg, off, ROWS, dim, dec, 0);
            float[] q = new float[dim + 2];
            for (int i = 0; i < q.length; i++) {
                q[i] = (float) KernelsTest.gaussian(rnd);
            }
            for (int count = 0; count <= ROWS; count++) {
                String where = p.name() + " " + f + " dim=" + dim + " count=" + count + " seed=" + SEED;
                float[] scores = new float[count + 2];
                scores[count + 1] = 42f;
                c.dotRows(seg, off, ROWS, count, dim, q, 2, 0.5f, scores, 1);
                assertEquals(42f, scores[count + 1], where + ": dotRows wrote past count");
                for (int r = 0; r < count; r++) {
                    double exact = 0, mag = 0;
                    for (int j = 0; j < dim; j++) {
                        double t = (double) q[2 + j] * dec[r * dim + j];
                        exact += t;
                        mag += Math.abs(t);
                    }
                    check(scores[1 + r], 0.5 * exact, 2e-6 * Math.sqrt(dim) * mag + 1e-37, where + " dotRows[" + r + "]");
                }
                float[] w = new float[count + 1];
                for (int i = 0; i < w.length; i++) {
                    w[i] = (float) rnd.nextDouble();
                }
                float[] acc = new float[dim + 2];
                for (int i = 0; i < acc.length; i++) {
                    acc[i] = (float) KernelsTest.gaussian(rnd);
                }
                float[] before = acc.clone();
                c.accumulateRows(seg, off, ROWS, count, dim, w, 1, acc, 1);
                assertEquals(before[0], acc[0], where);
                assertEquals(before[dim + 1], acc[dim + 1], where);
                for (int j = 0; j < dim; j++) {
                    double exact = before[1 + j], mag = Math.abs(exact);
                    for (int r = 0; r < count; r++) {
                        double t = (double) w[1 + r] * dec[r * dim + j];
                        exact += t;
                        mag += Math.abs(t);
                    }
                    check(acc[1 + j], exact, 4e-7 * (count + 2) * mag + 1e-37, where + " accumulateRows[" + j + "]");
                }
            }
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void kernelsOnRawPatterns(KernelProvider p, KvFormat f) {
        boolean f16 = f == KvFormats.F16;
        Codec c = KernelsTest.codecOrSkip(p, f, true);
        SplittableRandom rnd = new SplittableRandom(SEED ^ f.name().hashCode() ^ p.name().hashCode());
        for (int dim : DIMS) {
            long off = 1 + rnd.nextInt(5);
            MemorySegment seg = MemorySegment.ofArray(new byte[(int) (off + 2L * ROWS * dim + 8)]);
            short[] h = new short[ROWS * dim];
            for (int i = 0; i < h.length; i++) {
                h[i] = pattern(rnd, f16);
                seg.set(Bits.I16, off + 2L * i, h[i]);
            }
            float[] q = new float[dim + 2];
            for (int i = 0; i < q.length; i++) {
                q[i] = (float) KernelsTest.gaussian(rnd);
            }
            for (int count = 0; count <= ROWS; count++) {
                String where = p.name() + " " + f + " dim=" + dim + " count=" + count + " seed=" + SEED;
                float[] scores = new float[count + 2];
                scores[count + 1] = 42f;
                c.dotRows(seg, off, ROWS, count, dim, q, 2, 0.5f, scores, 1);
                assertEquals(42f, scores[count + 1], where + ": dotRows wrote past count");
                for (int r = 0; r < count; r++) {
                    double exact = 0, mag = 0;
                    for (int j = 0; j < dim; j++) {
                        double t = q[2 + j] * value(h[r * dim + j], f16);
                        exact += t;
                        mag += Math.abs(t);
                    }
                    check(scores[1 + r], 0.5 * exact, 2e-6 * Math.sqrt(dim) * mag + 1e-37, where + " dotRows[" + r + "]");
                }

                float[] w = new float[count + 1];
                for (int i = 0; i < w.length; i++) {
                    w[i] = (float) (rnd.nextDouble() + 0.01);
                }
                float[] acc = new float[dim + 2];
                for (int i = 0; i < acc.length; i++) {
                    acc[i] = (float) KernelsTest.gaussian(rnd);
                }
                float[] before = acc.clone();
                c.accumulateRows(seg, off, ROWS, count, dim, w, 1, acc, 1);
                assertEquals(before[0], acc[0], where);
                assertEquals(before[dim + 1], acc[dim + 1], where);
                for (int j = 0; j < dim; j++) {
                    double exact = before[1 + j], mag = Math.abs(exact);
                    for (int r = 0; r < count; r++) {
                        double t = w[1 + r] * value(h[r * dim + j], f16);
                        exact += t;
                        mag += Math.abs(t);
                    }
                    check(acc[1 + j], exact, 4e-7 * (count + 2) * mag + 1e-37, where + " accumulateRows[" + j + "]");
                }
            }
        }
    }
}
