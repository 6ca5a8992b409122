package dev.kvcache.cuda;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;

/**
 * Plain scalar reference encoders and decoders for the formats the CUDA store implements, written
 * from the format definitions (IEEE binary16 and bfloat16 round-to-nearest-even; llama.cpp's
 * {@code quantize_row_q8_0_ref}/{@code quantize_row_q4_0_ref}; OCP FP8 with saturation to the
 * largest finite value, found by exhaustive nearest-code search rather than bit tricks), plus a
 * reference model of a whole store in the {@link CudaBlockLayout} byte order. The tests compare the
 * device's bytes and values against these.
 */
final class RefCodec {

    private RefCodec() {
    }

    // ------------------------------------------------------------------ scalars

    /** binary16, round to nearest even (Java's conversion), saturating at +-65504. */
    static short f16(float x) {
        return Float.floatToFloat16(Math.max(-65504f, Math.min(65504f, x)));
    }

    static float f16ToFloat(short h) {
        return Float.float16ToFloat(h);
    }

    /** bfloat16, round to nearest even, saturating at the largest finite bfloat16. */
    static short bf16(float x) {
        float max = Float.intBitsToFloat(0x7F7F0000);
        int bits = Float.floatToRawIntBits(Float.isNaN(x) ? x : Math.max(-max, Math.min(max, x)));
        if (Float.isNaN(x)) {
            return (short) ((bits >>> 16) | 0x40);
        }
        int lsb = (bits >>> 16) & 1;
        return (short) ((bits + 0x7FFF + lsb) >>> 16);
    }

    static float bf16ToFloat(short b) {
        return Float.intBitsToFloat((b & 0xFFFF) << 16);
    }

    /** The value of FP8 code {@code c}; NaN for NaN codes. */
    static double fp8Value(int c, boolean e4m3) {
        int sign = (c >> 7) & 1;
        int expBits = e4m3 ? 4 : 5;
        int manBits = e4m3 ? 3 : 2;
        int bias = e4m3 ? 7 : 15;
        int exp = (c >> manBits) & ((1 << expBits) - 1);
        int man = c & ((1 << manBits) - 1);
        double v;
        if (e4m3) {
            if (exp == 15 && man == 7) {
                return Double.NaN;
            }
        } else if (exp == 31) {
            return man == 0 ? (sign == 1 ? Double.NEGATIVE_INFINITY : Double.POSITIVE_INFINITY) : Double.NaN;
        }
        if (exp == 0) {
            v = man / (double) (1 << manBits) * Math.pow(2, 1 - bias);
        } else {
            v = (1 + man / (double) (1 << manBits)) * Math.pow(2, exp - bias);
        }
        return sign == 1 ? -v : v;
    }

    /** Nearest finite FP8 code to {@code x}, ties to the even code, saturating (cvt.rn.satfinite). */
    static int fp8(float x, boolean e4m3) {
        double ax = Math.abs((double) x);
        int best = 0;
        double bestErr = Double.POSITIVE_INFINITY;
        for (int c = 0; c < 128; c++) {
            double v = fp8Value(c, e4m3);
            if (Double.isNaN(v) || Double.isInfinite(v)) {
                continue;
            }
            double err = Math.abs(v - ax);
            if (err < bestErr || (err == bestErr && (c & 1) == 0)) {
                best = c;
                bestErr = err;
            }
        }
        // values beyond the largest finite one saturate to it (the loop already picks it)
        boolean negative = Float.floatToRawIntBits(x) < 0;
        return negative ? best | 0x80 : best;
    }

    static float fp8Max(boolean e4m3) {
        return e4m3 ? 448f : 57344f;
    }

    /** C's roundf: half away from zero. */
    static float roundf(float x) {
        return (float) Math.copySign(Math.floor(Math.abs((double) x) + 0.5), x);
    }

    // ------------------------------------------------------------------ rows

