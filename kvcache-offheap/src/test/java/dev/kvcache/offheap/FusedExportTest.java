package dev.kvcache.offheap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kvcache.KvFormat;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.zip.CRC32C;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * {@link OffHeapKvStore#exportBlockCrc32c}, the export a host tier's demotion takes, against its
 * reference: the same bytes as {@link OffHeapKvStore#exportBlock} and the CRC32C the interface's
 * default computes over them, on fresh random KV, for every format and for blocks that are not a
 * whole number of fused chunks.
 */
class FusedExportTest {

    static long crcOf(byte[] b) {
        CRC32C c = new CRC32C();
        c.update(b);
        return (int) c.getValue();
    }

    @ParameterizedTest
    @MethodSource("dev.kvcache.offheap.HostTierTest#formats")
    void sameBytesAndTheChecksumOfThem(KvFormat f) {
        KvLayout l = HostTierTest.layout(f);
        SplittableRandom r = new SplittableRandom();
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 3)) {
            HostTierTest.fill(store, 1, HostTierTest.BLOCK_TOKENS, r);
            byte[] plain = HostTierTest.export(store, 1);
            byte[] fused = new byte[plain.length + 7];
            Arrays.fill(fused, (byte) 0x5A);
            int sum = store.exportBlockCrc32c(1, MemorySegment.ofArray(fused));
            assertArrayEquals(plain, Arrays.copyOf(fused, plain.length));
            for (int i = plain.length; i < fused.length; i++) {
                assertEquals((byte) 0x5A, fused[i], "a fused export writes past the block at " + i);
            }
            assertEquals(crcOf(plain), sum);
            assertEquals(sum, defaultOf(store).exportBlockCrc32c(1, MemorySegment.ofArray(new byte[plain.length])));
        }
    }

    /** Blocks of 1, 2 and 3 fused chunks and a few bytes more or less: every chunk boundary case. */
    @ParameterizedTest
    @ValueSource(ints = {1, 3, 31, 32, 33, 97})
    void blocksOfAnySizeAgainstTheChunk(int blockTokens) {
        // F32, 2 layers x 2 heads x 32 dims: 1 KiB per token and layer pair, so these straddle 16 KiB chunks
        KvLayout l = new KvLayout(2, 2, 32, blockTokens, dev.kvcache.KvFormats.F32);
        SplittableRandom r = new SplittableRandom();
        try (OffHeapKvStore store = OffHeapKvStore.allocate(l, 2)) {
            int kvDim = 2 * 32;
            for (int t = 0; t < blockTokens; t++) {
                for (int layer = 0; layer < 2; layer++) {
                    store.write(layer, (long) blockTokens + t, Reference.gaussian(r, kvDim, 1),
                            Reference.gaussian(r, kvDim, 1));
                }
            }
            byte[] plain = new byte[(int) l.bytesPerBlock()];
            store.exportBlock(1, MemorySegment.ofArray(plain));
            byte[] fused = new byte[plain.length];
            assertEquals(crcOf(plain), store.exportBlockCrc32c(1, MemorySegment.ofArray(fused)));
            assertArrayEquals(plain, fused);
        }
    }

    @Test
    void refusesLikeExportBeforeAnyByteMoves() {
        KvLayout l = HostTierTest.layout(dev.kvcache.KvFormats.Q8_0);
        OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
        byte[] small = new byte[(int) l.bytesPerBlock() - 1];
        assertThrows(IllegalArgumentException.class, () -> store.exportBlockCrc32c(0, MemorySegment.ofArray(small)));
        for (byte b : small) {
            assertEquals(0, b);
        }
        assertThrows(IllegalArgumentException.class,
                () -> store.exportBlockCrc32c(2, MemorySegment.ofArray(new byte[(int) l.bytesPerBlock()])));
        assertThrows(IllegalArgumentException.class, () -> store.exportBlockCrc32c(0,
                MemorySegment.ofArray(new byte[(int) l.bytesPerBlock()]).asReadOnly()));
        store.close();
        assertThrows(IllegalStateException.class,
                () -> store.exportBlockCrc32c(0, MemorySegment.ofArray(new byte[(int) l.bytesPerBlock()])));
    }

    /** A partially written block of a block format (staged rows) is refused as exportBlock refuses it. */
    @ParameterizedTest
    @MethodSource("dev.kvcache.offheap.HostTierTest#formats")
    void aStagedBlockIsRefused(KvFormat f) {
        KvLayout l = HostTierTest.layout(f);
        OffHeapKvStore store = OffHeapKvStore.allocate(l, 2);
        HostTierTest.fill(store, 1, 1, new SplittableRandom());
        MemorySegment dst = MemorySegment.ofArray(new byte[(int) l.bytesPerBlock()]);
        if (store.rowFormat()) {
            store.exportBlockCrc32c(1, dst); // every row in place: exportable
        } else {
            assertThrows(IllegalStateException.class, () -> store.exportBlockCrc32c(1, dst));
        }
        store.close();
        assertThrows(IllegalStateException.class,
                () -> store.exportBlockCrc32c(0, MemorySegment.ofArray(new byte[(int) l.bytesPerBlock()])));
    }

    /** The store seen through the interface's default method only (the reference). */
    private static KvStore defaultOf(OffHeapKvStore s) {
        return new KvStore() {
            @Override public KvLayout layout() { return s.layout(); }
            @Override public int blocks() { return s.blocks(); }
            @Override public void write(int layer, long slot, float[] k, float[] v) { s.write(layer, slot, k, v); }
            @Override public void readKey(int layer, long slot, float[] out) { s.readKey(layer, slot, out); }
            @Override public void readValue(int layer, long slot, float[] out) { s.readValue(layer, slot, out); }
            @Override public void copyBlock(int a, int b) { s.copyBlock(a, b); }
            @Override public void exportBlock(int block, MemorySegment dst) { s.exportBlock(block, dst); }
            @Override public void close() { }
        };
    }
}
