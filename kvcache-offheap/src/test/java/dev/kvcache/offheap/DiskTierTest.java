package dev.kvcache.offheap;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import static dev.kvcache.offheap.HostTierTest.BLOCK_TOKENS;
import static dev.kvcache.offheap.HostTierTest.LAYERS;
import static dev.kvcache.offheap.HostTierTest.decode;
import static dev.kvcache.offheap.HostTierTest.entry;
import static dev.kvcache.offheap.HostTierTest.export;
import static dev.kvcache.offheap.HostTierTest.fill;
import static dev.kvcache.offheap.HostTierTest.key;
import static dev.kvcache.offheap.HostTierTest.layout;
import static dev.kvcache.offheap.PagedAttentionTest.assertMessage;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** DiskTier: files, restart, verification, budget, failures, and the manager end to end. */
class DiskTierTest {

    @TempDir
    Path dir;

    static List<KvFormat> someFormats() {
        return List.of(KvFormats.F32, KvFormats.Q8_0, KvFormats.FP8_E4M3, KvFormats.KIVI_4);
    }

    /** The header length of {@link HostTierTest#entry}'s entries: 72 + "tenant" + 4 * tokens. */
    static int headerBytes() {
        return 72 + "tenant".length() + 4 * BLOCK_TOKENS;
    }

