package dev.kvcache;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Issue #12 (integrity): sizes are exact or refused naming the values, never wrapped around. */
class BoundsTest {

    private static final KvLayout LLAMA2_7B = new KvLayout(32, 32, 128, 16, KvFormats.F16);

    private static void refused(Executable call, String... fragments) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), () -> "'" + f + "' missing from: " + e.getMessage());
        }
    }

    // ------------------------------------------------------------------ KvLayout

    @Test
    void layoutWhoseKvDimOverflowsIntIsRefused() {
        // the hostile probe: kvHeads * headDim wraps to a negative int, and the block size wrapped
        // past Long.MAX_VALUE back into range
        refused(() -> new KvLayout(1058633899, 1361828043, 381175291, 65536, KvFormats.F16),
                "1361828043", "381175291", String.valueOf(Integer.MAX_VALUE));
        refused(() -> new KvLayout(1, 1 << 16, 1 << 16, 1, KvFormats.FP8_E4M3),
                "kvHeads x headDim", String.valueOf(1L << 32), String.valueOf(Integer.MAX_VALUE));
    }

    @Test
    void layoutWhoseBlockOverflowsLongIsRefusedForEveryFormat() {
        for (KvFormat f : KvFormats.all()) {
            // kvDim fits an int, but layers x kvHeads x slice does not fit a long
            refused(() -> new KvLayout(Integer.MAX_VALUE, 1 << 10, 1 << 10, 1 << 16, f),
                    String.valueOf(Integer.MAX_VALUE), "the limit is " + Integer.MAX_VALUE);
            // fits a long, not the per-block limit
            refused(() -> new KvLayout(1 << 12, 1, 1 << 10, 1 << 10, f),
                    "one block would take", "the limit is " + Integer.MAX_VALUE);
        }
    }

    @Test
    void everyAcceptedLayoutSizesExactly() {
        // a block just under the limit: products computed exactly, not wrapped
        KvLayout l = new KvLayout(1, 1, 1 << 14, 1 << 14, KvFormats.F16);
        assertEquals(2L * 2 * (1 << 14) * (1 << 14), l.bytesPerBlock());
        assertEquals(1 << 14, l.kvDim());
        assertTrue(l.bytesPerToken() > 0);
    }

    @Test
    void blocksForHugeTokenCountsDoesNotWrap() {
        assertEquals(Long.MAX_VALUE / 16 + 1, LLAMA2_7B.blocksFor(Long.MAX_VALUE));
        assertEquals(Long.MAX_VALUE / 16, LLAMA2_7B.blocksFor(Long.MAX_VALUE - 15));
        KvLayout odd = new KvLayout(1, 1, 32, KvLayout.MAX_BLOCK_TOKENS - 1, KvFormats.F16);
        long b = odd.blockTokens();
        assertEquals(Long.MAX_VALUE / b + (Long.MAX_VALUE % b == 0 ? 0 : 1), odd.blocksFor(Long.MAX_VALUE));
        assertEquals(1, LLAMA2_7B.withBlockTokens(1).blocksFor(1));
        assertEquals(Long.MAX_VALUE, LLAMA2_7B.withBlockTokens(1).blocksFor(Long.MAX_VALUE));
        assertEquals(0, LLAMA2_7B.blocksFor(0));
        refused(() -> LLAMA2_7B.blocksFor(-1), "-1");
    }

    // ------------------------------------------------------------------ KvFormat sizes

    @Test
    void formatSizesAreExactOrRefused() {
        for (KvFormat f : KvFormats.all()) {
            long k = assertDoesNotThrow(() -> f.keyBytes(Integer.MAX_VALUE, 1 << 20), f.name());
            assertTrue(k > 0, f.name() + " keyBytes wrapped: " + k);
            refused(() -> f.keyBytes(-1, 32), "tokens", "-1");
            refused(() -> f.valueBytes(16, -32), "headDim", "-32");
        }
        // 4 x (2^31 - 1) x (2^31 - 1) does not fit a long: refused, not negative
        refused(() -> KvFormats.F32.keyBytes(Integer.MAX_VALUE, Integer.MAX_VALUE),
                "F32", String.valueOf(Integer.MAX_VALUE), String.valueOf(Long.MAX_VALUE));
        // the others fit: exact
        assertEquals(2L * Integer.MAX_VALUE * Integer.MAX_VALUE,
                KvFormats.F16.valueBytes(Integer.MAX_VALUE, Integer.MAX_VALUE));
        assertEquals((long) Integer.MAX_VALUE * Integer.MAX_VALUE + 4,
                KvFormats.FP8_E4M3.keyBytes(Integer.MAX_VALUE, Integer.MAX_VALUE));
        assertEquals((long) Integer.MAX_VALUE * (Integer.MAX_VALUE / 32) * 34,
                KvFormats.Q8_0.keyBytes(Integer.MAX_VALUE, Integer.MAX_VALUE));
    }

    // ------------------------------------------------------------------ CapacityPlanner

    @Test
    void plannerAnswersAreExactOrRefusedNamingTheValue() {
        refused(() -> CapacityPlanner.kvBytes(LLAMA2_7B, Long.MAX_VALUE), String.valueOf(Long.MAX_VALUE));
        long fits = Long.MAX_VALUE / LLAMA2_7B.bytesPerBlock() * 16;
        assertEquals(fits / 16 * LLAMA2_7B.bytesPerBlock(), CapacityPlanner.kvBytes(LLAMA2_7B, fits));
        refused(() -> CapacityPlanner.kvBytes(LLAMA2_7B, fits + 1), String.valueOf(fits + 1));
        refused(() -> CapacityPlanner.contiguousBytes(LLAMA2_7B, Long.MAX_VALUE, 2), String.valueOf(Long.MAX_VALUE));
        refused(() -> CapacityPlanner.contiguousBytes(LLAMA2_7B, 3, Long.MAX_VALUE / 2), "3 sessions");
        refused(() -> new CapacityPlanner.Route("chat", Long.MAX_VALUE, 16).kvBytes(LLAMA2_7B), "chat",
                String.valueOf(Long.MAX_VALUE));
        CapacityPlanner.Route half = new CapacityPlanner.Route("half", Long.MAX_VALUE / LLAMA2_7B.bytesPerBlock() / 2 + 1, 16);
        refused(() -> CapacityPlanner.kvBytes(LLAMA2_7B, List.of(half, half)), "half", String.valueOf(Long.MAX_VALUE));
        // windowed KV of a huge sequence is small and exact
        assertEquals(66 * LLAMA2_7B.bytesPerBlock(), CapacityPlanner.kvBytesWithWindow(LLAMA2_7B, Long.MAX_VALUE, 4, 1024));
        assertEquals(1, CapacityPlanner.maxSequences(LLAMA2_7B, Long.MAX_VALUE, fits));
        assertEquals(Long.MAX_VALUE / LLAMA2_7B.bytesPerBlock() * 16, CapacityPlanner.maxContextTokens(LLAMA2_7B, Long.MAX_VALUE, 1));
    }
}
