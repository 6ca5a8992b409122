package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.nio.ByteOrder;
import java.util.Optional;

import static jdk.incubator.vector.VectorOperators.B2F;
import static jdk.incubator.vector.VectorOperators.GE;
import static jdk.incubator.vector.VectorOperators.GT;
import static jdk.incubator.vector.VectorOperators.I2S;
import static jdk.incubator.vector.VectorOperators.LE;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.LT;
import static jdk.incubator.vector.VectorOperators.MAX;
import static jdk.incubator.vector.VectorOperators.OR;
import static jdk.incubator.vector.VectorOperators.S2I;

/*
 * The Vector API (jdk.incubator.vector) provider: the species every vector codec uses, the shared
 * conversions (fp16 both ways, bytes to floats, finite scan, block amax) and the softmax arithmetic
 * (VectorSoftmax). The codecs themselves live with their format family (F32Family, HalfFamily,
 * Q8Family, Q5Family, Q4Family, Fp8Codec, VectorKivi) and are found through the Formats registry;
 * their fused kernels are generated (gen.KernelGenerator). Only Quantizers.loadVectorProvider names
 * this class (as a string), and only this class's codec() reaches the families' vector factories,
 * so nothing links against the incubator module unless it is present.
 *
 * Species: one float species F of L lanes (the preferred width, at least 256 bits; capped by
 * -Dkvcache.vector.bits=256), and the int/short/byte species with the same lane count, so a load of
 * L bytes or shorts widens to exactly one float vector (convertShape part 0). L is 8 or 16, which
 * divides the 32-value groups of Q8_0 and the 16-byte nibble arrays of Q4_0/Q5_0, so those formats have
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

    /** The vector factory of f's family (Formats); null when the family has only scalar codecs. */
    @Override
    public Codec codec(KvFormat f, boolean keys) {
        return Formats.vector(f, keys);
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
        for (int k = L; k < dev.kvcache.KvFormats.GROUP; k += L) {
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
}