    private static List<String> names(Path d) throws IOException {
        try (Stream<Path> s = Files.list(d)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    // ------------------------------------------------------------------ round trip

    /**
     * Put, overwrite the store block, load back: byte-identical and attention bit-identical; the
     * file is named by the key and is exactly header + payload + CRC.
     */
    @ParameterizedTest
    @MethodSource("someFormats")
    void roundTripIsByteIdenticalAndAttentionEqual(KvFormat f) throws IOException {
        KvLayout l = layout(f);
        SplittableRandom r = new SplittableRandom(f.name().hashCode());
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 4);
             DiskTier tier = DiskTier.open(dir, l, 2 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            byte[] original = export(store, 0);
            float[] q = Reference.gaussian(r, 4 * HostTierTest.HEAD_DIM, 1);
            float[][] before = decode(store, 0, q);
            TierEntry e = entry(l, 1);
            assertTrue(tier.put(e, store, 0));
            Path file = tier.fileOf(e.key());
            assertEquals(e.key().toHex() + ".kvb", file.getFileName().toString());
            assertEquals(List.of(".lock", e.key().toHex() + ".kvb"), names(dir), "no temp file left");
            assertEquals(headerBytes() + l.bytesPerBlock() + 4, Files.size(file));

            fill(store, 0, BLOCK_TOKENS, r);       // reused for other KV
            fill(store, 0, 3, r);                  // and partly rewritten
            assertTrue(tier.load(e, store, 0));
            assertEquals(0, store.stagedSlices(), "import drops staging");
            assertArrayEquals(original, export(store, 0), f.name());
            float[][] after = decode(store, 0, q);
            for (int layer = 0; layer < LAYERS; layer++) {
                assertArrayEquals(before[layer], after[layer], f + " layer " + layer);
            }
            assertTrue(tier.load(e, store, 3));
            assertArrayEquals(original, export(store, 3));
            TierStats s = tier.stats();
            assertEquals("disk", s.tier());
            assertEquals(1, s.blocks());
            assertEquals(l.bytesPerBlock(), s.bytes());
            assertEquals(2 * l.bytesPerBlock(), s.capacityBytes());
            assertEquals(1, s.puts());
            assertEquals(2, s.loads());
            assertEquals(3 * l.bytesPerBlock(), s.bytesMoved());
            assertTrue(s.copyNanos() > 0);
            assertEquals(0, s.verificationMisses() + s.refusedPuts() + s.evictions() + tier.ioErrors());
        }
    }

    /** A first block (no parent) of a cache shared across tenants (no scope), and a non-ASCII scope. */
    @Test
    void noParentNoScopeAndAUnicodeScopeRoundTrip() {
        KvLayout l = layout(KvFormats.F16);
        SplittableRandom r = new SplittableRandom(2);
        int[] tokens = IntStream.range(0, BLOCK_TOKENS).toArray();
        long fp = TierEntry.fingerprint(l);
        TierEntry bare = new TierEntry(key(0), null, 0, null, tokens, fp);
        TierEntry uni = new TierEntry(key(1), key(0), -1, "tenant-\u00e9\u4e2d", tokens, fp);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3);
             DiskTier tier = DiskTier.open(dir, l, 4 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] b0 = export(store, 0);
            byte[] b1 = export(store, 1);
            assertTrue(tier.put(bare, store, 0));
            assertTrue(tier.put(uni, store, 1));
            assertFalse(tier.load(new TierEntry(key(0), null, 0, "", tokens, fp), store, 2), "no scope is not an empty one");
            assertTrue(tier.put(bare, store, 0));
            assertTrue(tier.load(bare, store, 2));
            assertArrayEquals(b0, export(store, 2));
            assertTrue(tier.load(uni, store, 2));
            assertArrayEquals(b1, export(store, 2));
        }
    }

    // ------------------------------------------------------------------ restart

    @Test
    void aRestartServesTheBlocksAndAnotherLayoutServesNothingAndLeavesTheFiles() throws IOException {
        KvLayout l = layout(KvFormats.Q8_0);
        SplittableRandom r = new SplittableRandom(3);
        byte[][] bytes = new byte[3][];
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3);
             DiskTier tier = DiskTier.open(dir, l, 8 * l.bytesPerBlock())) {
            for (int i = 0; i < 3; i++) {
                fill(store, i, BLOCK_TOKENS, r);
                bytes[i] = export(store, i);
                assertTrue(tier.put(entry(l, i), store, i));
            }
            assertThrows(IllegalStateException.class, () -> DiskTier.open(dir, l, l.bytesPerBlock()),
                    "one tier per directory");
            assertThrows(IllegalStateException.class, () -> DiskTier.open(dir.resolve("."), l, l.bytesPerBlock()));
        }
        // a foreign file, a foreign directory and a leftover temp file of an interrupted put
        Files.writeString(dir.resolve("notes.txt"), "mine");
        Files.createDirectory(dir.resolve("sub"));
        Path tmp = dir.resolve(key(9).toHex() + ".kvb.tmp");
        Files.write(tmp, new byte[100]);
        PrefixKey[] keys = {key(0), key(1), key(2), key(3)};
        try (OffHeapKvStore fresh = OffHeapKvStore.allocate(l, 3);
             DiskTier tier = DiskTier.open(dir, l, 8 * l.bytesPerBlock())) {
            assertEquals(3, tier.stats().blocks());
            assertEquals(3 * l.bytesPerBlock(), tier.stats().bytes());
            assertEquals(2, tier.skippedFiles(), "notes.txt and sub");
            assertFalse(Files.exists(tmp), "its own temp file is deleted");
            assertTrue(Files.exists(dir.resolve("notes.txt")) && Files.isDirectory(dir.resolve("sub")));
            assertEquals(3, tier.leadingHits(keys, 0, 4));
            for (int i = 2; i >= 0; i--) {
                assertTrue(tier.load(entry(l, i), fresh, i), "block " + i + " after a restart");
                assertArrayEquals(bytes[i], export(fresh, i));
            }
            assertEquals(0, tier.stats().verificationMisses());
        }
        // another layout: nothing is served, nothing is deleted
        KvLayout other = l.withFormat(KvFormats.F16);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(other, 1);
             DiskTier tier = DiskTier.open(dir, other, 8 * other.bytesPerBlock())) {
            assertEquals(0, tier.stats().blocks());
            assertEquals(0, tier.leadingHits(keys, 0, 4));
            assertEquals(5, tier.skippedFiles(), "3 blocks of another layout + notes.txt + sub");
            assertFalse(tier.load(entry(other, 0), store, 0));
            assertEquals(0, tier.stats().verificationMisses(), "not held: a plain miss");
        }
        // another block size with the same format (another fingerprint) as well
        KvLayout shorter = new KvLayout(LAYERS, HostTierTest.KV_HEADS, HostTierTest.HEAD_DIM, BLOCK_TOKENS / 2, KvFormats.Q8_0);
        try (DiskTier tier = DiskTier.open(dir, shorter, 8 * shorter.bytesPerBlock())) {
            assertEquals(0, tier.stats().blocks());
        }
        for (int i = 0; i < 3; i++) {
            assertTrue(Files.exists(dir.resolve(key(i).toHex() + ".kvb")));
        }
        try (DiskTier tier = DiskTier.open(dir, l, 8 * l.bytesPerBlock())) {
            assertEquals(3, tier.stats().blocks(), "still there for the right layout");
        }
    }

    @Test
    void aRestartKeepsTheLruOrderByModificationTimeAndEnforcesASmallerBudget() throws IOException {
        KvLayout l = layout(KvFormats.FP8_E4M3);
        long bpb = l.bytesPerBlock();
        SplittableRandom r = new SplittableRandom(4);
        byte[][] bytes = new byte[4][];
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 4);
             DiskTier tier = DiskTier.open(dir, l, 4 * bpb)) {
            for (int i = 0; i < 4; i++) {
                fill(store, i, BLOCK_TOKENS, r);
                bytes[i] = export(store, i);
                assertTrue(tier.put(entry(l, i), store, i));
            }
        }
        // used order, oldest first: 2, 0, 3, 1
        long now = System.currentTimeMillis();
        int[] order = {2, 0, 3, 1};
        for (int j = 0; j < 4; j++) {
            Files.setLastModifiedTime(dir.resolve(key(order[j]).toHex() + ".kvb"), FileTime.fromMillis(now - 100_000 + j * 1000L));
        }
        try (DiskTier tier = DiskTier.open(dir, l, 4 * bpb)) {
            assertArrayEquals(new PrefixKey[] {key(2), key(0), key(3), key(1)}, tier.lruOrderForTest());
        }
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 1);
             DiskTier tier = DiskTier.open(dir, l, 2 * bpb + 7)) {
            assertEquals(2, tier.capacityBlocks());
            assertArrayEquals(new PrefixKey[] {key(3), key(1)}, tier.lruOrderForTest());
            TierStats s = tier.stats();
            assertEquals(2, s.evictions(), "the two least recently used files");
            assertEquals(2 * bpb, s.bytes());
            assertFalse(Files.exists(tier.fileOf(key(2))));
            assertFalse(Files.exists(tier.fileOf(key(0))));
            assertTrue(tier.load(entry(l, 3), store, 0));
            assertArrayEquals(bytes[3], export(store, 0));
        }
        // the load set key 3's time: it is now the most recently used
        try (DiskTier tier = DiskTier.open(dir, l, 2 * bpb)) {
            assertArrayEquals(new PrefixKey[] {key(1), key(3)}, tier.lruOrderForTest());
        }
    }

    // ------------------------------------------------------------------ corruption

    record Damage(String name, Consumer<Path> apply) {
        @Override
        public String toString() {
            return name;
        }
    }

    static void flip(Path file, long offset) {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(offset);
            int b = f.read();
            f.seek(offset);
            f.write(~b & 0xFF);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    static void truncate(Path file, long length) {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(length);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    static List<Damage> damages() {
        int h = headerBytes();
        List<Damage> out = new ArrayList<>();
        out.add(new Damage("truncated in the payload", p -> truncate(p, h + 10)));
        out.add(new Damage("truncated by the checksum", p -> truncate(p, size(p) - 1)));
        out.add(new Damage("truncated in the header", p -> truncate(p, 40)));
        out.add(new Damage("empty", p -> truncate(p, 0)));
        out.add(new Damage("one byte longer", p -> truncate(p, size(p) + 1)));
        out.add(new Damage("a flipped payload byte", p -> flip(p, h + 123)));
        out.add(new Damage("a flipped last payload byte", p -> flip(p, size(p) - 5)));
        out.add(new Damage("a flipped checksum byte", p -> flip(p, size(p) - 2)));
        for (int off : new int[] {0, 5, 7, 12, 20, 35, 50, 57, 62, 70, h - 1}) {
            out.add(new Damage("a flipped header byte at " + off, p -> flip(p, off)));
        }
        out.add(new Damage("garbage of the same length", p -> {
            byte[] g = new byte[(int) size(p)];
            new SplittableRandom(77).nextBytes(g);
            write(p, g);
        }));
        out.add(new Damage("text", p -> write(p, "not a block".getBytes(StandardCharsets.UTF_8))));
        return out;
    }

    private static long size(Path p) {
        try {
            return Files.size(p);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    private static void write(Path p, byte[] b) {
        try {
            Files.write(p, b);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    /**
     * A file damaged while the tier is open: its load is a counted verification miss, nothing is
     * imported, the file is deleted; the other block still loads.
     */
    @ParameterizedTest
    @MethodSource("damages")
    void aDamagedFileIsACountedMissThatLoadsNothing(Damage d) {
        KvLayout l = layout(KvFormats.KIVI_4);
        SplittableRandom r = new SplittableRandom(5);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
             DiskTier tier = DiskTier.open(dir, l, 4 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] b0 = export(store, 0);
            byte[] target = export(store, 1);
            assertTrue(tier.put(entry(l, 0), store, 0));
            assertTrue(tier.put(entry(l, 2), store, 0));
            Path file = tier.fileOf(key(0));
            d.apply().accept(file);
            assertFalse(tier.load(entry(l, 0), store, 1), d.name());
            assertArrayEquals(target, export(store, 1), "nothing loaded");
            TierStats s = tier.stats();
            assertEquals(1, s.verificationMisses());
            assertEquals(0, s.loads());
            assertEquals(1, s.blocks());
            assertEquals(0, tier.ioErrors());
            assertFalse(Files.exists(file), "the bad file is deleted");
            assertEquals(0, tier.leadingHits(new PrefixKey[] {key(0)}, 0, 1));
            assertFalse(tier.load(entry(l, 0), store, 1));
            assertEquals(1, tier.stats().verificationMisses(), "then a plain miss");
            assertTrue(tier.load(entry(l, 2), store, 1), "the other file is intact");
            assertArrayEquals(b0, export(store, 1));
        }
    }

    /**
     * A file damaged while no tier was open: one whose header no longer reads is not indexed and is
     * left alone (counted); one whose header reads is indexed and its load is the counted miss.
     */
    @Test
    void aFileDamagedBeforeARestartIsSkippedOrACountedMiss() throws IOException {
        KvLayout l = layout(KvFormats.F32);
        SplittableRandom r = new SplittableRandom(6);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 1);
             DiskTier tier = DiskTier.open(dir, l, 4 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            for (int i = 0; i < 4; i++) {
                assertTrue(tier.put(entry(l, i), store, 0));
            }
        }
        int h = headerBytes();
        flip(dir.resolve(key(0).toHex() + ".kvb"), 1);               // magic
        truncate(dir.resolve(key(1).toHex() + ".kvb"), 30);          // header cut
        flip(dir.resolve(key(2).toHex() + ".kvb"), h + 1);           // payload
        Files.move(dir.resolve(key(3).toHex() + ".kvb"), dir.resolve(key(8).toHex() + ".kvb")); // name is not its key
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 1);
             DiskTier tier = DiskTier.open(dir, l, 4 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            byte[] target = export(store, 0);
            assertEquals(3, tier.skippedFiles());
            assertEquals(1, tier.stats().blocks());
            assertTrue(Files.exists(dir.resolve(key(0).toHex() + ".kvb")), "left alone");
            assertTrue(Files.exists(dir.resolve(key(1).toHex() + ".kvb")), "left alone");
            assertFalse(tier.load(entry(l, 0), store, 0));
            assertFalse(tier.load(entry(l, 2), store, 0));
            assertArrayEquals(target, export(store, 0));
            assertEquals(1, tier.stats().verificationMisses());
            assertFalse(Files.exists(dir.resolve(key(2).toHex() + ".kvb")));
            // a put over a skipped file of its own name replaces it
            assertTrue(tier.put(entry(l, 1), store, 0));
            assertTrue(tier.load(entry(l, 1), store, 0));
        }
    }

    // ------------------------------------------------------------------ entry mismatch

    @Test
    void anEntryThatDiffersInAnyFieldIsACountedMissThatLoadsNothing() throws IOException {
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
                new TierEntry(e.key(), e.parentKey(), e.salt(), e.scope(), Arrays.copyOf(e.tokens(), 7),
                        e.layoutFingerprint()));
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
             DiskTier tier = DiskTier.open(dir, l, 4 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] target = export(store, 1);
            int misses = 0;
            for (TierEntry w : wrong) {
                assertTrue(tier.put(e, store, 0));
                assertFalse(tier.load(w, store, 1), w.toString());
                misses++;
                assertEquals(misses, tier.stats().verificationMisses());
                assertEquals(0, tier.stats().blocks(), "dropped");
                assertFalse(Files.exists(tier.fileOf(e.key())), "and deleted");
                assertArrayEquals(target, export(store, 1), "nothing loaded");
            }
            assertFalse(tier.load(entry(l, 5), store, 1));
            assertEquals(misses, tier.stats().verificationMisses(), "not held: a plain miss");
            // the caller changing its token array after the put does not change what is held
            TierEntry mine = entry(l, 2);
            assertTrue(tier.put(mine, store, 0));
            mine.tokens()[0] = -1;
            assertFalse(tier.load(mine, store, 1));
            assertEquals(misses + 1, tier.stats().verificationMisses());
        }
        // the file itself is checked, not only the index: a file swapped for another key's content
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
             DiskTier tier = DiskTier.open(dir, l, 4 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] target = export(store, 1);
            assertTrue(tier.put(entry(l, 3), store, 0));
            assertTrue(tier.put(entry(l, 4), store, 0));
            Files.copy(tier.fileOf(key(4)), tier.fileOf(key(3)), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            assertFalse(tier.load(entry(l, 3), store, 1));
            assertArrayEquals(target, export(store, 1));
            assertEquals(1, tier.stats().verificationMisses());
            assertTrue(tier.load(entry(l, 4), store, 1));
        }
    }

    // ------------------------------------------------------------------ budget and LRU

    @Test
    void aFullTierDeletesTheLeastRecentlyUsedFileAndALoadTouches() throws IOException {
        KvLayout l = layout(KvFormats.F16);
        long bpb = l.bytesPerBlock();
        SplittableRandom r = new SplittableRandom(5);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 6);
             DiskTier tier = DiskTier.open(dir, l, 4 * bpb - 1)) {
            assertEquals(3, tier.capacityBlocks());
            assertEquals(3 * bpb, tier.stats().capacityBytes());
            byte[][] bytes = new byte[6][];
            for (int b = 0; b < 6; b++) {
                fill(store, b, BLOCK_TOKENS, r);
                bytes[b] = export(store, b);
            }
            PrefixKey[] keys = {key(0), key(1), key(2), key(3), key(4)};
            for (int i = 0; i < 3; i++) {
                assertTrue(tier.put(entry(l, i), store, i));
            }
            assertArrayEquals(new PrefixKey[] {key(0), key(1), key(2)}, tier.lruOrderForTest());
            assertTrue(tier.load(entry(l, 0), store, 5)); // touches 0
            assertTrue(tier.put(entry(l, 3), store, 3));  // evicts 1
            assertArrayEquals(new PrefixKey[] {key(2), key(0), key(3)}, tier.lruOrderForTest());
            assertFalse(Files.exists(tier.fileOf(key(1))), "its file is deleted");
            assertEquals(1, tier.stats().evictions());
            assertFalse(tier.load(entry(l, 1), store, 5));
            assertTrue(tier.put(entry(l, 2), store, 2));  // re-put: only a touch
            assertArrayEquals(new PrefixKey[] {key(0), key(3), key(2)}, tier.lruOrderForTest());
            assertEquals(5 * bpb, tier.stats().bytesMoved(), "4 puts and 1 load copied, the re-put did not");
            assertTrue(tier.put(entry(l, 4), store, 4));  // evicts 0
            assertArrayEquals(new PrefixKey[] {key(3), key(2), key(4)}, tier.lruOrderForTest());
            try (Stream<Path> s = Files.list(dir)) {
                assertEquals(3, s.filter(p -> p.toString().endsWith(".kvb")).count(), "never more files than the budget");
            }
            TierStats s = tier.stats();
            assertEquals(3, s.blocks());
            assertEquals(6, s.puts());
            assertEquals(2, s.evictions());
            for (int i : new int[] {2, 3, 4}) {
                assertTrue(tier.load(entry(l, i), store, 5));
                assertArrayEquals(bytes[i], export(store, 5), "key " + i);
            }
            assertEquals(0, tier.leadingHits(keys, 0, 5), "0 and 1 evicted");
            assertEquals(3, tier.leadingHits(keys, 2, 3));
            assertTrue(tier.remove(key(3)));
            assertFalse(Files.exists(tier.fileOf(key(3))));
            assertFalse(tier.remove(key(3)));
            assertEquals(2, tier.stats().blocks());
            assertTrue(tier.put(entry(l, 1), store, 1)); // room: no eviction
            assertEquals(2, tier.stats().evictions());
            assertTrue(tier.load(entry(l, 1), store, 5));
            assertArrayEquals(bytes[1], export(store, 5));
        }
    }

    /**
     * A lookup's hits are about to be loaded by the same append, whose own allocations may demote
     * blocks into this tier first: the hits are refreshed (first key most recent), so those
     * demotions evict other files; a lookup reads and writes no file.
     */
    @Test
    void aLookupRefreshesItsHitsFirstKeyMostRecent() throws IOException {
        KvLayout l = layout(KvFormats.F16);
        SplittableRandom r = new SplittableRandom(6);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 4);
             DiskTier tier = DiskTier.open(dir, l, 3 * l.bytesPerBlock())) {
            for (int b = 0; b < 4; b++) {
                fill(store, b, BLOCK_TOKENS, r);
            }
            for (int i = 0; i < 3; i++) {
                assertTrue(tier.put(entry(l, i), store, i));
            }
            assertArrayEquals(new PrefixKey[] {key(0), key(1), key(2)}, tier.lruOrderForTest());
            FileTime t0 = Files.getLastModifiedTime(tier.fileOf(key(0)));
            assertEquals(2, tier.leadingHits(new PrefixKey[] {key(0), key(1), key(3)}, 0, 3));
            assertArrayEquals(new PrefixKey[] {key(2), key(1), key(0)}, tier.lruOrderForTest());
            assertEquals(t0, Files.getLastModifiedTime(tier.fileOf(key(0))), "a lookup touches no file");
            assertTrue(tier.put(entry(l, 3), store, 3)); // evicts 2, not the looked-up 0 and 1
            assertArrayEquals(new PrefixKey[] {key(1), key(0), key(3)}, tier.lruOrderForTest());
            assertFalse(Files.exists(tier.fileOf(key(2))));
            assertEquals(3 * l.bytesPerBlock() + l.bytesPerBlock(), tier.stats().bytesMoved(), "a lookup moves no bytes");
        }
    }

    // ------------------------------------------------------------------ failures

    @Test
    void ioErrorsAndFailingStoresAreMissesNeverThrows() throws IOException {
        KvLayout l = layout(KvFormats.FP8_E4M3);
        SplittableRandom r = new SplittableRandom(13);
        Path sub = dir.resolve("tier");
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3);
             DiskTier tier = DiskTier.open(sub, l, 2 * l.bytesPerBlock())) {
            fill(store, 0, BLOCK_TOKENS, r);
            fill(store, 1, BLOCK_TOKENS, r);
            byte[] b0 = export(store, 0);
            HostTierTest.Throwing bad = new HostTierTest.Throwing(store);
            bad.failExport = true;
            assertFalse(tier.put(entry(l, 0), bad, 0));
            TierStats s = tier.stats();
            assertEquals(1, s.refusedPuts());
            assertEquals(0, s.blocks());
            assertEquals(List.of(".lock"), names(sub), "nothing written, no temp file");

            assertTrue(tier.put(entry(l, 0), store, 0));
            bad.failExport = false;
            bad.failImport = true;
            assertFalse(tier.load(entry(l, 0), bad, 2));
            assertEquals(1, tier.failedLoads());
            assertEquals(1, tier.stats().blocks(), "the file was not at fault: it stays");
            assertTrue(tier.load(entry(l, 0), store, 2));
            assertArrayEquals(b0, export(store, 2));

            // the file vanishes under the tier: a miss counted as an IO error
            Files.delete(tier.fileOf(key(0)));
            assertFalse(tier.load(entry(l, 0), store, 2));
            assertEquals(1, tier.ioErrors());
            assertEquals(0, tier.stats().verificationMisses());
            assertEquals(0, tier.stats().blocks());

            // the directory vanishes: a put is refused, counted, and does not throw
            Files.delete(sub.resolve(".lock"));
            Files.delete(sub);
            assertFalse(tier.put(entry(l, 1), store, 1));
            assertEquals(2, tier.ioErrors());
            assertEquals(2, tier.stats().refusedPuts());
            assertEquals(0, tier.stats().blocks());
            // wiring errors are loud
            try (OffHeapKvStore otherLayout = OffHeapKvStore.allocate(l.withFormat(KvFormats.F16), 1)) {
                assertMessage(() -> tier.put(entry(l, 3), otherLayout, 0), "layout");
                assertMessage(() -> tier.put(entry(l.withFormat(KvFormats.F16), 3), store, 0), "fingerprint");
            }
        }
    }

    @Test
    void budgetBelowOneBlockIsRefusedAndAClosedTierIsLoud() throws IOException {
        KvLayout l = layout(KvFormats.F32);
        long bpb = l.bytesPerBlock();
        assertMessage(() -> DiskTier.open(dir, l, bpb - 1), "budget " + (bpb - 1), String.valueOf(bpb));
        assertMessage(() -> DiskTier.open(dir, l, 0), "budget 0");
        Path file = dir.resolve("a-file");
        Files.writeString(file, "x");
        assertThrows(java.io.UncheckedIOException.class, () -> DiskTier.open(file, l, bpb), "not a directory");
        DiskTier tier = DiskTier.open(dir, l, 2 * bpb);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 1)) {
            fill(store, 0, BLOCK_TOKENS, new SplittableRandom(1));
            assertTrue(tier.put(entry(l, 0), store, 0));
            tier.close();
            tier.close();
            assertThrows(IllegalStateException.class, () -> tier.put(entry(l, 1), store, 0));
            assertThrows(IllegalStateException.class, () -> tier.load(entry(l, 0), store, 0));
            assertThrows(IllegalStateException.class, () -> tier.leadingHits(new PrefixKey[] {key(0)}, 0, 1));
            assertThrows(IllegalStateException.class, () -> tier.remove(key(0)));
            assertEquals(1, tier.stats().puts());
            assertTrue(Files.exists(dir.resolve(key(0).toHex() + ".kvb")), "files stay");
            try (DiskTier again = DiskTier.open(dir, l, 2 * bpb)) {
                assertEquals(1, again.stats().blocks(), "the directory is free again");
            }
        }
    }

    /** Two threads share a tier of 3 blocks over 8 keys: every load is byte-identical, stats add up. */
    @Test
    void sharedTierUnderTwoThreads() throws Exception {
        KvLayout l = new KvLayout(1, 1, 32, 4, KvFormats.Q4_0);
        long bpb = l.bytesPerBlock();
        int keys = 8;
        try (DiskTier tier = DiskTier.open(dir, l, 3 * bpb)) {
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
                    content[k] = export(s, k);
                }
            }
            AtomicReference<Throwable> failure = new AtomicReference<>();
            long[] counts = new long[4];
            Thread[] threads = new Thread[2];
            for (int t = 0; t < 2; t++) {
                OffHeapKvStore s = stores.get(t);
                int seed = t;
                threads[t] = new Thread(() -> {
                    SplittableRandom r = new SplittableRandom(100 + seed);
                    long p = 0;
                    long ld = 0;
                    try {
                        for (int op = 0; op < 1500; op++) {
                            int k = r.nextInt(keys);
                            if (r.nextBoolean()) {
                                if (tier.put(entry(l, k), s, k)) {
                                    p++;
                                }
                            } else if (tier.load(entry(l, k), s, keys)) {
                                ld++;
                                assertArrayEquals(content[k], export(s, keys), "key " + k);
                            }
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                    synchronized (counts) {
                        counts[0] += p;
                        counts[1] += ld;
                    }
                });
                threads[t].start();
            }
            for (Thread th : threads) {
                th.join(60_000);
                assertFalse(th.isAlive());
            }
            if (failure.get() != null) {
                throw new AssertionError(failure.get());
            }
            TierStats st = tier.stats();
            assertEquals(counts[0], st.puts());
            assertEquals(counts[1], st.loads());
            assertTrue(st.blocks() <= 3);
            assertEquals(0, st.refusedPuts() + st.verificationMisses() + tier.ioErrors(), st.toString());
            try (Stream<Path> s = Files.list(dir)) {
                assertEquals(st.blocks(), s.filter(p -> p.toString().endsWith(".kvb")).count());
            }
            for (OffHeapKvStore s : stores) {
                s.close();
            }
        }
    }

    // ------------------------------------------------------------------ the manager end to end

    private static final int HEADS = 2;
    private static final int DIM = 32;
    private static final int QUERY_HEADS = 4;
    private static final int B = 16;
    private static final int[] PROMPT = IntStream.range(0, 40).map(i -> 7 + 3 * i).toArray(); // 2 full blocks + 8
    private static final int[] OTHER = IntStream.range(0, 60).map(i -> 1000 + i).toArray();    // 4 blocks

    static List<KvFormat> managerFormats() {
        return List.of(KvFormats.F32, KvFormats.F16, KvFormats.BF16, KvFormats.FP8_E4M3, KvFormats.FP8_E5M2,
                KvFormats.Q8_0, KvFormats.Q4_0, KvFormats.KIVI_2, KvFormats.KIVI_4);
    }

    private static float[][][] kv(long seed, int n, int dim) {
        SplittableRandom r = new SplittableRandom(seed);
        float[][][] out = new float[LAYERS][n][];
        for (int l = 0; l < LAYERS; l++) {
            for (int p = 0; p < n; p++) {
                out[l][p] = Reference.gaussian(r, dim, 1.0);
            }
        }
        return out;
    }

    private static void write(OffHeapKvStore store, Sequence s, float[][][] k, float[][][] v, int from, int to) {
        for (int p = from; p < to; p++) {
            for (int l = 0; l < LAYERS; l++) {
                store.write(l, s.slot(p), k[l][p], v[l][p]);
            }
        }
    }

    private static float[][] attend(OffHeapKvStore store, Sequence s, float[][] q) {
        float[][] out = new float[LAYERS][QUERY_HEADS * DIM];
        for (int l = 0; l < LAYERS; l++) {
            PagedAttention.decode(store, l, q[l], QUERY_HEADS, s.blockTable(), s.length(), out[l]);
        }
        return out;
    }

    /**
     * A prompt evicted from the store comes back from disk and attends as a fresh computation;
     * then the engine restarts (new store, new manager, a new DiskTier over the same directory) and
     * the prompt's blocks come back from disk into the brand-new store.
     */
    @ParameterizedTest
    @MethodSource("managerFormats")
    void anEvictedPromptComesBackFromDiskAlsoAfterAnEngineRestart(KvFormat f) {
        KvLayout layout = new KvLayout(LAYERS, HEADS, DIM, B, f);
        int dim = layout.kvDim();
        float[][][] k = kv(1, PROMPT.length, dim);
        float[][][] v = kv(2, PROMPT.length, dim);
        float[][][] ko = kv(3, OTHER.length, dim);
        float[][][] vo = kv(4, OTHER.length, dim);
        float[][][] queries = kv(5, 1, QUERY_HEADS * DIM);
        float[][] q = new float[LAYERS][];
        for (int l = 0; l < LAYERS; l++) {
            q[l] = queries[l][0];
        }
        float[][] expected;
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4);
             KvCacheManager m = KvCacheManager.builder(layout).store(store).build()) {
            Sequence s = m.open("fresh");
            m.append(s, PROMPT);
            write(store, s, k, v, 0, PROMPT.length);
            expected = attend(store, s, q);
            m.free(s);
        }
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4);
             DiskTier disk = DiskTier.open(dir, layout, 4 * layout.bytesPerBlock());
             KvCacheManager m = KvCacheManager.builder(layout).store(store).tier(disk).build()) {
            Sequence a = m.open("a");
            assertEquals(0, m.append(a, PROMPT));
            write(store, a, k, v, 0, PROMPT.length);
            m.free(a);
            Sequence o = m.open("o");
            assertEquals(0, m.append(o, OTHER));                // evicts both cached blocks: to disk
            write(store, o, ko, vo, 0, OTHER.length);
            m.free(o);
            assertTrue(m.ledger().demotedBlocks() >= 2, "demoted: " + m.ledger().demotedBlocks());
            assertTrue(disk.stats().blocks() >= 2);

            Sequence c = m.open("c");
            int served = m.append(c, PROMPT);
            assertEquals(32, served, f + ": both full blocks come back from disk");
            write(store, c, k, v, served, PROMPT.length);
            assertArrayEquals(expected, attend(store, c, q), f + ": attention over promoted blocks");
            KvCacheLedger l = m.ledger();
            assertEquals(2, l.promotedBlocks());
            assertEquals(32, l.tierHitTokens());
            assertEquals(1, l.tiers().size());
            assertEquals("disk", l.tiers().get(0).tier());
            assertEquals(2, l.tiers().get(0).loads());
            assertEquals(0, l.tiers().get(0).verificationMisses());
            m.free(c);
        }
        // the engine restarts: nothing survives but the directory
        try (OffHeapKvStore store = OffHeapKvStore.allocate(layout, 4);
             DiskTier disk = DiskTier.open(dir, layout, 4 * layout.bytesPerBlock());
             KvCacheManager m = KvCacheManager.builder(layout).store(store).tier(disk).build()) {
            assertTrue(disk.stats().blocks() >= 2, "the files of the last run are indexed");
            Sequence c = m.open("after-restart");
            int served = m.append(c, PROMPT);
            assertEquals(32, served, f + ": the prompt's blocks come back from disk into a new store");
            write(store, c, k, v, served, PROMPT.length);
            assertArrayEquals(expected, attend(store, c, q), f + ": attention after a restart");
            assertEquals(2, m.ledger().promotedBlocks());
            assertEquals(2, disk.stats().loads());
            m.free(c);
        }
    }
}
