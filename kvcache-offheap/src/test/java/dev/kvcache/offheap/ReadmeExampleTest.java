package dev.kvcache.offheap;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The README's engine example as it stands in README.md: its ```java block under
 * "## An engine using the block manager" is read out of the file, compiled in-process against
 * this module's test class path and run. If the text stops compiling or running, this test fails,
 * so the README and the code cannot drift apart.
 */
class ReadmeExampleTest {

    static final String SECTION = "## An engine using the block manager";

    /** What the README leaves out: the imports and a method around the block. */
    static final List<String> PRELUDE = List.of(
            "package readme;",
            "import dev.kvcache.*;",
            "import dev.kvcache.offheap.*;",
            "import java.util.*;",
            "import java.util.function.*;",
            "public final class ReadmeExample {",
            "public static float[] run() throws Exception {");
    /** The block's {@code out}, the attention output of its last decode step, comes back to the test. */
    static final List<String> EPILOGUE = List.of("return out;", "}", "}");

    @Test
    void theReadmeExampleCompilesAndRunsAsWritten(@TempDir Path tmp) throws Exception {
        Path readme = findReadme();
        List<String> lines = Files.readAllLines(readme, StandardCharsets.UTF_8);
        int[] range = javaBlock(lines, readme);
        List<String> block = lines.subList(range[0], range[1]);

        StringBuilder src = new StringBuilder();
        PRELUDE.forEach(l -> src.append(l).append('\n'));
        block.forEach(l -> src.append(l).append('\n'));
        EPILOGUE.forEach(l -> src.append(l).append('\n'));
        Path srcDir = Files.createDirectories(tmp.resolve("src/readme"));
        Path file = Files.writeString(srcDir.resolve("ReadmeExample.java"), src);
        Path classes = Files.createDirectories(tmp.resolve("classes"));
        compile(file, classes, range[0] - PRELUDE.size(), readme);

        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PrintStream realOut = System.out;
        float[] out;
        try (URLClassLoader loader = new URLClassLoader(new URL[] {classes.toUri().toURL()},
                getClass().getClassLoader())) {
            Method run = loader.loadClass("readme.ReadmeExample").getMethod("run");
            System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
            try {
                out = (float[]) run.invoke(null);
            } catch (InvocationTargetException e) {
                throw new AssertionError("the README example threw", e.getCause());
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

    /** [first line, end line) of the ```java block under {@link #SECTION}, 0-based. */
    static int[] javaBlock(List<String> lines, Path readme) {
        int i = lines.indexOf(SECTION);
        if (i < 0) {
            fail(readme + " has no section '" + SECTION + "'");
        }
        for (i++; i < lines.size() && !lines.get(i).startsWith("## "); i++) {
            if (lines.get(i).strip().equals("```java")) {
                for (int j = i + 1; j < lines.size(); j++) {
                    if (lines.get(j).strip().equals("```")) {
                        return new int[] {i + 1, j};
                    }
                }
                fail(readme + ": the ```java block under '" + SECTION + "' is not closed");
            }
        }
        return fail(readme + ": no ```java block under '" + SECTION + "'");
    }

    /**
     * Compiles {@code file} in-process with the JDK's javac against this test's class path; on
     * errors fails with javac's diagnostics, each line number also given as a README line. (javac
     * through {@link java.util.spi.ToolProvider}: the tests compile as part of the module
     * dev.kvcache.offheap, which does not read java.compiler, so javax.tools is out of reach.)
     */
    static void compile(Path file, Path classes, int readmeLineOffset, Path readme) {
        java.util.spi.ToolProvider javac = java.util.spi.ToolProvider.findFirst("javac")
                .orElseThrow(() -> new AssertionError("no javac in this runtime (a JRE, not a JDK?)"));
        StringWriter diagnostics = new StringWriter();
        int rc;
        try (PrintWriter w = new PrintWriter(diagnostics)) {
            rc = javac.run(w, w,
                    "-classpath", System.getProperty("java.class.path"),
                    "-d", classes.toString(),
                    "--add-modules", "jdk.incubator.vector",
                    "-proc:none", "-implicit:none", "-encoding", "UTF-8",
                    file.toString());
        }
        if (rc != 0) {
            String name = Pattern.quote(file.toString());
            Matcher m = Pattern.compile(name + ":(\\d+):").matcher(diagnostics.toString());
            StringBuilder msg = new StringBuilder();
            while (m.find()) {
                int line = Integer.parseInt(m.group(1));
                m.appendReplacement(msg, Matcher.quoteReplacement(
                        readme + ":" + (line + readmeLineOffset) + " (generated line " + line + "):"));
            }
            m.appendTail(msg);
            fail("the README's Java block does not compile (javac exit " + rc + "):\n" + msg);
        }
    }

    static long field(String printed, String name) {
        Matcher m = Pattern.compile("\\b" + name + "=(\\d+)").matcher(printed);
        assertTrue(m.find(), "no " + name + " in what the example printed: " + printed);
        return Long.parseLong(m.group(1));
    }
}
