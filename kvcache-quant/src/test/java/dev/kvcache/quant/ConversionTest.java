package dev.kvcache.quant;

import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.HexFormat;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The half-precision conversions of every provider: all 65536 fp16 and bf16 bit patterns decode to
 * exactly Float.float16ToFloat / the upper-half float, and random float bit patterns over the whole
 * finite range (subnormals, ties, values beyond the format's range) encode to the bytes of the
 * scalar rule (Float.floatToFloat16 or bf16 round-to-nearest-even, both saturating).
 */
class ConversionTest {

    @Test
    void everyHalfPatternDecodesExactly() {
        int n = 65536;
        MemorySegment seg = MemorySegment.ofArray(new byte[2 * n]);
        for (int h = 0; h < n; h++) {
            seg.set(Bits.I16, 2L * h, (short) h);
        }
        for (KernelProvider p : Quantizers.availableProviders()) {
            float[] f16 = new float[n];
            Quantizers.codec(p, KvFormats.F16, true).decode(seg, 1, n, f16);
            float[] bf16 = new float[n];
            Quantizers.codec(p, KvFormats.BF16, true).decode(seg, 1, n, bf16);
            for (int h = 0; h < n; h++) {
                assertEquals(Float.floatToRawIntBits(Float.float16ToFloat((short) h)), Float.floatToRawIntBits(f16[h]),
                        p.name() + " fp16 0x" + Integer.toHexString(h));
                assertEquals(h << 16, Float.floatToRawIntBits(bf16[h]), p.name() + " bf16 0x" + Integer.toHexString(h));
            }
        }
    }

    @Test
    void everyFp8CodeDecodesLikeTheTable() {
        for (var f : new dev.kvcache.KvFormat[] {KvFormats.FP8_E4M3, KvFormats.FP8_E5M2}) {
            Fp8Codec.Variant v = f == KvFormats.FP8_E4M3 ? Fp8Codec.E4M3 : Fp8Codec.E5M2;
            int rows = 3, dim = 256 + 7;   // every code, in three rows, plus a tail
            MemorySegment seg = MemorySegment.ofArray(new byte[4 + rows * dim]);
            seg.set(Bits.F32, 0, 1.5f);
            for (int i = 0; i < rows * dim; i++) {
                seg.set(Bits.I8, 4 + i, (byte) (i * 7 + i / dim));
            }
            for (KernelProvider p : Quantizers.availableProviders()) {
                Codec c = Quantizers.codec(p, f, true);
                float[] out = new float[rows * dim];
                c.decode(seg, rows, dim, out);
                float[] row = new float[dim];
                c.decodeRow(seg, 0, rows, 2, dim, row, 0);
                for (int i = 0; i < rows * dim; i++) {
                    float expect = v.table[(i * 7 + i / dim) & 0xFF] * 1.5f;
                    assertEquals(Float.floatToIntBits(expect), Float.floatToIntBits(out[i]), p.name() + " " + f + " code " + ((i * 7 + i / dim) & 0xFF));
                    if (i >= 2 * dim) {
                        assertEquals(Float.floatToIntBits(expect), Float.floatToIntBits(row[i - 2 * dim]), p.name() + " decodeRow");
                    }
                }
            }
        }
    }

    @Test
    void randomFloatPatternsEncodeLikeTheScalarRule() {
        long seed = new SplittableRandom().nextLong();
        SplittableRandom rnd = new SplittableRandom(seed);
        int dim = 1000;  // not a multiple of the lane count: the tail is covered too
        for (int t = 0; t < 200; t++) {
            float[] x = new float[dim];
            for (int i = 0; i < dim; i++) {
                float v;
                do {
                    v = switch (rnd.nextInt(3)) {
                        case 0 -> Float.intBitsToFloat(rnd.nextInt());                        // anything finite
                        case 1 -> Float.intBitsToFloat((rnd.nextInt(100, 145) << 23) | rnd.nextInt(1 << 23)
                                | (rnd.nextBoolean() ? 0x80000000 : 0));                          // around fp16 range
                        default -> Float.float16ToFloat((short) rnd.nextInt(0x7C00))
                                + Math.scalb(Float.float16ToFloat((short) rnd.nextInt(0x7C00)), -11); // near ties
                    };
                } while (!Float.isFinite(v));
                x[i] = v;
            }
            byte[] expectF16 = new byte[2 * dim], expectBf16 = new byte[2 * dim];
            MemorySegment ef = MemorySegment.ofArray(expectF16), eb = MemorySegment.ofArray(expectBf16);
            for (int i = 0; i < dim; i++) {
                ef.set(Bits.I16, 2L * i, Float.floatToFloat16(Math.max(-65504f, Math.min(65504f, x[i]))));
                int b = Float.floatToRawIntBits(Math.max(-Bits.BF16_MAX, Math.min(Bits.BF16_MAX, x[i])));
                eb.set(Bits.I16, 2L * i, (short) ((b + 0x7FFF + ((b >>> 16) & 1)) >>> 16));
            }
            for (KernelProvider p : Quantizers.availableProviders()) {
                byte[] f16 = new byte[2 * dim], bf16 = new byte[2 * dim];
                Quantizers.codec(p, KvFormats.F16, true).encode(x, 1, dim, MemorySegment.ofArray(f16));
                Quantizers.codec(p, KvFormats.BF16, true).encode(x, 1, dim, MemorySegment.ofArray(bf16));
                assertEquals(HexFormat.of().formatHex(expectF16), HexFormat.of().formatHex(f16), p.name() + " seed=" + seed);
                assertEquals(HexFormat.of().formatHex(expectBf16), HexFormat.of().formatHex(bf16), p.name() + " seed=" + seed);
            }
        }
    }
}
