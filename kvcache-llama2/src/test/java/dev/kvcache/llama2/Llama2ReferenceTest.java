package dev.kvcache.llama2;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class Llama2ReferenceTest {

    /**
     * The first 64 greedy ids from BOS of stories260K.bin, recorded from Llama2Reference on
     * 2026-11-25. The same 64 (and all 512 positions) came out of two independent implementations:
     * a numpy float32 decoder using the checkpoint's own freq_cis tables, and the C decoder in
     * src/test/c compiled with gcc -O0 (see CrossCheckWithCTest).
     */
    static final int[] GOLDEN_64 = {
            461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264,
            283, 452, 288, 13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431,
            431, 293, 430, 417, 363, 416, 315, 342, 418, 424, 400, 442, 402, 303, 266, 299,
            374, 466, 396, 303, 271, 362, 390, 469, 306, 469, 423, 314, 347, 305, 356, 333,
    };

    @Test
    void greedyFromBosMatchesTheGoldenVector() {
        assertArrayEquals(GOLDEN_64, Llama2Reference.greedyFromBos(TestModels.stories(), 64));
    }

    @Test
    void stepsCountPositionsLikeRunC() {
        Llama2Model m = TestModels.stories();
        int[] long256 = Llama2Reference.greedyFromBos(m, 256);
        assertEquals(256, long256.length);
        assertArrayEquals(GOLDEN_64, Arrays.copyOf(long256, 64));
        // a prompt of the first 10 greedy tokens continues exactly as greedy would; positions include the prompt
        int[] prompt = new int[10];
        prompt[0] = Llama2Reference.BOS;
        System.arraycopy(GOLDEN_64, 0, prompt, 1, 9);
        int[] cont = new Llama2Reference(m).generate(prompt, 64);
        assertArrayEquals(Arrays.copyOfRange(GOLDEN_64, 9, 64), cont);
        // steps 0 and steps > seq_len mean seq_len
        assertEquals(m.config().seqLen(), Greedy.clampSteps(m.config(), 0));
        assertEquals(m.config().seqLen(), Greedy.clampSteps(m.config(), 10_000));
        assertThrows(IllegalArgumentException.class, () -> Greedy.clampSteps(m.config(), -1));
    }

    @Test
    void stopsWhenBosComesOutAndFeedsPromptTokens() {
        Llama2Model.Config c = TestModels.stories().config();
        List<String> calls = new ArrayList<>();
        // a fake model: argmax is 7 until position 4, where BOS (1) wins
        int[] out = Greedy.generate(c, new int[] {1, 9, 8}, 100, (token, pos) -> {
            calls.add(token + "@" + pos);
            float[] logits = new float[c.vocabSize()];
            logits[pos == 4 ? 1 : 7] = 1f;
            return logits;
        });
        assertEquals(List.of("1@0", "9@1", "8@2", "7@3", "7@4"), calls);
        assertArrayEquals(new int[] {7, 7}, out);
        // argmax takes the first of equal maxima, like run.c
        assertEquals(2, Llama2Forward.argmax(new float[] {0f, 1f, 3f, 3f}));
    }

    @Test
    void refusesBadPromptsAndPositions() {
        Llama2Model m = TestModels.stories();
        Llama2Reference r = new Llama2Reference(m);
        assertThrows(IllegalArgumentException.class, () -> r.generate(new int[0], 10));
        assertThrows(IllegalArgumentException.class, () -> r.generate(new int[] {1, 512}, 10));
        assertThrows(IllegalArgumentException.class, () -> r.forward(-1, 0));
        assertThrows(IllegalArgumentException.class, () -> r.forward(1, 512));
    }
}
