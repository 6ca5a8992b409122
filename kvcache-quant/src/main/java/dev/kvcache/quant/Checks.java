package dev.kvcache.quant;

import java.lang.foreign.MemorySegment;

/*
 * Argument checks shared by the codecs. Every public entry point checks its whole input before it
 * writes a byte, so a call that throws changes nothing; the messages name the value and the limit.
 */
final class Checks {

    private Checks() {
    }

    static void rows(String what, int rows, int min) {
        if (rows < min) {
            throw new IllegalArgumentException(what + " must be >= " + min + ", got " + rows);
        }
    }

    /** rows x dim values must fit one float[] (at most Integer.MAX_VALUE). */
    static void values(int rows, int dim) {
        long n = (long) rows * dim;
        if (n > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("rows (tokens) x dim = " + rows + " x " + dim + " = " + n
                    + " values; the limit is " + Integer.MAX_VALUE + " (the rows are one float[])");
        }
    }

    static void count(int count, int rows) {
        if (count < 0 || count > rows) {
            throw new IllegalArgumentException("count must be in [0, rows=" + rows + "], got " + count);
        }
    }

    /** A stride between heads' runs of {@code count} values: at least {@code count}, so the runs never overlap. */
    static void stride(String what, int stride, int count) {
        if (stride < count) {
            throw new IllegalArgumentException(what + " must be >= count=" + count + ", got " + stride);
        }
    }

    static void row(int row, int rows) {
        if (row < 0 || row >= rows) {
            throw new IllegalArgumentException("row must be in [0, rows=" + rows + "), got " + row);
        }
    }

    static void array(String name, float[] a, int off, long len) {
        if (a == null) {
            throw new NullPointerException(name);
        }
        if (off < 0 || off + len > a.length) {
            throw new IllegalArgumentException(name + " has " + a.length + " floats; needs " + len
                    + " from offset " + off + " (" + (off + len) + " in all)");
        }
    }

    static void segment(String name, MemorySegment s, long off, long len, boolean write) {
        if (s == null) {
            throw new NullPointerException(name);
        }
        if (off < 0 || off + len > s.byteSize()) {
            throw new IllegalArgumentException(name + " segment has " + s.byteSize() + " bytes; needs "
                    + len + " from offset " + off + " (" + (off + len) + " in all)");
        }
        if (write && s.isReadOnly()) {
            throw new IllegalArgumentException(name + " segment is read-only");
        }
    }

    static IllegalArgumentException notFinite(float[] src, int index) {
        return new IllegalArgumentException("src[" + index + "] = " + src[index]
                + " is not finite; KV values must be finite (NaN and infinities are rejected)");
    }

    /** Scalar scan for the first non-finite value in {@code src[off .. off+len)}; -1 if none. */
    static int firstNonFinite(float[] src, int off, int len) {
        for (int i = off; i < off + len; i++) {
            if (!Float.isFinite(src[i])) {
                return i;
            }
        }
        return -1;
    }

    static void finite(float[] src, int off, int len) {
        int bad = firstNonFinite(src, off, len);
        if (bad >= 0) {
            throw notFinite(src, bad);
        }
    }
}
