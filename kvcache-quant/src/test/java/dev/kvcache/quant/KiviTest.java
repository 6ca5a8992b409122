package dev.kvcache.quant;

import dev.kvcache.KvFormats;
import dev.kvcache.Quantizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** KIVI layouts on hand-derived vectors, for every provider (scalar and Vector API); role selection in Quantizers. */
class KiviTest {

    static List<KernelProvider> providers() {
        return Quantizers.availableProviders();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("providers")
    void keysArePerChannelAcrossTokens(KernelProvider p) {
        // x[r][c] = c + 1.5 r, r < 3: per channel min c, max c + 3, scale (3 - 0)/3 = 1 (exact in fp16),
        // codes round(1.5 r) = 0, 2, 3 at bits 0, 2, 4 of the channel's single code byte: 0x38.
        int rows = 3, dim = 32;
        float[] x = new float[rows * dim];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < dim; c++) {
                x[r * dim + c] = c + 1.5f * r;
            }
        }
        Quantizer k = Quantizers.codec(p, KvFormats.KIVI_2, true);
        assertEquals(KvFormats.KIVI_2.keyBytes(rows, dim), k.encodedBytes(rows, dim));
        assertEquals(dim * (1 + 4), k.encodedBytes(rows, dim));
        ByteBuffer b = ByteBuffer.allocate((int) k.encodedBytes(rows, dim)).order(ByteOrder.LITTLE_ENDIAN);
        k.encode(x, rows, dim, MemorySegment.ofArray(b.array()));
        for (int c = 0; c < dim; c++) {
            assertEquals(Float.floatToFloat16(1f), b.getShort(2 * c), "scale of channel " + c);
            assertEquals(Float.floatToFloat16(c), b.getShort(2 * dim + 2 * c), "min of channel " + c);
            assertEquals(0x38, b.get(4 * dim + c) & 0xFF, "codes of channel " + c);
        }
        float[] back = new float[rows * dim];
        k.decode(MemorySegment.ofArray(b.array()), rows, dim, back);
        assertEquals(2f, back[1 * dim]);       // token 1 channel 0: 0 + 1 * 2
        assertEquals(3f + 31, back[2 * dim + 31]);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("providers")
    void valuesArePerTokenGroupsOf32(KernelProvider p) {
        // one token, 32 channels, x_j = j: min 0, scale 31/15 -> fp16, codes round(j / s), nibble pairs
        Quantizer v = Quantizers.codec(p, KvFormats.KIVI_4, false);
        int dim = 32;
        float[] x = new float[dim];
        for (int j = 0; j < dim; j++) {
            x[j] = j;
        }
        assertEquals(4 + 16, v.encodedBytes(1, dim));
        ByteBuffer b = ByteBuffer.allocate(20).order(ByteOrder.LITTLE_ENDIAN);
        v.encode(x, 1, dim, MemorySegment.ofArray(b.array()));
        short s16 = Float.floatToFloat16(31f / 15);
        float s = Float.float16ToFloat(s16);
        assertEquals(s16, b.getShort(0));
        assertEquals((short) 0, b.getShort(2));
        for (int j = 0; j < dim; j += 2) {
            int lo = Math.min(15, Math.round(j / s)), hi = Math.min(15, Math.round((j + 1) / s));
            assertEquals(lo | hi << 4, b.get(4 + j / 2) & 0xFF, "byte " + j / 2);
        }
        float[] back = new float[dim];
        v.decode(MemorySegment.ofArray(b.array()), 1, dim, back);
        for (int j = 0; j < dim; j++) {
            assertEquals(Math.min(15, Math.round(j / s)) * s, back[j], "value " + j);
        }
    }

    @Test
    void rolesAndRowIndependence() {
        assertSame(Quantizers.of(KvFormats.KIVI_4), Quantizers.keys(KvFormats.KIVI_4));
        assertSame(Quantizers.kernels(KvFormats.KIVI_4), Quantizers.keyKernels(KvFormats.KIVI_4));
        assertFalse(Quantizers.keyKernels(KvFormats.KIVI_4).rowIndependent());
        assertTrue(Quantizers.valueKernels(KvFormats.KIVI_4).rowIndependent());
        assertEquals(KvFormats.KIVI_4.valueBytes(1, 128), Quantizers.valueKernels(KvFormats.KIVI_4).rowBytes(128));
        assertSame(Quantizers.keys(KvFormats.Q8_0), Quantizers.values(KvFormats.Q8_0));
        assertFalse(Quantizers.kernels(KvFormats.FP8_E4M3).rowIndependent());
    }
}
