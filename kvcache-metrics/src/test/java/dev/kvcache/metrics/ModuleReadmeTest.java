package dev.kvcache.metrics;

import dev.kvcache.testkit.ReadmeSnippets;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** This module's README blocks compiled and run as they stand (kvcache-testkit's {@link ReadmeSnippets}). */
class ModuleReadmeTest {

    @Test
    void theMetricsReadmeCompilesAndBindsMeters(@TempDir Path tmp) throws Exception {
        List<ReadmeSnippets.Snippet> blocks = ReadmeSnippets.javaBlocks(Path.of("README.md"));
        assertFalse(blocks.isEmpty(), "kvcache-metrics/README.md has Java blocks");
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PrintStream realOut = System.out;
        for (ReadmeSnippets.Snippet s : blocks) {
            try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(s, List.of("dev.kvcache.*", "dev.kvcache.metrics.*",
                    "io.micrometer.core.instrument.*", "io.micrometer.core.instrument.simple.*", "java.util.*"), tmp)) {
                if (!s.isCompilationUnit()) {
                    System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
                    try {
                        c.run();
                    } finally {
                        System.setOut(realOut);
                    }
                }
            }
        }
        String printed = captured.toString(StandardCharsets.UTF_8);
        realOut.print(printed);
        Matcher m = Pattern.compile("(\\d+) meters").matcher(printed);
        assertTrue(m.find() && Integer.parseInt(m.group(1)) > 10, "the binder registered the ledger's meters: " + printed);
    }
}
