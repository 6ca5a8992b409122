package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import java.lang.foreign.MemorySegment;

import static dev.kvcache.quant.Bits.I16;
import static dev.kvcache.quant.Bits.I8;

/*
 * KIVI (Liu et al. 2024): asymmetric b-bit quantization (b = 4 or 2), keys per channel across the
 * block's tokens, values per token in groups of 32. Each group stores an fp16 scale and an fp16
 * minimum; element = min + scale * code, code in [0, 2^b - 1].
 *
 * Encoding one group: mn = fp16(min x); scale = fp16((max x - mn) / (2^b - 1));
 * code = clamp(round((x - mn) / scale), 0, 2^b - 1) (0 when scale is 0). Using the fp16-rounded
 * mn and scale when choosing codes keeps decode consistent with what was chosen.
 * Accepted input: finite values with |x| <= 65504 (the fp16 minimum must be representable);
 * anything else is rejected, naming the value, before a byte is written.
 *
 * Codes are packed little-endian within bytes: code i of a group sits at bits [i*b, i*b + b) of the
 * group's code bytes (b divides 8, so no code straddles a byte).
 *
 * Key slice (t tokens x d channels, block format), keyBytes = d * (ceil(t*b/8) + 4):
 *   [0, 2d)            d fp16 scales, channel order
 *   [2d, 4d)           d fp16 minimums
 *   [4d + c*cb, ...)   cb = ceil(t*b/8) code bytes of channel c; code i = token i
 * Value slice (row format: each token on its own), valueBytes = t * (d/32) * (4b + 4):
 *   row r at r * (d/32) * (4b + 4); group g of the row at g * (4b + 4):
 *   [fp16 scale][fp16 min][4b code bytes, code i = channel 32g + i]
 */
final class KiviCodecs {

    private KiviCodecs() {
    }

    static final int G = KvFormats.GROUP;

    /** The registry's scalar factory: Keys for keys, Values for values. */
    static Codec scalar(KvFormat f, boolean keys) {
        return keys ? new Keys(f) : new Values(f);
    }

    /**
     * The registry's vector factory: VectorKivi.Keys for keys, VectorKiviValues for values. It lives
     * here, not in VectorKivi, because resolving a method reference links (verifies) its class, and
     * verifying VectorKivi needs jdk.incubator.vector; this class has no vector code.
     */
    static Codec vector(KvFormat f, boolean keys) {
        return keys ? new VectorKivi.Keys(f) : new VectorKiviValues(f);
    }

    static int bits(KvFormat f) {
        if (f == KvFormats.KIVI_4) {
            return 4;
        } else if (f == KvFormats.KIVI_2) {
            return 2;
        }
        throw new IllegalArgumentException("not a KIVI format: " + f);
    }

    static void validate(KvFormat f, float[] src, int off, int n) {
        for (int i = off; i < off + n; i++) {
            float x = src[i];
            if (!Float.isFinite(x)) {
                throw Checks.notFinite(src, i);
            }
            if (Math.abs(x) > Bits.F16_MAX) {
                throw new IllegalArgumentException("src[" + i + "] = " + x + ": " + f.name()
                        + " stores an fp16 minimum per group, so |x| must be <= " + Bits.F16_MAX);
            }
        }
    }

    /** Code of x given the group's decoded (fp16-rounded) min and inverse-free scale. */
    static int code(float x, float mn, float scale, int levels) {
        if (scale == 0f) {
            return 0;
        }
        int c = Math.round((x - mn) / scale);
        return Math.max(0, Math.min(levels, c));
    }

    // ================================================================== keys

    static final class Keys extends BlockCodec {
        private final int b;
        private final int levels;

        Keys(KvFormat f) {
            super(f, true);
            b = bits(f);
            levels = (1 << b) - 1;
        }

        private long codeBytes(int rows) {
            return ((long) rows * b + 7) / 8;
        }

        @Override
        long sliceBytes0(int rows, int dim) {
            return dim * (codeBytes(rows) + 4);
        }

        @Override
        void validate(float[] src, int off, int rows, int dim) {
            KiviCodecs.validate(format(), src, off, rows * dim);
        }

        @Override
        void encode0(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
            long cb = codeBytes(rows);
            int perByte = 8 / b;
            for (int c = 0; c < dim; c++) {
                float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
                for (int r = 0; r < rows; r++) {
                    float x = src[srcOff + r * dim + c];
                    min = Math.min(min, x);
                    max = Math.max(max, x);
                }
                short mn16 = Bits.toF16(min);
                float mn = Bits.fromF16(mn16);
                short s16 = Bits.toF16(Math.max(0f, max - mn) / levels);
                float s = Bits.fromF16(s16);
                dst.set(I16, dstOff + 2L * c, s16);
                dst.set(I16, dstOff + 2L * dim + 2L * c, mn16);
                long codes = dstOff + 4L * dim + c * cb;
                for (int k = 0; k < cb; k++) {
                    int v = 0;
                    for (int i = 0; i < perByte; i++) {
                        int r = k * perByte + i;
                        if (r < rows) {
                            v |= code(src[srcOff + r * dim + c], mn, s, levels) << (i * b);
                        }
                    }
                    dst.set(I8, codes + k, (byte) v);
                }
            }
        }

