package dev.kvcache;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CapacityPlannerTest {

    private static final long GIB = 1L << 30;
    private static final KvLayout LLAMA2_7B = new KvLayout(32, 32, 128, 16, KvFormats.F16);

    @Test
    void contractExample() {
        assertEquals(524_288, LLAMA2_7B.bytesPerToken());
        assertEquals(524_288L * 16, LLAMA2_7B.bytesPerBlock());
        assertEquals(16_384, CapacityPlanner.maxContextTokens(LLAMA2_7B, 8 * GIB, 1));
        assertEquals(1, CapacityPlanner.maxSequences(LLAMA2_7B, 8 * GIB, 16_384));
        assertEquals(0, CapacityPlanner.maxSequences(LLAMA2_7B, 8 * GIB, 16_385));
    }

    @Test
    void kvBytesRoundsUpToWholeBlocks() {
        assertEquals(0, CapacityPlanner.kvBytes(LLAMA2_7B, 0));
        assertEquals(LLAMA2_7B.bytesPerBlock(), CapacityPlanner.kvBytes(LLAMA2_7B, 1));
        assertEquals(LLAMA2_7B.bytesPerBlock(), CapacityPlanner.kvBytes(LLAMA2_7B, 16));
        assertEquals(2 * LLAMA2_7B.bytesPerBlock(), CapacityPlanner.kvBytes(LLAMA2_7B, 17));
    }

    @Test
    void formatsSizeExactly() {
        // per head, per token: Q8_0 = 128/32 groups of 34 bytes, Q4_0 = 4 x 18
        assertEquals(32L * 32 * 2 * 136, LLAMA2_7B.withFormat(KvFormats.Q8_0).bytesPerToken());
        assertEquals(32L * 32 * 2 * 72, LLAMA2_7B.withFormat(KvFormats.Q4_0).bytesPerToken());
        assertEquals(32L * 32 * 2 * 256, LLAMA2_7B.withFormat(KvFormats.F32).bytesPerToken() / 2);
        // FP8: one byte per element plus a float scale per block and head
        assertEquals(32L * 32 * 2 * (16 * 128 + 4), LLAMA2_7B.withFormat(KvFormats.FP8_E4M3).bytesPerBlock());
        // KIVI-2 keys: 128 channels x (16 tokens x 2 bits = 4 bytes + 4 bytes scale/min); values 16 x 4 x (8 + 4)
        assertEquals(32L * 32 * (128 * 8 + 16 * 4 * 12), LLAMA2_7B.withFormat(KvFormats.KIVI_2).bytesPerBlock());
        for (KvFormat f : KvFormats.all()) {
            double bits = f.bitsPerElement(128, 16);
            assertTrue(bits > 2 && bits <= 32, f + " " + bits);
            assertEquals(f, KvFormats.byName(f.name().toLowerCase()));
        }
        assertThrows(IllegalArgumentException.class, () -> KvFormats.byName("Q3_K"));
    }

    @Test
    void blockFormatsRejectHeadsThatAreNotWholeGroups() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new KvLayout(1, 1, 48, 16, KvFormats.Q4_0));
        assertTrue(e.getMessage().contains("48"), e.getMessage());
        new KvLayout(1, 1, 48, 16, KvFormats.F16);
    }

    @Test
    void routesAddUp() {
        var chat = new CapacityPlanner.Route("chat", 48, 2048);
        var agent = new CapacityPlanner.Route("agent", 12, 40_000);
        long expected = 48 * CapacityPlanner.kvBytes(LLAMA2_7B, 2048) + 12 * CapacityPlanner.kvBytes(LLAMA2_7B, 40_000);
        assertEquals(expected, CapacityPlanner.kvBytes(LLAMA2_7B, List.of(chat, agent)));
    }

    @Test
    void windowBoundsTheSequence() {
        long full = CapacityPlanner.kvBytes(LLAMA2_7B, 100_000);
        long windowed = CapacityPlanner.kvBytesWithWindow(LLAMA2_7B, 100_000, 4, 4096);
        assertEquals((1 + 256 + 1) * LLAMA2_7B.bytesPerBlock(), windowed);
        assertTrue(windowed < full);
        assertEquals(CapacityPlanner.kvBytes(LLAMA2_7B, 100), CapacityPlanner.kvBytesWithWindow(LLAMA2_7B, 100, 4, 4096));
        assertEquals(80 * GIB / windowed, CapacityPlanner.maxSequencesWithWindow(LLAMA2_7B, 80 * GIB, 100_000, 4, 4096));
    }

    @Test
    void maxContextAtConcurrency() {
        long blocks = 80 * GIB / LLAMA2_7B.bytesPerBlock();
        assertEquals(blocks / 10 * 16, CapacityPlanner.maxContextTokens(LLAMA2_7B, 80 * GIB, 10));
        assertTrue(CapacityPlanner.contiguousBytes(LLAMA2_7B, 10, 4096) > 0);
    }

    @Test
    void badInputNamesTheValue() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CapacityPlanner.maxSequences(LLAMA2_7B, -5, 10));
        assertTrue(e.getMessage().contains("-5"));
        e = assertThrows(IllegalArgumentException.class, () -> CapacityPlanner.maxContextTokens(LLAMA2_7B, 10, 0));
        assertTrue(e.getMessage().contains("0"));
        e = assertThrows(IllegalArgumentException.class, () -> new KvLayout(0, 1, 1, 1, KvFormats.F32));
        assertTrue(e.getMessage().contains("layers"));
        e = assertThrows(IllegalArgumentException.class, () -> CapacityPlanner.kvBytes(LLAMA2_7B, Long.MAX_VALUE / 2));
        assertTrue(e.getMessage().contains(String.valueOf(Long.MAX_VALUE / 2)), e.getMessage());
    }
}
