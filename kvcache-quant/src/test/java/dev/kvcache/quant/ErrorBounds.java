package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import static org.junit.jupiter.api.Assertions.fail;

/** Per-element error bounds of each format, derived from its rounding step (not fitted to results). */
final class ErrorBounds {

    private ErrorBounds() {
    }

    static void check(KvFormat f, boolean keys, float[] x, float[] dec, int rows, int dim, String where) {
        int n = rows * dim;
        for (int i = 0; i < n; i++) {
            double bound = bound(f, keys, x, i, rows, dim);
            double err = Math.abs((double) dec[i] - x[i]);
            if (!(err <= bound)) {
                fail(where + ": element " + i + " = " + x[i] + " decoded as " + dec[i] + ", error " + err
                        + " > bound " + bound);
            }
        }
    }

    private static double bound(KvFormat f, boolean keys, float[] x, int i, int rows, int dim) {
        double v = Math.abs(x[i]);
        if (f == KvFormats.F32) {
            return 0;
        } else if (f == KvFormats.F16) {
            return Math.max(v * 0x1p-11, 0x1p-25);          // half an ulp, subnormal step 2^-24
        } else if (f == KvFormats.BF16) {
            return Math.max(v * 0x1p-8, Float.MIN_VALUE);
        } else if (f == KvFormats.Q8_0) {
            double d = groupAmax(x, i, KvFormats.GROUP) / 127;
            return d * 0.5 + 127 * f16Err(d) + 1e-30;       // half a step + fp16 rounding of d
        } else if (f == KvFormats.Q5_0) {
            double d = groupAmax(x, i, KvFormats.GROUP) / 16;
            return d + 16 * f16Err(d) + 1e-30;              // one step (clamp at 31) + fp16 rounding of d
        } else if (f == KvFormats.Q4_0) {
            double d = groupAmax(x, i, KvFormats.GROUP) / 8;
            return d + 8 * f16Err(d) + 1e-30;               // one step (clamp at 15) + fp16 rounding of d
        } else if (f == KvFormats.FP8_E4M3) {
            double s = sliceAmax(x, rows * dim) / 448;
            return v * 0x1p-4 + s * 0x1p-10 + 1e-37;        // 3 mantissa bits; subnormal step 2^-9
        } else if (f == KvFormats.FP8_E5M2) {
            double s = sliceAmax(x, rows * dim) / 57344;
            return v * 0x1p-3 + s * 0x1p-17 + 1e-37;        // 2 mantissa bits; subnormal step 2^-16
        } else if (f == KvFormats.KIVI_4 || f == KvFormats.KIVI_2) {
            int levels = f == KvFormats.KIVI_4 ? 15 : 3;
            double min, max;
            if (keys) {
                int c = i % dim;
                min = Double.MAX_VALUE;
                max = -Double.MAX_VALUE;
                for (int r = 0; r < rows; r++) {
                    min = Math.min(min, x[r * dim + c]);
                    max = Math.max(max, x[r * dim + c]);
                }
            } else {
                int g = i / KvFormats.GROUP * KvFormats.GROUP;
                min = Double.MAX_VALUE;
                max = -Double.MAX_VALUE;
                for (int j = g; j < g + KvFormats.GROUP; j++) {
                    min = Math.min(min, x[j]);
                    max = Math.max(max, x[j]);
                }
            }
            double step = (max - min + f16Err(min)) / levels;
            // half a step (of the fp16 scale), fp16 rounding of min (clamped codes at the bottom),
            // fp16 rounding of the scale times up to `levels` steps (clamped codes at the top)
            return 0.5 * (step + f16Err(step)) + 2 * f16Err(min) + levels * f16Err(step) + 1e-30;
        }
        throw new AssertionError(f);
    }

    /** Largest rounding error of storing v as fp16 (half ulp; absolute 2^-25 in the subnormal range). */
    static double f16Err(double v) {
        return Math.max(Math.abs(v) * 0x1p-11, 0x1p-25);
    }

    private static double groupAmax(float[] x, int i, int g) {
        int start = i / g * g;
        double a = 0;
        for (int j = start; j < start + g; j++) {
            a = Math.max(a, Math.abs(x[j]));
        }
        return a;
    }

    private static double sliceAmax(float[] x, int n) {
        double a = 0;
        for (int j = 0; j < n; j++) {
            a = Math.max(a, Math.abs(x[j]));
        }
        return a;
    }
}
