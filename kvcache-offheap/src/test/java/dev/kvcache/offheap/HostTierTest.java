package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.kvcache.offheap.PagedAttentionTest.assertMessage;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** HostTier and OffHeapKvStore.exportBlock / importBlock. */
class HostTierTest {

    static final int LAYERS = 2;
    static final int KV_HEADS = 2;
    static final int HEAD_DIM = 32;
    static final int BLOCK_TOKENS = 8;
    static final int QUERY_HEADS = 4;

    static List<KvFormat> formats() {
        return KvFormats.all();
    }

    static KvLayout layout(KvFormat f) {
        return new KvLayout(LAYERS, KV_HEADS, HEAD_DIM, BLOCK_TOKENS, f);
    }

    /** Writes rows [0, rows) of {@code block}, every layer, with fresh gaussian KV. */
    static void fill(KvStore store, int block, int rows, SplittableRandom r) {
        int kvDim = KV_HEADS * HEAD_DIM;
        for (int t = 0; t < rows; t++) {
            long slot = (long) block * BLOCK_TOKENS + t;
            for (int layer = 0; layer < LAYERS; layer++) {
                store.write(layer, slot, Reference.gaussian(r, kvDim, 1), Reference.gaussian(r, kvDim, 1));
            }
        }
    }

    static byte[] export(KvStore store, int block) {
        byte[] b = new byte[(int) store.layout().bytesPerBlock()];
        store.exportBlock(block, MemorySegment.ofArray(b));
        return b;
    }

    static float[][] decode(KvStore store, int block, float[] q) {
        float[][] out = new float[LAYERS][QUERY_HEADS * HEAD_DIM];
        for (int layer = 0; layer < LAYERS; layer++) {
            PagedAttention.decode(store, layer, q, QUERY_HEADS, new int[] {block}, BLOCK_TOKENS, out[layer]);
        }
        return out;
    }

    static PrefixKey key(int i) {
        return new PrefixKey(0x1234_5678_9abc_def0L * (i + 1), ~(long) i * 31);
    }

    static TierEntry entry(KvLayout l, int i) {
        int[] tokens = new int[BLOCK_TOKENS];
        for (int t = 0; t < tokens.length; t++) {
            tokens[t] = i * 100 + t;
        }
        return new TierEntry(key(i), i == 0 ? null : key(i - 1), 7, "tenant", tokens, TierEntry.fingerprint(l));
    }

    // ------------------------------------------------------------------ round trip, every format

