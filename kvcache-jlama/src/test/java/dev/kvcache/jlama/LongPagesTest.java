package dev.kvcache.jlama;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.github.tjake.jlama.model.AbstractModel;
import com.github.tjake.jlama.tensor.AbstractTensor;
import com.github.tjake.jlama.tensor.KvBufferCache;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import java.io.IOException;
import java.util.Optional;
import java.util.Random;
import java.util.UUID;
import java.util.function.IntConsumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Pages longer than a block (issue #17): Jlama is handed runs of consecutive blocks as one page, and
 * its logits at every step equal those with its own KvBufferCache, whether the session's table is
 * one run, broken into short runs, or scattered (one page per block).
 */
class LongPagesTest {
    private static final int BLOCK = 4;
    private static final int PROMPT = 37;
    private static final int STEPS = 120;
    private static AbstractModel model;
    private static int[] tokens;
    private static float[][] own;

    @BeforeAll
    static void load() throws IOException {
        // GQA (4 query heads on 2 KV heads of 32), 2 layers, random weights
        model = RandomLlama.load(128, 256, 2, 4, 2, 96, 512, 17);
        Random r = new Random(5);
        tokens = new int[PROMPT + STEPS];
        for (int i = 0; i < tokens.length; i++) tokens[i] = 1 + r.nextInt(95);
        KvBufferCache cache = new KvBufferCache(model);
        try {
            own = logits(model, cache.getKvBuffer(UUID.randomUUID()), t -> {});
        } finally {
            cache.close();
        }
    }

    @AfterAll
    static void close() {
        if (model != null) model.close();
    }

    /** Teacher-forced: the prompt in one batch, then one token per step; the logits after each. */
    private static float[][] logits(AbstractModel m, KvBufferCache.KvBuffer kv, IntConsumer beforeStep) {
        int vocab = m.getConfig().vocabularySize;
        float[][] out = new float[STEPS + 1][vocab];
        try (AbstractTensor l = m.makeDenseTensor(vocab)) {
            int[] prompt = java.util.Arrays.copyOf(tokens, PROMPT);
            AbstractTensor last = m.batchForward(prompt, 0, kv);
            read(m, last.slice(last.shape().first() - 1), l, out[0]);
            last.close();
            for (int i = 0; i < STEPS; i++) {
                beforeStep.accept(tokens[PROMPT + i]);
                AbstractTensor o = m.forward(tokens[PROMPT + i], PROMPT + i, kv, Optional.empty());
                read(m, o, l, out[i + 1]);
                o.close();
            }
        }
        return out;
    }

    private static void read(AbstractModel m, AbstractTensor output, AbstractTensor l, float[] dst) {
        m.sample(output, 0f, 0f, l);
        for (int i = 0; i < dst.length; i++) dst[i] = l.get(0, i);
    }

    private static KvLayout layout() {
        return PagedKvBufferCache.layoutFor(model, BLOCK, KvFormats.F32);
    }

    private static float[][] paged(PagedKvBufferCache cache, PagedSession s, int[] pagesAtEnd) {
        s.admit(java.util.Arrays.copyOf(tokens, PROMPT));
        float[][] got = logits(model, s.kvBuffer(), s::admit);
        int last = s.sequence().length() - 1;
        pagesAtEnd[0] = s.kvBuffer().getKeyTensorsUptoPosition(0, last).length;
        pagesAtEnd[1] = s.kvBuffer().getKeyTensorsUptoPosition(0, last)[0].shape().first();
        return got;
    }

    private static double worst(float[][] want, float[][] got) {
        double worst = 0;
        for (int step = 0; step < want.length; step++) {
            for (int i = 0; i < want[step].length; i++) {
                worst = Math.max(worst, Math.abs(want[step][i] - got[step][i]) / Math.max(1, Math.abs(want[step][i])));
            }
        }
        return worst;
    }

    private static void assertSameLogits(float[][] got, String what) {
        double worst = worst(own, got);
        System.out.printf("[LongPagesTest] %s: largest relative logit difference to Jlama's own cache %.3g%n", what, worst);
        assertTrue(worst <= 1e-4, what + ": logits differ from Jlama's own cache by " + worst);
    }

    @Test
    void aFreshPoolGivesOneRunServedAsPagesOf128TokensWithJlamasLogits() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 64);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(64).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory, 128);
            PagedSession s = cache.session(UUID.randomUUID());
            int[] pages = new int[2];
            assertSameLogits(paged(cache, s, pages), "one run, pages of up to 128");
            // 157 positions = 40 blocks, ascending from 0: two pages of 32 blocks (128 tokens)
            assertArrayEquals(new int[] {2, 128}, pages);
            cache.close();
        }
    }

    /** Token by token from position 0 (no batch), {@code beforeStep} called with each position first. */
    private static float[][] stepwise(AbstractModel m, KvBufferCache.KvBuffer kv, IntConsumer beforeStep) {
        int vocab = m.getConfig().vocabularySize;
        float[][] out = new float[tokens.length][vocab];
        try (AbstractTensor l = m.makeDenseTensor(vocab)) {
            for (int pos = 0; pos < tokens.length; pos++) {
                beforeStep.accept(pos);
                AbstractTensor o = m.forward(tokens[pos], pos, kv, Optional.empty());
                read(m, o, l, out[pos]);
                o.close();
            }
        }
        return out;
    }

    @Test
    void interleavedSessionsGetOneBlockPagesAndTheSameLogits() {
        float[][] reference;
        KvBufferCache ownCache = new KvBufferCache(model);
        try {
            reference = stepwise(model, ownCache.getKvBuffer(UUID.randomUUID()), p -> {});
        } finally {
            ownCache.close();
        }
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 128);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(128).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            var other = manager.open("other");
            PagedSession s = cache.session(UUID.randomUUID());
            // another sequence takes a block just before each new block of ours: our table alternates
            float[][] got = stepwise(model, s.kvBuffer(), pos -> {
                if (pos > 0 && pos % BLOCK == 0) manager.append(other, new int[] {90, 91, 92, 93});
                s.admit(tokens[pos]);
            });
            int[] table = s.sequence().blockTable();
            assertEquals(table[0] + 2, table[1], "blocks alternate with the other sequence's");
            double worst = worst(reference, got);
            System.out.printf("[LongPagesTest] alternating blocks: largest relative logit difference %.3g%n", worst);
            assertTrue(worst <= 1e-5, "alternating blocks: logits differ from Jlama's own cache by " + worst);
            int last = s.sequence().length() - 1;
            assertEquals(last / BLOCK + 1, s.kvBuffer().getKeyTensorsUptoPosition(1, last).length, "one page per block");
            manager.free(other);
            cache.close();
        }
    }

    @Test
    void blockSizedPagesAndStagedLongPagesGiveTheSameLogits() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 64);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(64).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory, BLOCK);
            int[] pages = new int[2];
            assertSameLogits(paged(cache, cache.session(UUID.randomUUID()), pages), "one page per block");
            assertArrayEquals(new int[] {40, BLOCK}, pages);
            cache.close();
        }
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 64);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(64).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.staged(model, manager, memory, 64);
            int[] pages = new int[2];
            assertSameLogits(paged(cache, cache.session(UUID.randomUUID()), pages), "staged, pages of 64");
            assertArrayEquals(new int[] {3, 64}, pages);
            cache.close();
        }
    }

    @Test
    void prefixSharingBreaksTheRunOnlyWhereTheTablesDiverge() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 128);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(128).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            PagedSession a = cache.session(UUID.randomUUID());
            int[] pages = new int[2];
            paged(cache, a, pages);
            PagedSession b = cache.session(UUID.randomUUID());
            int hit = b.admit(java.util.Arrays.copyOf(tokens, PROMPT));
            assertEquals(36, hit, "9 full blocks of the prompt are cached");
            float[][] got = new float[STEPS + 1][];
            int vocab = model.getConfig().vocabularySize;
            try (AbstractTensor l = model.makeDenseTensor(vocab)) {
                AbstractTensor last = model.batchForward(java.util.Arrays.copyOfRange(tokens, hit, PROMPT), hit, b.kvBuffer());
                got[0] = new float[vocab];
                read(model, last.slice(last.shape().first() - 1), l, got[0]);
                last.close();
                for (int i = 0; i < STEPS; i++) {
                    b.admit(tokens[PROMPT + i]);
                    AbstractTensor o = model.forward(tokens[PROMPT + i], PROMPT + i, b.kvBuffer(), Optional.empty());
                    got[i + 1] = new float[vocab];
                    read(model, o, l, got[i + 1]);
                    o.close();
                }
            }
            assertSameLogits(got, "prefix of 9 shared blocks, then its own");
            // shared blocks 0..8, then fresh ones from 40: the break at logical block 9 allows single blocks only
            int[] t = b.sequence().blockTable();
            assertEquals(8, t[8]);
            assertTrue(t[9] != 9);
            cache.close();
        }
    }

    @Test
    void runLengthIsTheLargestPowerOfTwoThatDividesEveryBreak() {
        int[] run = new int[40];
        for (int i = 0; i < run.length; i++) run[i] = 3 + i;
        assertEquals(5, InPlacePages.runLog2(run, run.length, 5));
        assertEquals(3, InPlacePages.runLog2(run, run.length, 3));
        int[] broken = run.clone();
        for (int i = 24; i < broken.length; i++) broken[i] += 50;   // break at 24 = 8 * 3
        assertEquals(3, InPlacePages.runLog2(broken, broken.length, 5));
        broken[5] = 99;                                               // breaks at 5 and 6: odd
        assertEquals(0, InPlacePages.runLog2(broken, broken.length, 5));
        assertEquals(2, InPlacePages.runLog2(new int[] {8, 9, 10, 11, 0, 1}, 6, 5));
        assertEquals(0, InPlacePages.runLog2(new int[] {-1, 0, 1, 2}, 4, 5), "a released block: no runs");
        // on random tables, every group the choice allows is consecutive, and twice as long is not
        Random r = new Random(3);
        for (int trial = 0; trial < 500; trial++) {
            int n = 1 + r.nextInt(64);
            int[] t = new int[n];
            for (int i = 0; i < n; i++) t[i] = i > 0 && r.nextInt(8) != 0 ? t[i - 1] + 1 : r.nextInt(200);
            int k = InPlacePages.runLog2(t, n, 6);
            assertTrue(consecutiveGroups(t, k), "2^" + k + " for " + java.util.Arrays.toString(t));
            if (k < 6 && n > 1 << k) {
                assertTrue(!consecutiveGroups(t, k + 1), "2^" + (k + 1) + " was possible for " + java.util.Arrays.toString(t));
            }
        }
    }

    private static boolean consecutiveGroups(int[] t, int k) {
        for (int g = 0; g < t.length; g += 1 << k) {
            for (int j = g + 1; j < Math.min(t.length, g + (1 << k)); j++) {
                if (t[j] != t[j - 1] + 1) return false;
            }
        }
        return true;
    }

    @Test
    void aPoolOfExactlyTheBlocksNeededStillGetsLongPages() {
        // the last group is partial: its run reaches past the last block, into the memory's slack
        int blocks = (PROMPT + STEPS + BLOCK - 1) / BLOCK;   // 40
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), blocks);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(blocks).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory, 64);
            PagedSession s = cache.session(UUID.randomUUID());
            int[] pages = new int[2];
            assertSameLogits(paged(cache, s, pages), "exact pool, pages of up to 64");
            assertArrayEquals(new int[] {3, 64}, pages);
            AbstractTensor[] kp = s.kvBuffer().getKeyTensorsUptoPosition(1, s.sequence().length() - 1);
            assertEquals(64, kp[2].shape().first(), "the last page is a whole run too (Jlama reads 29 of its rows)");
            cache.close();
        }
    }
}
