package dev.kvcache.offheap;

import dev.kvcache.testkit.ReadmeSnippets;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The README's engine example as it stands in README.md: its ```java block under
 * "## An engine using the block manager" is read out of the file, compiled in-process against
 * this module's test class path and run, through kvcache-testkit's {@link ReadmeSnippets} (the
 * block's {@code out}, the attention output of its last decode step, comes back as the result
 * expression). If the text stops compiling or running, this test fails, so the README and the
 * code cannot drift apart.
 */
class ReadmeExampleTest {

    static final String SECTION = "## An engine using the block manager";

    /** What the README leaves out: the imports (the block itself is compiled as written). */
    static final List<String> IMPORTS = List.of("dev.kvcache.*", "dev.kvcache.offheap.*", "java.util.*",
            "java.util.function.*");

    @Test
    void theReadmeExampleCompilesAndRunsAsWritten(@TempDir Path tmp) throws Exception {
        Path readme = findReadme();
        ReadmeSnippets.Snippet block = ReadmeSnippets.javaBlocks(readme).stream()
                .filter(s -> s.section().equals(SECTION))
                .findFirst()
                .orElseThrow(() -> new AssertionError(readme + ": no ```java block under '" + SECTION + "'"));

        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PrintStream realOut = System.out;
        float[] out;
        try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(block, IMPORTS, "out", tmp)) {
            System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
            try {
                out = (float[]) c.call();
            } catch (Exception e) {
                throw new AssertionError("the README example threw", e);
            } finally {
                System.setOut(realOut);
            }
        }
        String printed = captured.toString(StandardCharsets.UTF_8);
        realOut.print(printed);

        assertNotNull(out);
        boolean nonZero = false;
        for (float x : out) {
            assertTrue(Float.isFinite(x), "attention output must be finite: " + x);
            nonZero |= x != 0f;
        }
        assertTrue(nonZero, "attention output is all zeros");
        assertEquals(0, field(printed, "usedBlocks"), "every sequence was freed: " + printed);
        assertEquals(2, field(printed, "cachedBlocks"), "the prompt's two full blocks stay cached: " + printed);
        assertEquals(80, field(printed, "prefixQueryTokens"), "two 40-token prompts were looked up: " + printed);
        assertEquals(32, field(printed, "prefixHitTokens"),
                "req-2 gets the prompt's two full blocks from the cache: " + printed);
        assertEquals(0, field(printed, "allocationFailures"), printed);
        assertTrue(printed.contains("\n2 copy-on-writes"),
                "each request's first decode step copies the partial block it shares with its beam: " + printed);
    }

    /** README.md of the repository: the working directory (Maven: the module) or one above it. */
    static Path findReadme() {
        Path start = Path.of("").toAbsolutePath();
        for (Path d = start; d != null; d = d.getParent()) {
            Path r = d.resolve("README.md");
            if (Files.isRegularFile(r) && Files.isRegularFile(d.resolve("pom.xml"))
                    && Files.isDirectory(d.resolve("kvcache-offheap"))) {
                return r;
            }
        }
        throw new AssertionError("no README.md at the repository root above " + start);
    }

    static long field(String printed, String name) {
        Matcher m = Pattern.compile("\\b" + name + "=(\\d+)").matcher(printed);
        assertTrue(m.find(), "no " + name + " in what the example printed: " + printed);
        return Long.parseLong(m.group(1));
    }
}
