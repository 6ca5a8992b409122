package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Optional;

import static dev.kvcache.quant.Bits.F32;
import static dev.kvcache.quant.Bits.I16;
import static jdk.incubator.vector.VectorOperators.ADD;
import static jdk.incubator.vector.VectorOperators.B2F;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.EQ;
import static jdk.incubator.vector.VectorOperators.F2I;
import static jdk.incubator.vector.VectorOperators.GE;
import static jdk.incubator.vector.VectorOperators.GT;
import static jdk.incubator.vector.VectorOperators.I2B;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.I2S;
import static jdk.incubator.vector.VectorOperators.LE;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.LT;
import static jdk.incubator.vector.VectorOperators.MAX;
import static jdk.incubator.vector.VectorOperators.OR;
import static jdk.incubator.vector.VectorOperators.S2I;

/*
 * Vector API (jdk.incubator.vector) codecs for F32, F16, BF16, Q8_0 and Q4_0, the encoder and read
 * kernels of FP8, the KIVI codecs (in VectorKivi) and the softmax arithmetic (VectorSoftmax). Only
 * Quantizers.loadVectorProvider names this class (as a string), so nothing links against the
 * incubator module unless it is present.
 *
 * Species: one float species F of L lanes (the preferred width, at least 256 bits; capped by
 * -Dkvcache.vector.bits=256), and the int/short/byte species with the same lane count, so a load of
 * L bytes or shorts widens to exactly one float vector (convertShape part 0). L is 8 or 16, which
 * divides the 32-value groups of Q8_0 and the 16-byte nibble arrays of Q4_0, so those formats have
 * no tails; F32/F16/BF16 rows of any length finish with a scalar tail.
 *
 * Encoded bytes are identical to the scalar codecs (tested): Q8_0's roundf is done as
 * truncate-then-adjust on the exact fraction, Q4_0 uses mul then add (no FMA) as ggml does, and the
 * fp16/bf16 encoders are branch-free round-to-nearest-even bit manipulations of clamped values.
 * Dot products and weighted sums accumulate per lane with FMA, so their last bits differ from the
 * scalar sums (tested against float64).
 */
final class VectorProvider implements KernelProvider {

    static final VectorSpecies<Float> F;
    static final VectorSpecies<Integer> I;
    static final VectorSpecies<Short> S;
    static final VectorSpecies<Byte> B;
    /** 32 bytes: one Q8_0 block's codes. */
    static final VectorSpecies<Byte> B32 = ByteVector.SPECIES_256;
    static final int L;
    static final ByteOrder LE_ORDER = ByteOrder.LITTLE_ENDIAN;

    static {
        int preferred = FloatVector.SPECIES_PREFERRED.vectorBitSize();
        int bits = Math.max(256, Math.min(preferred, Integer.getInteger("kvcache.vector.bits", preferred)));
        F = VectorSpecies.of(float.class, VectorShape.forBitSize(bits));
        L = F.length();
        I = VectorSpecies.of(int.class, VectorShape.forBitSize(bits));
        S = VectorSpecies.of(short.class, VectorShape.forBitSize(bits / 2));
        B = VectorSpecies.of(byte.class, VectorShape.forBitSize(bits / 4));
    }

    private VectorProvider() {
    }

    /** The provider, or empty when this CPU's vectors are narrower than 256 bits. */
    static Optional<KernelProvider> create() {
        if (FloatVector.SPECIES_PREFERRED.vectorBitSize() < 256) {
            return Optional.empty();
        }
        return Optional.of(new VectorProvider());
    }

    @Override
    public String name() {
        return "vector(" + F.vectorBitSize() + "-bit)";
    }

    @Override
    public SoftmaxKernels softmax() {
        return VectorSoftmax.INSTANCE;
    }

    @Override
    public Codec codec(KvFormat f, boolean keys) {
        if (f == KvFormats.F32) {
            return new F32Codec(keys);
        } else if (f == KvFormats.F16) {
            return new F16Codec(keys);
        } else if (f == KvFormats.BF16) {
            return new BF16Codec(keys);
        } else if (f == KvFormats.Q8_0) {
            return new Q8Codec(keys);
        } else if (f == KvFormats.Q4_0) {
            return new Q4Codec(keys);
        } else if (f == KvFormats.FP8_E4M3 || f == KvFormats.FP8_E5M2) {
            return new Fp8(f, keys);
        } else if (f == KvFormats.KIVI_4 || f == KvFormats.KIVI_2) {
            return keys ? new VectorKivi.Keys(f) : new VectorKivi.Values(f);
        }
        return null;
    }

    // ================================================================== shared helpers

