package dev.kvcache.testkit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * This module's README and kvcache-api's, compiled (and their statement blocks run) as they stand
 * through {@link ReadmeSnippets}; and ReadmeSnippets itself: a block that does not compile fails
 * with the README's line.
 */
class ReadmeTest {

    @Test
    void theTestkitReadmeCompilesAndItsStepByStepBlockRuns(@TempDir Path tmp) throws Exception {
        List<ReadmeSnippets.Snippet> blocks = ReadmeSnippets.javaBlocks(Path.of("README.md"));
        assertEquals(2, blocks.size(), "the property class and the step-by-step block: " + blocks);
        ReadmeSnippets.Snippet property = blocks.get(0);
        assertTrue(property.isCompilationUnit() && property.code().contains("dev.kvcache.offheap"),
                "the first block needs kvcache-offheap: kvcache-offheap's ModuleReadmeTest compiles it");
        ReadmeSnippets.Snippet steps = blocks.get(1);
        assertFalse(steps.isCompilationUnit());
        try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(steps,
                List.of("dev.kvcache.*", "dev.kvcache.testkit.*", "java.util.*"), tmp)) {
            c.run();
        }
    }

    @Test
    void theApiReadmeCompilesAndRuns(@TempDir Path tmp) throws Exception {
        Path readme = Path.of("..", "kvcache-api", "README.md");
        List<ReadmeSnippets.Snippet> blocks = ReadmeSnippets.javaBlocks(readme);
        assertFalse(blocks.isEmpty(), readme + " has Java blocks");
        String printed = runAll(blocks, List.of("dev.kvcache.*", "java.util.*"), tmp);
        assertTrue(printed.contains("sequences of 8,192 tokens fit"), printed);
        assertTrue(printed.contains("usedBlocks=0") && printed.contains("liveSequences=0"), printed);
    }

    @Test
    void aBlockThatDoesNotCompileFailsWithItsReadmeLine(@TempDir Path tmp) throws Exception {
        Path md = Files.writeString(tmp.resolve("BROKEN.md"), String.join("\n",
                "# Broken", "", "## Section", "", "```java", "int x = 1;", "String y = x;", "```", ""));
        List<ReadmeSnippets.Snippet> blocks = ReadmeSnippets.javaBlocks(md);
        assertEquals(1, blocks.size());
        assertEquals(6, blocks.getFirst().line());
        assertEquals("## Section", blocks.getFirst().section());
        AssertionError e = assertThrows(AssertionError.class,
                () -> ReadmeSnippets.compile(blocks.getFirst(), List.of("java.util.*"), tmp));
        assertTrue(e.getMessage().contains("BROKEN.md:7 "), e.getMessage());
        assertTrue(e.getMessage().contains("incompatible types"), e.getMessage());
    }

    @Test
    void compileAllChecksTheCountAndEveryBlock(@TempDir Path tmp) throws Exception {
        Path md = Files.writeString(tmp.resolve("TWO.md"), "```java\nint x = 1;\n```\n\n```java\nString s = \"a\";\n```\n");
        assertEquals(2, ReadmeSnippets.compileAll(md, 2, List.of(), tmp));
        AssertionError count = assertThrows(AssertionError.class, () -> ReadmeSnippets.compileAll(md, 3, List.of(), tmp));
        assertTrue(count.getMessage().contains("2 Java blocks; expected 3"), count.getMessage());
        Path bad = Files.writeString(tmp.resolve("BAD.md"), "```java\nint x = 1;\n```\n\n```java\nString s = 2;\n```\n");
        assertThrows(AssertionError.class, () -> ReadmeSnippets.compileAll(bad, 2, List.of(), tmp));
    }

    @Test
    void aBlockThatThrowsFailsTheRun(@TempDir Path tmp) throws Exception {
        Path md = Files.writeString(tmp.resolve("THROWS.md"),
                "```java\nif (true) throw new IllegalStateException(\"from the README\");\n```\n");
        try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(ReadmeSnippets.javaBlocks(md).getFirst(),
                List.of(), tmp)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, c::run);
            assertEquals("from the README", e.getMessage());
        }
    }

    @Test
    void aResultExpressionHandsTheBlocksValueBack(@TempDir Path tmp) throws Exception {
        Path md = Files.writeString(tmp.resolve("VALUE.md"), "```java\nint[] out = {1, 2};\nout[1] += 40;\n```\n");
        ReadmeSnippets.Snippet s = ReadmeSnippets.javaBlocks(md).getFirst();
        try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(s, List.of(), "out", tmp)) {
            assertEquals(42, ((int[]) c.call())[1]);
        }
        try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(s, List.of(), tmp)) {
            assertEquals(null, c.call(), "without a result expression the block returns nothing");
        }
    }

    @Test
    void anUnclosedBlockIsRefusedNamingItsLine(@TempDir Path tmp) throws Exception {
        Path md = Files.writeString(tmp.resolve("OPEN.md"), "text\n```java\nint x;\n");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> ReadmeSnippets.javaBlocks(md));
        assertTrue(e.getMessage().contains("OPEN.md:2"), e.getMessage());
    }

    /** Compiles every block and runs the statement blocks, returning what they printed. */
    static String runAll(List<ReadmeSnippets.Snippet> blocks, List<String> imports, Path tmp) throws Exception {
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PrintStream realOut = System.out;
        for (ReadmeSnippets.Snippet s : blocks) {
            try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(s, imports, tmp)) {
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
        return printed;
    }
}
