package dev.kvcache.redis;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Two JVM processes share a prompt's KV through one Redis: the writer computes, the reader is served. */
class ShareProcessesTest {

    private static String run(String uri, String role) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(List.of("--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx256m",
                "-cp", System.getProperty("java.class.path"), ShareDemoMain.class.getName(), "--redis", uri, "--role", role));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        try {
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), role + " did not finish");
            assertEquals(0, p.exitValue(), role + " failed:\n" + out);
            return out;
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void aReaderProcessIsServedWhatAWriterProcessComputed() throws Exception {
        try (RedisServers.Server server = RedisServers.Server.start()) {
            String w = run(server.uri(), "writer");
            assertTrue(w.contains("62 blocks written to Redis"), w);
            String r = run(server.uri(), "reader");
            assertTrue(r.contains("992 of 1000 prompt tokens served from Redis"), r);
            assertTrue(r.contains("62 of 62 served blocks byte-identical"), r);
            assertTrue(r.contains("max |difference| 0.0"), r);
            assertTrue(r.contains("another cache salt (1) is served 0 tokens"), r);
            assertTrue(r.contains("reader: OK"), r);
            System.out.print(w + r);
        }
    }
}
