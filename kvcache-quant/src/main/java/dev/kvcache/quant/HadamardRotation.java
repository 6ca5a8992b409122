package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.Quantizer;

import java.lang.foreign.MemorySegment;

/**
 * Normalized Walsh-Hadamard rotation of one head vector, applied to keys (and to queries) before
 * quantization to spread outlier channels over all channels (QuaRot / SpinQuant style).
 *
 * <p>{@code H = (1/sqrt(d)) * Sylvester Hadamard matrix of order d} (d a power of two) is symmetric
 * and orthogonal, so it is its own inverse and preserves dot products: {@code q . k = (Hq) . (Hk)}.
 * A store may therefore keep keys rotated and rotate each query once per decode step (then call
 * the ordinary kernels), or use {@link #rotated(Quantizer)}, which rotates on encode and rotates
 * back on decode so readers see the original space. Values are not rotated.
 *
 * <p>Algorithm: the in-place fast transform, log2(d) butterfly passes of (a + b, a - b), then one
 * scaling by 1/sqrt(d); O(d log d), no allocation.
 */
public final class HadamardRotation {

    private HadamardRotation() {
    }

    /**
     * Throws IllegalArgumentException unless {@code dim} is a power of two.
     *
     * @param dim the head dimension to check
     * @throws IllegalArgumentException if {@code dim} is not a positive power of two
     */
    public static void checkDim(int dim) {
        if (dim <= 0 || (dim & (dim - 1)) != 0) {
            throw new IllegalArgumentException("Hadamard rotation needs a power-of-two dim, got " + dim);
        }
    }

    /**
     * Rotates {@code x[off .. off+dim)} in place; applying it twice restores x (up to rounding).
     *
     * @param x the array holding the vector
     * @param off index in {@code x} of the vector's first value
     * @param dim values in the vector, a positive power of two
     * @throws IllegalArgumentException if {@code dim} is not a power of two or the range does not fit {@code x}
     * @throws NullPointerException if {@code x} is null
     */
    public static void rotate(float[] x, int off, int dim) {
        checkDim(dim);
        Checks.array("x", x, off, dim);
        rotate0(x, off, dim);
    }

    /**
     * Rotates each of {@code rows} consecutive rows of {@code dim} values in place.
     *
     * @param x the array holding the rows, {@code [rows][dim]} row-major
     * @param off index in {@code x} of row 0's first value
     * @param rows rows to rotate, at least 0
     * @param dim values per row, a positive power of two
     * @throws IllegalArgumentException if {@code dim} is not a power of two, {@code rows < 0}, or the
     *         {@code rows*dim} values do not fit {@code x}
     * @throws NullPointerException if {@code x} is null
     */
    public static void rotateRows(float[] x, int off, int rows, int dim) {
        checkDim(dim);
        Checks.rows("rows", rows, 0);
        Checks.array("x", x, off, (long) rows * dim);
        for (int r = 0; r < rows; r++) {
            rotate0(x, off + r * dim, dim);
        }
    }

    static void rotate0(float[] x, int off, int dim) {
        for (int h = 1; h < dim; h <<= 1) {
            for (int i = 0; i < dim; i += h << 1) {
                for (int j = off + i; j < off + i + h; j++) {
                    float a = x[j];
                    float b = x[j + h];
                    x[j] = a + b;
                    x[j + h] = a - b;
                }
            }
        }
        float s = (float) (1 / Math.sqrt(dim));
        for (int j = off; j < off + dim; j++) {
            x[j] *= s;
        }
    }

    /**
     * A quantizer that stores {@code H x} in {@code q}'s format and decodes back to x's space
     * ({@code H} applied again after decoding). Same sizes and format as {@code q}; encode copies the
     * input (the caller's array is not modified). dim must be a power of two.
     *
     * @param q the quantizer that stores the rotated values
     * @return the rotating quantizer; its calls throw IllegalArgumentException when {@code dim} is not
     *         a power of two
     */
    public static Quantizer rotated(Quantizer q) {
        return new Rotated(q);
    }

    private record Rotated(Quantizer inner) implements Quantizer {
        @Override
        public KvFormat format() {
            return inner.format();
        }

        @Override
        public long encodedBytes(int tokens, int dim) {
            checkDim(dim);
            return inner.encodedBytes(tokens, dim);
        }

        @Override
        public void encode(float[] src, int tokens, int dim, MemorySegment dst) {
            checkDim(dim);
            Checks.rows("tokens", tokens, 0);
            Checks.array("src", src, 0, (long) tokens * dim);
            float[] r = java.util.Arrays.copyOf(src, tokens * dim);
            for (int t = 0; t < tokens; t++) {
                rotate0(r, t * dim, dim);
            }
            inner.encode(r, tokens, dim, dst);
        }

        @Override
        public void decode(MemorySegment src, int tokens, int dim, float[] dst) {
            checkDim(dim);
            inner.decode(src, tokens, dim, dst);
            for (int t = 0; t < tokens; t++) {
                rotate0(dst, t * dim, dim);
            }
        }
    }
}
