package dev.kvcache.jlama;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.github.tjake.jlama.model.AbstractModel;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import java.util.Arrays;
import java.util.UUID;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Jlama over a store that really rounds (F16, held as IEEE half floats): the staged path writes
 * exactly the rows Jlama computed, rounded by the store, and reads back what the store holds.
 */
class StagedQuantizedTest {
    private static final int BLOCK = 16;
    private static AbstractModel model;

    @BeforeAll
    static void load() {
        model = Stories260K.load();
    }

    @AfterAll
    static void close() {
        if (model != null) model.close();
    }

    /** A heap KvStore in F16: write rounds each float to IEEE binary16, read widens it. */
    static final class HalfStore implements KvStore {
        private final KvLayout layout;
        private final int blocks, kvDim;
        private final short[][] keys, values; // [layer][slot * kvDim + i]
        private boolean closed;

        HalfStore(KvLayout layout, int blocks) {
            this.layout = layout;
            this.blocks = blocks;
            this.kvDim = layout.kvHeads() * layout.headDim();
            keys = new short[layout.layers()][blocks * layout.blockTokens() * kvDim];
            values = new short[layout.layers()][blocks * layout.blockTokens() * kvDim];
        }

        @Override public KvLayout layout() { return layout; }
        @Override public int blocks() { return blocks; }

        @Override
        public void write(int layer, long slot, float[] k, float[] v) {
            check();
            for (int i = 0; i < kvDim; i++) {
                keys[layer][(int) slot * kvDim + i] = Float.floatToFloat16(k[i]);
                values[layer][(int) slot * kvDim + i] = Float.floatToFloat16(v[i]);
            }
        }

        @Override
        public void readKey(int layer, long slot, float[] out) {
            check();
            for (int i = 0; i < kvDim; i++) out[i] = Float.float16ToFloat(keys[layer][(int) slot * kvDim + i]);
        }

        @Override
        public void readValue(int layer, long slot, float[] out) {
            check();
            for (int i = 0; i < kvDim; i++) out[i] = Float.float16ToFloat(values[layer][(int) slot * kvDim + i]);
        }

        @Override
        public void copyBlock(int src, int dst) {
            check();
            int n = layout.blockTokens() * kvDim;
            for (int l = 0; l < layout.layers(); l++) {
                System.arraycopy(keys[l], src * n, keys[l], dst * n, n);
                System.arraycopy(values[l], src * n, values[l], dst * n, n);
            }
        }

        private void check() {
            if (closed) throw new IllegalStateException("closed");
        }

        @Override public void close() { closed = true; }
    }

    @Test
    void layerZeroRowsInTheStoreAreJlamasF32RowsRoundedToHalf() {
        // Layer 0's K/V depend only on the token and its position, never on cached history, so with
        // the same tokens the F16 store must hold exactly half(F32 row) at every position.
        int[] tokens = IntStream.range(0, 50).map(i -> i == 0 ? 1 : 3 + (i * 53 + 7) % 509).toArray();
        KvLayout f32 = PagedKvBufferCache.layoutFor(model, BLOCK, KvFormats.F32);
        KvLayout f16 = f32.withFormat(KvFormats.F16);
        try (JlamaBlockMemory exact = JlamaBlockMemory.allocate(f32, 8);
             KvCacheManager m32 = KvCacheManager.builder(f32).blocks(8).store(exact).build();
             HalfStore half = new HalfStore(f16, 8);
             KvCacheManager m16 = KvCacheManager.builder(f16).blocks(8).store(half).build()) {
            PagedKvBufferCache c32 = PagedKvBufferCache.inPlace(model, m32, exact);
            PagedKvBufferCache c16 = PagedKvBufferCache.staged(model, m16, half);
            PagedSession s32 = c32.session(UUID.randomUUID()), s16 = c16.session(UUID.randomUUID());
            s32.admit(tokens);
            s16.admit(tokens);
            model.batchForward(tokens, 0, s32.kvBuffer()).close();
            model.batchForward(tokens, 0, s16.kvBuffer()).close();
            s16.kvBuffer().close(); // Jlama closing a named session's buffer flushes the last staged row

            int kvDim = f32.kvHeads() * f32.headDim();
            float[] a = new float[kvDim], b = new float[kvDim];
            int differ = 0;
            for (int p = 0; p < tokens.length; p++) {
                exact.readKey(0, s32.sequence().slot(p), a);
                half.readKey(0, s16.sequence().slot(p), b);
                for (int i = 0; i < kvDim; i++) {
                    assertEquals(Float.float16ToFloat(Float.floatToFloat16(a[i])), b[i], "key p=" + p + " i=" + i);
                }
                exact.readValue(0, s32.sequence().slot(p), a);
                half.readValue(0, s16.sequence().slot(p), b);
                for (int i = 0; i < kvDim; i++) {
                    assertEquals(Float.float16ToFloat(Float.floatToFloat16(a[i])), b[i], "value p=" + p + " i=" + i);
                }
                // deeper layers see rounded history, so they may differ in low bits, but must be close
                exact.readKey(4, s32.sequence().slot(p), a);
                half.readKey(4, s16.sequence().slot(p), b);
                if (!Arrays.equals(a, b)) differ++;
                for (int i = 0; i < kvDim; i++) {
                    assertTrue(Math.abs(a[i] - b[i]) <= 0.05f * Math.max(1f, Math.abs(a[i])),
                            "layer 4 key p=" + p + " i=" + i + ": " + a[i] + " vs " + b[i]);
                }
            }
            assertTrue(differ > 0, "rounding must show somewhere in layer 4, or the store was bypassed");
            c32.close();
            c16.close();
        }
    }

    @Test
    void greedyDecodingOnHalfKvRunsAndIsAccounted() {
        int[] prompt = IntStream.range(0, 24).map(i -> i == 0 ? 1 : 3 + (i * 29 + 5) % 509).toArray();
        int n = 64;
        int[] own = Stories260K.greedyWithJlamaCache(model, prompt, n);
        KvLayout f16 = PagedKvBufferCache.layoutFor(model, BLOCK, KvFormats.F16);
        try (HalfStore half = new HalfStore(f16, 16);
             KvCacheManager m = KvCacheManager.builder(f16).blocks(16).store(half).build()) {
            PagedKvBufferCache cache = PagedKvBufferCache.staged(model, m, half);
            PagedSession s = cache.session(UUID.randomUUID());
            s.admit(prompt);
            int[] ids = Stories260K.greedy(model, s, prompt, 0, n);
            int same = 0;
            while (same < n && ids[same] == own[same]) same++;
            System.out.println("[StagedQuantizedTest] F16 KV: first " + same + " of " + n
                    + " greedy ids equal Jlama's F32 cache");
            assertEquals(prompt.length + n - 1, m.stats().liveTokens());
            assertEquals((prompt.length + n - 1 + BLOCK - 1) / BLOCK, m.stats().usedBlocks());
            cache.close();
        }
    }

    @Test
    void layoutFormatMustMatchTheStore() {
        KvFormat f = KvFormats.F16;
        KvLayout l = PagedKvBufferCache.layoutFor(model, BLOCK, f);
        try (HalfStore half = new HalfStore(l, 2);
             KvCacheManager m = KvCacheManager.builder(l.withFormat(KvFormats.F32)).blocks(2).build()) {
            IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> PagedKvBufferCache.staged(model, m, half));
            assertTrue(e.getMessage().contains("differs from the manager's"), e.getMessage());
        }
    }
}
