package dev.kvcache.jlama;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.github.tjake.jlama.model.AbstractModel;
import com.github.tjake.jlama.model.functions.Generator;
import com.github.tjake.jlama.safetensors.prompt.PromptContext;
import com.github.tjake.jlama.tensor.KvBufferCache;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import java.lang.reflect.Field;
import java.util.UUID;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * End to end on real weights: Jlama 0.8.4 running stories260K (converted from llama2.c) with its KV
 * cache served by kvcache, compared id for id with Jlama's own cache at F32.
 */
class PagedKvBufferCacheTest {
    private static final int BLOCK = 16;
    private static final int GENERATE = 70;
    /** BOS then fixed pseudo-random ids: a 40-token prompt = 2 full blocks + 8. */
    private static final int[] PROMPT = IntStream.range(0, 40).map(i -> i == 0 ? 1 : 3 + (i * 37 + 11) % 509).toArray();

    private static AbstractModel model;
    private static int[] ownIds;

    @BeforeAll
    static void load() {
        model = Stories260K.load();
        ownIds = Stories260K.greedyWithJlamaCache(model, PROMPT, GENERATE);
    }

    @AfterAll
    static void close() {
        if (model != null) model.close();
    }

    private static KvLayout layout() {
        return PagedKvBufferCache.layoutFor(model, BLOCK, KvFormats.F32);
    }