    /** Encodes one row of a row format at {@code dst[off ..)}; returns bytes written. */
    static int encodeRow(KvFormat f, float[] x, int xOff, int dim, byte[] dst, int off) {
        if (f == KvFormats.F32) {
            for (int i = 0; i < dim; i++) {
                putInt(dst, off + 4 * i, Float.floatToRawIntBits(x[xOff + i]));
            }
            return 4 * dim;
        }
        if (f == KvFormats.F16 || f == KvFormats.BF16) {
            for (int i = 0; i < dim; i++) {
                short s = f == KvFormats.F16 ? f16(x[xOff + i]) : bf16(x[xOff + i]);
                putShort(dst, off + 2 * i, s);
            }
            return 2 * dim;
        }
        if (f == KvFormats.Q8_0) {
            for (int g = 0; g < dim / 32; g++) {
                int o = off + 34 * g;
                float amax = 0;
                for (int j = 0; j < 32; j++) {
                    amax = Math.max(amax, Math.abs(x[xOff + 32 * g + j]));
                }
                float d = amax / 127f;
                float id = d != 0f ? 1f / d : 0f;
                putShort(dst, o, f16(d));
                for (int j = 0; j < 32; j++) {
                    dst[o + 2 + j] = (byte) (int) roundf(x[xOff + 32 * g + j] * id);
                }
            }
            return 34 * (dim / 32);
        }
        if (f == KvFormats.Q4_0) {
            for (int g = 0; g < dim / 32; g++) {
                int o = off + 18 * g;
                float amax = 0;
                float max = 0;
                for (int j = 0; j < 32; j++) {
                    float v = x[xOff + 32 * g + j];
                    if (amax < Math.abs(v)) {
                        amax = Math.abs(v);
                        max = v;
                    }
                }
                float d = max / -8f;
                float id = d != 0f ? 1f / d : 0f;
                putShort(dst, o, f16(d));
                for (int j = 0; j < 16; j++) {
                    float x0 = x[xOff + 32 * g + j] * id;
                    float x1 = x[xOff + 32 * g + 16 + j] * id;
                    int xi0 = Math.min(15, (byte) (int) (x0 + 8.5f));
                    int xi1 = Math.min(15, (byte) (int) (x1 + 8.5f));
                    dst[o + 2 + j] = (byte) (xi0 | (xi1 << 4));
                }
            }
            return 18 * (dim / 32);
        }
        throw new IllegalArgumentException("not a row format: " + f);
    }

    /** Decodes element i of row r of a slice at {@code src[off ..)} (any supported format). */
    static float decode(KvFormat f, byte[] src, int off, int rows, int r, int i, int dim) {
        if (f == KvFormats.F32) {
            return Float.intBitsToFloat(getInt(src, off + 4 * (r * dim + i)));
        }
        if (f == KvFormats.F16) {
            return f16ToFloat(getShort(src, off + 2 * (r * dim + i)));
        }
        if (f == KvFormats.BF16) {
            return bf16ToFloat(getShort(src, off + 2 * (r * dim + i)));
        }
        if (f == KvFormats.Q8_0) {
            int g = off + r * 34 * (dim / 32) + 34 * (i / 32);
            return src[g + 2 + i % 32] * f16ToFloat(getShort(src, g));
        }
        if (f == KvFormats.Q4_0) {
            int g = off + r * 18 * (dim / 32) + 18 * (i / 32);
            int j = i % 32;
            int q = j < 16 ? src[g + 2 + j] & 0x0F : (src[g + 2 + j - 16] >> 4) & 0x0F;
            return (q - 8) * f16ToFloat(getShort(src, g));
        }
        boolean e4m3 = f == KvFormats.FP8_E4M3;
        int codes = off + (CudaBlockLayout.FP8_SCALE_FIRST ? 4 : 0);
        float scale = Float.intBitsToFloat(getInt(src, CudaBlockLayout.FP8_SCALE_FIRST ? off : off + rows * dim));
        return (float) fp8Value(src[codes + r * dim + i] & 0xFF, e4m3) * scale;
    }

    /** Encodes a whole FP8 slice ({@code rows x dim} floats) at {@code dst[off ..)}. */
    static void encodeFp8Slice(KvFormat f, float[] x, int rows, int dim, byte[] dst, int off) {
        boolean e4m3 = f == KvFormats.FP8_E4M3;
        int n = rows * dim;
        float amax = 0;
        for (int e = 0; e < n; e++) {
            amax = Math.max(amax, Math.abs(x[e]));
        }
        float scale = amax / fp8Max(e4m3);
        int codes = off + (CudaBlockLayout.FP8_SCALE_FIRST ? 4 : 0);
        for (int e = 0; e < n; e++) {
            dst[codes + e] = scale != 0f ? (byte) fp8(x[e] / scale, e4m3) : 0;
        }
        putInt(dst, CudaBlockLayout.FP8_SCALE_FIRST ? off : off + n, Float.floatToRawIntBits(scale));
    }

    // ------------------------------------------------------------------ a whole store

    /**
     * The store semantics in plain Java: encoded bytes in the CudaBlockLayout order plus FP8
     * staging rows (float32) for partially written (block, layer) pairs, the same rules as the
     * off-heap store (open on first write, seal on the block's last row).
     */
    static final class Model {
        final KvLayout layout;
        final CudaBlockLayout bl;
        final byte[] bytes;
        final float[][] stage; // [block * layers + layer] -> [K|V][head][row][dim], or null
        final int blocks;

        Model(KvLayout layout, int blocks) {
            this.layout = layout;
            this.bl = new CudaBlockLayout(layout);
            this.blocks = blocks;
            this.bytes = new byte[Math.toIntExact(bl.blockBytes() * blocks)];
            this.stage = new float[blocks * layout.layers()][];
        }

