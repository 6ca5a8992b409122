package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShuffle;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.kvcache.quant.Bits.I16;
import static dev.kvcache.quant.Bits.I8;
import static dev.kvcache.quant.VectorProvider.F;
import static dev.kvcache.quant.VectorProvider.I;
import static dev.kvcache.quant.VectorProvider.L;
import static dev.kvcache.quant.VectorProvider.LE_ORDER;
import static dev.kvcache.quant.VectorProvider.S;
import static dev.kvcache.quant.VectorKivi.G;
import static dev.kvcache.quant.VectorKivi.high;
import static dev.kvcache.quant.VectorKivi.putWord;
import static dev.kvcache.quant.VectorKivi.shifts;
import static dev.kvcache.quant.VectorKivi.unpack;
import static dev.kvcache.quant.VectorKivi.word;
import static dev.kvcache.quant.VectorProvider.floatToHalf;
import static dev.kvcache.quant.VectorProvider.halfToFloat;
import static jdk.incubator.vector.VectorOperators.ADD;
import static jdk.incubator.vector.VectorOperators.EQ;
import static jdk.incubator.vector.VectorOperators.F2I;
import static jdk.incubator.vector.VectorOperators.GE;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LE;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.MAX;
import static jdk.incubator.vector.VectorOperators.MIN;
import static jdk.incubator.vector.VectorOperators.OR;

/*
 * Vector API codec for KIVI_4 / KIVI_2 values (per token, groups of 32 channels; byte layout:
 * KiviCodecs). Channels are the lanes; a group is 32/L code words at fixed offsets, so there are no
 * tails. Unpacking, encoding and the boxing rules are those of VectorKivi (its class comment),
 * whose word helpers this class uses.
 */
final class VectorKiviValues extends RowCodec {
    private final int b;
    private final int levels;
    private final int groupBytes;
    /** Bytes of L codes: one unpack chunk (2, 4 or 8); a group's codes are 32/L chunks. */
    private final int chunkBytes;

    VectorKiviValues(KvFormat f) {
        super(f, false);
        b = KiviCodecs.bits(f);
        levels = (1 << b) - 1;
        groupBytes = 4 + G * b / 8;
        chunkBytes = L * b / 8;
    }

    @Override
    long rowBytes0(int dim) {
        return (long) (dim / G) * groupBytes;
    }

    @Override
    void validateRow(float[] src, int off, int dim) {
        VectorKivi.validate(format(), src, off, dim);
    }