    @Test
    void inPlaceCacheGivesJlamasOwnGreedyIdsFor70Tokens() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 64);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(64).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            PagedSession s = cache.session(UUID.randomUUID());
            assertEquals(0, s.admit(PROMPT));
            int[] ids = Stories260K.greedy(model, s, PROMPT, 0, GENERATE);
            assertArrayEquals(ownIds, ids);

            int length = PROMPT.length + GENERATE - 1; // the last sampled id is never fed back
            assertEquals(length, s.sequence().length());
            KvCacheStats st = manager.stats();
            assertEquals(1, st.liveSequences());
            assertEquals(length, st.liveTokens());
            assertEquals((length + BLOCK - 1) / BLOCK, st.usedBlocks());
            cache.close();
            assertEquals(0, manager.stats().liveSequences());
        }
    }

    @Test
    void oddBlockSizesServeTheSameIds() {
        // Jlama's own page length is arbitrary, so any block size must work: 7 tokens, not a power of two
        KvLayout odd = PagedKvBufferCache.layoutFor(model, 7, KvFormats.F32);
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(odd, 20);
             KvCacheManager manager = KvCacheManager.builder(odd).blocks(20).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            PagedSession s = cache.session(UUID.randomUUID());
            s.admit(PROMPT);
            assertArrayEquals(ownIds, Stories260K.greedy(model, s, PROMPT, 0, GENERATE));
            assertEquals((PROMPT.length + GENERATE - 1 + 6) / 7, manager.stats().usedBlocks());
            cache.close();
        }
    }

    @Test
    void stagedCacheOverAnF32StoreGivesJlamasOwnGreedyIds() {
        try (JlamaBlockMemory store = JlamaBlockMemory.allocate(layout(), 64);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(64).store(store).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.staged(model, manager, store);
            PagedSession s = cache.session(UUID.randomUUID());
            s.admit(PROMPT);
            assertArrayEquals(ownIds, Stories260K.greedy(model, s, PROMPT, 0, GENERATE));
            cache.close();
        }
    }

    @Test
    void secondSessionTakesTheCachedPrefixAndComputesOnlyTheRest() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 64);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(64).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            PagedSession a = cache.session(UUID.randomUUID());
            assertEquals(0, a.admit(PROMPT));
            assertArrayEquals(ownIds, Stories260K.greedy(model, a, PROMPT, 0, GENERATE));
            int usedByA = manager.stats().usedBlocks();

            PagedSession b = cache.session(UUID.randomUUID());
            int hit = b.admit(PROMPT);
            assertEquals(32, hit, "two full blocks of the 40-token prompt come from the cache");
            int[] shared = a.sequence().blockTable();
            int[] mine = b.sequence().blockTable();
            assertEquals(shared[0], mine[0]);
            assertEquals(shared[1], mine[1]);
            assertNotEquals(shared[2], mine[2]);
            // Jlama computes only the 8 uncached prompt tokens, attending to A's blocks for the rest
            int[] rest = java.util.Arrays.copyOfRange(PROMPT, hit, PROMPT.length);
            assertArrayEquals(ownIds, Stories260K.greedy(model, b, rest, hit, GENERATE));
            assertEquals(usedByA + (b.sequence().blockCount() - 2), manager.stats().usedBlocks());
            assertEquals(32, manager.stats().prefixHitTokens());

            // A third session whose prompt Jlama recomputes in full (as generate() does) must not disturb
            // the shared blocks: its writes to cached positions go to scratch.
            PagedSession c = cache.session(UUID.randomUUID());
            assertEquals(32, c.admit(PROMPT));
            assertArrayEquals(ownIds, Stories260K.greedy(model, c, PROMPT, 0, GENERATE));
            float[] before = new float[layout().kvHeads() * layout().headDim()], after = before.clone();
            memory.readKey(2, a.sequence().slot(5), before);
            c.kvBuffer().getKeyTensorForPosition(2, 5).set(Float.NaN, 0, 3); // a cached position: scratch
            memory.readKey(2, a.sequence().slot(5), after);
            assertArrayEquals(before, after);
            c.kvBuffer().getKeyTensorForPosition(2, 35).set(7f, 0, 3); // its own position: in place
            memory.readKey(2, c.sequence().slot(35), after);
            assertEquals(7f, after[3]);
            a.release();
            b.release();
            PagedSession d = cache.session(UUID.randomUUID());
            assertEquals(32, d.admit(PROMPT));
            assertArrayEquals(ownIds, Stories260K.greedy(model, d, rest, 32, GENERATE));
            cache.close();
        }
    }

    @Test
    void aFailedForwardPassPublishesNothingAndACommittedOneIsSharedAtOnce() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 64);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(64).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory); // not installed
            // Jlama's pass over 41 positions fails at position 40 of layer 0 (no token id recorded for
            // it): the prompt's rows of layers 1.. were never written
            PagedSession broken = cache.session(UUID.randomUUID());
            assertEquals(0, broken.admit(PROMPT));
            int[] longer = Stories260K.concat(PROMPT, 5);
            assertThrows(IllegalStateException.class, () -> model.batchForward(longer, 0, broken.kvBuffer()));
            assertTrue(broken.isFailed());
            broken.kvBuffer().close(); // as Jlama's try-with-resources would: no commit
            IllegalStateException refused = assertThrows(IllegalStateException.class, () -> broken.admit(7));
            assertTrue(refused.getMessage().contains("did not write their K/V"), refused.getMessage());
            assertThrows(IllegalStateException.class, broken::commit);
            assertThrows(IllegalStateException.class, () -> cache.fork(broken.id(), UUID.randomUUID()));
            assertEquals(0, manager.cachedPrefixLength(PROMPT)); // nothing of it was ever published
            broken.release(); // aborts
            assertFalse(broken.isLive());
            assertEquals(2, manager.ledger().abortedBlocks());
            assertEquals(0, manager.ledger().publishedBlocks());
            assertEquals(0, manager.cachedPrefixLength(PROMPT));

            // the same prompt again: computed afresh, Jlama's own ids
            PagedSession again = cache.session(UUID.randomUUID());
            assertEquals(0, again.admit(PROMPT));
            Stories260K.greedy(model, again, PROMPT, 0, 1); // the prompt's forward pass only
            assertEquals(0, manager.cachedPrefixLength(PROMPT), "written, but pending until the next admit or commit");
            again.commit(); // the engine says the pass returned: shared at once, while `again` lives
            assertEquals(32, manager.cachedPrefixLength(PROMPT));
            PagedSession other = cache.session(UUID.randomUUID());
            int hit = other.admit(PROMPT);
            assertEquals(32, hit);
            int[] rest = java.util.Arrays.copyOfRange(PROMPT, hit, PROMPT.length);
            assertArrayEquals(ownIds, Stories260K.greedy(model, other, rest, hit, GENERATE));
            other.release(); // its passes were complete: freed, not aborted
            again.release();
            assertEquals(2, manager.ledger().abortedBlocks());
            assertEquals(0, manager.stats().liveSequences());
            cache.close();
        }
    }

    @Test
    void forkedSessionsDivergeWithoutDisturbingEachOther() {
        int[] prompt = java.util.Arrays.copyOf(PROMPT, 20); // ends inside block 1: the fork shares a partial block
        int forced = 300;
        int[] parentWant = Stories260K.greedyWithJlamaCache(model, prompt, 24);
        int[] childWant = Stories260K.greedyWithJlamaCache(model, Stories260K.concat(prompt, forced), 24);
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 32);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(32).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            UUID pid = UUID.randomUUID();
            PagedSession parent = cache.session(pid);
            parent.admit(prompt);
            // prompt only: the first sampled id is not fed back, so the parent holds exactly the prompt
            Stories260K.greedy(model, parent, prompt, 0, 1);
            PagedSession child = cache.fork(pid, UUID.randomUUID());
            assertArrayEquals(parent.sequence().blockTable(), child.sequence().blockTable());

            child.admit(forced); // copy-on-write of the shared partial block happens here
            assertNotEquals(parent.sequence().blockTable()[1], child.sequence().blockTable()[1]);
            int[] childIds = Stories260K.greedy(model, child, new int[] {forced}, prompt.length, 24);
            assertArrayEquals(childWant, childIds);
            // the parent continues from its own (uncopied) block, untouched by the child's writes
            parent.admit(parentWant[0]);
            int[] parentIds = Stories260K.greedy(model, parent, new int[] {parentWant[0]}, prompt.length, 23);
            assertArrayEquals(java.util.Arrays.copyOfRange(parentWant, 1, 24), parentIds);
            cache.close();
        }
    }

    @Test
    void jlamasOwnGenerateRunsOnTheInstalledCache() throws Exception {
        AbstractModel m = Stories260K.load();
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 32);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(32).store(memory).build()) {
            PromptContext empty = PromptContext.of("");
            Generator.Response own = m.generate(UUID.randomUUID(), empty, 0f, GENERATE, (t, f) -> {});

            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(m, manager, memory).install();
            Field f = AbstractModel.class.getDeclaredField("kvBufferCache");
            f.setAccessible(true);
            assertSame(cache, f.get(m));
            UUID session = UUID.randomUUID();
            Generator.Response paged = m.generate(session, empty, 0f, GENERATE, (t, x) -> {});
            assertEquals(own.responseText, paged.responseText);
            assertEquals(own.generatedTokens, paged.generatedTokens);
            assertTrue(paged.generatedTokens > 10, "generated " + paged.generatedTokens);

            // generate() closed its buffer, but the named session keeps its tokens: BOS + every fed-back id
            PagedSession s = cache.session(session);
            assertEquals(1 + paged.generatedTokens, s.sequence().length());
            assertEquals(s.sequence().length(), manager.stats().liveTokens());
            assertEquals(1, manager.stats().liveSequences());
            assertTrue(cache.release(session));
            assertEquals(0, manager.stats().liveSequences());
            assertTrue(manager.stats().cachedBlocks() > 0, "full blocks stay reusable: " + manager.stats());
        } finally {
            m.close();
        }
    }

    @Test
    void ephemeralBufferIsFreedWhenJlamaClosesIt() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 8);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(8).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            KvBufferCache.KvBuffer kv = cache.getEphemeralKvBuffer();
            assertEquals(1, manager.stats().liveSequences());
            kv.close();
            assertEquals(0, manager.stats().liveSequences());
            assertTrue(cache.sessionIds().isEmpty());
        }
    }

    @Test
    void forwardWithoutTokenIdsFailsNamingThePosition() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 8);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(8).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory); // not installed
            PagedSession s = cache.session(UUID.randomUUID());
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> model.batchForward(new int[] {1, 2}, 0, s.kvBuffer()));
            assertTrue(e.getMessage().contains("position 0 of session"), e.getMessage());
            assertEquals(0, s.sequence().length());
            assertEquals(0, manager.stats().usedBlocks());
            cache.close();
        }
    }

    @Test
    void fullCacheRefusesAdmissionAndChangesNothing() {
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 2);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(2).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            PagedSession s = cache.session(UUID.randomUUID());
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> s.admit(PROMPT));
            assertTrue(e.getMessage().contains("no room for 40 more tokens"), e.getMessage());
            assertEquals(0, s.sequence().length());
            assertEquals(0, manager.stats().usedBlocks());
            cache.close();
        }
    }

    @Test
    void mismatchedLayoutsAndReleasedSessionsAreRejected() {
        KvLayout wrongHeads = new KvLayout(5, 8, 8, BLOCK, KvFormats.F32);
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(wrongHeads, 4);
             KvCacheManager manager = KvCacheManager.builder(wrongHeads).blocks(4).store(memory).build()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> PagedKvBufferCache.inPlace(model, manager, memory));
            assertTrue(e.getMessage().contains("kv heads 4"), e.getMessage());
        }
        try (JlamaBlockMemory memory = JlamaBlockMemory.allocate(layout(), 4);
             KvCacheManager manager = KvCacheManager.builder(layout()).blocks(4).store(memory).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.inPlace(model, manager, memory);
            PagedSession s = cache.session(UUID.randomUUID());
            s.release();
            assertFalse(s.isLive());
            assertThrows(IllegalStateException.class, () -> s.admit(1));
            assertThrows(IllegalStateException.class, () -> s.kvBuffer().getKeyTensorForPosition(0, 0));
            assertThrows(IllegalArgumentException.class, () -> s.kvBuffer().setCurrentContextPosition(5));
            cache.close();
            assertThrows(IllegalStateException.class, () -> cache.session(UUID.randomUUID()));
        }
    }
}