        void write(int layer, long slot, float[] k, float[] v) {
            int bt = layout.blockTokens();
            int hd = layout.headDim();
            int block = (int) (slot / bt);
            int row = (int) (slot % bt);
            KvFormat f = layout.format();
            if (!bl.blockFormat()) {
                for (int h = 0; h < layout.kvHeads(); h++) {
                    int rb = (int) (bl.keySliceBytes() / bt);
                    encodeRow(f, k, h * hd, hd, bytes, (int) bl.keyOffset(block, layer, h) + row * rb);
                    encodeRow(f, v, h * hd, hd, bytes, (int) bl.valueOffset(block, layer, h) + row * rb);
                }
                return;
            }
            int state = block * layout.layers() + layer;
            int sliceFloats = bt * hd;
            if (stage[state] == null) {
                float[] s = new float[2 * layout.kvHeads() * sliceFloats];
                for (int h = 0; h < layout.kvHeads(); h++) {
                    for (int e = 0; e < sliceFloats; e++) {
                        s[h * sliceFloats + e] = decode(f, bytes, (int) bl.keyOffset(block, layer, h), bt, e / hd, e % hd, hd);
                        s[(layout.kvHeads() + h) * sliceFloats + e] =
                                decode(f, bytes, (int) bl.valueOffset(block, layer, h), bt, e / hd, e % hd, hd);
                    }
                }
                stage[state] = s;
            }
            float[] s = stage[state];
            for (int h = 0; h < layout.kvHeads(); h++) {
                System.arraycopy(k, h * hd, s, h * sliceFloats + row * hd, hd);
                System.arraycopy(v, h * hd, s, (layout.kvHeads() + h) * sliceFloats + row * hd, hd);
            }
            if (row == bt - 1) {
                float[] one = new float[sliceFloats];
                for (int h = 0; h < layout.kvHeads(); h++) {
                    System.arraycopy(s, h * sliceFloats, one, 0, sliceFloats);
                    encodeFp8Slice(f, one, bt, hd, bytes, (int) bl.keyOffset(block, layer, h));
                    System.arraycopy(s, (layout.kvHeads() + h) * sliceFloats, one, 0, sliceFloats);
                    encodeFp8Slice(f, one, bt, hd, bytes, (int) bl.valueOffset(block, layer, h));
                }
                stage[state] = null;
            }
        }

        /** A deep copy. */
        Model copy() {
            Model m = new Model(layout, blocks);
            System.arraycopy(bytes, 0, m.bytes, 0, bytes.length);
            for (int i = 0; i < stage.length; i++) {
                m.stage[i] = stage[i] == null ? null : stage[i].clone();
            }
            return m;
        }

        /** copyBlock: bytes and staging rows, as both stores do it. */
        void copyBlock(int src, int dst) {
            int bb = (int) bl.blockBytes();
            System.arraycopy(bytes, src * bb, bytes, dst * bb, bb);
            for (int l = 0; l < layout.layers(); l++) {
                float[] s = stage[src * layout.layers() + l];
                stage[dst * layout.layers() + l] = s == null ? null : s.clone();
            }
        }

        void read(int layer, long slot, float[] out, boolean key) {
            int bt = layout.blockTokens();
            int hd = layout.headDim();
            int block = (int) (slot / bt);
            int row = (int) (slot % bt);
            float[] s = bl.blockFormat() ? stage[block * layout.layers() + layer] : null;
            for (int h = 0; h < layout.kvHeads(); h++) {
                for (int i = 0; i < hd; i++) {
                    if (s != null) {
                        out[h * hd + i] = s[((key ? 0 : layout.kvHeads()) + h) * bt * hd + row * hd + i];
                    } else {
                        int off = (int) (key ? bl.keyOffset(block, layer, h) : bl.valueOffset(block, layer, h));
                        out[h * hd + i] = decode(layout.format(), bytes, off, bt, row, i, hd);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ little-endian helpers

    static void putShort(byte[] b, int off, short v) {
        b[off] = (byte) v;
        b[off + 1] = (byte) (v >> 8);
    }

    static short getShort(byte[] b, int off) {
        return (short) ((b[off] & 0xFF) | (b[off + 1] << 8));
    }

    static void putInt(byte[] b, int off, int v) {
        b[off] = (byte) v;
        b[off + 1] = (byte) (v >> 8);
        b[off + 2] = (byte) (v >> 16);
        b[off + 3] = (byte) (v >> 24);
    }

    static int getInt(byte[] b, int off) {
        return (b[off] & 0xFF) | (b[off + 1] & 0xFF) << 8 | (b[off + 2] & 0xFF) << 16 | (b[off + 3] & 0xFF) << 24;
    }
}
