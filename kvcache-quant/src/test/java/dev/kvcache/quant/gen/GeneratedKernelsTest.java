package dev.kvcache.quant.gen;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The checked-in generated kernels are exactly what {@link KernelGenerator} renders now: fails when
 * a template or snippet changed without regenerating, or when a generated file was edited by hand.
 */
class GeneratedKernelsTest {

    /** kvcache-quant/src/main/java, found from the module directory Maven runs the tests in. */
    static Path sourceRoot() {
        Path here = Path.of("").toAbsolutePath();
        for (Path p : new Path[] {here.resolve("src/main/java"), here.resolve("kvcache-quant/src/main/java")}) {
            if (Files.isDirectory(p.resolve(KernelGenerator.DIR))) {
                return p;
            }
        }
        throw new AssertionError("kvcache-quant/src/main/java not found from " + here);
    }

    @Test
    void checkedInKernelsAreUpToDate() throws IOException {
        Map<String, String> files = KernelGenerator.render();
        assertTrue(files.size() >= 8, "generator renders every family: " + files.keySet());
        Path dir = sourceRoot().resolve(KernelGenerator.DIR);
        for (Map.Entry<String, String> f : files.entrySet()) {
            Path p = dir.resolve(f.getKey());
            assertTrue(Files.exists(p), p + " is missing: run KernelGenerator (see its class comment)");
            assertEquals(f.getValue(), Files.readString(p, StandardCharsets.UTF_8),
                    p + " is stale or was edited by hand: regenerate with KernelGenerator (see its class comment)");
            assertTrue(f.getValue().startsWith("// GENERATED"), p + " carries the generated header");
        }
    }
}
