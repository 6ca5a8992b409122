package dev.kvcache.jlama;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.github.tjake.jlama.model.AbstractModel;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.offheap.OffHeapKvStore;
import java.util.UUID;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Jlama sessions over the library's own off-heap store (kvcache-offheap), in F32 (must equal
 * Jlama's own cache) and in the reduced formats stories260K's head size (8) allows.
 * Q8_0/Q4_0 need a head size that is a multiple of 32, so they cannot serve this model.
 */
class OffHeapStoreTest {
    private static final int BLOCK = 16;
    private static final int N = 64;
    private static final int[] PROMPT = IntStream.range(0, 24).map(i -> i == 0 ? 1 : 3 + (i * 41 + 9) % 509).toArray();
    private static AbstractModel model;
    private static int[] own;

    @BeforeAll
    static void load() {
        model = Stories260K.load();
        own = Stories260K.greedyWithJlamaCache(model, PROMPT, N);
    }

    @AfterAll
    static void close() {
        if (model != null) model.close();
    }

    @ParameterizedTest
    @ValueSource(strings = {"F32", "F16", "BF16", "FP8_E4M3"})
    void greedyOverOffHeapStore(String formatName) {
        KvFormat format = KvFormats.byName(formatName);
        KvLayout layout = PagedKvBufferCache.layoutFor(model, BLOCK, format);
        KvStore store;
        try {
            store = OffHeapKvStore.allocate(layout, 16);
        } catch (UnsupportedOperationException | LinkageError e) {
            assumeTrue(false, "kvcache-offheap in ~/.m2 cannot store " + formatName + ": " + e);
            return;
        }
        try (store; KvCacheManager m = KvCacheManager.builder(layout).blocks(16).store(store).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.staged(model, m, store);
            PagedSession s = cache.session(UUID.randomUUID());
            s.admit(PROMPT);
            int[] ids = Stories260K.greedy(model, s, PROMPT, 0, N);
            int same = 0;
            while (same < N && ids[same] == own[same]) same++;
            System.out.println("[OffHeapStoreTest] " + formatName + " KV in OffHeapKvStore: first " + same + " of " + N
                    + " greedy ids equal Jlama's own F32 cache");
            if (format == KvFormats.F32) assertEquals(N, same, "F32 must be exact");
            assertEquals(PROMPT.length + N - 1, m.stats().liveTokens());
            cache.close();
        }
    }
}
