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
 * Vector API codecs for KIVI_4 / KIVI_2 (byte layout: see KiviCodecs). They extend the same
 * BlockCodec / RowCodec bases as the scalar KiviCodecs, so every argument check is the same code.
 *
 * Unpacking L codes from a word (L = 8 or 16 lanes of VectorProvider.F). Codes are packed
 * little-endian, b bits each, so L consecutive codes are L*b = 16, 32 or 64 consecutive bits: read
 * as one scalar word, broadcast to an IntVector (the upper 32 bits blended into the lanes i with
 * i*b >= 32), shifted right per lane by (i*b) mod 32 and masked with 2^b - 1, lane i holds code i.
 * No gathers, no tables.
 *
 * Values (per token, groups of 32 channels): channels are the lanes; a group is 32/L such words at
 * fixed offsets, so there are no tails (dim is a multiple of 32). Encode: vector min/max per group,
 * the scalar encoder's fp16 metadata, vector codes OR-packed into the words by a lane reduction.
 *
 * Keys (per channel across the block's tokens, cb = ceil(t*b/8) code bytes per channel):
 *  - channels in lanes when cb is 4 or 8 (16-token blocks; 8 tokens at 4 bits, 32 at 2 bits): the
 *    code words of L consecutive channels are one or two contiguous vector loads (8-byte words
 *    split into low and high int words by even/odd lane shuffles), so token r's codes for L
 *    channels are one uniform shift of word r*b/32. decode, decodeRow, accumulateRows(Group) and
 *    the code half of encode work this way: no per-element scalar work, no reductions.
 *  - tokens in lanes for dotRows(Group) at every cb, and for accumulateRows otherwise: channel c's
 *    codes of tokens r0 .. r0+L-1 are one word; dotRows FMAs the unpacked vector by the broadcast
 *    q[c] into L token scores at once, accumulateRows multiplies it by L weights and reduces it into
 *    acc[c]. A channel's last chunk may be short: only its cb - r0*b/8 bytes are read (never the
 *    next channel's, never past the slice), and lanes >= count are masked off before they reach a
 *    sum (they may hold other tokens' codes, mn + s*code can be infinite for raw bytes, and
 *    0 * infinity is NaN).
 *  - other cb, single-row decode: the strided code bytes are extracted scalar into dst (dst is the
 *    scratch), then scales and minimums are applied with vectors.
 *
 * Precision. Every element is rebuilt as decode does, mn + s * code, before it is multiplied by q
 * or w. s is an fp16 value (11 significant bits) and code < 16, so s * code is exact in float and
 * the only rounding is the add: one FMA gives the scalar decode's mn + s*code bit for bit.
 * Factoring the key dot product as sum_c q_c mn_c + sum_c (q_c s_c) code_{c,t} would save one
 * vector FMA per channel, but its rounding error is relative to sum |q_c mn_c|, not to
 * sum |q_c k_{c,t}|: a channel whose minimum is large and opposite to s*code (values near zero in
 * a channel ranging from -1000 to 0) loses the small dot product to cancellation. The kernels are
 * bound by the unpack work and by memory, so the extra FMA costs little.
 *
 * Encoding is byte-identical to the scalar encoder (tested): vector min/max (Math.min/max
 * semantics, -0.0 included), VectorProvider's exact branch-free fp16 rounding, and Math.round of
 * (x - mn) / s done as truncate-then-adjust on the exact fraction (negative quotients clamp to 0
 * either way).
 *
 * C2 and boxing. A vector that crosses a call C2 did not inline is boxed (allocated), and C2 stops
 * inlining into a compilation unit past a node-count cutoff that the fp16 conversions quickly
 * reach. So each key path is its own method taking and returning no vectors, with the lane work
 * written out rather than in helpers, and encode has one floatToHalf call site (a two-pass loop).
 * (Checked while writing this with ThreadMXBean allocation counters on warmed-up passes over 7-,
 * 16- and 32-token blocks: no allocation; the first versions allocated on every call.)
 */
final class VectorKivi {

    private VectorKivi() {
    }


    static final int G = KvFormats.GROUP;
    static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Per-lane right shift (i*b) mod 32 of lane i, for b = 4 (index 0) and b = 2 (index 1). */
    private static final int[][] SHIFTS = new int[2][L];
    /** Lanes whose code lies in the upper 32 bits of the word (i*b >= 32). */
    private static final boolean[][] HIGH = new boolean[2][L];

    static {
        for (int k = 0; k < 2; k++) {
            int b = k == 0 ? 4 : 2;
            for (int i = 0; i < L; i++) {
                SHIFTS[k][i] = (i * b) & 31;
                HIGH[k][i] = i * b >= 32;
            }
        }
    }

    private static int table(int b) {
        return b == 4 ? 0 : 1;
    }

    static IntVector shifts(int b) {
        return IntVector.fromArray(I, SHIFTS[table(b)], 0);
    }

    static VectorMask<Integer> high(int b) {
        return VectorMask.fromArray(I, HIGH[table(b)], 0);
    }

    /** The L codes packed in {@code word} (bits [i*b, i*b+b) is code i) as floats. */
    static FloatVector unpack(long word, IntVector sh, VectorMask<Integer> hi, int levels) {
        IntVector v = IntVector.broadcast(I, (int) word).blend((int) (word >>> 32), hi);
        return (FloatVector) v.lanewise(LSHR, sh).and(levels).convert(I2F, 0);
    }

    /** {@code n} (1..8) little-endian bytes at {@code at} as the low bytes of a long. */
    static long word(MemorySegment s, long at, int n) {
        switch (n) {
            case 8:
                return s.get(I64, at);
            case 4:
                return s.get(I32, at) & 0xFFFF_FFFFL;
            case 2:
                return s.get(I16, at) & 0xFFFFL;
            default:
                long w = 0;
                for (int i = 0; i < n; i++) {
                    w |= (s.get(I8, at + i) & 0xFFL) << (8 * i);
                }
                return w;
        }
    }

    /** Writes the low {@code n} (2, 4 or 8) bytes of {@code w} little-endian at {@code at}. */
    static void putWord(MemorySegment s, long at, int n, long w) {
        switch (n) {
            case 8 -> s.set(I64, at, w);
            case 4 -> s.set(I32, at, (int) w);
            default -> s.set(I16, at, (short) w);
        }
    }

    /** Vector check of finite and |x| <= 65504; on a miss the scalar check throws its exact message. */
    static void validate(KvFormat f, float[] src, int off, int n) {
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            // NaN compares false, so NaN and infinities fail this too
            if (!FloatVector.fromArray(F, src, off + i).abs().compare(LE, Bits.F16_MAX).allTrue()) {
                break;
            }
        }
        KiviCodecs.validate(f, src, off + i, n - i);
    }

    /** Lanes 2i of (a, b) and lanes 2i+1 of (a, b): the low and high int words of L 8-byte channel words. */
    private static final VectorShuffle<Integer> EVEN;
    private static final VectorShuffle<Integer> ODD;
    /** The inverse: (lo, hi) interleaved, lanes 0 .. L/2-1 (ZIP0) and L/2 .. L-1 (ZIP1) of each. */
    private static final VectorShuffle<Integer> ZIP0;
    private static final VectorShuffle<Integer> ZIP1;

    static {
        int[] even = new int[L], odd = new int[L], zip0 = new int[L], zip1 = new int[L];
        for (int i = 0; i < L; i++) {
            // negative indexes are "exceptional": rearrange(s, v) takes them from v, lane index + L
            int j = 2 * i < L ? 2 * i : 2 * i - 2 * L;
            even[i] = j;
            odd[i] = j + 1;
            zip0[i] = i % 2 == 0 ? i / 2 : i / 2 - L;
            zip1[i] = i % 2 == 0 ? L / 2 + i / 2 : L / 2 + i / 2 - L;
        }
        EVEN = VectorShuffle.fromArray(I, even, 0);
        ODD = VectorShuffle.fromArray(I, odd, 0);
        ZIP0 = VectorShuffle.fromArray(I, zip0, 0);
        ZIP1 = VectorShuffle.fromArray(I, zip1, 0);
    }

    // ================================================================== keys

    static final class Keys extends BlockCodec {
        private final int b;
        private final int levels;
        /** Bytes of L codes: one token-lane unpack chunk (2, 4 or 8). */
        private final int chunkBytes;
        /** Tokens per int code word (8 or 16). */
        private final int perWord;

        Keys(KvFormat f) {
            super(f, true);
            b = KiviCodecs.bits(f);
            levels = (1 << b) - 1;
            chunkBytes = L * b / 8;
            perWord = 32 / b;
        }

        private long codeBytes(int rows) {
            return ((long) rows * b + 7) / 8;
        }

        /* Channel lanes apply when a channel's codes are one or two int words (see the class comment). */
        private static boolean channelLanes(long cb) {
            return cb == 4 || cb == 8;
        }

        private static FloatVector scales(MemorySegment s, long off, int c) {
            return halfToFloat(ShortVector.fromMemorySegment(S, s, off + 2L * c, LE_ORDER));
        }

        private static FloatVector mins(MemorySegment s, long off, int dim, int c) {
            return halfToFloat(ShortVector.fromMemorySegment(S, s, off + 2L * dim + 2L * c, LE_ORDER));
        }

        @Override
        long sliceBytes0(int rows, int dim) {
            return dim * (codeBytes(rows) + 4);
        }

        @Override
        void validate(float[] src, int off, int rows, int dim) {
            VectorKivi.validate(format(), src, off, rows * dim);
        }

        /*
         * Channels in lanes throughout (row r of the input is contiguous): per-channel minimum and
         * maximum, fp16 minimum and scale, then the codes: from the scale and minimum just
         * written, per row, OR-ed into the channels' code words at bit r*b, written as one or two
         * vector stores when a channel's codes are 4 or 8 bytes; scalar per channel otherwise.
         */
        @Override
        void encode0(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
            encodeMetadata(src, srcOff, rows, dim, dst, dstOff);
            if (channelLanes(codeBytes(rows))) {
                encodeCodeWords(src, srcOff, rows, dim, dst, dstOff);
            } else {
                encodeCodes(src, srcOff, rows, dim, dst, dstOff);
            }
        }

        private void encodeMetadata(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
            for (int c = 0; c < dim; c += L) {
                FloatVector mnv = FloatVector.fromArray(F, src, srcOff + c);
                FloatVector mxv = mnv;
                for (int r = 1; r < rows; r++) {
                    FloatVector x = FloatVector.fromArray(F, src, srcOff + r * dim + c);
                    mnv = mnv.min(x);
                    mxv = mxv.max(x);
                }
                // pass 0 writes fp16(min), pass 1 fp16(max(0, max - mn) / levels) from the rounded
                // mn, as the scalar encoder: one floatToHalf in the code, not two (see above)
                FloatVector v = mnv;
                long at = dstOff + 2L * dim + 2L * c;
                for (int pass = 0; pass < 2; pass++) {
                    ShortVector h = floatToHalf(v);
                    h.intoMemorySegment(dst, at, LE_ORDER);
                    v = mxv.sub(halfToFloat(h)).max(0f).div(levels);
                    at = dstOff + 2L * c;
                }
            }
        }

        /*
         * code = clamp(round((x - mn) / s), 0, levels), 0 where s == 0; Math.round done exactly as
         * truncate-then-adjust on the exact fraction (negative y all clamp to 0 either way).
         */
        private void encodeCodeWords(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
            long cb = codeBytes(rows);
            long codes = dstOff + 4L * dim;
            for (int c = 0; c < dim; c += L) {
                FloatVector s = scales(dst, dstOff, c);
                FloatVector mn = mins(dst, dstOff, dim, c);
                VectorMask<Integer> flat = s.compare(EQ, 0f).cast(I);
                IntVector lo = IntVector.zero(I), hi = lo;
                int r = 0;
                // two loops, not a branch per row: tokens < perWord go to lo, the rest to hi
                for (int end = Math.min(rows, perWord); r < end; r++) {
                    FloatVector y = FloatVector.fromArray(F, src, srcOff + r * dim + c).sub(mn).div(s);
                    IntVector t = (IntVector) y.convert(F2I, 0);
                    FloatVector frac = y.sub((FloatVector) t.convert(I2F, 0));
                    t = t.add(1, frac.compare(GE, 0.5f).cast(I)).max(0).min(levels).blend(0, flat);
                    lo = lo.or(t.lanewise(LSHL, r * b));
                }
                for (; r < rows; r++) {
                    FloatVector y = FloatVector.fromArray(F, src, srcOff + r * dim + c).sub(mn).div(s);
                    IntVector t = (IntVector) y.convert(F2I, 0);
                    FloatVector frac = y.sub((FloatVector) t.convert(I2F, 0));
                    t = t.add(1, frac.compare(GE, 0.5f).cast(I)).max(0).min(levels).blend(0, flat);
                    hi = hi.or(t.lanewise(LSHL, (r - perWord) * b));
                }
                if (cb == 4) {
                    lo.intoMemorySegment(dst, codes + 4L * c, LE_ORDER);
                } else {
                    lo.rearrange(ZIP0, hi).intoMemorySegment(dst, codes + 8L * c, LE_ORDER);
                    lo.rearrange(ZIP1, hi).intoMemorySegment(dst, codes + 8L * c + 4L * L, LE_ORDER);
                }
            }
        }

        /* Codes per channel, scalar, from the scale and minimum just written (the scalar encoder's loop). */
        private void encodeCodes(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
            long cb = codeBytes(rows);
            int perByte = 8 / b;
            for (int c = 0; c < dim; c++) {
                float s = Bits.fromF16(dst.get(I16, dstOff + 2L * c));
                float mn = Bits.fromF16(dst.get(I16, dstOff + 2L * dim + 2L * c));
                long codes = dstOff + 4L * dim + c * cb;
                for (int k = 0; k < cb; k++) {
                    int v = 0;
                    for (int i = 0; i < perByte; i++) {
                        int r = k * perByte + i;
                        if (r < rows) {
                            v |= KiviCodecs.code(src[srcOff + r * dim + c], mn, s, levels) << (i * b);
                        }
                    }
                    dst.set(I8, codes + k, (byte) v);
                }
            }
        }

        @Override
        void decode0(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff) {
            if (channelLanes(codeBytes(rows))) {
                decodeChannels(src, off, rows, dim, dst, dstOff);
            } else {
                super.decode0(src, off, rows, dim, dst, dstOff);
            }
        }

        /* Channels in lanes: each chunk's words and metadata are loaded once for all rows. */
        private void decodeChannels(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff) {
            long cb = codeBytes(rows);
            long codes = off + 4L * dim;
            for (int c = 0; c < dim; c += L) {
                FloatVector s = scales(src, off, c);
                FloatVector mn = mins(src, off, dim, c);
                IntVector lo = IntVector.fromMemorySegment(I, src, codes + cb * c, LE_ORDER), hi = lo;
                if (cb == 8) {
                    IntVector v1 = IntVector.fromMemorySegment(I, src, codes + 8L * c + 4L * L, LE_ORDER);
                    hi = lo.rearrange(ODD, v1);
                    lo = lo.rearrange(EVEN, v1);
                }
                // two loops, not a select per token: tokens < perWord are in lo, the rest in hi
                int r = 0;
                for (int end = Math.min(rows, perWord); r < end; r++) {
                    ((FloatVector) lo.lanewise(LSHR, r * b).and(levels).convert(I2F, 0))
                            .fma(s, mn).intoArray(dst, dstOff + r * dim + c);
                }
                for (; r < rows; r++) {
                    ((FloatVector) hi.lanewise(LSHR, (r - perWord) * b).and(levels).convert(I2F, 0))
                            .fma(s, mn).intoArray(dst, dstOff + r * dim + c);
                }
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
            if (channelLanes(codeBytes(rows))) {
                decodeRowChannels(src, off, rows, row, dim, dst, dstOff);
            } else {
                decodeRowStrided(src, off, rows, row, dim, dst, dstOff);
            }
        }

        private void decodeRowChannels(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
            long cb = codeBytes(rows);
            long codes = off + 4L * dim;
            boolean high = row >= perWord;
            for (int c = 0; c < dim; c += L) {
                IntVector w = IntVector.fromMemorySegment(I, src, codes + cb * c, LE_ORDER);
                if (cb == 8) {
                    IntVector v1 = IntVector.fromMemorySegment(I, src, codes + 8L * c + 4L * L, LE_ORDER);
                    w = high ? w.rearrange(ODD, v1) : w.rearrange(EVEN, v1);
                }
                ((FloatVector) w.lanewise(LSHR, (row % perWord) * b).and(levels).convert(I2F, 0))
                        .fma(scales(src, off, c), mins(src, off, dim, c)).intoArray(dst, dstOff + c);
            }
        }

        /* One code per channel, cb bytes apart: extracted scalar into dst, then mn + s * code in vectors. */
        private void decodeRowStrided(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
            long cb = codeBytes(rows);
            int bit = row * b;
            long codes = off + 4L * dim + (bit >>> 3);
            int shift = bit & 7;
            for (int c = 0; c < dim; c++) {
                dst[dstOff + c] = (src.get(I8, codes + c * cb) >> shift) & levels;
            }
            for (int c = 0; c < dim; c += L) {
                FloatVector.fromArray(F, dst, dstOff + c).fma(scales(src, off, c), mins(src, off, dim, c)).intoArray(dst, dstOff + c);
            }
        }

        /* Tokens in lanes: per channel one unpack, one FMA into the L scores; two chains (even/odd channels). */
        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            long cb = codeBytes(rows);
            IntVector sh = shifts(b);
            VectorMask<Integer> hi = high(b);
            for (int r0 = 0; r0 < count; r0 += L) {
                FloatVector a0 = FloatVector.zero(F), a1 = a0;
                long start = (long) r0 * b / 8;
                int n = (int) Math.min(chunkBytes, cb - start);
                long codes = off + 4L * dim + start;
                for (int c = 0; c < dim; c += 2) {
                    long w0 = word(slice, codes + c * cb, n), w1 = word(slice, codes + (c + 1) * cb, n);
                    FloatVector k0 = ((FloatVector) IntVector.broadcast(I, (int) w0).blend((int) (w0 >>> 32), hi)
                            .lanewise(LSHR, sh).and(levels).convert(I2F, 0))
                            .fma(Bits.fromF16(slice.get(I16, off + 2L * c)), Bits.fromF16(slice.get(I16, off + 2L * dim + 2L * c)));
                    FloatVector k1 = ((FloatVector) IntVector.broadcast(I, (int) w1).blend((int) (w1 >>> 32), hi)
                            .lanewise(LSHR, sh).and(levels).convert(I2F, 0))
                            .fma(Bits.fromF16(slice.get(I16, off + 2L * c + 2)), Bits.fromF16(slice.get(I16, off + 2L * dim + 2L * c + 2)));
                    a0 = k0.fma(FloatVector.broadcast(F, q[qOff + c]), a0);
                    a1 = k1.fma(FloatVector.broadcast(F, q[qOff + c + 1]), a1);
                }
                a0.add(a1).mul(scale).intoArray(scores, sOff + r0, F.indexInRange(r0, count));
            }
        }

        /* Four heads at a time: each channel's token vector is unpacked once and FMA'd by four queries. */
        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                dotRows4(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * sStride, sStride);
            }
            for (; j < heads; j++) {
                dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * sStride);
            }
        }

        private void dotRows4(MemorySegment slice, long off, int rows, int count, int dim,
                              float[] q, int q0, float scale, float[] scores, int s0, int stride) {
            long cb = codeBytes(rows);
            IntVector sh = shifts(b);
            VectorMask<Integer> hi = high(b);
            int q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;
            for (int r0 = 0; r0 < count; r0 += L) {
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                long start = (long) r0 * b / 8;
                int n = (int) Math.min(chunkBytes, cb - start);
                for (int c = 0; c < dim; c++) {
                    long wd = word(slice, off + 4L * dim + c * cb + start, n);
                    FloatVector k = ((FloatVector) IntVector.broadcast(I, (int) wd).blend((int) (wd >>> 32), hi)
                            .lanewise(LSHR, sh).and(levels).convert(I2F, 0))
                            .fma(Bits.fromF16(slice.get(I16, off + 2L * c)), Bits.fromF16(slice.get(I16, off + 2L * dim + 2L * c)));
                    a0 = k.fma(FloatVector.broadcast(F, q[q0 + c]), a0);
                    a1 = k.fma(FloatVector.broadcast(F, q[q1 + c]), a1);
                    a2 = k.fma(FloatVector.broadcast(F, q[q2 + c]), a2);
                    a3 = k.fma(FloatVector.broadcast(F, q[q3 + c]), a3);
                }
                VectorMask<Float> m = F.indexInRange(r0, count);
                a0.mul(scale).intoArray(scores, s0 + r0, m);
                a1.mul(scale).intoArray(scores, s0 + stride + r0, m);
                a2.mul(scale).intoArray(scores, s0 + 2 * stride + r0, m);
                a3.mul(scale).intoArray(scores, s0 + 3 * stride + r0, m);
            }
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            if (channelLanes(codeBytes(rows))) {
                accumulateChannels(slice, off, rows, count, dim, w, wOff, acc, aOff);
            } else {
                accumulateTokens(slice, off, rows, count, dim, w, wOff, acc, aOff);
            }
        }

        /* Channels in lanes: an L-channel chunk of acc in a register across the rows, one FMA per token. */
        private void accumulateChannels(MemorySegment slice, long off, int rows, int count, int dim,
                                        float[] w, int wOff, float[] acc, int aOff) {
            long cb = codeBytes(rows);
            long codes = off + 4L * dim;
            for (int c = 0; c < dim; c += L) {
                FloatVector s = scales(slice, off, c);
                FloatVector mn = mins(slice, off, dim, c);
                IntVector lo = IntVector.fromMemorySegment(I, slice, codes + cb * c, LE_ORDER), hi = lo;
                if (cb == 8) {
                    IntVector v1 = IntVector.fromMemorySegment(I, slice, codes + 8L * c + 4L * L, LE_ORDER);
                    hi = lo.rearrange(ODD, v1);
                    lo = lo.rearrange(EVEN, v1);
                }
                FloatVector a = FloatVector.fromArray(F, acc, aOff + c);
                int r = 0;
                for (int end = Math.min(count, perWord); r < end; r++) {
                    a = ((FloatVector) lo.lanewise(LSHR, r * b).and(levels).convert(I2F, 0))
                            .fma(s, mn).fma(FloatVector.broadcast(F, w[wOff + r]), a);
                }
                for (; r < count; r++) {
                    a = ((FloatVector) hi.lanewise(LSHR, (r - perWord) * b).and(levels).convert(I2F, 0))
                            .fma(s, mn).fma(FloatVector.broadcast(F, w[wOff + r]), a);
                }
                a.intoArray(acc, aOff + c);
            }
        }

        /*
         * Tokens in lanes (other code sizes): per channel, the token vector times the weights,
         * reduced into acc[c]; lanes past count are zeroed before the product.
         */
        private void accumulateTokens(MemorySegment slice, long off, int rows, int count, int dim,
                                      float[] w, int wOff, float[] acc, int aOff) {
            long cb = codeBytes(rows);
            IntVector sh = shifts(b);
            VectorMask<Integer> hi = high(b);
            for (int c = 0; c < dim; c++) {
                FloatVector t = FloatVector.zero(F);
                for (int r0 = 0; r0 < count; r0 += L) {
                    VectorMask<Float> m = F.indexInRange(r0, count);
                    long start = (long) r0 * b / 8;
                    int n = (int) Math.min(chunkBytes, cb - start);
                    long wd = word(slice, off + 4L * dim + c * cb + start, n);
                    FloatVector k = ((FloatVector) IntVector.broadcast(I, (int) wd).blend((int) (wd >>> 32), hi)
                            .lanewise(LSHR, sh).and(levels).convert(I2F, 0))
                            .fma(Bits.fromF16(slice.get(I16, off + 2L * c)), Bits.fromF16(slice.get(I16, off + 2L * dim + 2L * c))).blend(0f, m.not());
                    t = k.fma(FloatVector.fromArray(F, w, wOff + r0, m), t);
                }
                acc[aOff + c] += t.reduceLanes(ADD);
            }
        }

        /* Four heads at a time, each channel chunk (or token vector) unpacked once for the four. */
        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {
            boolean channels = channelLanes(codeBytes(rows));
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                if (channels) {
                    accumulateChannels4(slice, off, rows, count, dim, w, wOff + j * wStride, wStride, acc, aOff + j * dim);
                } else {
                    accumulateTokens4(slice, off, rows, count, dim, w, wOff + j * wStride, wStride, acc, aOff + j * dim);
                }
            }
            for (; j < heads; j++) {
                accumulateRows0(slice, off, rows, count, dim, w, wOff + j * wStride, acc, aOff + j * dim);
            }
        }

        private void accumulateChannels4(MemorySegment slice, long off, int rows, int count, int dim,
                                         float[] w, int w0, int stride, float[] acc, int c0) {
            long cb = codeBytes(rows);
            long codes = off + 4L * dim;
            int w1 = w0 + stride, w2 = w1 + stride, w3 = w2 + stride;
            int c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;
            for (int c = 0; c < dim; c += L) {
                FloatVector s = scales(slice, off, c);
                FloatVector mn = mins(slice, off, dim, c);
                IntVector lo = IntVector.fromMemorySegment(I, slice, codes + cb * c, LE_ORDER), hi = lo;
                if (cb == 8) {
                    IntVector v1 = IntVector.fromMemorySegment(I, slice, codes + 8L * c + 4L * L, LE_ORDER);
                    hi = lo.rearrange(ODD, v1);
                    lo = lo.rearrange(EVEN, v1);
                }
                FloatVector t0 = FloatVector.fromArray(F, acc, c0 + c);
                FloatVector t1 = FloatVector.fromArray(F, acc, c1 + c);
                FloatVector t2 = FloatVector.fromArray(F, acc, c2 + c);
                FloatVector t3 = FloatVector.fromArray(F, acc, c3 + c);
                for (int half = 0; half < 2; half++) {
                    IntVector words = half == 0 ? lo : hi;
                    int r = half * perWord;
                    for (int end = Math.min(count, r + perWord); r < end; r++) {
                        FloatVector k = ((FloatVector) words.lanewise(LSHR, (r - half * perWord) * b).and(levels)
                                .convert(I2F, 0)).fma(s, mn);
                        t0 = k.fma(FloatVector.broadcast(F, w[w0 + r]), t0);
                        t1 = k.fma(FloatVector.broadcast(F, w[w1 + r]), t1);
                        t2 = k.fma(FloatVector.broadcast(F, w[w2 + r]), t2);
                        t3 = k.fma(FloatVector.broadcast(F, w[w3 + r]), t3);
                    }
                }
                t0.intoArray(acc, c0 + c);
                t1.intoArray(acc, c1 + c);
                t2.intoArray(acc, c2 + c);
                t3.intoArray(acc, c3 + c);
            }
        }

        private void accumulateTokens4(MemorySegment slice, long off, int rows, int count, int dim,
                                       float[] w, int w0, int stride, float[] acc, int c0) {
            long cb = codeBytes(rows);
            IntVector sh = shifts(b);
            VectorMask<Integer> hi = high(b);
            int w1 = w0 + stride, w2 = w1 + stride, w3 = w2 + stride;
            int c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;
            for (int c = 0; c < dim; c++) {
                FloatVector t0 = FloatVector.zero(F), t1 = t0, t2 = t0, t3 = t0;
                for (int r0 = 0; r0 < count; r0 += L) {
                    VectorMask<Float> m = F.indexInRange(r0, count);
                    long start = (long) r0 * b / 8;
                    int n = (int) Math.min(chunkBytes, cb - start);
                    long wd = word(slice, off + 4L * dim + c * cb + start, n);
                    FloatVector k = ((FloatVector) IntVector.broadcast(I, (int) wd).blend((int) (wd >>> 32), hi)
                            .lanewise(LSHR, sh).and(levels).convert(I2F, 0))
                            .fma(Bits.fromF16(slice.get(I16, off + 2L * c)), Bits.fromF16(slice.get(I16, off + 2L * dim + 2L * c))).blend(0f, m.not());
                    t0 = k.fma(FloatVector.fromArray(F, w, w0 + r0, m), t0);
                    t1 = k.fma(FloatVector.fromArray(F, w, w1 + r0, m), t1);
                    t2 = k.fma(FloatVector.fromArray(F, w, w2 + r0, m), t2);
                    t3 = k.fma(FloatVector.fromArray(F, w, w3 + r0, m), t3);
                }
                acc[c0 + c] += t0.reduceLanes(ADD);
                acc[c1 + c] += t1.reduceLanes(ADD);
                acc[c2 + c] += t2.reduceLanes(ADD);
                acc[c3 + c] += t3.reduceLanes(ADD);
            }
        }
    }
}
