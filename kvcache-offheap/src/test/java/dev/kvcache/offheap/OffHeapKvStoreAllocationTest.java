package dev.kvcache.offheap;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import org.junit.jupiter.api.Test;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The store's main allocation: lazily committed where the OS allows, zero everywhere, and given
 * back on close and on a constructor that fails after allocating.
 */
class OffHeapKvStoreAllocationTest {

    /** 32 layers x 8 KV heads x 128 at Q8_0, blockTokens 16: 1,114,112 bytes a block. */
    private static final KvLayout BIG = new KvLayout(32, 8, 128, 16, KvFormats.Q8_0);

    private static boolean linux() {
        return System.getProperty("os.name", "").toLowerCase().startsWith("linux");
    }

    @Test
    void aLargeStoreIsMappedLazilyAndUnmappedOnClose() {
        assumeTrue(linux(), "lazy mapping is Linux-only");
        assertTrue(NativeMemory.lazy(), "the tests run with --enable-native-access: the store must map lazily");
        long before = NativeMemory.mappedBytes();
        // 1024 blocks = 1.06 GiB of address space; only what is written becomes resident
        OffHeapKvStore store = OffHeapKvStore.allocate(BIG, 1024);
        long size = BIG.bytesPerBlock() * 1024;
        assertEquals(before + size, NativeMemory.mappedBytes(), "the main allocation is one mapping");
        store.close();
        assertEquals(before, NativeMemory.mappedBytes(), "close() unmaps it");
        store.close(); // idempotent: nothing unmapped twice
        assertEquals(before, NativeMemory.mappedBytes());
        assertThrows(IllegalStateException.class, () -> store.readKey(0, 0, new float[BIG.kvDim()]));
    }

    @Test
    void aSmallStoreStaysOnTheArena() {
        long before = NativeMemory.mappedBytes();
        KvLayout small = new KvLayout(1, 1, 32, 16, KvFormats.F32);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(small, 4)) {
            assertTrue(store.allocatedBytes() < NativeMemory.LAZY_THRESHOLD);
            assertEquals(before, NativeMemory.mappedBytes());
        }
    }

    @Test
    void aLazilyMappedStoreReadsZeroUntilWrittenAndKeepsWhatIsWritten() {
        int blocks = 64; // 68 MiB: mapped on Linux
        long slots = (long) blocks * BIG.blockTokens();
        float[] out = new float[BIG.kvDim()];
        float[] zero = new float[BIG.kvDim()];
        Random rnd = new Random(42);
        try (OffHeapKvStore store = OffHeapKvStore.allocate(BIG, blocks)) {
            for (long slot : new long[] {0, 1, slots / 2, slots - 1}) {
                for (int layer : new int[] {0, BIG.layers() - 1}) {
                    store.readKey(layer, slot, out);
                    assertArrayEquals(zero, out, "never-written slot " + slot + " layer " + layer);
                    store.readValue(layer, slot, out);
                    assertArrayEquals(zero, out, "never-written slot " + slot + " layer " + layer);
                }
            }
            float[] k = new float[BIG.kvDim()];
            float[] v = new float[BIG.kvDim()];
            for (int i = 0; i < k.length; i++) {
                k[i] = rnd.nextFloat() * 2 - 1;
                v[i] = rnd.nextFloat() * 2 - 1;
            }
            long last = slots - 1;
            store.write(BIG.layers() - 1, last, k, v);
            store.copyBlock(blocks - 1, 0);
            float[] expected = new float[k.length];
            store.readKey(BIG.layers() - 1, last, expected);
            store.readKey(BIG.layers() - 1, BIG.blockTokens() - 1, out);
            assertArrayEquals(expected, out, "the copy of the last block reads what was written there");
            for (int i = 0; i < k.length; i++) {
                assertEquals(k[i], expected[i], 0.02f, "Q8_0 round trip at " + i);
            }
        }
    }

    /**
     * A block format's per-(block, layer) state arrays are allocated after the main allocation;
     * 600M states need 2.4 GB + 4.8 GB of heap, more than the test JVM has, so the constructor
     * fails after mapping ~6 GB of (untouched) address space, and must unmap it.
     */
    @Test
    void aConstructorThatFailsAfterAllocatingGivesTheMemoryBack() {
        assumeTrue(linux() && NativeMemory.lazy(), "observable only for a mapping");
        KvLayout tiny = new KvLayout(1, 1, 1, 1, KvFormats.FP8_E4M3);
        int blocks = 600_000_000;
        long bytes = tiny.bytesPerBlock() * blocks;
        assumeTrue(bytes < 16L << 30, "a mapping the kernel's overcommit heuristic grants: " + bytes);
        assumeTrue(Runtime.getRuntime().maxMemory() < 7L * blocks, "the heap must be too small for the state arrays");
        long before = NativeMemory.mappedBytes();
        OutOfMemoryError e = assertThrows(OutOfMemoryError.class, () -> OffHeapKvStore.allocate(tiny, blocks));
        // a host with little RAM refuses the mapping itself (nothing then to give back)
        assumeTrue(!String.valueOf(e.getMessage()).startsWith("mmap of"), "the kernel refused the mapping: " + e);
        assertTrue(String.valueOf(e.getMessage()).contains("heap"), "failed on the state arrays: " + e);
        assertEquals(before, NativeMemory.mappedBytes(), "the failed constructor unmapped its memory");
    }

    /**
     * Without native access the store takes the eager arena path: it still works, and says once,
     * at WARNING, what it costs and which flag to add.
     */
    @Test
    void withoutNativeAccessTheStoreAllocatesEagerlyAndSaysSoOnce() throws Exception {
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        String java = ProcessHandle.current().info().command()
                .orElse(System.getProperty("java.home") + File.separator + "bin" + File.separator + "java");
        Process p = new ProcessBuilder(List.of(java, "-Xmx256m", "--add-modules", "jdk.incubator.vector",
                "-cp", cp, EagerAllocationMain.class.getName()))
                .redirectErrorStream(true).start();
        String output;
        try {
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child JVM timed out");
            output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        } finally {
            p.destroyForcibly();
        }
        assertEquals(0, p.exitValue(), output);
        assertTrue(output.strip().endsWith("OK"), output);
        if (linux()) {
            assertEquals(1, output.split("--enable-native-access=ALL-UNNAMED", -1).length - 1,
                    "one warning naming the flag: " + output);
            assertTrue(output.contains("WARNING"), output);
        }
    }

    /** The child JVM of {@link #withoutNativeAccessTheStoreAllocatesEagerlyAndSaysSoOnce}. */
    static final class EagerAllocationMain {
        public static void main(String[] args) {
            if (NativeMemory.lazy()) {
                throw new AssertionError("native access is off, yet the store maps lazily");
            }
            for (int i = 0; i < 2; i++) {
                try (OffHeapKvStore store = OffHeapKvStore.allocate(BIG, 4)) { // 4.25 MiB: above the threshold
                    float[] out = new float[BIG.kvDim()];
                    store.readKey(0, BIG.blockTokens() * 4L - 1, out);
                    for (float x : out) {
                        if (x != 0f) {
                            throw new AssertionError("eager memory is not zero");
                        }
                    }
                    if (NativeMemory.mappedBytes() != 0) {
                        throw new AssertionError("mapped without native access");
                    }
                }
            }
            System.out.println("OK");
        }
    }
}
