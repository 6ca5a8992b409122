package dev.kvcache.offheap;

import org.junit.jupiter.api.Test;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The store and attention run in a JVM without jdk.incubator.vector (scalar kernels only). */
class NoVectorModuleTest {

    @Test
    void worksWithoutTheVectorModule() throws Exception {
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        String java = ProcessHandle.current().info().command()
                .orElse(System.getProperty("java.home") + File.separator + "bin" + File.separator + "java");
        Process p = new ProcessBuilder(List.of(java, "-Xmx256m", "--enable-native-access=ALL-UNNAMED",
                "-cp", cp, NoVectorMain.class.getName()))
                .redirectErrorStream(true).start();
        String output;
        try {
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child JVM timed out");
            output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        } finally {
            p.destroyForcibly();
        }
        assertEquals(0, p.exitValue(), output);
        assertTrue(output.contains("provider scalar"), output);
        assertTrue(output.strip().endsWith("OK"), output);
    }
}