        private int codeAt(MemorySegment seg, long codes, int r) {
            int bit = r * b;
            return (seg.get(I8, codes + (bit >>> 3)) >> (bit & 7)) & levels;
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
            long cb = codeBytes(rows);
            for (int c = 0; c < dim; c++) {
                float s = Bits.fromF16(src.get(I16, off + 2L * c));
                float mn = Bits.fromF16(src.get(I16, off + 2L * dim + 2L * c));
                dst[dstOff + c] = mn + s * codeAt(src, off + 4L * dim + c * cb, row);
            }
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            // Channels outer, rows inner: each channel's codes for all rows are contiguous. The element
            // is rebuilt exactly as decode does (mn + s*code) before the product: factoring out
            // sum_c q_c mn_c would cancel badly when mn_c and s_c*code are large and opposite.
            long cb = codeBytes(rows);
            for (int r = 0; r < count; r++) {
                scores[sOff + r] = 0f;
            }
            for (int c = 0; c < dim; c++) {
                float s = Bits.fromF16(slice.get(I16, off + 2L * c));
                float mn = Bits.fromF16(slice.get(I16, off + 2L * dim + 2L * c));
                float qc = q[qOff + c];
                long codes = off + 4L * dim + c * cb;
                for (int r = 0; r < count; r++) {
                    scores[sOff + r] += qc * (mn + s * codeAt(slice, codes, r));
                }
            }
            for (int r = 0; r < count; r++) {
                scores[sOff + r] *= scale;
            }
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            long cb = codeBytes(rows);
            for (int c = 0; c < dim; c++) {
                float s = Bits.fromF16(slice.get(I16, off + 2L * c));
                float mn = Bits.fromF16(slice.get(I16, off + 2L * dim + 2L * c));
                long codes = off + 4L * dim + c * cb;
                float sum = 0f;
                for (int r = 0; r < count; r++) {
                    sum += w[wOff + r] * (mn + s * codeAt(slice, codes, r));
                }
                acc[aOff + c] += sum;
            }
        }
    }

    // ================================================================== values

    static final class Values extends RowCodec {
        private final int b;
        private final int levels;
        private final int groupBytes;

        Values(KvFormat f) {
            super(f, false);
            b = bits(f);
            levels = (1 << b) - 1;
            groupBytes = 4 + G * b / 8;
        }

        @Override
        long rowBytes0(int dim) {
            return (long) (dim / G) * groupBytes;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            KiviCodecs.validate(format(), src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            int perByte = 8 / b;
            for (int g = 0; g < dim / G; g++) {
                int x = srcOff + g * G;
                long o = dstOff + (long) g * groupBytes;
                float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
                for (int j = 0; j < G; j++) {
                    min = Math.min(min, src[x + j]);
                    max = Math.max(max, src[x + j]);
                }
                short mn16 = Bits.toF16(min);
                float mn = Bits.fromF16(mn16);
                short s16 = Bits.toF16(Math.max(0f, max - mn) / levels);
                float s = Bits.fromF16(s16);
                dst.set(I16, o, s16);
                dst.set(I16, o + 2, mn16);
                for (int k = 0; k < G / perByte; k++) {
                    int v = 0;
                    for (int i = 0; i < perByte; i++) {
                        v |= code(src[x + k * perByte + i], mn, s, levels) << (i * b);
                    }
                    dst.set(I8, o + 4 + k, (byte) v);
                }
            }
        }

        private int codeAt(MemorySegment seg, long codes, int j) {
            int bit = j * b;
            return (seg.get(I8, codes + (bit >>> 3)) >> (bit & 7)) & levels;
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int g = 0; g < dim / G; g++) {
                long o = off + (long) g * groupBytes;
                float s = Bits.fromF16(src.get(I16, o));
                float mn = Bits.fromF16(src.get(I16, o + 2));
                for (int j = 0; j < G; j++) {
                    dst[dstOff + g * G + j] = mn + s * codeAt(src, o + 4, j);
                }
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            float total = 0f;
            for (int g = 0; g < dim / G; g++) {
                long o = off + (long) g * groupBytes;
                float s = Bits.fromF16(src.get(I16, o));
                float mn = Bits.fromF16(src.get(I16, o + 2));
                for (int j = 0; j < G; j++) {
                    total += q[qOff + g * G + j] * (mn + s * codeAt(src, o + 4, j));
                }
            }
            return total;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int g = 0; g < dim / G; g++) {
                long o = off + (long) g * groupBytes;
                float s = Bits.fromF16(src.get(I16, o));
                float mn = Bits.fromF16(src.get(I16, o + 2));
                for (int j = 0; j < G; j++) {
                    acc[aOff + g * G + j] += w * (mn + s * codeAt(src, o + 4, j));
                }
            }
        }
    }
}