    /**
     * Put a full block, overwrite the store block (fully, then leave a partial write staged for
     * block formats), load back: the bytes are the exported ones and attention is bit-identical;
     * a load into another block is too.
     */
    @ParameterizedTest
    @MethodSource("formats")
    void demoteThenPromoteIsByteIdenticalAndAttentionEqual(KvFormat f) {
        KvLayout l = layout(f);
        SplittableRandom r = new SplittableRandom(f.name().hashCode());
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 4);
             HostTier tier = HostTier.allocate(l, 2 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            assertEquals(0, store.stagedSlices());
            byte[] original = export(store, 0);
            float[] q = Reference.gaussian(r, QUERY_HEADS * HEAD_DIM, 1);
            float[][] before = decode(store, 0, q);
            TierEntry e = entry(l, 0);
            assertTrue(tier.put(e, store, 0));

            fill(store, 0, BLOCK_TOKENS, r);       // the block is reused for other KV
            fill(store, 0, 3, r);                  // and partly rewritten (staged for block formats)
            assertFalse(java.util.Arrays.equals(original, rawBytes(store, 0)), "the block was overwritten");
            assertTrue(tier.load(e, store, 0));
            assertEquals(0, store.stagedSlices(), "import drops staging");
            assertArrayEquals(original, export(store, 0), f.name());
            float[][] after = decode(store, 0, q);
            for (int layer = 0; layer < LAYERS; layer++) {
                assertArrayEquals(before[layer], after[layer], f + " layer " + layer);
            }
            // and into another block, while the first one is staged again
            fill(store, 0, 2, r);
            assertTrue(tier.load(e, store, 3));
            assertArrayEquals(original, export(store, 3));
            float[][] other = decode(store, 3, q);
            for (int layer = 0; layer < LAYERS; layer++) {
                assertArrayEquals(before[layer], other[layer], f + " layer " + layer + " in block 3");
            }
            TierStats s = tier.stats();
            assertEquals(1, s.blocks());
            assertEquals(l.bytesPerBlock(), s.bytes());
            assertEquals(2 * l.bytesPerBlock(), s.capacityBytes());
            assertEquals(1, s.puts());
            assertEquals(2, s.loads());
            assertEquals(3 * l.bytesPerBlock(), s.bytesMoved());
            assertTrue(s.copyNanos() > 0);
            assertEquals(0, s.verificationMisses() + s.refusedPuts() + s.evictions());
        }
    }

    /** The block's encoded bytes, also while staged (exportBlock refuses those). */
    private static byte[] rawBytes(OffHeapKvStore store, int block) {
        StoreLayout sl = store.storeLayout();
        byte[] b = new byte[(int) sl.blockBytes()];
        MemorySegment.copy(store.memory(), sl.blockOffset(block), MemorySegment.ofArray(b), 0, b.length);
        return b;
    }

    // ------------------------------------------------------------------ export / import checks

    @ParameterizedTest
    @MethodSource("formats")
    void partialBlockOfAStagedFormatIsNotExported(KvFormat f) {
        KvLayout l = layout(f);
        SplittableRandom r = new SplittableRandom(3);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3);
             HostTier tier = HostTier.allocate(l, l.bytesPerBlock())) {
            fill(store, 1, BLOCK_TOKENS - 1, r);  // all but the last row
            byte[] dst = new byte[(int) l.bytesPerBlock()];
            if (store.rowFormat()) {
                store.exportBlock(1, MemorySegment.ofArray(dst)); // row formats: every row is in place
                assertTrue(tier.put(entry(l, 0), store, 1));
                return;
            }
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> store.exportBlock(1, MemorySegment.ofArray(dst)));
            assertTrue(e.getMessage().contains("block 1"), e.getMessage());
            assertFalse(tier.put(entry(l, 0), store, 1));
            assertEquals(1, tier.stats().refusedPuts());
            assertEquals(0, tier.stats().blocks());
            // the last row seals it: now exportable
            store.write(0, BLOCK_TOKENS + BLOCK_TOKENS - 1, new float[KV_HEADS * HEAD_DIM], new float[KV_HEADS * HEAD_DIM]);
            assertThrows(IllegalStateException.class, () -> store.exportBlock(1, MemorySegment.ofArray(dst)),
                    "layer 1 still staged");
            store.write(1, BLOCK_TOKENS + BLOCK_TOKENS - 1, new float[KV_HEADS * HEAD_DIM], new float[KV_HEADS * HEAD_DIM]);
            store.exportBlock(1, MemorySegment.ofArray(dst));
            assertTrue(tier.put(entry(l, 0), store, 1));
            // a rewritten row reopens it
            fill(store, 1, 1, r);
            assertThrows(IllegalStateException.class, () -> store.exportBlock(1, MemorySegment.ofArray(dst)));
        }
    }

    @Test
    void exportAndImportCheckTheirArguments() {
        KvLayout l = layout(KvFormats.Q8_0);
        long bpb = l.bytesPerBlock();
        OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
        MemorySegment ok = MemorySegment.ofArray(new byte[(int) bpb]);
        MemorySegment small = MemorySegment.ofArray(new byte[(int) bpb - 1]);
        assertMessage(() -> store.exportBlock(2, ok), "block 2", "[0, 2)");
        assertMessage(() -> store.exportBlock(-1, ok), "block -1");
        assertMessage(() -> store.importBlock(2, ok), "block 2", "[0, 2)");
        assertMessage(() -> store.exportBlock(0, small), "dst holds " + (bpb - 1), String.valueOf(bpb));
        assertMessage(() -> store.importBlock(0, small), "src holds " + (bpb - 1), String.valueOf(bpb));
        assertMessage(() -> store.exportBlock(0, ok.asReadOnly()), "read-only");
        assertThrows(NullPointerException.class, () -> store.exportBlock(0, null));
        store.close();
        assertThrows(IllegalStateException.class, () -> store.exportBlock(0, ok));
        assertThrows(IllegalStateException.class, () -> store.importBlock(0, ok));
    }

    // ------------------------------------------------------------------ LRU and capacity

    /**
     * A lookup's hits are about to be loaded by the same append, whose own allocations may demote
     * blocks into this tier first: the hits are refreshed (first key most recent) so those demotions
     * evict other copies.
     */
    @Test
    void aLookupRefreshesItsHitsFirstKeyMostRecent() {
        KvLayout l = layout(KvFormats.F16);
        SplittableRandom r = new SplittableRandom(6);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 4);
             HostTier tier = HostTier.allocate(l, 3 * l.bytesPerBlock())) {
            for (int b = 0; b < 4; b++) {
                fill(store, b, BLOCK_TOKENS, r);
            }
            for (int i = 0; i < 3; i++) {
                assertTrue(tier.put(entry(l, i), store, i));
            }
            assertArrayEquals(new PrefixKey[] {key(2), key(1), key(0)}, tier.lruOrderForTest());
            assertEquals(2, tier.leadingHits(new PrefixKey[] {key(0), key(1), key(3)}, 0, 3));
            assertArrayEquals(new PrefixKey[] {key(0), key(1), key(2)}, tier.lruOrderForTest());
            assertTrue(tier.put(entry(l, 3), store, 3)); // evicts 2, not the looked-up 0 and 1
            assertArrayEquals(new PrefixKey[] {key(3), key(0), key(1)}, tier.lruOrderForTest());
            assertEquals(0, tier.stats().bytesMoved() - 4 * l.bytesPerBlock(), "a lookup moves no bytes");
        }
    }

    @Test
    void fourthPutEvictsTheLeastRecentlyUsedAndALoadTouches() {
        KvLayout l = layout(KvFormats.F16);
        long bpb = l.bytesPerBlock();
        SplittableRandom r = new SplittableRandom(5);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 6);
             HostTier tier = HostTier.allocate(l, 4 * bpb - 1)) {
            assertEquals(3, tier.capacityBlocks());
            assertEquals(3 * bpb, tier.stats().capacityBytes());
            for (int b = 0; b < 6; b++) {
                fill(store, b, BLOCK_TOKENS, r);
            }
            byte[][] bytes = new byte[6][];
            for (int i = 0; i < 6; i++) {
                bytes[i] = export(store, i);
            }
            PrefixKey[] keys = {key(0), key(1), key(2), key(3), key(4)};
            for (int i = 0; i < 3; i++) {
                assertTrue(tier.put(entry(l, i), store, i));
            }
            assertArrayEquals(new PrefixKey[] {key(2), key(1), key(0)}, tier.lruOrderForTest());
            assertTrue(tier.load(entry(l, 0), store, 5)); // touches 0
            assertArrayEquals(bytes[0], export(store, 5));
            assertTrue(tier.put(entry(l, 3), store, 3));  // evicts 1
            assertArrayEquals(new PrefixKey[] {key(3), key(0), key(2)}, tier.lruOrderForTest());
            assertEquals(1, tier.stats().evictions());
            assertEquals(1, tier.leadingHits(keys, 0, 5), "0 held, 1 evicted");
            assertEquals(0, tier.leadingHits(keys, 1, 4));
            assertEquals(2, tier.leadingHits(keys, 2, 3));
            assertFalse(tier.load(entry(l, 1), store, 5), "evicted");
            assertTrue(tier.put(entry(l, 2), store, 2));  // re-put: only a touch
            assertArrayEquals(new PrefixKey[] {key(2), key(3), key(0)}, tier.lruOrderForTest());
            assertEquals(5 * bpb, tier.stats().bytesMoved(), "4 puts and 1 load copied, the re-put did not");
            assertTrue(tier.put(entry(l, 4), store, 4));  // evicts 0
            assertArrayEquals(new PrefixKey[] {key(4), key(2), key(3)}, tier.lruOrderForTest());
            TierStats s = tier.stats();
            assertEquals(3, s.blocks());
            assertEquals(3 * bpb, s.bytes());
            assertEquals(6, s.puts());
            assertEquals(2, s.evictions());
            assertEquals(1, s.loads());
            for (int i : new int[] {2, 3, 4}) {
                assertTrue(tier.load(entry(l, i), store, 5));
                assertArrayEquals(bytes[i], export(store, 5), "key " + i);
            }
            assertTrue(tier.remove(key(3)));
            assertFalse(tier.remove(key(3)));
            assertEquals(2, tier.stats().blocks());
            assertTrue(tier.put(entry(l, 1), store, 1)); // the freed slot: no eviction
            assertEquals(2, tier.stats().evictions());
            assertTrue(tier.load(entry(l, 1), store, 5));
            assertArrayEquals(bytes[1], export(store, 5));
        }
    }

    @Test
    void budgetBelowOneBlockIsRefusedNamingIt() {
        KvLayout l = layout(KvFormats.F32);
        long bpb = l.bytesPerBlock();
        assertMessage(() -> HostTier.allocate(l, bpb - 1), "budget " + (bpb - 1), String.valueOf(bpb));
        assertMessage(() -> HostTier.allocate(l, 0), "budget 0");
        assertMessage(() -> HostTier.allocate(l, -5), "budget -5");
        try (HostTier t = HostTier.allocate(l, bpb)) {
            assertEquals(1, t.capacityBlocks());
        }
    }

    // ------------------------------------------------------------------ verification

    @Test
    void anEntryThatDiffersInAnyFieldIsACountedMissThatLoadsNothing() {
        KvLayout l = layout(KvFormats.KIVI_4);
        SplittableRandom r = new SplittableRandom(9);
        TierEntry e = entry(l, 1);
        int[] otherTokens = e.tokens().clone();
        otherTokens[3]++;
        List<TierEntry> wrong = List.of(
                new TierEntry(e.key(), e.parentKey(), e.salt(), e.scope(), otherTokens, e.layoutFingerprint()),
                new TierEntry(e.key(), key(9), e.salt(), e.scope(), e.tokens(), e.layoutFingerprint()),
                new TierEntry(e.key(), null, e.salt(), e.scope(), e.tokens(), e.layoutFingerprint()),
                new TierEntry(e.key(), e.parentKey(), e.salt() + 1, e.scope(), e.tokens(), e.layoutFingerprint()),
                new TierEntry(e.key(), e.parentKey(), e.salt(), "other", e.tokens(), e.layoutFingerprint()),
                new TierEntry(e.key(), e.parentKey(), e.salt(), null, e.tokens(), e.layoutFingerprint()),
                new TierEntry(e.key(), e.parentKey(), e.salt(), e.scope(), e.tokens(),
                        TierEntry.fingerprint(l.withFormat(KvFormats.KIVI_2))),
                new TierEntry(e.key(), e.parentKey(), e.salt(), e.scope(), java.util.Arrays.copyOf(e.tokens(), 7),
                        e.layoutFingerprint()));
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
             HostTier tier = HostTier.allocate(l, 4 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] target = export(store, 1);
            int misses = 0;
            for (TierEntry w : wrong) {
                assertTrue(tier.put(e, store, 0));
                assertFalse(tier.load(w, store, 1), w.toString());
                misses++;
                assertEquals(misses, tier.stats().verificationMisses());
                assertEquals(0, tier.stats().blocks(), "the copy is dropped");
                assertEquals(0, tier.leadingHits(new PrefixKey[] {e.key()}, 0, 1));
                assertArrayEquals(target, export(store, 1), "nothing loaded");
            }
            // a key not held is a plain miss, not a verification miss
            assertFalse(tier.load(entry(l, 5), store, 1));
            assertEquals(misses, tier.stats().verificationMisses());
            assertEquals(0, tier.stats().loads());
            // the caller changing its token array after the put does not change what is held
            TierEntry mine = entry(l, 2);
            assertTrue(tier.put(mine, store, 0));
            mine.tokens()[0] = -1;
            assertFalse(tier.load(mine, store, 1));
            assertTrue(tier.put(entry(l, 2), store, 0));
            assertTrue(tier.load(entry(l, 2), store, 1));
        }
    }

    @ParameterizedTest
    @MethodSource("formats")
    void aCorruptedCopyIsACountedMissAndIsDropped(KvFormat f) {
        KvLayout l = layout(f);
        SplittableRandom r = new SplittableRandom(11);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
             HostTier tier = HostTier.allocate(l, 2 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] target = export(store, 1);
            TierEntry a = entry(l, 0);
            TierEntry b = entry(l, 1);
            assertTrue(tier.put(a, store, 0));
            assertTrue(tier.put(b, store, 0));
            assertTrue(tier.corruptForTest(a.key(), r.nextLong(l.bytesPerBlock())));
            assertFalse(tier.corruptForTest(key(7), 0));
            assertFalse(tier.load(a, store, 1));
            assertArrayEquals(target, export(store, 1), "nothing loaded");
            TierStats s = tier.stats();
            assertEquals(1, s.verificationMisses());
            assertEquals(1, s.blocks());
            assertEquals(0, s.loads());
            assertEquals(0, tier.leadingHits(new PrefixKey[] {a.key()}, 0, 1), "dropped");
            assertFalse(tier.load(a, store, 1));
            assertEquals(1, tier.stats().verificationMisses(), "a dropped copy is a plain miss");
            assertTrue(tier.load(b, store, 1), "the other copy is intact");
        }
    }

    // ------------------------------------------------------------------ failing stores

    @Test
    void aStoreThatThrowsIsARefusedPutOrAFailedLoadAndNothingIsHeldWrongly() {
        KvLayout l = layout(KvFormats.FP8_E4M3);
        SplittableRandom r = new SplittableRandom(13);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3);
             HostTier tier = HostTier.allocate(l, l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] b0 = export(store, 0);
            Throwing bad = new Throwing(store);
            bad.failExport = true;
            assertFalse(tier.put(entry(l, 0), bad, 0));
            TierStats s = tier.stats();
            assertEquals(1, s.refusedPuts());
            assertEquals(0, s.puts());
            assertEquals(0, s.blocks());
            assertEquals(0, s.bytesMoved());
            assertEquals(0, tier.leadingHits(new PrefixKey[] {key(0)}, 0, 1));
            // the slot went back free: a put now takes it without evicting
            assertTrue(tier.put(entry(l, 0), store, 0));
            assertEquals(0, tier.stats().evictions());
            // an export failure after an eviction: the evicted copy is gone, nothing half recorded
            assertFalse(tier.put(entry(l, 1), bad, 1));
            s = tier.stats();
            assertEquals(2, s.refusedPuts());
            assertEquals(1, s.evictions());
            assertEquals(0, s.blocks());
            assertEquals(0, tier.leadingHits(new PrefixKey[] {key(1)}, 0, 1));
            assertFalse(tier.load(entry(l, 1), store, 2));
            assertEquals(0, tier.stats().verificationMisses());

            // import failure: a counted failed load, the copy stays and loads later
            assertTrue(tier.put(entry(l, 0), store, 0));
            bad.failExport = false;
            bad.failImport = true;
            assertFalse(tier.load(entry(l, 0), bad, 2));
            assertEquals(1, tier.failedLoads());
            assertEquals(0, tier.stats().loads());
            assertEquals(1, tier.stats().blocks());
            assertTrue(tier.load(entry(l, 0), store, 2));
            assertArrayEquals(b0, export(store, 2));

            // a closed store: refused put, failed load
            OffHeapKvStore closed = OffHeapKvStore.allocate(l, 1);
            closed.close();
            assertFalse(tier.put(entry(l, 2), closed, 0));
            assertFalse(tier.load(entry(l, 0), closed, 0));
            assertEquals(2, tier.failedLoads());
            s = tier.stats();
            assertEquals(3, s.refusedPuts());
            assertEquals(s.blocks() * l.bytesPerBlock(), s.bytes());
            assertTrue(s.blocks() <= 1);
            // a store of another layout is a wiring error
            try (OffHeapKvStore otherLayout = OffHeapKvStore.allocate(l.withFormat(KvFormats.F16), 1)) {
                assertMessage(() -> tier.put(entry(l, 3), otherLayout, 0), "layout");
                assertMessage(() -> tier.put(entry(l.withFormat(KvFormats.F16), 3), store, 0), "fingerprint");
            }
        }
    }

    @Test
    void aClosedTierIsLoud() {
        KvLayout l = layout(KvFormats.F32);
        HostTier tier = HostTier.allocate(l, 2 * l.bytesPerBlock());
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 1)) {
            fill(store, 0, BLOCK_TOKENS, new SplittableRandom(1));
            assertTrue(tier.put(entry(l, 0), store, 0));
            tier.close();
            tier.close(); // idempotent
            assertThrows(IllegalStateException.class, () -> tier.put(entry(l, 1), store, 0));
            assertThrows(IllegalStateException.class, () -> tier.load(entry(l, 0), store, 0));
            assertThrows(IllegalStateException.class, () -> tier.leadingHits(new PrefixKey[] {key(0)}, 0, 1));
            assertThrows(IllegalStateException.class, () -> tier.remove(key(0)));
            assertEquals(0, tier.stats().blocks());
            assertEquals(1, tier.stats().puts());
        }
    }

    /** A KvStore whose export or import throws on demand. */
    static final class Throwing implements KvStore {
        final KvStore d;
        boolean failExport;
        boolean failImport;

        Throwing(KvStore d) {
            this.d = d;
        }

        @Override
        public KvLayout layout() {
            return d.layout();
        }

        @Override
        public int blocks() {
            return d.blocks();
        }

        @Override
        public void write(int layer, long slot, float[] k, float[] v) {
            d.write(layer, slot, k, v);
        }

        @Override
        public void readKey(int layer, long slot, float[] out) {
            d.readKey(layer, slot, out);
        }

        @Override
        public void readValue(int layer, long slot, float[] out) {
            d.readValue(layer, slot, out);
        }

        @Override
        public void copyBlock(int srcBlock, int dstBlock) {
            d.copyBlock(srcBlock, dstBlock);
        }

        @Override
        public void exportBlock(int block, MemorySegment dst) {
            if (failExport) {
                // half a copy, then the failure: the tier must not keep it
                MemorySegment.copy(MemorySegment.ofArray(new byte[16]), 0, dst, 0, 16);
                throw new IllegalStateException("device lost");
            }
            d.exportBlock(block, dst);
        }

        @Override
        public void importBlock(int block, MemorySegment src) {
            if (failImport) {
                throw new IllegalStateException("device lost");
            }
            d.importBlock(block, src);
        }

        @Override
        public void close() {
            d.close();
        }
    }

    // ------------------------------------------------------------------ concurrency

    /**
     * Two threads, each with its own store holding 12 distinct blocks, share a tier of 5 slots:
     * puts, loads (verified byte for byte against what the key was put with) and leadingHits for
     * 1.5 s or 20k ops each. Stats stay consistent throughout and match the threads' own counts;
 * in both checksum modes, and every held slot's recorded checksum is its bytes' once settled.
     */
    @ParameterizedTest
    @EnumSource(HostTier.Checksum.class)
    void sharedTierUnderTwoThreadsKeepsStatsConsistent(HostTier.Checksum mode) throws Exception {
        KvLayout l = new KvLayout(1, 1, 32, 4, KvFormats.Q4_0);
        long bpb = l.bytesPerBlock();
        int keys = 12;
        try (HostTier tier = HostTier.allocate(l, 5 * bpb, mode)) {
            // the same content for the same key in both stores, so either thread's put is right
            byte[][] content = new byte[keys][];
            List<OffHeapKvStore> stores = new ArrayList<>();
            for (int t = 0; t < 2; t++) {
                OffHeapKvStore s = OffHeapKvStore.allocate(l, keys + 1);
                stores.add(s);
                for (int k = 0; k < keys; k++) {
                    SplittableRandom r = new SplittableRandom(k);
                    for (int row = 0; row < 4; row++) {
                        s.write(0, k * 4L + row, Reference.gaussian(r, 32, 1), Reference.gaussian(r, 32, 1));
                    }
                    byte[] b = export(s, k);
                    if (t == 0) {
                        content[k] = b;
                    } else {
                        assertArrayEquals(content[k], b);
                    }
                }
            }
            PrefixKey[] allKeys = new PrefixKey[keys];
            for (int k = 0; k < keys; k++) {
                allKeys[k] = key(k);
            }
            AtomicLong puts = new AtomicLong();
            AtomicLong loads = new AtomicLong();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            CyclicBarrier start = new CyclicBarrier(2);
            long deadline = System.nanoTime() + 1_500_000_000L;
            Thread[] threads = new Thread[2];
            for (int t = 0; t < 2; t++) {
                OffHeapKvStore s = stores.get(t);
                int seed = t;
                threads[t] = new Thread(() -> {
                    SplittableRandom r = new SplittableRandom(100 + seed);
                    byte[] got = new byte[(int) bpb];
                    try {
                        start.await();
                        for (int op = 0; op < 20_000 && System.nanoTime() < deadline; op++) {
                            int k = r.nextInt(keys);
                            switch (r.nextInt(4)) {
                                case 0, 1 -> {
                                    if (tier.put(entry(l, k), s, k)) {
                                        puts.incrementAndGet();
                                    }
                                }
                                case 2 -> {
                                    if (tier.load(entry(l, k), s, keys)) {
                                        loads.incrementAndGet();
                                        s.exportBlock(keys, MemorySegment.ofArray(got));
                                        assertArrayEquals(content[k], got, "key " + k);
                                    }
                                }
                                default -> {
                                    int n = tier.leadingHits(allKeys, k, keys - k);
                                    assertTrue(n >= 0 && n <= Math.min(5, keys - k));
                                }
                            }
                            if ((op & 63) == 0) {
                                TierStats st = tier.stats();
                                assertTrue(st.blocks() <= 5, st.toString());
                                assertEquals(st.blocks() * bpb, st.bytes(), st.toString());
                            }
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                });
                threads[t].start();
            }
            for (Thread th : threads) {
                th.join(30_000);
                assertFalse(th.isAlive());
            }
            if (failure.get() != null) {
                throw new AssertionError(failure.get());
            }
            TierStats st = tier.stats();
            assertTrue(st.blocks() <= 5);
            assertEquals(st.blocks() * bpb, st.bytes());
            assertEquals(puts.get(), st.puts());
            assertEquals(loads.get(), st.loads());
            assertEquals(0, st.refusedPuts() + st.verificationMisses());
            assertTrue(st.puts() > 0 && st.loads() > 0, st.toString());
            assertEquals(tier.lruOrderForTest().length, st.blocks());
            int held = 0;
            for (PrefixKey k : allKeys) {
                held += tier.leadingHits(new PrefixKey[] {k}, 0, 1);
            }
            assertEquals(st.blocks(), held, "the key table and the LRU list agree");
            HostTierAsyncTest.awaitSettled(tier);
            for (PrefixKey k : tier.lruOrderForTest()) {
                HostTierAsyncTest.assertChecksumRight(tier, k);
            }
            for (OffHeapKvStore s : stores) {
                s.close();
            }
        }
    }
}
