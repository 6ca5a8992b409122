package dev.kvcache.jlama;

import dev.kvcache.testkit.ReadmeSnippets;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * This module's README blocks compile as they stand (kvcache-testkit's {@link ReadmeSnippets}).
 * They are compiled, not run: they name a server or a model directory a reader has and this
 * machine does not (the module's own tests run the same calls against real ones).
 */
class ModuleReadmeTest {

    @Test
    void theReadmeBlocksCompile(@TempDir Path tmp) throws Exception {
        assertEquals(EXPECTED, ReadmeSnippets.compileAll(Path.of("README.md"), EXPECTED, IMPORTS, tmp));
    }

    private static final int EXPECTED = 1;
    private static final List<String> IMPORTS = List.of("dev.kvcache.*", "dev.kvcache.jlama.*",
            "com.github.tjake.jlama.model.*", "com.github.tjake.jlama.safetensors.*", "java.io.*", "java.util.*");
}
