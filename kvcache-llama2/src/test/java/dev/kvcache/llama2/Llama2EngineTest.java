package dev.kvcache.llama2;

import dev.kvcache.KvCacheStats;
import dev.kvcache.KvFormats;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class Llama2EngineTest {

    private static final int BLOCK = 16;

    private static Llama2Engine engine(int sequences, boolean prefixCaching) {
        Llama2Model m = TestModels.stories();
        return Llama2Engine.create(m, KvFormats.F32, BLOCK, Llama2Engine.blocksFor(m, BLOCK, sequences), prefixCaching);
    }

    @Test
    void f32EngineMatchesTheReferenceOverTheWholeContext() {
        Llama2Model m = TestModels.stories();
        int steps = m.config().seqLen(); // 512 positions, >= 200 required
        int[] ref = Llama2Reference.greedyFromBos(m, steps);
        try (Llama2Engine e = engine(1, true)) {
            Sequence s = e.open("a");
            int[] got = e.generate(s, new int[] {Llama2Reference.BOS}, steps);
            assertEquals(ref.length, TestModels.agreement(ref, got), "leading ids in agreement");
            assertArrayEquals(ref, got);
            assertArrayEquals(Llama2ReferenceTest.GOLDEN_64, Arrays.copyOf(got, 64));
            assertEquals(steps, s.length());
            assertEquals(steps, e.computedTokens());
            // the KV went through the manager: one slot per position
            assertEquals((steps + BLOCK - 1) / BLOCK, s.blockCount());
            assertEquals(steps, e.ledger().stats().liveTokens());
        }
    }

    @Test
    void logitsStayCloseToTheReference() {
        Llama2Model m = TestModels.stories();
        Llama2Reference r = new Llama2Reference(m);
        try (Llama2Engine e = engine(1, true)) {
            Sequence s = e.open("a");
            int token = Llama2Reference.BOS;
            double worst = 0;
            for (int pos = 0; pos < 100; pos++) {
                float[] a = r.forward(token, pos).clone();
                float[] b = e.step(s, token);
                for (int i = 0; i < a.length; i++) {
                    worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(a[i])));
                }
                token = Llama2Forward.argmax(a);
            }
            // online softmax and SIMD sums round differently from run.c's loops, but only by a few ulps
            assertTrue(worst < 1e-4, "worst relative logit difference " + worst);
        }
    }

    @Test
    void prefillComputesTheSameAsStepping() {
        int[] prompt = new int[20];
        prompt[0] = Llama2Reference.BOS;
        System.arraycopy(Llama2ReferenceTest.GOLDEN_64, 0, prompt, 1, 19);
        try (Llama2Engine e = engine(2, false)) {
            Sequence a = e.open("a");
            Llama2Engine.Prefill p = e.prefill(a, prompt);
            assertEquals(0, p.hits());
            Sequence b = e.open("b");
            float[] last = null;
            for (int t : prompt) {
                last = e.step(b, t);
            }
            assertArrayEquals(last, p.logits());
            assertEquals(Llama2ReferenceTest.GOLDEN_64[19], Llama2Forward.argmax(p.logits()));
        }
    }

    @Test
    void sequencesSharingAPrefixHitTheCacheAndDecodeAsIfAlone() {
        Llama2Model m = TestModels.stories();
        int steps = 120;
        try (Llama2Engine e = engine(5, true)) {
            // two sequences opened by hand: the second one's first append is served from the cache
            // while the first is still live (prefill commits once the prompt's KV is written)
            int[] prompt = new int[40];
            prompt[0] = Llama2Reference.BOS;
            System.arraycopy(Llama2ReferenceTest.GOLDEN_64, 0, prompt, 1, 39);
            Sequence first = e.open("first");
            assertEquals(0, e.prefill(first, prompt).hits());
            int[] other = prompt.clone();
            other[39] = 7;
            Sequence second = e.open("second");
            int hits = e.manager().append(second, other);
            assertEquals(32, hits, "two full blocks of 16");
            assertTrue(e.manager().stats().prefixHitTokens() > 0);
            e.free(first);
            e.free(second);

            // several interleaved sequences after a shared 33-token prefix
            int[][] prompts = e.branchingPrompts(new int[] {Llama2Reference.BOS}, 33, 3);
            KvCacheStats before = e.manager().stats();
            long computedBefore = e.computedTokens();
            List<Llama2Engine.Generation> gens = e.generateConcurrently("s", prompts, steps);
            KvCacheStats after = e.manager().stats();
            assertEquals(3 * 32, after.prefixHitTokens() - before.prefixHitTokens());
            for (int j = 0; j < 3; j++) {
                Llama2Engine.Generation g = gens.get(j);
                assertEquals(32, g.hits(), g.id());
                // the same ids as a run alone: the reference, and an engine without prefix caching
                int[] alone = new Llama2Reference(m).generate(prompts[j], steps);
                assertArrayEquals(alone, g.ids(), "sequence " + j);
                try (Llama2Engine solo = engine(1, false)) {
                    assertArrayEquals(alone, solo.generate(solo.open("x"), prompts[j], steps));
                }
            }
            // hits were not recomputed: prompt tokens computed = prompt length - 32 each
            long generated = gens.stream().mapToLong(g -> g.ids().length).sum();
            assertEquals(3 * (34 - 32) + generated - 3, e.computedTokens() - computedBefore);
            // the branches differ (j-th likeliest token after the prefix) and branch 0 is plain greedy
            assertTrue(prompts[0][33] != prompts[1][33] && prompts[1][33] != prompts[2][33]);
            assertArrayEquals(Arrays.copyOfRange(Llama2ReferenceTest.GOLDEN_64, 0, 33),
                    Arrays.copyOfRange(prompts[0], 1, 34));
            assertEquals(0, after.liveSequences(), "generateConcurrently frees its sequences");
        }
    }

    @Test
    void aFailedPrefillAbortsAndPublishesNothingItMayNotHaveWritten() {
        Llama2Model m = TestModels.stories();
        int steps = 60;
        int[] prompt = new int[40]; // two full blocks of 16 and 8 more
        prompt[0] = Llama2Reference.BOS;
        System.arraycopy(Llama2ReferenceTest.GOLDEN_64, 0, prompt, 1, 39);
        int[] alone = new Llama2Reference(m).generate(prompt, steps);
        try (Llama2Engine e = engine(3, true)) {
            // the store fails while the prompt's KV is being written (token 20, inside block 1)
            int failAt = 20 * m.config().layers();
            int[] writes = {0};
            e.beforeWrite = () -> {
                if (writes[0]++ == failAt) {
                    throw new IllegalStateException("injected store failure");
                }
            };
            Sequence broken = e.open("broken");
            IllegalStateException x = assertThrows(IllegalStateException.class, () -> e.prefill(broken, prompt));
            assertEquals("injected store failure", x.getMessage());
            e.beforeWrite = null;
            assertFalse(broken.isLive(), "the engine aborted it");
            assertEquals(0, e.ledger().stats().usedBlocks());
            assertEquals(0, e.ledger().publishedBlocks());
            assertEquals(2, e.ledger().abortedBlocks()); // both full blocks, although block 0 was written
            assertEquals(0, e.manager().cachedPrefixLength(prompt));

            // the same prompt again: nothing served from the aborted sequence, computed afresh
            Sequence again = e.open("again");
            assertArrayEquals(alone, e.generate(again, prompt, steps));
            assertEquals(0, e.ledger().stats().prefixHitTokens());
            // its prompt was committed after the write: a concurrent sequence hits it while it runs
            Sequence third = e.open("third");
            assertArrayEquals(alone, e.generate(third, prompt, steps));
            assertEquals(32, e.ledger().stats().prefixHitTokens());
            e.free(again);
            e.free(third);

            // a step that fails aborts too; the engine keeps serving
            Sequence s = e.open("stepper");
            e.prefill(s, prompt);
            e.beforeWrite = () -> {
                throw new IllegalStateException("injected");
            };
            assertThrows(IllegalStateException.class, () -> e.step(s, 5));
            e.beforeWrite = null;
            assertFalse(s.isLive());
            assertEquals(0, e.ledger().stats().liveSequences());
            assertEquals(0, e.ledger().callbackErrors());
        }
    }

    @Test
    void aFullPoolRefusesAndChangesNothing() {
        Llama2Model m = TestModels.stories();
        try (Llama2Engine e = Llama2Engine.create(m, KvFormats.F32, BLOCK, 2, true)) {
            Sequence s = e.open("a");
            int[] twenty = Arrays.copyOf(new int[] {1}, 20);
            e.prefill(s, twenty);
            KvCacheStats before = e.manager().stats();
            assertThrows(IllegalStateException.class, () -> e.prefill(s, twenty));
            assertEquals(20, s.length());
            assertEquals(before.usedBlocks(), e.manager().stats().usedBlocks());
            // it still decodes where it was
            e.step(s, 5);
            assertEquals(21, s.length());
        }
    }

    @Test
    void badInput() {
        Llama2Model m = TestModels.stories();
        IllegalArgumentException q8 = assertThrows(IllegalArgumentException.class,
                () -> Llama2Engine.create(m, KvFormats.Q8_0, BLOCK, 8, true));
        assertTrue(q8.getMessage().contains("headDim must be a multiple of 32, got 8"), q8.getMessage());
        Llama2Engine e = engine(1, true);
        try {
            Sequence s = e.open("a");
            assertThrows(IllegalArgumentException.class, () -> e.step(s, 512));
            assertThrows(IllegalArgumentException.class, () -> e.prefill(s, 3, -1));
            assertThrows(IllegalArgumentException.class, () -> e.prefill(s));
            assertEquals(0, s.length(), "refused calls append nothing");
            assertThrows(IllegalArgumentException.class, () -> e.prefill(s, new int[513]));
            assertThrows(IllegalArgumentException.class, () -> e.branchingPrompts(new int[] {1}, 0, 2));
        } finally {
            e.close(); // frees the still-open sequence "a"
        }
        assertThrows(IllegalStateException.class, () -> e.open("b"));
        assertThrows(IllegalStateException.class, () -> e.store().readKey(0, 0, new float[32]));
        e.close(); // idempotent
    }
}
