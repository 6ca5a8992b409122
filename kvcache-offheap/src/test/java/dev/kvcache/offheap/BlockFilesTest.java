package dev.kvcache.offheap;

import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** BlockFiles (DiskTier's file codec and scan) and DirectoryLock, on their own. */
class BlockFilesTest {

    private static final long FP = 0x1234_5678_9ABC_DEF0L;
    private static final int PAYLOAD = 96;

    private static TierEntry entry(SplittableRandom r, String scope) {
        int[] tokens = r.ints(1 + r.nextInt(20)).toArray();
        PrefixKey parent = r.nextBoolean() ? new PrefixKey(r.nextLong(), r.nextLong()) : null;
        return new TierEntry(new PrefixKey(r.nextLong(), r.nextLong()), parent, r.nextLong(), scope, tokens, FP);
    }

    /** Writes {@code e} with random payload bytes; returns them. */
    private static byte[] write(BlockFiles files, TierEntry e, SplittableRandom r) throws IOException {
        byte[] scope = e.scope() == null ? null : e.scope().getBytes(StandardCharsets.UTF_8);
        int h = BlockFiles.headerLength(e, scope);
        int len = h + PAYLOAD + 4;
        byte[] payload = new byte[PAYLOAD];
        r.nextBytes(payload);
        MemorySegment.copy(MemorySegment.ofArray(payload), 0, files.payloadFor(h, len), 0, PAYLOAD);
        files.seal(e, scope, len);
        files.write(e.key(), len);
        return payload;
    }

    @Test
    void aWrittenFileVerifiesToItsPayloadAndAnyFlippedByteFailsIt(@TempDir Path dir) throws IOException {
        SplittableRandom r = new SplittableRandom();
        BlockFiles files = new BlockFiles(dir, FP, PAYLOAD);
        for (String scope : new String[] {null, "tenant-é"}) {
            TierEntry e = entry(r, scope);
            byte[] payload = write(files, e, r);
            Path f = files.fileOf(e.key());
            assertFalse(Files.exists(files.tempOf(e.key())));
            int h = files.readAndVerify(f, e);
            assertEquals(BlockFiles.headerLength(e, scope == null ? null : scope.getBytes(StandardCharsets.UTF_8)), h);
            assertArrayEquals(payload, files.payload(h).toArray(ValueLayout.JAVA_BYTE));
            byte[] bytes = Files.readAllBytes(f);
            assertEquals(h + PAYLOAD + 4, bytes.length);
            int at = r.nextInt(bytes.length);
            bytes[at] ^= (byte) (1 << r.nextInt(8));
            Files.write(f, bytes);
            assertEquals(-1, files.readAndVerify(f, e), "flipped byte " + at);
            Files.write(f, java.util.Arrays.copyOf(bytes, bytes.length - 1)); // truncated
            assertEquals(-1, files.readAndVerify(f, e));
        }
    }

    @Test
    void aFileOfAnotherEntryOrLayoutDoesNotVerifyAndTheScanSkipsForeignFiles(@TempDir Path dir) throws IOException {
        SplittableRandom r = new SplittableRandom();
        BlockFiles files = new BlockFiles(dir, FP, PAYLOAD);
        TierEntry a = entry(r, "s");
        TierEntry b = entry(r, null);
        write(files, a, r);
        write(files, b, r);
        assertEquals(-1, files.readAndVerify(files.fileOf(a.key()), b));
        assertEquals(-1, new BlockFiles(dir, FP + 1, PAYLOAD).readAndVerify(files.fileOf(a.key()), a));
        Files.writeString(dir.resolve("notes.txt"), "not a block");
        Files.writeString(dir.resolve("0123456789abcdef0123456789abcdef.kvb.tmp"), "a crashed put");
        BlockFiles.Scan scan = files.scan();
        assertEquals(1, scan.skipped());
        assertEquals(0, scan.ioErrors());
        assertEquals(2, scan.entries().size());
        assertTrue(scan.entries().stream().anyMatch(x -> x.matches(a)));
        assertTrue(scan.entries().stream().anyMatch(x -> x.matches(b)));
        assertFalse(Files.exists(dir.resolve("0123456789abcdef0123456789abcdef.kvb.tmp")));
        assertEquals(List.of(), new BlockFiles(dir, FP + 1, PAYLOAD).scan().entries()); // another layout's files
    }

    @Test
    void aDirectoryIsHeldOnceUntilReleased(@TempDir Path dir) throws IOException {
        Path real = dir.toRealPath();
        DirectoryLock held = DirectoryLock.acquire(dir, real);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> DirectoryLock.acquire(dir, real));
        assertEquals("disk tier directory " + dir + " is in use by another DiskTier", e.getMessage());
        held.release();
        DirectoryLock.acquire(dir, real).release();
    }
}