    /*
     * Per group: vector min/max, scalar fp16 metadata (as the scalar encoder), then per chunk of
     * L channels code = clamp(round((x - mn) / s), 0, levels), Math.round done exactly as
     * truncate-then-adjust (y - trunc(y) is exact; negative y all clamp to 0 either way), and
     * the L codes OR-packed into one word by a shifted lane reduction.
     */
    @Override
    void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
        IntVector sh = shifts(b);
        VectorMask<Integer> hi = high(b);
        VectorMask<Integer> lo = hi.not();
        for (int g = 0; g < dim / G; g++) {
            int x = srcOff + g * G;
            long o = dstOff + (long) g * groupBytes;
            FloatVector mnv = FloatVector.fromArray(F, src, x), mxv = mnv;
            for (int k = L; k < G; k += L) {
                FloatVector v = FloatVector.fromArray(F, src, x + k);
                mnv = mnv.min(v);
                mxv = mxv.max(v);
            }
            short mn16 = Bits.toF16(mnv.reduceLanes(MIN));
            float mn = Bits.fromF16(mn16);
            short s16 = Bits.toF16(Math.max(0f, mxv.reduceLanes(MAX) - mn) / levels);
            float s = Bits.fromF16(s16);
            dst.set(I16, o, s16);
            dst.set(I16, o + 2, mn16);
            for (int k = 0; k < G / L; k++) {
                long word = 0;
                if (s != 0f) {
                    FloatVector y = FloatVector.fromArray(F, src, x + k * L).sub(mn).div(s);
                    IntVector t = (IntVector) y.convert(F2I, 0);
                    FloatVector frac = y.sub((FloatVector) t.convert(I2F, 0));
                    t = t.add(1, frac.compare(GE, 0.5f).cast(I)).max(0).min(levels).lanewise(LSHL, sh);
                    word = (t.reduceLanes(OR, lo) & 0xFFFF_FFFFL) | ((long) t.reduceLanes(OR, hi) << 32);
                }
                putWord(dst, o + 4 + (long) k * chunkBytes, chunkBytes, word);
            }
        }
    }

    @Override
    void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
        IntVector sh = shifts(b);
        VectorMask<Integer> hi = high(b);
        for (int g = 0; g < dim / G; g++) {
            long o = off + (long) g * groupBytes;
            float s = Bits.fromF16(src.get(I16, o));
            float mn = Bits.fromF16(src.get(I16, o + 2));
            for (int k = 0; k < G / L; k++) {
                unpack(word(src, o + 4 + (long) k * chunkBytes, chunkBytes), sh, hi, levels)
                        .fma(s, mn).intoArray(dst, dstOff + g * G + k * L);
            }
        }
    }

    @Override
    float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
        IntVector sh = shifts(b);
        VectorMask<Integer> hi = high(b);
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int g = 0; g < dim / G; g++) {
            long o = off + (long) g * groupBytes;
            float s = Bits.fromF16(src.get(I16, o));
            float mn = Bits.fromF16(src.get(I16, o + 2));
            // two chains: a group is two or four chunks
            for (int k = 0; k < G / L; k += 2) {
                int e = qOff + g * G + k * L;
                a0 = unpack(word(src, o + 4 + (long) k * chunkBytes, chunkBytes), sh, hi, levels)
                        .fma(s, mn).fma(FloatVector.fromArray(F, q, e), a0);
                a1 = unpack(word(src, o + 4 + (long) (k + 1) * chunkBytes, chunkBytes), sh, hi, levels)
                        .fma(s, mn).fma(FloatVector.fromArray(F, q, e + L), a1);
            }
        }
        return a0.add(a1).reduceLanes(ADD);
    }

    /* Four heads at a time: each chunk of a row is unpacked once and FMA'd by four queries. */
    @Override
    void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                       float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
        long rb = rowBytes0(dim);
        IntVector sh = shifts(b);
        VectorMask<Integer> hi = high(b);
        int j = 0;
        for (; j + 4 <= heads; j += 4) {
            int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;
            int s0 = sOff + j * sStride, s1 = s0 + sStride, s2 = s1 + sStride, s3 = s2 + sStride;
            long ro = off;
            for (int r = 0; r < count; r++, ro += rb) {
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                for (int g = 0; g < dim / G; g++) {
                    long o = ro + (long) g * groupBytes;
                    float s = Bits.fromF16(slice.get(I16, o));
                    float mn = Bits.fromF16(slice.get(I16, o + 2));
                    for (int k = 0; k < G / L; k++) {
                        FloatVector v = unpack(word(slice, o + 4 + (long) k * chunkBytes, chunkBytes), sh, hi, levels)
                                .fma(s, mn);
                        int e = g * G + k * L;
                        a0 = v.fma(FloatVector.fromArray(F, q, q0 + e), a0);
                        a1 = v.fma(FloatVector.fromArray(F, q, q1 + e), a1);
                        a2 = v.fma(FloatVector.fromArray(F, q, q2 + e), a2);
                        a3 = v.fma(FloatVector.fromArray(F, q, q3 + e), a3);
                    }
                }
                scores[s0 + r] = scale * a0.reduceLanes(ADD);
                scores[s1 + r] = scale * a1.reduceLanes(ADD);
                scores[s2 + r] = scale * a2.reduceLanes(ADD);
                scores[s3 + r] = scale * a3.reduceLanes(ADD);
            }
        }
        for (; j < heads; j++) {
            dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * sStride);
        }
    }

    @Override
    void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
        IntVector sh = shifts(b);
        VectorMask<Integer> hi = high(b);
        FloatVector wv = FloatVector.broadcast(F, w);
        for (int g = 0; g < dim / G; g++) {
            long o = off + (long) g * groupBytes;
            float s = Bits.fromF16(src.get(I16, o));
            float mn = Bits.fromF16(src.get(I16, o + 2));
            for (int k = 0; k < G / L; k++) {
                int a = aOff + g * G + k * L;
                unpack(word(src, o + 4 + (long) k * chunkBytes, chunkBytes), sh, hi, levels)
                        .fma(s, mn).fma(wv, FloatVector.fromArray(F, acc, a)).intoArray(acc, a);
            }
        }
    }

    /*
     * Chunk outer, rows inner: one L-channel chunk of acc stays in a register across all rows,
     * so acc is loaded and stored once per slice rather than once per row.
     */
    @Override
    void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                         float[] w, int wOff, float[] acc, int aOff) {
        long rb = rowBytes0(dim);
        IntVector sh = shifts(b);
        VectorMask<Integer> hi = high(b);
        for (int g = 0; g < dim / G; g++) {
            for (int k = 0; k < G / L; k++) {
                int a = aOff + g * G + k * L;
                FloatVector t = FloatVector.fromArray(F, acc, a);
                long o = off + (long) g * groupBytes;
                for (int r = 0; r < count; r++, o += rb) {
                    float s = Bits.fromF16(slice.get(I16, o));
                    float mn = Bits.fromF16(slice.get(I16, o + 2));
                    t = unpack(word(slice, o + 4 + (long) k * chunkBytes, chunkBytes), sh, hi, levels)
                            .fma(s, mn).fma(FloatVector.broadcast(F, w[wOff + r]), t);
                }
                t.intoArray(acc, a);
            }
        }
    }

    /* Four heads at a time, chunk outer, rows inner: four acc chunks in registers, one unpack per row. */
    @Override
    void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                              float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
        long rb = rowBytes0(dim);
        IntVector sh = shifts(b);
        VectorMask<Integer> hi = high(b);
        int j = 0;
        for (; j + 4 <= heads; j += 4) {
            int w0 = wOff + j * wStride, w1 = w0 + wStride, w2 = w1 + wStride, w3 = w2 + wStride;
            int c0 = aOff + j * dim, c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;
            for (int g = 0; g < dim / G; g++) {
                for (int k = 0; k < G / L; k++) {
                    int e = g * G + k * L;
                    FloatVector t0 = FloatVector.fromArray(F, acc, c0 + e);
                    FloatVector t1 = FloatVector.fromArray(F, acc, c1 + e);
                    FloatVector t2 = FloatVector.fromArray(F, acc, c2 + e);
                    FloatVector t3 = FloatVector.fromArray(F, acc, c3 + e);
                    long o = off + (long) g * groupBytes;
                    for (int r = 0; r < count; r++, o += rb) {
                        float s = Bits.fromF16(slice.get(I16, o));
                        float mn = Bits.fromF16(slice.get(I16, o + 2));
                        FloatVector v = unpack(word(slice, o + 4 + (long) k * chunkBytes, chunkBytes), sh, hi, levels)
                                .fma(s, mn);
                        t0 = v.fma(FloatVector.broadcast(F, w[w0 + r]), t0);
                        t1 = v.fma(FloatVector.broadcast(F, w[w1 + r]), t1);
                        t2 = v.fma(FloatVector.broadcast(F, w[w2 + r]), t2);
                        t3 = v.fma(FloatVector.broadcast(F, w[w3 + r]), t3);
                    }
                    t0.intoArray(acc, c0 + e);
                    t1.intoArray(acc, c1 + e);
                    t2.intoArray(acc, c2 + e);
                    t3.intoArray(acc, c3 + e);
                }
            }
        }
        for (; j < heads; j++) {
            accumulateRows0(slice, off, rows, count, dim, w, wOff + j * wStride, acc, aOff + j * dim);
        }
    }
}
