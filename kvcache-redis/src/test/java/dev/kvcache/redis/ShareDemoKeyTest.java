package dev.kvcache.redis;

import dev.kvcache.offheap.OffHeapKvStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code bin/kvcache share --key-file}: a writer seals with the fleet key; a reader with the same
 * key file is served the prompt, one with another key is served nothing, and a key file that is
 * too short or missing is refused before anything connects.
 */
class ShareDemoKeyTest {

    private static final int TOKENS = 200;

    private static String run(String uri, String role, Path keyFile, int expectedExit) {
        StringWriter w = new StringWriter();
        int code = ShareDemo.run(new ShareDemo.Options(uri, role, TOKENS, "share-key-test", 0, 7, "F16", keyFile),
                OffHeapKvStore::allocate, new PrintWriter(w));
        assertEquals(expectedExit, code, role + " with " + keyFile + ":\n" + w);
        return w.toString();
    }

    @Test
    void aReaderWithTheFleetKeyIsServedAndOneWithAnotherKeyIsNot(@TempDir Path dir) throws IOException {
        Path fleet = Files.writeString(dir.resolve("fleet.key"), "the fleet's shared secret, 32 B", StandardCharsets.UTF_8);
        Path other = Files.writeString(dir.resolve("other.key"), "another fleet's secret of 32 B", StandardCharsets.UTF_8);
        try (RedisServers.Server server = RedisServers.Server.start()) {
            String w = run(server.uri(), "writer", fleet, 0);
            assertTrue(w.contains("writer: values sealed and checked with the fleet key in " + fleet), w);
            assertTrue(w.contains("12 blocks written to Redis"), w);

            String same = run(server.uri(), "reader", fleet, 0);
            assertTrue(same.contains("192 of 200 prompt tokens served from Redis"), same);
            assertTrue(same.contains("12 of 12 served blocks byte-identical"), same);

            String another = run(server.uri(), "reader", other, 1);
            assertTrue(another.contains("0 of 200 prompt tokens served from Redis"), another);
            assertTrue(another.contains("reader: FAILED"), another);
        }
    }

    @Test
    void aKeyFileTooShortTooLongOrMissingIsRefusedNamingTheFileAndTheLimit(@TempDir Path dir) throws IOException {
        Path shortKey = Files.writeString(dir.resolve("short.key"), "15 bytes secret", StandardCharsets.UTF_8);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> run("redis://127.0.0.1:1", "writer", shortKey, 0));
        assertEquals("--key-file " + shortKey + " holds 15 bytes: a fleet key needs at least 16", e.getMessage());
        Path missing = dir.resolve("missing.key");
        e = assertThrows(IllegalArgumentException.class, () -> run("redis://127.0.0.1:1", "writer", missing, 0));
        assertEquals("--key-file " + missing + " cannot be read: no such file", e.getMessage());
        Path huge = Files.write(dir.resolve("huge.key"), new byte[ShareDemo.MAX_KEY_FILE_BYTES + 1]);
        e = assertThrows(IllegalArgumentException.class, () -> run("redis://127.0.0.1:1", "writer", huge, 0));
        assertEquals("--key-file " + huge + " holds more than 4096 bytes: a fleet key file holds at most 4096", e.getMessage());
        Path endless = Path.of("/dev/zero");
        if (Files.isReadable(endless)) {
            e = assertThrows(IllegalArgumentException.class, () -> run("redis://127.0.0.1:1", "writer", endless, 0));
            assertTrue(e.getMessage().contains("at most 4096"), e.getMessage());
        }
        e = assertThrows(IllegalArgumentException.class, () -> run("redis://127.0.0.1:1", "writer", dir, 0));
        assertTrue(e.getMessage().startsWith("--key-file " + dir + " cannot be read: "), e.getMessage());
    }
}