    /** Throws on the first non-finite value; vector scan, scalar for the tail and the failing chunk. */
    static void finite(float[] src, int off, int n) {
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            if (!FloatVector.fromArray(F, src, off + i).abs().compare(LE, Float.MAX_VALUE).allTrue()) {
                break;
            }
        }
        Checks.finite(src, off + i, n - i);
    }

    /** max |x| of the 32 values at src[off]; NaN if any is NaN. */
    static float amax32(float[] src, int off) {
        FloatVector m = FloatVector.fromArray(F, src, off).abs();
        for (int k = L; k < KvFormats.GROUP; k += L) {
            m = m.max(FloatVector.fromArray(F, src, off + k).abs());
        }
        return m.reduceLanes(MAX);
    }

    static FloatVector bytesToFloats(ByteVector b) {
        return (FloatVector) b.convertShape(B2F, F, 0);
    }

    /* fp16 bits (in the low 16 bits of each short lane) to float, exact for every pattern. */
    static FloatVector halfToFloat(ShortVector h) {
        IntVector x = (IntVector) h.convertShape(S2I, I, 0);
        IntVector em = x.and(0x7FFF);
        IntVector shifted = em.lanewise(LSHL, 13);
        // exponent rebias by multiplication: exact for normals and subnormals (2^112 = 2^(127-15))
        IntVector bits = shifted.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts();
        bits = bits.blend(shifted.or(0x7F800000), em.compare(GE, 0x7C00));   // infinities and NaNs
        bits = bits.lanewise(OR, 0x00400000, em.compare(GT, 0x7C00));       // NaNs come out quiet, as in Float.float16ToFloat
        return bits.or(x.and(0x8000).lanewise(LSHL, 16)).reinterpretAsFloats();
    }

    /* float to fp16 bits, round to nearest even; v must be finite and within +-65504 (clamped by caller). */
    static ShortVector floatToHalf(FloatVector v) {
        IntVector u = v.reinterpretAsInts();
        IntVector a = u.and(0x7FFFFFFF);
        // below 2^-14 the result is subnormal: adding 0.5f aligns the value to the fp16 subnormal
        // step 2^-24 and the FPU rounds to nearest even; the mantissa bits are the code.
        IntVector sub = a.reinterpretAsFloats().add(0.5f).reinterpretAsInts().sub(126 << 23);
        // normal: rebias the exponent, add the rounding bias 0xFFF plus the lowest kept bit (ties to even)
        IntVector odd = a.lanewise(LSHR, 13).and(1);
        IntVector nrm = a.add(((15 - 127) << 23) + 0xFFF).add(odd).lanewise(LSHR, 13);
        IntVector o = nrm.blend(sub, a.compare(LT, 113 << 23));
        o = o.or(u.lanewise(LSHR, 16).and(0x8000));
        return (ShortVector) o.convertShape(I2S, S, 0);
    }

    // ================================================================== F32

    static final class F32Codec extends RowCodec {
        F32Codec(boolean keys) {
            super(KvFormats.F32, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return 4L * dim;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            finite(src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                FloatVector.fromArray(F, src, srcOff + i).intoMemorySegment(dst, dstOff + 4L * i, LE_ORDER);
            }
            for (; i < dim; i++) {
                dst.set(F32, dstOff + 4L * i, src[srcOff + i]);
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            // a bulk copy: faster than vector loads and stores (QuantizerBenchmark: the F32 decode
            // ran at 0.63x of copyFp32 as a vector loop, 2026-11-25)
            MemorySegment.copy(src, F32, off, dst, dstOff, dim);
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            FloatVector acc = FloatVector.zero(F);
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                FloatVector k = FloatVector.fromMemorySegment(F, src, off + 4L * i, LE_ORDER);
                acc = k.fma(FloatVector.fromArray(F, q, qOff + i), acc);
            }
            float s = acc.reduceLanes(ADD);
            for (; i < dim; i++) {
                s += q[qOff + i] * src.get(F32, off + 4L * i);
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            FloatVector wv = FloatVector.broadcast(F, w);
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                FloatVector v = FloatVector.fromMemorySegment(F, src, off + 4L * i, LE_ORDER);
                v.fma(wv, FloatVector.fromArray(F, acc, aOff + i)).intoArray(acc, aOff + i);
            }
            for (; i < dim; i++) {
                acc[aOff + i] += w * src.get(F32, off + 4L * i);
            }
        }

        /*
         * Four rows at a time with independent accumulators: each query chunk is loaded once for
         * four rows and the four FMA chains overlap (one chain per row is latency-bound). Trade-off
         * measured 2026-11-25 (2-core AVX-512 VM): ~1.3x faster on cached slices and in paged decode
         * (which reads each K slice once per query head of a group), but ~1.7x slower than one row
         * at a time on a single pass over slices streamed from DRAM (the interleaved rows defeat
         * the hardware prefetcher).
         */
        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            long rb = 4L * dim;
            int bound = F.loopBound(dim);
            int r = 0;
            for (; r + 4 <= count; r += 4) {
                long o0 = off + r * rb;
                long o1 = o0 + rb;
                long o2 = o1 + rb;
                long o3 = o2 + rb;
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                for (int i = 0; i < bound; i += L) {
                    FloatVector qv = FloatVector.fromArray(F, q, qOff + i);
                    long b = 4L * i;
                    a0 = FloatVector.fromMemorySegment(F, slice, o0 + b, LE_ORDER).fma(qv, a0);
                    a1 = FloatVector.fromMemorySegment(F, slice, o1 + b, LE_ORDER).fma(qv, a1);
                    a2 = FloatVector.fromMemorySegment(F, slice, o2 + b, LE_ORDER).fma(qv, a2);
                    a3 = FloatVector.fromMemorySegment(F, slice, o3 + b, LE_ORDER).fma(qv, a3);
                }
                float s0 = a0.reduceLanes(ADD), s1 = a1.reduceLanes(ADD), s2 = a2.reduceLanes(ADD), s3 = a3.reduceLanes(ADD);
                for (int i = bound; i < dim; i++) {
                    float qi = q[qOff + i];
                    long b = 4L * i;
                    s0 += qi * slice.get(F32, o0 + b);
                    s1 += qi * slice.get(F32, o1 + b);
                    s2 += qi * slice.get(F32, o2 + b);
                    s3 += qi * slice.get(F32, o3 + b);
                }
                scores[sOff + r] = scale * s0;
                scores[sOff + r + 1] = scale * s1;
                scores[sOff + r + 2] = scale * s2;
                scores[sOff + r + 3] = scale * s3;
            }
            for (; r < count; r++) {
                scores[sOff + r] = scale * dotRow0(slice, off + r * rb, dim, q, qOff);
            }
        }

        /*
         * Chunk outer, rows inner: eight (then four, then one) accumulator chunks stay in registers
         * across all rows, so acc is loaded and stored once per slice instead of once per row, and
         * the FMA chains are independent. Eight chunks cover a whole 128-value row at 512 bits, so
         * the slice is still read in address order: with four-chunk groups (half a row per pass) a
         * slice streamed from DRAM was ~1.2x slower than the row-at-a-time loop (QuantizerBenchmark,
         * 131072 tokens); with eight it is on par. Then a scalar tail.
         */
        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            long rb = 4L * dim;
            long cb = 4L * L;
            int i = 0;
            for (; i + 8 * L <= dim; i += 8 * L) {
                int a = aOff + i;
                FloatVector a0 = FloatVector.fromArray(F, acc, a);
                FloatVector a1 = FloatVector.fromArray(F, acc, a + L);
                FloatVector a2 = FloatVector.fromArray(F, acc, a + 2 * L);
                FloatVector a3 = FloatVector.fromArray(F, acc, a + 3 * L);
                FloatVector a4 = FloatVector.fromArray(F, acc, a + 4 * L);
                FloatVector a5 = FloatVector.fromArray(F, acc, a + 5 * L);
                FloatVector a6 = FloatVector.fromArray(F, acc, a + 6 * L);
                FloatVector a7 = FloatVector.fromArray(F, acc, a + 7 * L);
                long o = off + 4L * i;
                for (int r = 0; r < count; r++, o += rb) {
                    FloatVector wv = FloatVector.broadcast(F, w[wOff + r]);
                    a0 = FloatVector.fromMemorySegment(F, slice, o, LE_ORDER).fma(wv, a0);
                    a1 = FloatVector.fromMemorySegment(F, slice, o + cb, LE_ORDER).fma(wv, a1);
                    a2 = FloatVector.fromMemorySegment(F, slice, o + 2 * cb, LE_ORDER).fma(wv, a2);
                    a3 = FloatVector.fromMemorySegment(F, slice, o + 3 * cb, LE_ORDER).fma(wv, a3);
                    a4 = FloatVector.fromMemorySegment(F, slice, o + 4 * cb, LE_ORDER).fma(wv, a4);
                    a5 = FloatVector.fromMemorySegment(F, slice, o + 5 * cb, LE_ORDER).fma(wv, a5);
                    a6 = FloatVector.fromMemorySegment(F, slice, o + 6 * cb, LE_ORDER).fma(wv, a6);
                    a7 = FloatVector.fromMemorySegment(F, slice, o + 7 * cb, LE_ORDER).fma(wv, a7);
                }
                a0.intoArray(acc, a);
                a1.intoArray(acc, a + L);
                a2.intoArray(acc, a + 2 * L);
                a3.intoArray(acc, a + 3 * L);
                a4.intoArray(acc, a + 4 * L);
                a5.intoArray(acc, a + 5 * L);
                a6.intoArray(acc, a + 6 * L);
                a7.intoArray(acc, a + 7 * L);
            }
            for (; i + 4 * L <= dim; i += 4 * L) {
                int a = aOff + i;
                FloatVector a0 = FloatVector.fromArray(F, acc, a);
                FloatVector a1 = FloatVector.fromArray(F, acc, a + L);
                FloatVector a2 = FloatVector.fromArray(F, acc, a + 2 * L);
                FloatVector a3 = FloatVector.fromArray(F, acc, a + 3 * L);
                long o = off + 4L * i;
                for (int r = 0; r < count; r++, o += rb) {
                    FloatVector wv = FloatVector.broadcast(F, w[wOff + r]);
                    a0 = FloatVector.fromMemorySegment(F, slice, o, LE_ORDER).fma(wv, a0);
                    a1 = FloatVector.fromMemorySegment(F, slice, o + cb, LE_ORDER).fma(wv, a1);
                    a2 = FloatVector.fromMemorySegment(F, slice, o + 2 * cb, LE_ORDER).fma(wv, a2);
                    a3 = FloatVector.fromMemorySegment(F, slice, o + 3 * cb, LE_ORDER).fma(wv, a3);
                }
                a0.intoArray(acc, a);
                a1.intoArray(acc, a + L);
                a2.intoArray(acc, a + 2 * L);
                a3.intoArray(acc, a + 3 * L);
            }
            for (; i + L <= dim; i += L) {
                FloatVector a0 = FloatVector.fromArray(F, acc, aOff + i);
                long o = off + 4L * i;
                for (int r = 0; r < count; r++, o += rb) {
                    a0 = FloatVector.fromMemorySegment(F, slice, o, LE_ORDER).fma(FloatVector.broadcast(F, w[wOff + r]), a0);
                }
                a0.intoArray(acc, aOff + i);
            }
            for (; i < dim; i++) {
                float s = acc[aOff + i];
                long o = off + 4L * i;
                for (int r = 0; r < count; r++, o += rb) {
                    s += w[wOff + r] * slice.get(F32, o);
                }
                acc[aOff + i] = s;
            }
        }

        /*
         * Grouped-query attention: the query heads of one KV head read the same slice. Four heads
         * at a time (the rest through dotRows0), four rows at a time (then two): each K chunk is
         * loaded once and FMA'd into the 4 heads' accumulators, and each query chunk is loaded
         * once for the four rows (sixteen independent chains; loads per FMA 0.5 instead of 0.75
         * with two rows). Per (row, head) the sum runs in the same order as dotRows0.
         */
        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
            long rb = 4L * dim;
            int bound = F.loopBound(dim);
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;
                int s0 = sOff + j * rows, s1 = s0 + rows, s2 = s1 + rows, s3 = s2 + rows;
                int r = 0;
                if (bound == dim) {
                    for (; r + 4 <= count; r += 4) {
                        long oa = off + r * rb;
                        long ob = oa + rb;
                        long oc = ob + rb;
                        long od = oc + rb;
                        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                        FloatVector c0 = a0, c1 = a0, c2 = a0, c3 = a0;
                        FloatVector d0 = a0, d1 = a0, d2 = a0, d3 = a0;
                        for (int i = 0; i < dim; i += L) {
                            long e = 4L * i;
                            FloatVector ka = FloatVector.fromMemorySegment(F, slice, oa + e, LE_ORDER);
                            FloatVector kb = FloatVector.fromMemorySegment(F, slice, ob + e, LE_ORDER);
                            FloatVector kc = FloatVector.fromMemorySegment(F, slice, oc + e, LE_ORDER);
                            FloatVector kd = FloatVector.fromMemorySegment(F, slice, od + e, LE_ORDER);
                            FloatVector qv = FloatVector.fromArray(F, q, q0 + i);
                            a0 = ka.fma(qv, a0);
                            b0 = kb.fma(qv, b0);
                            c0 = kc.fma(qv, c0);
                            d0 = kd.fma(qv, d0);
                            qv = FloatVector.fromArray(F, q, q1 + i);
                            a1 = ka.fma(qv, a1);
                            b1 = kb.fma(qv, b1);
                            c1 = kc.fma(qv, c1);
                            d1 = kd.fma(qv, d1);
                            qv = FloatVector.fromArray(F, q, q2 + i);
                            a2 = ka.fma(qv, a2);
                            b2 = kb.fma(qv, b2);
                            c2 = kc.fma(qv, c2);
                            d2 = kd.fma(qv, d2);
                            qv = FloatVector.fromArray(F, q, q3 + i);
                            a3 = ka.fma(qv, a3);
                            b3 = kb.fma(qv, b3);
                            c3 = kc.fma(qv, c3);
                            d3 = kd.fma(qv, d3);
                        }
                        scores[s0 + r] = scale * a0.reduceLanes(ADD);
                        scores[s1 + r] = scale * a1.reduceLanes(ADD);
                        scores[s2 + r] = scale * a2.reduceLanes(ADD);
                        scores[s3 + r] = scale * a3.reduceLanes(ADD);
                        scores[s0 + r + 1] = scale * b0.reduceLanes(ADD);
                        scores[s1 + r + 1] = scale * b1.reduceLanes(ADD);
                        scores[s2 + r + 1] = scale * b2.reduceLanes(ADD);
                        scores[s3 + r + 1] = scale * b3.reduceLanes(ADD);
                        scores[s0 + r + 2] = scale * c0.reduceLanes(ADD);
                        scores[s1 + r + 2] = scale * c1.reduceLanes(ADD);
                        scores[s2 + r + 2] = scale * c2.reduceLanes(ADD);
                        scores[s3 + r + 2] = scale * c3.reduceLanes(ADD);
                        scores[s0 + r + 3] = scale * d0.reduceLanes(ADD);
                        scores[s1 + r + 3] = scale * d1.reduceLanes(ADD);
                        scores[s2 + r + 3] = scale * d2.reduceLanes(ADD);
                        scores[s3 + r + 3] = scale * d3.reduceLanes(ADD);
                    }
                }
                for (; r + 2 <= count; r += 2) {
                    long oa = off + r * rb;
                    long ob = oa + rb;
                    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                    FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                    for (int i = 0; i < bound; i += L) {
                        long e = 4L * i;
                        FloatVector ka = FloatVector.fromMemorySegment(F, slice, oa + e, LE_ORDER);
                        FloatVector kb = FloatVector.fromMemorySegment(F, slice, ob + e, LE_ORDER);
                        FloatVector qv = FloatVector.fromArray(F, q, q0 + i);
                        a0 = ka.fma(qv, a0);
                        b0 = kb.fma(qv, b0);
                        qv = FloatVector.fromArray(F, q, q1 + i);
                        a1 = ka.fma(qv, a1);
                        b1 = kb.fma(qv, b1);
                        qv = FloatVector.fromArray(F, q, q2 + i);
                        a2 = ka.fma(qv, a2);
                        b2 = kb.fma(qv, b2);
                        qv = FloatVector.fromArray(F, q, q3 + i);
                        a3 = ka.fma(qv, a3);
                        b3 = kb.fma(qv, b3);
                    }
                    float u0 = a0.reduceLanes(ADD), u1 = a1.reduceLanes(ADD), u2 = a2.reduceLanes(ADD), u3 = a3.reduceLanes(ADD);
                    float v0 = b0.reduceLanes(ADD), v1 = b1.reduceLanes(ADD), v2 = b2.reduceLanes(ADD), v3 = b3.reduceLanes(ADD);
                    for (int i = bound; i < dim; i++) {
                        long e = 4L * i;
                        float ka = slice.get(F32, oa + e);
                        float kb = slice.get(F32, ob + e);
                        u0 += q[q0 + i] * ka;
                        v0 += q[q0 + i] * kb;
                        u1 += q[q1 + i] * ka;
                        v1 += q[q1 + i] * kb;
                        u2 += q[q2 + i] * ka;
                        v2 += q[q2 + i] * kb;
                        u3 += q[q3 + i] * ka;
                        v3 += q[q3 + i] * kb;
                    }
                    scores[s0 + r] = scale * u0;
                    scores[s1 + r] = scale * u1;
                    scores[s2 + r] = scale * u2;
                    scores[s3 + r] = scale * u3;
                    scores[s0 + r + 1] = scale * v0;
                    scores[s1 + r + 1] = scale * v1;
                    scores[s2 + r + 1] = scale * v2;
                    scores[s3 + r + 1] = scale * v3;
                }
                for (; r < count; r++) {
                    long oa = off + r * rb;
                    scores[s0 + r] = scale * dotRow0(slice, oa, dim, q, q0);
                    scores[s1 + r] = scale * dotRow0(slice, oa, dim, q, q1);
                    scores[s2 + r] = scale * dotRow0(slice, oa, dim, q, q2);
                    scores[s3 + r] = scale * dotRow0(slice, oa, dim, q, q3);
                }
            }
            for (; j < heads; j++) {
                dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * rows);
            }
        }

        /*
         * accumulateRowsGroup stays the per-head default for F32: its accumulateRows0 holds a whole
         * 128-value row (eight chunks) in registers and so reads a slice streamed from DRAM in
         * address order. A four-head kernel cannot hold 4 x 8 chunks, and with two-chunk passes
         * (row stride 4*dim bytes) paged decode at 32768 tokens got ~1.1x slower (2026-11-25,
         * kvcache-offheap/bench-results/group-kernels-2026-11-25.txt); the group dot is kept.
         * Retried after paged decode began touching the next block ahead (so V slices come from
         * cache): 4 heads x 2 chunks measured the same as the per-head passes (18.1-19.8 vs
         * 18.9-19.0 ms per 32k step, 2026-11-25), so the simpler per-head path stays.
         */
    }

    // ================================================================== F16

    static final class F16Codec extends RowCodec {
        F16Codec(boolean keys) {
            super(KvFormats.F16, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return 2L * dim;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            finite(src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                FloatVector v = FloatVector.fromArray(F, src, srcOff + i).max(-Bits.F16_MAX).min(Bits.F16_MAX);
                floatToHalf(v).intoMemorySegment(dst, dstOff + 2L * i, LE_ORDER);
            }
            for (; i < dim; i++) {
                dst.set(I16, dstOff + 2L * i, Bits.toF16Saturating(src[srcOff + i]));
            }
        }

        private static FloatVector load(MemorySegment src, long off) {
            return halfToFloat(ShortVector.fromMemorySegment(S, src, off, LE_ORDER));
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                load(src, off + 2L * i).intoArray(dst, dstOff + i);
            }
            for (; i < dim; i++) {
                dst[dstOff + i] = Bits.fromF16(src.get(I16, off + 2L * i));
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            FloatVector acc = FloatVector.zero(F);
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                acc = load(src, off + 2L * i).fma(FloatVector.fromArray(F, q, qOff + i), acc);
            }
            float s = acc.reduceLanes(ADD);
            for (; i < dim; i++) {
                s += q[qOff + i] * Bits.fromF16(src.get(I16, off + 2L * i));
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            FloatVector wv = FloatVector.broadcast(F, w);
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                load(src, off + 2L * i).fma(wv, FloatVector.fromArray(F, acc, aOff + i)).intoArray(acc, aOff + i);
            }
            for (; i < dim; i++) {
                acc[aOff + i] += w * Bits.fromF16(src.get(I16, off + 2L * i));
            }
        }

        /*
         * Four rows at a time with independent accumulators, and acc chunks held in registers across
         * rows in accumulateRows (see F32Codec for why).
         * The fp16 widening is halfToFloat inlined by hand (a helper returning a vector is not
         * reliably inlined into a method this large and its result gets boxed), one op shorter: the
         * S2I widening sign-extends, so bit 31 of x already is the sign and (x << 17) >>> 4 is the
         * exponent+mantissa shifted into place; and without the NaN quieting, which cannot change a
         * product or a sum.
         */
        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            long rb = 2L * dim;
            int bound = F.loopBound(dim);
            int r = 0;
            for (; r + 4 <= count; r += 4) {
                long o0 = off + r * rb;
                long o1 = o0 + rb;
                long o2 = o1 + rb;
                long o3 = o2 + rb;
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                for (int i = 0; i < bound; i += L) {
                    FloatVector qv = FloatVector.fromArray(F, q, qOff + i);
                    long b = 2L * i;
                    IntVector x0 = (IntVector) ShortVector.fromMemorySegment(S, slice, o0 + b, LE_ORDER).convertShape(S2I, I, 0);
                    IntVector t0 = x0.lanewise(LSHL, 17).lanewise(LSHR, 4);
                    IntVector m0 = t0.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t0.or(0x7F800000), t0.compare(GE, 0x7C00 << 13));
                    FloatVector k0 = m0.or(x0.and(0x80000000)).reinterpretAsFloats();
                    a0 = k0.fma(qv, a0);
                    IntVector x1 = (IntVector) ShortVector.fromMemorySegment(S, slice, o1 + b, LE_ORDER).convertShape(S2I, I, 0);
                    IntVector t1 = x1.lanewise(LSHL, 17).lanewise(LSHR, 4);
                    IntVector m1 = t1.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t1.or(0x7F800000), t1.compare(GE, 0x7C00 << 13));
                    FloatVector k1 = m1.or(x1.and(0x80000000)).reinterpretAsFloats();
                    a1 = k1.fma(qv, a1);
                    IntVector x2 = (IntVector) ShortVector.fromMemorySegment(S, slice, o2 + b, LE_ORDER).convertShape(S2I, I, 0);
                    IntVector t2 = x2.lanewise(LSHL, 17).lanewise(LSHR, 4);
                    IntVector m2 = t2.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t2.or(0x7F800000), t2.compare(GE, 0x7C00 << 13));
                    FloatVector k2 = m2.or(x2.and(0x80000000)).reinterpretAsFloats();
                    a2 = k2.fma(qv, a2);
                    IntVector x3 = (IntVector) ShortVector.fromMemorySegment(S, slice, o3 + b, LE_ORDER).convertShape(S2I, I, 0);
                    IntVector t3 = x3.lanewise(LSHL, 17).lanewise(LSHR, 4);
                    IntVector m3 = t3.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t3.or(0x7F800000), t3.compare(GE, 0x7C00 << 13));
                    FloatVector k3 = m3.or(x3.and(0x80000000)).reinterpretAsFloats();
                    a3 = k3.fma(qv, a3);
                }
                float s0 = a0.reduceLanes(ADD), s1 = a1.reduceLanes(ADD), s2 = a2.reduceLanes(ADD), s3 = a3.reduceLanes(ADD);
                for (int i = bound; i < dim; i++) {
                    float qi = q[qOff + i];
                    long b = 2L * i;
                    s0 += qi * Bits.fromF16(slice.get(I16, o0 + b));
                    s1 += qi * Bits.fromF16(slice.get(I16, o1 + b));
                    s2 += qi * Bits.fromF16(slice.get(I16, o2 + b));
                    s3 += qi * Bits.fromF16(slice.get(I16, o3 + b));
                }
                scores[sOff + r] = scale * s0;
                scores[sOff + r + 1] = scale * s1;
                scores[sOff + r + 2] = scale * s2;
                scores[sOff + r + 3] = scale * s3;
            }
            for (; r < count; r++) {
                scores[sOff + r] = scale * dotRow0(slice, off + r * rb, dim, q, qOff);
            }
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            long rb = 2L * dim;
            long cb = 2L * L;
            int i = 0;
            for (; i + 4 * L <= dim; i += 4 * L) {
                int a = aOff + i;
                FloatVector a0 = FloatVector.fromArray(F, acc, a);
                FloatVector a1 = FloatVector.fromArray(F, acc, a + L);
                FloatVector a2 = FloatVector.fromArray(F, acc, a + 2 * L);
                FloatVector a3 = FloatVector.fromArray(F, acc, a + 3 * L);
                long o = off + 2L * i;
                for (int r = 0; r < count; r++, o += rb) {
                    FloatVector wv = FloatVector.broadcast(F, w[wOff + r]);
                        IntVector x0 = (IntVector) ShortVector.fromMemorySegment(S, slice, o, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector t0 = x0.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        IntVector m0 = t0.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t0.or(0x7F800000), t0.compare(GE, 0x7C00 << 13));
                        FloatVector k0 = m0.or(x0.and(0x80000000)).reinterpretAsFloats();
                        a0 = k0.fma(wv, a0);
                        IntVector x1 = (IntVector) ShortVector.fromMemorySegment(S, slice, o + 1 * cb, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector t1 = x1.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        IntVector m1 = t1.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t1.or(0x7F800000), t1.compare(GE, 0x7C00 << 13));
                        FloatVector k1 = m1.or(x1.and(0x80000000)).reinterpretAsFloats();
                        a1 = k1.fma(wv, a1);
                        IntVector x2 = (IntVector) ShortVector.fromMemorySegment(S, slice, o + 2 * cb, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector t2 = x2.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        IntVector m2 = t2.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t2.or(0x7F800000), t2.compare(GE, 0x7C00 << 13));
                        FloatVector k2 = m2.or(x2.and(0x80000000)).reinterpretAsFloats();
                        a2 = k2.fma(wv, a2);
                        IntVector x3 = (IntVector) ShortVector.fromMemorySegment(S, slice, o + 3 * cb, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector t3 = x3.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        IntVector m3 = t3.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t3.or(0x7F800000), t3.compare(GE, 0x7C00 << 13));
                        FloatVector k3 = m3.or(x3.and(0x80000000)).reinterpretAsFloats();
                        a3 = k3.fma(wv, a3);
                }
                a0.intoArray(acc, a);
                a1.intoArray(acc, a + L);
                a2.intoArray(acc, a + 2 * L);
                a3.intoArray(acc, a + 3 * L);
            }
            for (; i + L <= dim; i += L) {
                FloatVector a0 = FloatVector.fromArray(F, acc, aOff + i);
                long o = off + 2L * i;
                for (int r = 0; r < count; r++, o += rb) {
                        IntVector x0 = (IntVector) ShortVector.fromMemorySegment(S, slice, o, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector t0 = x0.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        IntVector m0 = t0.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(t0.or(0x7F800000), t0.compare(GE, 0x7C00 << 13));
                        FloatVector k0 = m0.or(x0.and(0x80000000)).reinterpretAsFloats();
                    a0 = k0.fma(FloatVector.broadcast(F, w[wOff + r]), a0);
                }
                a0.intoArray(acc, aOff + i);
            }
            for (; i < dim; i++) {
                float s = acc[aOff + i];
                long o = off + 2L * i;
                for (int r = 0; r < count; r++, o += rb) {
                    s += w[wOff + r] * Bits.fromF16(slice.get(I16, o));
                }
                acc[aOff + i] = s;
            }
        }

        /*
         * Grouped-query attention: the query heads of one KV head read the same slice. Four heads
         * at a time (the rest through dotRows0), two rows at a time: each K chunk is loaded and widened
         * once and FMA'd into the 4 heads' accumulators (eight independent chains); the query
         * chunks come from L1. Per (row, head) the sum runs in the same order as dotRows0.
         */
        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
            long rb = 2L * dim;
            int bound = F.loopBound(dim);
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;
                int s0 = sOff + j * rows, s1 = s0 + rows, s2 = s1 + rows, s3 = s2 + rows;
                int r = 0;
                for (; r + 2 <= count; r += 2) {
                    long oa = off + r * rb;
                    long ob = oa + rb;
                    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                    FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                    for (int i = 0; i < bound; i += L) {
                        long e = 2L * i;
                        IntVector xka = (IntVector) ShortVector.fromMemorySegment(S, slice, oa + e, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector tka = xka.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        FloatVector ka = tka.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(tka.or(0x7F800000), tka.compare(GE, 0x7C00 << 13))
                                .or(xka.and(0x80000000)).reinterpretAsFloats();
                        IntVector xkb = (IntVector) ShortVector.fromMemorySegment(S, slice, ob + e, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector tkb = xkb.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        FloatVector kb = tkb.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(tkb.or(0x7F800000), tkb.compare(GE, 0x7C00 << 13))
                                .or(xkb.and(0x80000000)).reinterpretAsFloats();
                        FloatVector qv = FloatVector.fromArray(F, q, q0 + i);
                        a0 = ka.fma(qv, a0);
                        b0 = kb.fma(qv, b0);
                        qv = FloatVector.fromArray(F, q, q1 + i);
                        a1 = ka.fma(qv, a1);
                        b1 = kb.fma(qv, b1);
                        qv = FloatVector.fromArray(F, q, q2 + i);
                        a2 = ka.fma(qv, a2);
                        b2 = kb.fma(qv, b2);
                        qv = FloatVector.fromArray(F, q, q3 + i);
                        a3 = ka.fma(qv, a3);
                        b3 = kb.fma(qv, b3);
                    }
                    float u0 = a0.reduceLanes(ADD), u1 = a1.reduceLanes(ADD), u2 = a2.reduceLanes(ADD), u3 = a3.reduceLanes(ADD);
                    float v0 = b0.reduceLanes(ADD), v1 = b1.reduceLanes(ADD), v2 = b2.reduceLanes(ADD), v3 = b3.reduceLanes(ADD);
                    for (int i = bound; i < dim; i++) {
                        long e = 2L * i;
                        float ka = Bits.fromF16(slice.get(I16, oa + e));
                        float kb = Bits.fromF16(slice.get(I16, ob + e));
                        u0 += q[q0 + i] * ka;
                        v0 += q[q0 + i] * kb;
                        u1 += q[q1 + i] * ka;
                        v1 += q[q1 + i] * kb;
                        u2 += q[q2 + i] * ka;
                        v2 += q[q2 + i] * kb;
                        u3 += q[q3 + i] * ka;
                        v3 += q[q3 + i] * kb;
                    }
                    scores[s0 + r] = scale * u0;
                    scores[s1 + r] = scale * u1;
                    scores[s2 + r] = scale * u2;
                    scores[s3 + r] = scale * u3;
                    scores[s0 + r + 1] = scale * v0;
                    scores[s1 + r + 1] = scale * v1;
                    scores[s2 + r + 1] = scale * v2;
                    scores[s3 + r + 1] = scale * v3;
                }
                for (; r < count; r++) {
                    long oa = off + r * rb;
                    scores[s0 + r] = scale * dotRow0(slice, oa, dim, q, q0);
                    scores[s1 + r] = scale * dotRow0(slice, oa, dim, q, q1);
                    scores[s2 + r] = scale * dotRow0(slice, oa, dim, q, q2);
                    scores[s3 + r] = scale * dotRow0(slice, oa, dim, q, q3);
                }
            }
            for (; j < heads; j++) {
                dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * rows);
            }
        }

        /*
         * Grouped-query attention: chunk pair outer, rows inner, four heads at a time (the rest
         * through accumulateRows0): the 4 heads x 2 chunks of acc stay in registers across all rows,
         * and each V chunk is loaded and widened once per row for the four heads instead of
         * once per head. Per head and element the sum runs in row order as in accumulateRows0.
         */
        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int heads, float[] acc, int aOff) {
            long rb = 2L * dim;
            long cb = 2L * L;
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                int w0 = wOff + j * rows, w1 = w0 + rows, w2 = w1 + rows, w3 = w2 + rows;
                int c0 = aOff + j * dim, c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;
                int i = 0;
                for (; i + 2 * L <= dim; i += 2 * L) {
                    FloatVector x0 = FloatVector.fromArray(F, acc, c0 + i), y0 = FloatVector.fromArray(F, acc, c0 + i + L);
                    FloatVector x1 = FloatVector.fromArray(F, acc, c1 + i), y1 = FloatVector.fromArray(F, acc, c1 + i + L);
                    FloatVector x2 = FloatVector.fromArray(F, acc, c2 + i), y2 = FloatVector.fromArray(F, acc, c2 + i + L);
                    FloatVector x3 = FloatVector.fromArray(F, acc, c3 + i), y3 = FloatVector.fromArray(F, acc, c3 + i + L);
                    long o = off + 2L * i;
                    for (int r = 0; r < count; r++, o += rb) {
                        IntVector xva = (IntVector) ShortVector.fromMemorySegment(S, slice, o, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector tva = xva.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        FloatVector va = tva.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(tva.or(0x7F800000), tva.compare(GE, 0x7C00 << 13))
                                .or(xva.and(0x80000000)).reinterpretAsFloats();
                        IntVector xvb = (IntVector) ShortVector.fromMemorySegment(S, slice, o + cb, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector tvb = xvb.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        FloatVector vb = tvb.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(tvb.or(0x7F800000), tvb.compare(GE, 0x7C00 << 13))
                                .or(xvb.and(0x80000000)).reinterpretAsFloats();
                        FloatVector wv = FloatVector.broadcast(F, w[w0 + r]);
                        x0 = va.fma(wv, x0);
                        y0 = vb.fma(wv, y0);
                        wv = FloatVector.broadcast(F, w[w1 + r]);
                        x1 = va.fma(wv, x1);
                        y1 = vb.fma(wv, y1);
                        wv = FloatVector.broadcast(F, w[w2 + r]);
                        x2 = va.fma(wv, x2);
                        y2 = vb.fma(wv, y2);
                        wv = FloatVector.broadcast(F, w[w3 + r]);
                        x3 = va.fma(wv, x3);
                        y3 = vb.fma(wv, y3);
                    }
                    x0.intoArray(acc, c0 + i);
                    y0.intoArray(acc, c0 + i + L);
                    x1.intoArray(acc, c1 + i);
                    y1.intoArray(acc, c1 + i + L);
                    x2.intoArray(acc, c2 + i);
                    y2.intoArray(acc, c2 + i + L);
                    x3.intoArray(acc, c3 + i);
                    y3.intoArray(acc, c3 + i + L);
                }
                for (; i + L <= dim; i += L) {
                    FloatVector x0 = FloatVector.fromArray(F, acc, c0 + i);
                    FloatVector x1 = FloatVector.fromArray(F, acc, c1 + i);
                    FloatVector x2 = FloatVector.fromArray(F, acc, c2 + i);
                    FloatVector x3 = FloatVector.fromArray(F, acc, c3 + i);
                    long o = off + 2L * i;
                    for (int r = 0; r < count; r++, o += rb) {
                        IntVector xva = (IntVector) ShortVector.fromMemorySegment(S, slice, o, LE_ORDER).convertShape(S2I, I, 0);
                        IntVector tva = xva.lanewise(LSHL, 17).lanewise(LSHR, 4);
                        FloatVector va = tva.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts().blend(tva.or(0x7F800000), tva.compare(GE, 0x7C00 << 13))
                                .or(xva.and(0x80000000)).reinterpretAsFloats();
                        x0 = va.fma(FloatVector.broadcast(F, w[w0 + r]), x0);
                        x1 = va.fma(FloatVector.broadcast(F, w[w1 + r]), x1);
                        x2 = va.fma(FloatVector.broadcast(F, w[w2 + r]), x2);
                        x3 = va.fma(FloatVector.broadcast(F, w[w3 + r]), x3);
                    }
                    x0.intoArray(acc, c0 + i);
                    x1.intoArray(acc, c1 + i);
                    x2.intoArray(acc, c2 + i);
                    x3.intoArray(acc, c3 + i);
                }
                for (; i < dim; i++) {
                    float t0 = acc[c0 + i], t1 = acc[c1 + i], t2 = acc[c2 + i], t3 = acc[c3 + i];
                    long o = off + 2L * i;
                    for (int r = 0; r < count; r++, o += rb) {
                        float v = Bits.fromF16(slice.get(I16, o));
                        t0 += w[w0 + r] * v;
                        t1 += w[w1 + r] * v;
                        t2 += w[w2 + r] * v;
                        t3 += w[w3 + r] * v;
                    }
                    acc[c0 + i] = t0;
                    acc[c1 + i] = t1;
                    acc[c2 + i] = t2;
                    acc[c3 + i] = t3;
                }
            }
            for (; j < heads; j++) {
                accumulateRows0(slice, off, rows, count, dim, w, wOff + j * rows, acc, aOff + j * dim);
            }
        }
    }

    // ================================================================== BF16

    static final class BF16Codec extends RowCodec {
        BF16Codec(boolean keys) {
            super(KvFormats.BF16, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return 2L * dim;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            finite(src, off, dim);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                IntVector b = FloatVector.fromArray(F, src, srcOff + i).max(-Bits.BF16_MAX).min(Bits.BF16_MAX)
                        .reinterpretAsInts();
                IntVector r = b.add(0x7FFF).add(b.lanewise(LSHR, 16).and(1)).lanewise(LSHR, 16);
                r.convertShape(I2S, S, 0).intoMemorySegment(dst, dstOff + 2L * i, LE_ORDER);
            }
            for (; i < dim; i++) {
                dst.set(I16, dstOff + 2L * i, Bits.toBf16Saturating(src[srcOff + i]));
            }
        }

        private static FloatVector load(MemorySegment src, long off) {
            ShortVector h = ShortVector.fromMemorySegment(S, src, off, LE_ORDER);
            return ((IntVector) h.convertShape(S2I, I, 0)).lanewise(LSHL, 16).reinterpretAsFloats();
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                load(src, off + 2L * i).intoArray(dst, dstOff + i);
            }
            for (; i < dim; i++) {
                dst[dstOff + i] = Bits.fromBf16(src.get(I16, off + 2L * i));
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            FloatVector acc = FloatVector.zero(F);
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                acc = load(src, off + 2L * i).fma(FloatVector.fromArray(F, q, qOff + i), acc);
            }
            float s = acc.reduceLanes(ADD);
            for (; i < dim; i++) {
                s += q[qOff + i] * Bits.fromBf16(src.get(I16, off + 2L * i));
            }
            return s;
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            FloatVector wv = FloatVector.broadcast(F, w);
            int i = 0;
            for (int bound = F.loopBound(dim); i < bound; i += L) {
                load(src, off + 2L * i).fma(wv, FloatVector.fromArray(F, acc, aOff + i)).intoArray(acc, aOff + i);
            }
            for (; i < dim; i++) {
                acc[aOff + i] += w * Bits.fromBf16(src.get(I16, off + 2L * i));
            }
        }

        /*
         * Four rows at a time with independent accumulators, and acc chunks held in registers across
         * rows in accumulateRows (see F32Codec for why).
         * The bf16 widening (shift into the high half) is written inline: a helper returning a vector
         * is not reliably inlined into a method this large and its result gets boxed.
         */
        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            long rb = 2L * dim;
            int bound = F.loopBound(dim);
            int r = 0;
            for (; r + 4 <= count; r += 4) {
                long o0 = off + r * rb;
                long o1 = o0 + rb;
                long o2 = o1 + rb;
                long o3 = o2 + rb;
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                for (int i = 0; i < bound; i += L) {
                    FloatVector qv = FloatVector.fromArray(F, q, qOff + i);
                    long b = 2L * i;
                    FloatVector k0 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o0 + b, LE_ORDER).convertShape(S2I, I, 0))
                            .lanewise(LSHL, 16).reinterpretAsFloats();
                    a0 = k0.fma(qv, a0);
                    FloatVector k1 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o1 + b, LE_ORDER).convertShape(S2I, I, 0))
                            .lanewise(LSHL, 16).reinterpretAsFloats();
                    a1 = k1.fma(qv, a1);
                    FloatVector k2 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o2 + b, LE_ORDER).convertShape(S2I, I, 0))
                            .lanewise(LSHL, 16).reinterpretAsFloats();
                    a2 = k2.fma(qv, a2);
                    FloatVector k3 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o3 + b, LE_ORDER).convertShape(S2I, I, 0))
                            .lanewise(LSHL, 16).reinterpretAsFloats();
                    a3 = k3.fma(qv, a3);
                }
                float s0 = a0.reduceLanes(ADD), s1 = a1.reduceLanes(ADD), s2 = a2.reduceLanes(ADD), s3 = a3.reduceLanes(ADD);
                for (int i = bound; i < dim; i++) {
                    float qi = q[qOff + i];
                    long b = 2L * i;
                    s0 += qi * Bits.fromBf16(slice.get(I16, o0 + b));
                    s1 += qi * Bits.fromBf16(slice.get(I16, o1 + b));
                    s2 += qi * Bits.fromBf16(slice.get(I16, o2 + b));
                    s3 += qi * Bits.fromBf16(slice.get(I16, o3 + b));
                }
                scores[sOff + r] = scale * s0;
                scores[sOff + r + 1] = scale * s1;
                scores[sOff + r + 2] = scale * s2;
                scores[sOff + r + 3] = scale * s3;
            }
            for (; r < count; r++) {
                scores[sOff + r] = scale * dotRow0(slice, off + r * rb, dim, q, qOff);
            }
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            long rb = 2L * dim;
            long cb = 2L * L;
            int i = 0;
            for (; i + 4 * L <= dim; i += 4 * L) {
                int a = aOff + i;
                FloatVector a0 = FloatVector.fromArray(F, acc, a);
                FloatVector a1 = FloatVector.fromArray(F, acc, a + L);
                FloatVector a2 = FloatVector.fromArray(F, acc, a + 2 * L);
                FloatVector a3 = FloatVector.fromArray(F, acc, a + 3 * L);
                long o = off + 2L * i;
                for (int r = 0; r < count; r++, o += rb) {
                    FloatVector wv = FloatVector.broadcast(F, w[wOff + r]);
                        FloatVector k0 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o, LE_ORDER).convertShape(S2I, I, 0))
                                .lanewise(LSHL, 16).reinterpretAsFloats();
                        a0 = k0.fma(wv, a0);
                        FloatVector k1 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o + 1 * cb, LE_ORDER).convertShape(S2I, I, 0))
                                .lanewise(LSHL, 16).reinterpretAsFloats();
                        a1 = k1.fma(wv, a1);
                        FloatVector k2 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o + 2 * cb, LE_ORDER).convertShape(S2I, I, 0))
                                .lanewise(LSHL, 16).reinterpretAsFloats();
                        a2 = k2.fma(wv, a2);
                        FloatVector k3 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o + 3 * cb, LE_ORDER).convertShape(S2I, I, 0))
                                .lanewise(LSHL, 16).reinterpretAsFloats();
                        a3 = k3.fma(wv, a3);
                }
                a0.intoArray(acc, a);
                a1.intoArray(acc, a + L);
                a2.intoArray(acc, a + 2 * L);
                a3.intoArray(acc, a + 3 * L);
            }
            for (; i + L <= dim; i += L) {
                FloatVector a0 = FloatVector.fromArray(F, acc, aOff + i);
                long o = off + 2L * i;
                for (int r = 0; r < count; r++, o += rb) {
                        FloatVector k0 = ((IntVector) ShortVector.fromMemorySegment(S, slice, o, LE_ORDER).convertShape(S2I, I, 0))
                                .lanewise(LSHL, 16).reinterpretAsFloats();
                    a0 = k0.fma(FloatVector.broadcast(F, w[wOff + r]), a0);
                }
                a0.intoArray(acc, aOff + i);
            }
            for (; i < dim; i++) {
                float s = acc[aOff + i];
                long o = off + 2L * i;
                for (int r = 0; r < count; r++, o += rb) {
                    s += w[wOff + r] * Bits.fromBf16(slice.get(I16, o));
                }
                acc[aOff + i] = s;
            }
        }

        /*
         * Grouped-query attention, four heads at a time (the rest, and dims that are not a
         * multiple of the vector length, through the per-head kernels): each chunk is widened once
         * for the four heads; two rows per pass share the query loads. Per (row, head) the sum
         * runs in the same order as dotRows0.
         */
        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
            long rb = 2L * dim;
            int j = 0;
            for (; j + 4 <= heads && dim % L == 0; j += 4) {
                int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;
                int s0 = sOff + j * rows, s1 = s0 + rows, s2 = s1 + rows, s3 = s2 + rows;
                int r = 0;
                for (; r + 2 <= count; r += 2) {
                    long oa = off + r * rb;
                    long ob = oa + rb;
                    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                    FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                    for (int i = 0; i < dim; i += L) {
                        FloatVector ka = load(slice, oa + 2L * i);
                        FloatVector kb = load(slice, ob + 2L * i);
                        FloatVector qv = FloatVector.fromArray(F, q, q0 + i);
                        a0 = ka.fma(qv, a0);
                        b0 = kb.fma(qv, b0);
                        qv = FloatVector.fromArray(F, q, q1 + i);
                        a1 = ka.fma(qv, a1);
                        b1 = kb.fma(qv, b1);
                        qv = FloatVector.fromArray(F, q, q2 + i);
                        a2 = ka.fma(qv, a2);
                        b2 = kb.fma(qv, b2);
                        qv = FloatVector.fromArray(F, q, q3 + i);
                        a3 = ka.fma(qv, a3);
                        b3 = kb.fma(qv, b3);
                    }
                    scores[s0 + r] = scale * a0.reduceLanes(ADD);
                    scores[s1 + r] = scale * a1.reduceLanes(ADD);
                    scores[s2 + r] = scale * a2.reduceLanes(ADD);
                    scores[s3 + r] = scale * a3.reduceLanes(ADD);
                    scores[s0 + r + 1] = scale * b0.reduceLanes(ADD);
                    scores[s1 + r + 1] = scale * b1.reduceLanes(ADD);
                    scores[s2 + r + 1] = scale * b2.reduceLanes(ADD);
                    scores[s3 + r + 1] = scale * b3.reduceLanes(ADD);
                }
                for (; r < count; r++) {
                    long oa = off + r * rb;
                    scores[s0 + r] = scale * dotRow0(slice, oa, dim, q, q0);
                    scores[s1 + r] = scale * dotRow0(slice, oa, dim, q, q1);
                    scores[s2 + r] = scale * dotRow0(slice, oa, dim, q, q2);
                    scores[s3 + r] = scale * dotRow0(slice, oa, dim, q, q3);
                }
            }
            for (; j < heads; j++) {
                dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * rows);
            }
        }

        /*
         * Grouped-query attention: chunk pair outer, rows inner, four heads at a time: the 4 heads
         * x 2 chunks of acc stay in registers across all rows and each chunk is widened once for
         * the four heads.
         */
        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int heads, float[] acc, int aOff) {
            long rb = 2L * dim;
            int j = 0;
            for (; j + 4 <= heads && dim % (2 * L) == 0; j += 4) {
                int w0 = wOff + j * rows, w1 = w0 + rows, w2 = w1 + rows, w3 = w2 + rows;
                int c0 = aOff + j * dim, c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;
                for (int i = 0; i < dim; i += 2 * L) {
                    FloatVector x0 = FloatVector.fromArray(F, acc, c0 + i), y0 = FloatVector.fromArray(F, acc, c0 + i + L);
                    FloatVector x1 = FloatVector.fromArray(F, acc, c1 + i), y1 = FloatVector.fromArray(F, acc, c1 + i + L);
                    FloatVector x2 = FloatVector.fromArray(F, acc, c2 + i), y2 = FloatVector.fromArray(F, acc, c2 + i + L);
                    FloatVector x3 = FloatVector.fromArray(F, acc, c3 + i), y3 = FloatVector.fromArray(F, acc, c3 + i + L);
                    long o = off + 2L * i;
                    for (int r = 0; r < count; r++, o += rb) {
                        FloatVector va = load(slice, o);
                        FloatVector vb = load(slice, o + 2L * L);
                        FloatVector wv = FloatVector.broadcast(F, w[w0 + r]);
                        x0 = va.fma(wv, x0);
                        y0 = vb.fma(wv, y0);
                        wv = FloatVector.broadcast(F, w[w1 + r]);
                        x1 = va.fma(wv, x1);
                        y1 = vb.fma(wv, y1);
                        wv = FloatVector.broadcast(F, w[w2 + r]);
                        x2 = va.fma(wv, x2);
                        y2 = vb.fma(wv, y2);
                        wv = FloatVector.broadcast(F, w[w3 + r]);
                        x3 = va.fma(wv, x3);
                        y3 = vb.fma(wv, y3);
                    }
                    x0.intoArray(acc, c0 + i);
                    y0.intoArray(acc, c0 + i + L);
                    x1.intoArray(acc, c1 + i);
                    y1.intoArray(acc, c1 + i + L);
                    x2.intoArray(acc, c2 + i);
                    y2.intoArray(acc, c2 + i + L);
                    x3.intoArray(acc, c3 + i);
                    y3.intoArray(acc, c3 + i + L);
                }
            }
            for (; j < heads; j++) {
                accumulateRows0(slice, off, rows, count, dim, w, wOff + j * rows, acc, aOff + j * dim);
            }
        }
    }

    // ================================================================== Q8_0

    static final class Q8Codec extends RowCodec {
        private static final int G = KvFormats.GROUP;

        Q8Codec(boolean keys) {
            super(KvFormats.Q8_0, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return (dim / G) * 34L;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            for (int b = 0; b < dim; b += G) {
                ScalarCodecs.checkQ8Block(src, off + b, amax32(src, off + b));
            }
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int b = 0; b < dim / G; b++) {
                int x = srcOff + b * G;
                long o = dstOff + b * 34L;
                float d = amax32(src, x) / 127f;
                float id = d != 0f ? 1f / d : 0f;
                dst.set(I16, o, Bits.toF16(d));
                for (int k = 0; k < G; k += L) {
                    FloatVector v = FloatVector.fromArray(F, src, x + k).mul(id);
                    // roundf: truncate, then step away from zero when the exact fraction is >= 1/2
                    IntVector t = (IntVector) v.convert(F2I, 0);
                    FloatVector frac = v.sub((FloatVector) t.convert(I2F, 0));
                    t = t.add(1, frac.compare(GE, 0.5f).cast(I)).sub(1, frac.compare(LE, -0.5f).cast(I));
                    t.convertShape(I2B, B, 0).intoMemorySegment(dst, o + 2 + k, LE_ORDER);
                }
            }
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 34L;
                float d = Bits.fromF16(src.get(I16, o));
                ByteVector codes = ByteVector.fromMemorySegment(B32, src, o + 2, LE_ORDER);
                for (int k = 0; k < G / L; k++) {
                    ((FloatVector) codes.convertShape(B2F, F, k)).mul(d).intoArray(dst, dstOff + b * G + k * L);
                }
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            FloatVector acc = FloatVector.zero(F);
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 34L;
                // one load of the block's 32 codes, widened in L-lane parts
                ByteVector codes = ByteVector.fromMemorySegment(B32, src, o + 2, LE_ORDER);
                FloatVector blk = FloatVector.zero(F);
                for (int k = 0; k < G / L; k++) {
                    FloatVector c = (FloatVector) codes.convertShape(B2F, F, k);
                    blk = c.fma(FloatVector.fromArray(F, q, qOff + b * G + k * L), blk);
                }
                acc = blk.fma(FloatVector.broadcast(F, Bits.fromF16(src.get(I16, o))), acc);
            }
            return acc.reduceLanes(ADD);
        }

        /*
         * Four rows at a time: each query chunk is loaded once for four rows and the four
         * reductions overlap, which matters because a 128-value row is only four blocks long.
         */
        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            long rb = rowBytes0(dim);
            int r = 0;
            for (; r + 4 <= count; r += 4) {
                long o0 = off + r * rb;
                long o1 = o0 + rb;
                long o2 = o1 + rb;
                long o3 = o2 + rb;
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                for (int b = 0; b < dim / G; b++) {
                    long bo = b * 34L;
                    ByteVector c0 = ByteVector.fromMemorySegment(B32, slice, o0 + bo + 2, LE_ORDER);
                    ByteVector c1 = ByteVector.fromMemorySegment(B32, slice, o1 + bo + 2, LE_ORDER);
                    ByteVector c2 = ByteVector.fromMemorySegment(B32, slice, o2 + bo + 2, LE_ORDER);
                    ByteVector c3 = ByteVector.fromMemorySegment(B32, slice, o3 + bo + 2, LE_ORDER);
                    FloatVector b0 = FloatVector.zero(F), b1 = b0, b2 = b0, b3 = b0;
                    for (int k = 0; k < G / L; k++) {
                        FloatVector qv = FloatVector.fromArray(F, q, qOff + b * G + k * L);
                        b0 = ((FloatVector) c0.convertShape(B2F, F, k)).fma(qv, b0);
                        b1 = ((FloatVector) c1.convertShape(B2F, F, k)).fma(qv, b1);
                        b2 = ((FloatVector) c2.convertShape(B2F, F, k)).fma(qv, b2);
                        b3 = ((FloatVector) c3.convertShape(B2F, F, k)).fma(qv, b3);
                    }
                    a0 = b0.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, o0 + bo))), a0);
                    a1 = b1.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, o1 + bo))), a1);
                    a2 = b2.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, o2 + bo))), a2);
                    a3 = b3.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, o3 + bo))), a3);
                }
                scores[sOff + r] = scale * a0.reduceLanes(ADD);
                scores[sOff + r + 1] = scale * a1.reduceLanes(ADD);
                scores[sOff + r + 2] = scale * a2.reduceLanes(ADD);
                scores[sOff + r + 3] = scale * a3.reduceLanes(ADD);
            }
            for (; r < count; r++) {
                scores[sOff + r] = scale * dotRow0(slice, off + r * rb, dim, q, qOff);
            }
        }

        /*
         * Grouped-query attention, four heads at a time (the rest through dotRows0), two rows at a
         * time: each 32-code block of a row is widened once and multiplied by its scale (exact:
         * an int8 code times an fp16 scale has at most 18 significant bits), then FMA'd into the
         * four heads' accumulators of that row; the two rows share every query load. Eight
         * independent chains.
         */
        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
            long rb = rowBytes0(dim);
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;
                int s0 = sOff + j * rows, s1 = s0 + rows, s2 = s1 + rows, s3 = s2 + rows;
                int r = 0;
                for (; r + 2 <= count; r += 2) {
                    long oa = off + r * rb;
                    long ob = oa + rb;
                    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                    FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                    for (int g = 0; g < dim / G; g++) {
                        long ga = oa + g * 34L;
                        long gb = ob + g * 34L;
                        ByteVector ca = ByteVector.fromMemorySegment(B32, slice, ga + 2, LE_ORDER);
                        ByteVector cb = ByteVector.fromMemorySegment(B32, slice, gb + 2, LE_ORDER);
                        float da = Bits.fromF16(slice.get(I16, ga));
                        float db = Bits.fromF16(slice.get(I16, gb));
                        for (int k = 0; k < G / L; k++) {
                            FloatVector ka = ((FloatVector) ca.convertShape(B2F, F, k)).mul(da);
                            FloatVector kb = ((FloatVector) cb.convertShape(B2F, F, k)).mul(db);
                            int e = g * G + k * L;
                            FloatVector qv = FloatVector.fromArray(F, q, q0 + e);
                            a0 = ka.fma(qv, a0);
                            b0 = kb.fma(qv, b0);
                            qv = FloatVector.fromArray(F, q, q1 + e);
                            a1 = ka.fma(qv, a1);
                            b1 = kb.fma(qv, b1);
                            qv = FloatVector.fromArray(F, q, q2 + e);
                            a2 = ka.fma(qv, a2);
                            b2 = kb.fma(qv, b2);
                            qv = FloatVector.fromArray(F, q, q3 + e);
                            a3 = ka.fma(qv, a3);
                            b3 = kb.fma(qv, b3);
                        }
                    }
                    scores[s0 + r] = scale * a0.reduceLanes(ADD);
                    scores[s1 + r] = scale * a1.reduceLanes(ADD);
                    scores[s2 + r] = scale * a2.reduceLanes(ADD);
                    scores[s3 + r] = scale * a3.reduceLanes(ADD);
                    scores[s0 + r + 1] = scale * b0.reduceLanes(ADD);
                    scores[s1 + r + 1] = scale * b1.reduceLanes(ADD);
                    scores[s2 + r + 1] = scale * b2.reduceLanes(ADD);
                    scores[s3 + r + 1] = scale * b3.reduceLanes(ADD);
                }
                for (; r < count; r++) {
                    long oa = off + r * rb;
                    scores[s0 + r] = scale * dotRow0(slice, oa, dim, q, q0);
                    scores[s1 + r] = scale * dotRow0(slice, oa, dim, q, q1);
                    scores[s2 + r] = scale * dotRow0(slice, oa, dim, q, q2);
                    scores[s3 + r] = scale * dotRow0(slice, oa, dim, q, q3);
                }
            }
            for (; j < heads; j++) {
                dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * rows);
            }
        }

        /*
         * Block outer, rows inner: the block's G/L accumulator chunks (2 or 4) stay in registers
         * across all rows, two at a time, so acc is loaded and stored once per slice rather than
         * once per row; each row's codes are read as L-byte loads widened in place.
         */
        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            long rb = rowBytes0(dim);
            for (int b = 0; b < dim / G; b++) {
                long bo = off + b * 34L;
                for (int k = 0; k < G; k += 2 * L) {
                    int a = aOff + b * G + k;
                    FloatVector a0 = FloatVector.fromArray(F, acc, a);
                    FloatVector a1 = FloatVector.fromArray(F, acc, a + L);
                    long o = bo;
                    for (int r = 0; r < count; r++, o += rb) {
                        FloatVector c = FloatVector.broadcast(F, w[wOff + r] * Bits.fromF16(slice.get(I16, o)));
                        ByteVector v0 = ByteVector.fromMemorySegment(B, slice, o + 2 + k, LE_ORDER);
                        ByteVector v1 = ByteVector.fromMemorySegment(B, slice, o + 2 + k + L, LE_ORDER);
                        a0 = ((FloatVector) v0.convertShape(B2F, F, 0)).fma(c, a0);
                        a1 = ((FloatVector) v1.convertShape(B2F, F, 0)).fma(c, a1);
                    }
                    a0.intoArray(acc, a);
                    a1.intoArray(acc, a + L);
                }
            }
        }

        /*
         * Grouped-query attention: block and chunk-pair outer, rows inner, four heads at a time
         * (the rest through accumulateRows0): the 4 heads x 2 chunks of acc stay in registers
         * across all rows; per row the block scale is read and the codes widened once for the four
         * heads, each head's weight times the scale broadcast. Same access pattern and per-head
         * order of operations as accumulateRows0.
         */
        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int heads, float[] acc, int aOff) {
            long rb = rowBytes0(dim);
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                int w0 = wOff + j * rows, w1 = w0 + rows, w2 = w1 + rows, w3 = w2 + rows;
                int c0 = aOff + j * dim, c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;
                for (int b = 0; b < dim / G; b++) {
                    long bo = off + b * 34L;
                    for (int k = 0; k < G; k += 2 * L) {
                        int e = b * G + k;
                        FloatVector x0 = FloatVector.fromArray(F, acc, c0 + e), y0 = FloatVector.fromArray(F, acc, c0 + e + L);
                        FloatVector x1 = FloatVector.fromArray(F, acc, c1 + e), y1 = FloatVector.fromArray(F, acc, c1 + e + L);
                        FloatVector x2 = FloatVector.fromArray(F, acc, c2 + e), y2 = FloatVector.fromArray(F, acc, c2 + e + L);
                        FloatVector x3 = FloatVector.fromArray(F, acc, c3 + e), y3 = FloatVector.fromArray(F, acc, c3 + e + L);
                        long o = bo;
                        for (int r = 0; r < count; r++, o += rb) {
                            float d = Bits.fromF16(slice.get(I16, o));
                            FloatVector va = (FloatVector) ByteVector.fromMemorySegment(B, slice, o + 2 + k, LE_ORDER).convertShape(B2F, F, 0);
                            FloatVector vb = (FloatVector) ByteVector.fromMemorySegment(B, slice, o + 2 + k + L, LE_ORDER).convertShape(B2F, F, 0);
                            FloatVector c = FloatVector.broadcast(F, w[w0 + r] * d);
                            x0 = va.fma(c, x0);
                            y0 = vb.fma(c, y0);
                            c = FloatVector.broadcast(F, w[w1 + r] * d);
                            x1 = va.fma(c, x1);
                            y1 = vb.fma(c, y1);
                            c = FloatVector.broadcast(F, w[w2 + r] * d);
                            x2 = va.fma(c, x2);
                            y2 = vb.fma(c, y2);
                            c = FloatVector.broadcast(F, w[w3 + r] * d);
                            x3 = va.fma(c, x3);
                            y3 = vb.fma(c, y3);
                        }
                        x0.intoArray(acc, c0 + e);
                        y0.intoArray(acc, c0 + e + L);
                        x1.intoArray(acc, c1 + e);
                        y1.intoArray(acc, c1 + e + L);
                        x2.intoArray(acc, c2 + e);
                        y2.intoArray(acc, c2 + e + L);
                        x3.intoArray(acc, c3 + e);
                        y3.intoArray(acc, c3 + e + L);
                    }
                }
            }
            for (; j < heads; j++) {
                accumulateRows0(slice, off, rows, count, dim, w, wOff + j * rows, acc, aOff + j * dim);
            }
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 34L;
                FloatVector c = FloatVector.broadcast(F, w * Bits.fromF16(src.get(I16, o)));
                for (int k = 0; k < G; k += L) {
                    int a = aOff + b * G + k;
                    bytesToFloats(ByteVector.fromMemorySegment(B, src, o + 2 + k, LE_ORDER))
                            .fma(c, FloatVector.fromArray(F, acc, a)).intoArray(acc, a);
                }
            }
        }
    }

    // ================================================================== Q4_0

    static final class Q4Codec extends RowCodec {
        private static final int G = KvFormats.GROUP;
        private static final int H = G / 2;

        Q4Codec(boolean keys) {
            super(KvFormats.Q4_0, keys);
        }

        @Override
        long rowBytes0(int dim) {
            return (dim / G) * 18L;
        }

        @Override
        void validateRow(float[] src, int off, int dim) {
            for (int b = 0; b < dim; b += G) {
                ScalarCodecs.checkQ4Block(src, off + b, amax32(src, off + b));
            }
        }

        private static IntVector codes(FloatVector v, float id) {
            // ggml: MIN(15, (int8_t)(x*id + 8.5f)), a separate multiply and add (no FMA)
            return ((IntVector) v.mul(id).add(8.5f).convert(F2I, 0)).min(15);
        }

        @Override
        void encodeRow0(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
            for (int b = 0; b < dim / G; b++) {
                int x = srcOff + b * G;
                long o = dstOff + b * 18L;
                float amax = amax32(src, x);
                float max = 0f;
                if (amax != 0f) {
                    // the first element of largest magnitude decides the sign, as in ggml's scan
                    for (int k = 0; k < G; k += L) {
                        VectorMask<Float> hit = FloatVector.fromArray(F, src, x + k).abs().compare(EQ, amax);
                        if (hit.anyTrue()) {
                            max = src[x + k + hit.firstTrue()];
                            break;
                        }
                    }
                }
                float d = max / -8f;
                float id = d != 0f ? 1f / d : 0f;
                dst.set(I16, o, Bits.toF16(d));
                for (int k = 0; k < H; k += L) {
                    IntVector lo = codes(FloatVector.fromArray(F, src, x + k), id);
                    IntVector hi = codes(FloatVector.fromArray(F, src, x + H + k), id);
                    lo.or(hi.lanewise(LSHL, 4)).convertShape(I2B, B, 0).intoMemorySegment(dst, o + 2 + k, LE_ORDER);
                }
            }
        }

        private static FloatVector low(ByteVector v) {
            return bytesToFloats(v.and((byte) 0x0F).sub((byte) 8));
        }

        private static FloatVector high(ByteVector v) {
            return bytesToFloats(v.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8));
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int dim, float[] dst, int dstOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 18L;
                float d = Bits.fromF16(src.get(I16, o));
                int base = dstOff + b * G;
                for (int k = 0; k < H; k += L) {
                    ByteVector v = ByteVector.fromMemorySegment(B, src, o + 2 + k, LE_ORDER);
                    low(v).mul(d).intoArray(dst, base + k);
                    high(v).mul(d).intoArray(dst, base + H + k);
                }
            }
        }

        @Override
        float dotRow0(MemorySegment src, long off, int dim, float[] q, int qOff) {
            FloatVector acc = FloatVector.zero(F);
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 18L;
                int base = qOff + b * G;
                FloatVector blk = FloatVector.zero(F);
                for (int k = 0; k < H; k += L) {
                    ByteVector v = ByteVector.fromMemorySegment(B, src, o + 2 + k, LE_ORDER);
                    blk = low(v).fma(FloatVector.fromArray(F, q, base + k), blk);
                    blk = high(v).fma(FloatVector.fromArray(F, q, base + H + k), blk);
                }
                acc = blk.fma(FloatVector.broadcast(F, Bits.fromF16(src.get(I16, o))), acc);
            }
            return acc.reduceLanes(ADD);
        }

        /* Four rows at a time (see Q8Codec): query and accumulator chunks loaded once per four rows. */
        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            long rb = rowBytes0(dim);
            int r = 0;
            for (; r + 4 <= count; r += 4) {
                long o0 = off + r * rb;
                long o1 = o0 + rb;
                long o2 = o1 + rb;
                long o3 = o2 + rb;
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                for (int b = 0; b < dim / G; b++) {
                    long bo = b * 18L;
                    int base = qOff + b * G;
                    FloatVector b0 = FloatVector.zero(F), b1 = b0, b2 = b0, b3 = b0;
                    for (int k = 0; k < H; k += L) {
                        FloatVector ql = FloatVector.fromArray(F, q, base + k);
                        FloatVector qh = FloatVector.fromArray(F, q, base + H + k);
                        ByteVector v0 = ByteVector.fromMemorySegment(B, slice, o0 + bo + 2 + k, LE_ORDER);
                        ByteVector v1 = ByteVector.fromMemorySegment(B, slice, o1 + bo + 2 + k, LE_ORDER);
                        ByteVector v2 = ByteVector.fromMemorySegment(B, slice, o2 + bo + 2 + k, LE_ORDER);
                        ByteVector v3 = ByteVector.fromMemorySegment(B, slice, o3 + bo + 2 + k, LE_ORDER);
                        b0 = ((FloatVector) v0.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(qh, ((FloatVector) v0.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(ql, b0));
                        b1 = ((FloatVector) v1.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(qh, ((FloatVector) v1.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(ql, b1));
                        b2 = ((FloatVector) v2.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(qh, ((FloatVector) v2.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(ql, b2));
                        b3 = ((FloatVector) v3.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(qh, ((FloatVector) v3.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(ql, b3));
                    }
                    a0 = b0.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, o0 + bo))), a0);
                    a1 = b1.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, o1 + bo))), a1);
                    a2 = b2.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, o2 + bo))), a2);
                    a3 = b3.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, o3 + bo))), a3);
                }
                scores[sOff + r] = scale * a0.reduceLanes(ADD);
                scores[sOff + r + 1] = scale * a1.reduceLanes(ADD);
                scores[sOff + r + 2] = scale * a2.reduceLanes(ADD);
                scores[sOff + r + 3] = scale * a3.reduceLanes(ADD);
            }
            for (; r < count; r++) {
                scores[sOff + r] = scale * dotRow0(slice, off + r * rb, dim, q, qOff);
            }
        }

        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            long rb = rowBytes0(dim);
            int r = 0;
            for (; r + 4 <= count; r += 4) {
                long o0 = off + r * rb;
                long o1 = o0 + rb;
                long o2 = o1 + rb;
                long o3 = o2 + rb;
                for (int b = 0; b < dim / G; b++) {
                    long bo = b * 18L;
                    int base = aOff + b * G;
                    FloatVector s0 = FloatVector.broadcast(F, w[wOff + r] * Bits.fromF16(slice.get(I16, o0 + bo)));
                    FloatVector s1 = FloatVector.broadcast(F, w[wOff + r + 1] * Bits.fromF16(slice.get(I16, o1 + bo)));
                    FloatVector s2 = FloatVector.broadcast(F, w[wOff + r + 2] * Bits.fromF16(slice.get(I16, o2 + bo)));
                    FloatVector s3 = FloatVector.broadcast(F, w[wOff + r + 3] * Bits.fromF16(slice.get(I16, o3 + bo)));
                    for (int k = 0; k < H; k += L) {
                        ByteVector v0 = ByteVector.fromMemorySegment(B, slice, o0 + bo + 2 + k, LE_ORDER);
                        ByteVector v1 = ByteVector.fromMemorySegment(B, slice, o1 + bo + 2 + k, LE_ORDER);
                        ByteVector v2 = ByteVector.fromMemorySegment(B, slice, o2 + bo + 2 + k, LE_ORDER);
                        ByteVector v3 = ByteVector.fromMemorySegment(B, slice, o3 + bo + 2 + k, LE_ORDER);
                        FloatVector al = FloatVector.fromArray(F, acc, base + k);
                        FloatVector ah = FloatVector.fromArray(F, acc, base + H + k);
                        al = ((FloatVector) v3.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(s3, ((FloatVector) v2.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(s2, ((FloatVector) v1.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(s1, ((FloatVector) v0.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(s0, al))));
                        ah = ((FloatVector) v3.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(s3, ((FloatVector) v2.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(s2, ((FloatVector) v1.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(s1, ((FloatVector) v0.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).fma(s0, ah))));
                        al.intoArray(acc, base + k);
                        ah.intoArray(acc, base + H + k);
                    }
                }
            }
            for (; r < count; r++) {
                axpyRow0(slice, off + r * rb, dim, w[wOff + r], acc, aOff);
            }
        }

        @Override
        void axpyRow0(MemorySegment src, long off, int dim, float w, float[] acc, int aOff) {
            for (int b = 0; b < dim / G; b++) {
                long o = off + b * 18L;
                FloatVector c = FloatVector.broadcast(F, w * Bits.fromF16(src.get(I16, o)));
                int base = aOff + b * G;
                for (int k = 0; k < H; k += L) {
                    ByteVector v = ByteVector.fromMemorySegment(B, src, o + 2 + k, LE_ORDER);
                    low(v).fma(c, FloatVector.fromArray(F, acc, base + k)).intoArray(acc, base + k);
                    high(v).fma(c, FloatVector.fromArray(F, acc, base + H + k)).intoArray(acc, base + H + k);
                }
            }
        }

        /*
         * Grouped-query attention, four heads at a time (the rest through the per-head kernels):
         * each row's nibbles are unpacked and widened once, multiplied by the block scale (exact:
         * a code in [-8, 7] times an fp16 scale), and FMA'd into the four heads' accumulators,
         * instead of being unpacked once per head.
         */
        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
            long rb = rowBytes0(dim);
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;
                int s0 = sOff + j * rows, s1 = s0 + rows, s2 = s1 + rows, s3 = s2 + rows;
                long o = off;
                for (int r = 0; r < count; r++, o += rb) {
                    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                    for (int b = 0; b < dim / G; b++) {
                        long bo = o + b * 18L;
                        float d = Bits.fromF16(slice.get(I16, bo));
                        int e = b * G;
                        for (int k = 0; k < H; k += L) {
                            ByteVector v = ByteVector.fromMemorySegment(B, slice, bo + 2 + k, LE_ORDER);
                            FloatVector lo = ((FloatVector) v.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).mul(d);
                            FloatVector hi = ((FloatVector) v.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0)).mul(d);
                            int el = e + k;
                            int eh = e + H + k;
                            a0 = hi.fma(FloatVector.fromArray(F, q, q0 + eh), lo.fma(FloatVector.fromArray(F, q, q0 + el), a0));
                            a1 = hi.fma(FloatVector.fromArray(F, q, q1 + eh), lo.fma(FloatVector.fromArray(F, q, q1 + el), a1));
                            a2 = hi.fma(FloatVector.fromArray(F, q, q2 + eh), lo.fma(FloatVector.fromArray(F, q, q2 + el), a2));
                            a3 = hi.fma(FloatVector.fromArray(F, q, q3 + eh), lo.fma(FloatVector.fromArray(F, q, q3 + el), a3));
                        }
                    }
                    scores[s0 + r] = scale * a0.reduceLanes(ADD);
                    scores[s1 + r] = scale * a1.reduceLanes(ADD);
                    scores[s2 + r] = scale * a2.reduceLanes(ADD);
                    scores[s3 + r] = scale * a3.reduceLanes(ADD);
                }
            }
            for (; j < heads; j++) {
                dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * rows);
            }
        }

        /*
         * Grouped-query attention: per 32-value block and vector chunk, the four heads' low and
         * high accumulators (8 vectors) stay in registers across all rows; each row's nibbles are
         * unpacked and widened once for the four heads.
         */
        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int heads, float[] acc, int aOff) {
            long rb = rowBytes0(dim);
            int j = 0;
            for (; j + 4 <= heads; j += 4) {
                int w0 = wOff + j * rows, w1 = w0 + rows, w2 = w1 + rows, w3 = w2 + rows;
                int c0 = aOff + j * dim, c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;
                for (int b = 0; b < dim / G; b++) {
                    for (int k = 0; k < H; k += L) {
                        int el = b * G + k;
                        int eh = el + H;
                        FloatVector x0 = FloatVector.fromArray(F, acc, c0 + el), y0 = FloatVector.fromArray(F, acc, c0 + eh);
                        FloatVector x1 = FloatVector.fromArray(F, acc, c1 + el), y1 = FloatVector.fromArray(F, acc, c1 + eh);
                        FloatVector x2 = FloatVector.fromArray(F, acc, c2 + el), y2 = FloatVector.fromArray(F, acc, c2 + eh);
                        FloatVector x3 = FloatVector.fromArray(F, acc, c3 + el), y3 = FloatVector.fromArray(F, acc, c3 + eh);
                        long o = off + b * 18L;
                        for (int r = 0; r < count; r++, o += rb) {
                            float d = Bits.fromF16(slice.get(I16, o));
                            ByteVector v = ByteVector.fromMemorySegment(B, slice, o + 2 + k, LE_ORDER);
                            FloatVector lo = (FloatVector) v.and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0);
                            FloatVector hi = (FloatVector) v.lanewise(LSHR, 4).and((byte) 0x0F).sub((byte) 8).convertShape(B2F, F, 0);
                            FloatVector wv = FloatVector.broadcast(F, w[w0 + r] * d);
                            x0 = lo.fma(wv, x0);
                            y0 = hi.fma(wv, y0);
                            wv = FloatVector.broadcast(F, w[w1 + r] * d);
                            x1 = lo.fma(wv, x1);
                            y1 = hi.fma(wv, y1);
                            wv = FloatVector.broadcast(F, w[w2 + r] * d);
                            x2 = lo.fma(wv, x2);
                            y2 = hi.fma(wv, y2);
                            wv = FloatVector.broadcast(F, w[w3 + r] * d);
                            x3 = lo.fma(wv, x3);
                            y3 = hi.fma(wv, y3);
                        }
                        x0.intoArray(acc, c0 + el);
                        y0.intoArray(acc, c0 + eh);
                        x1.intoArray(acc, c1 + el);
                        y1.intoArray(acc, c1 + eh);
                        x2.intoArray(acc, c2 + el);
                        y2.intoArray(acc, c2 + eh);
                        x3.intoArray(acc, c3 + el);
                        y3.intoArray(acc, c3 + eh);
                    }
                }
            }
            for (; j < heads; j++) {
                accumulateRows0(slice, off, rows, count, dim, w, wOff + j * rows, acc, aOff + j * dim);
            }
        }
    }

    // ================================================================== FP8 (read kernels)

    /*
     * FP8 codes to float without the table: place the 7 exponent+mantissa bits in a float's
     * exponent/mantissa fields and add the bias difference to the exponent (exact for normals);
     * subnormal codes (exponent 0) are m * 2^(1-bias-mbits) via an int-to-float conversion, which
     * avoids denormal float arithmetic; NaN/infinity codes are patched in; then the sign.
     */
    static final class Fp8 extends Fp8Codec {
        private final boolean e4m3;

        Fp8(KvFormat f, boolean keys) {
            super(f, keys);
            e4m3 = f == KvFormats.FP8_E4M3;
        }

        private FloatVector load(MemorySegment src, long off) {
            IntVector x = (IntVector) ByteVector.fromMemorySegment(B, src, off, LE_ORDER).convertShape(B2I, I, 0);
            IntVector em = x.and(0x7F);
            IntVector sign = x.and(0x80).lanewise(LSHL, 24);
            IntVector bits;
            if (e4m3) {
                bits = em.lanewise(LSHL, 20).add((127 - 7) << 23);
                IntVector sub = ((FloatVector) em.convert(I2F, 0)).mul(0x1p-9f).reinterpretAsInts();
                bits = bits.blend(sub, em.compare(LT, 8));
                bits = bits.blend(0x7FC00000, em.compare(EQ, 0x7F));
            } else {
                bits = em.lanewise(LSHL, 21).add((127 - 15) << 23);
                IntVector sub = ((FloatVector) em.convert(I2F, 0)).mul(0x1p-16f).reinterpretAsInts();
                bits = bits.blend(sub, em.compare(LT, 4));
                bits = bits.blend(0x7F800000, em.compare(EQ, 0x7C));
                bits = bits.blend(0x7FC00000, em.compare(GT, 0x7C));
            }
            return bits.or(sign).reinterpretAsFloats();
        }

        @Override
        void decodeRow0(MemorySegment src, long off, int rows, int row, int dim, float[] dst, int dstOff) {
            float s = src.get(F32, off);
            long o = off + 4 + (long) row * dim;
            int j = 0;
            for (int bound = F.loopBound(dim); j < bound; j += L) {
                load(src, o + j).mul(s).intoArray(dst, dstOff + j);
            }
            for (; j < dim; j++) {
                dst[dstOff + j] = v.table[src.get(Bits.I8, o + j) & 0xFF] * s;
            }
        }

        @Override
        void validate(float[] src, int off, int rows, int dim) {
            finite(src, off, rows * dim);
        }

        /*
         * Encode, branch-free round to nearest even with saturation (same bytes as Variant.encode):
         * y = clamp(x / s, +-max); below the smallest normal, adding a power of two whose ulp is the
         * subnormal step (2^14 for E4M3, 2^7 for E5M2) makes the FPU round to that step and the low
         * bits are the code; above it, the float's exponent and top mantissa bits are rounded with
         * the bias trick (add half-ulp-minus-one plus the lowest kept bit) and rebiased.
         */
        @Override
        void encode0(float[] src, int srcOff, int rows, int dim, MemorySegment dst, long dstOff) {
            int n = rows * dim;
            float amax = 0f;
            int j = 0;
            FloatVector m = FloatVector.zero(F);
            for (int bound = F.loopBound(n); j < bound; j += L) {
                m = m.max(FloatVector.fromArray(F, src, srcOff + j).abs());
            }
            amax = m.reduceLanes(MAX);
            for (; j < n; j++) {
                amax = Math.max(amax, Math.abs(src[srcOff + j]));
            }
            float s = amax / v.max;
            dst.set(F32, dstOff, s);
            long o = dstOff + 4;
            if (s == 0f) {
                dst.asSlice(o, n).fill((byte) 0);
                return;
            }
            int mbits = e4m3 ? 3 : 2;
            int bias = e4m3 ? 7 : 15;
            float magic = e4m3 ? 0x1p14f : 0x1p7f;              // ulp = 2^-9 resp. 2^-16, the subnormal step
            int magicBits = Float.floatToRawIntBits(magic);
            int minNormalBits = (127 + 1 - bias) << 23;
            int shift = 23 - mbits;
            j = 0;
            for (int bound = F.loopBound(n); j < bound; j += L) {
                FloatVector y = FloatVector.fromArray(F, src, srcOff + j).div(s).max(-v.max).min(v.max);
                IntVector u = y.reinterpretAsInts();
                IntVector a = u.and(0x7FFFFFFF);
                IntVector sub = a.reinterpretAsFloats().add(magic).reinterpretAsInts().sub(magicBits);
                IntVector odd = a.lanewise(LSHR, shift).and(1);
                IntVector nrm = a.add((1 << (shift - 1)) - 1).add(odd).lanewise(LSHR, shift).sub((127 - bias) << mbits);
                IntVector code = nrm.blend(sub, a.compare(LT, minNormalBits)).min(v.maxCode);
                code = code.or(u.lanewise(LSHR, 24).and(0x80));
                code.convertShape(I2B, B, 0).intoMemorySegment(dst, o + j, LE_ORDER);
            }
            for (; j < n; j++) {
                dst.set(Bits.I8, o + j, (byte) v.encode(src[srcOff + j] / s));
            }
        }

        /* The codes of a whole slice are contiguous: one flat loop. */
        @Override
        void decode0(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff) {
            float s = src.get(F32, off);
            int n = rows * dim;
            int j = 0;
            for (int bound = F.loopBound(n); j < bound; j += L) {
                load(src, off + 4 + j).mul(s).intoArray(dst, dstOff + j);
            }
            for (; j < n; j++) {
                dst[dstOff + j] = v.table[src.get(Bits.I8, off + 4 + j) & 0xFF] * s;
            }
        }

        @Override
        void dotRows0(MemorySegment slice, long off, int rows, int count, int dim,
                      float[] q, int qOff, float scale, float[] scores, int sOff) {
            float k = scale * slice.get(F32, off);
            for (int r = 0; r < count; r++) {
                long o = off + 4 + (long) r * dim;
                FloatVector acc = FloatVector.zero(F);
                int j = 0;
                for (int bound = F.loopBound(dim); j < bound; j += L) {
                    acc = load(slice, o + j).fma(FloatVector.fromArray(F, q, qOff + j), acc);
                }
                float sum = acc.reduceLanes(ADD);
                for (; j < dim; j++) {
                    sum += q[qOff + j] * v.table[slice.get(Bits.I8, o + j) & 0xFF];
                }
                scores[sOff + r] = k * sum;
            }
        }

        /*
         * Chunk outer, rows inner (see F32Codec): two accumulator chunks stay in registers across
         * all rows, then single chunks, then a scalar tail per column.
         */
        @Override
        void accumulateRows0(MemorySegment slice, long off, int rows, int count, int dim,
                             float[] w, int wOff, float[] acc, int aOff) {
            float s = slice.get(F32, off);
            long base = off + 4;
            int j = 0;
            for (; j + 2 * L <= dim; j += 2 * L) {
                FloatVector a0 = FloatVector.fromArray(F, acc, aOff + j);
                FloatVector a1 = FloatVector.fromArray(F, acc, aOff + j + L);
                long o = base + j;
                for (int r = 0; r < count; r++, o += dim) {
                    FloatVector cv = FloatVector.broadcast(F, w[wOff + r] * s);
                    a0 = load(slice, o).fma(cv, a0);
                    a1 = load(slice, o + L).fma(cv, a1);
                }
                a0.intoArray(acc, aOff + j);
                a1.intoArray(acc, aOff + j + L);
            }
            for (; j + L <= dim; j += L) {
                FloatVector a0 = FloatVector.fromArray(F, acc, aOff + j);
                long o = base + j;
                for (int r = 0; r < count; r++, o += dim) {
                    a0 = load(slice, o).fma(FloatVector.broadcast(F, w[wOff + r] * s), a0);
                }
                a0.intoArray(acc, aOff + j);
            }
            for (; j < dim; j++) {
                float a = acc[aOff + j];
                long o = base + j;
                for (int r = 0; r < count; r++, o += dim) {
                    a += w[wOff + r] * s * v.table[slice.get(Bits.I8, o) & 0xFF];
                }
                acc[aOff + j] = a;
            }
        }

        /*
         * Grouped-query attention, four heads at a time (the rest, and dims that are not a
         * multiple of the vector length, through the per-head kernels): each FP8 chunk is widened
         * once (about a dozen integer operations per vector) and FMA'd into the four heads'
         * accumulators instead of being widened once per head. Two rows per pass share the query
         * loads. Per (row, head) the sum runs in the same order as dotRows0.
         */
        @Override
        void dotRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                           float[] q, int qOff, int heads, float scale, float[] scores, int sOff) {
            float k = scale * slice.get(F32, off);
            int j = 0;
            for (; j + 4 <= heads && dim % L == 0; j += 4) {
                int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;
                int s0 = sOff + j * rows, s1 = s0 + rows, s2 = s1 + rows, s3 = s2 + rows;
                int r = 0;
                for (; r + 2 <= count; r += 2) {
                    long oa = off + 4 + (long) r * dim;
                    long ob = oa + dim;
                    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                    FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                    for (int i = 0; i < dim; i += L) {
                        FloatVector ka = load(slice, oa + i);
                        FloatVector kb = load(slice, ob + i);
                        FloatVector qv = FloatVector.fromArray(F, q, q0 + i);
                        a0 = ka.fma(qv, a0);
                        b0 = kb.fma(qv, b0);
                        qv = FloatVector.fromArray(F, q, q1 + i);
                        a1 = ka.fma(qv, a1);
                        b1 = kb.fma(qv, b1);
                        qv = FloatVector.fromArray(F, q, q2 + i);
                        a2 = ka.fma(qv, a2);
                        b2 = kb.fma(qv, b2);
                        qv = FloatVector.fromArray(F, q, q3 + i);
                        a3 = ka.fma(qv, a3);
                        b3 = kb.fma(qv, b3);
                    }
                    scores[s0 + r] = k * a0.reduceLanes(ADD);
                    scores[s1 + r] = k * a1.reduceLanes(ADD);
                    scores[s2 + r] = k * a2.reduceLanes(ADD);
                    scores[s3 + r] = k * a3.reduceLanes(ADD);
                    scores[s0 + r + 1] = k * b0.reduceLanes(ADD);
                    scores[s1 + r + 1] = k * b1.reduceLanes(ADD);
                    scores[s2 + r + 1] = k * b2.reduceLanes(ADD);
                    scores[s3 + r + 1] = k * b3.reduceLanes(ADD);
                }
                for (; r < count; r++) {
                    long oa = off + 4 + (long) r * dim;
                    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                    for (int i = 0; i < dim; i += L) {
                        FloatVector ka = load(slice, oa + i);
                        a0 = ka.fma(FloatVector.fromArray(F, q, q0 + i), a0);
                        a1 = ka.fma(FloatVector.fromArray(F, q, q1 + i), a1);
                        a2 = ka.fma(FloatVector.fromArray(F, q, q2 + i), a2);
                        a3 = ka.fma(FloatVector.fromArray(F, q, q3 + i), a3);
                    }
                    scores[s0 + r] = k * a0.reduceLanes(ADD);
                    scores[s1 + r] = k * a1.reduceLanes(ADD);
                    scores[s2 + r] = k * a2.reduceLanes(ADD);
                    scores[s3 + r] = k * a3.reduceLanes(ADD);
                }
            }
            for (; j < heads; j++) {
                dotRows0(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * rows);
            }
        }

        /*
         * Grouped-query attention: chunk pair outer, rows inner, four heads at a time: the 4 heads
         * x 2 chunks of acc stay in registers across all rows, and each FP8 chunk is widened once
         * for the four heads. The slice scale is folded into each row's weights, as in
         * accumulateRows0.
         */
        @Override
        void accumulateRowsGroup0(MemorySegment slice, long off, int rows, int count, int dim,
                                  float[] w, int wOff, int heads, float[] acc, int aOff) {
            float s = slice.get(F32, off);
            long base = off + 4;
            int j = 0;
            for (; j + 4 <= heads && dim % (2 * L) == 0; j += 4) {
                int w0 = wOff + j * rows, w1 = w0 + rows, w2 = w1 + rows, w3 = w2 + rows;
                int c0 = aOff + j * dim, c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;
                for (int i = 0; i < dim; i += 2 * L) {
                    FloatVector x0 = FloatVector.fromArray(F, acc, c0 + i), y0 = FloatVector.fromArray(F, acc, c0 + i + L);
                    FloatVector x1 = FloatVector.fromArray(F, acc, c1 + i), y1 = FloatVector.fromArray(F, acc, c1 + i + L);
                    FloatVector x2 = FloatVector.fromArray(F, acc, c2 + i), y2 = FloatVector.fromArray(F, acc, c2 + i + L);
                    FloatVector x3 = FloatVector.fromArray(F, acc, c3 + i), y3 = FloatVector.fromArray(F, acc, c3 + i + L);
                    long o = base + i;
                    for (int r = 0; r < count; r++, o += dim) {
                        FloatVector va = load(slice, o);
                        FloatVector vb = load(slice, o + L);
                        FloatVector wv = FloatVector.broadcast(F, w[w0 + r] * s);
                        x0 = va.fma(wv, x0);
                        y0 = vb.fma(wv, y0);
                        wv = FloatVector.broadcast(F, w[w1 + r] * s);
                        x1 = va.fma(wv, x1);
                        y1 = vb.fma(wv, y1);
                        wv = FloatVector.broadcast(F, w[w2 + r] * s);
                        x2 = va.fma(wv, x2);
                        y2 = vb.fma(wv, y2);
                        wv = FloatVector.broadcast(F, w[w3 + r] * s);
                        x3 = va.fma(wv, x3);
                        y3 = vb.fma(wv, y3);
                    }
                    x0.intoArray(acc, c0 + i);
                    y0.intoArray(acc, c0 + i + L);
                    x1.intoArray(acc, c1 + i);
                    y1.intoArray(acc, c1 + i + L);
                    x2.intoArray(acc, c2 + i);
                    y2.intoArray(acc, c2 + i + L);
                    x3.intoArray(acc, c3 + i);
                    y3.intoArray(acc, c3 + i + L);
                }
            }
            for (; j < heads; j++) {
                accumulateRows0(slice, off, rows, count, dim, w, wOff + j * rows, acc, aOff + j * dim);
            }
        }
    }
}
