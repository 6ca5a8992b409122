package dev.kvcache.offheap;

import dev.kvcache.testkit.ReadmeSnippets;
import net.jqwik.api.Arbitrary;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * This module's README and the property-test block of kvcache-testkit's README (which needs this
 * module's store, and kvcache-testkit's tests cannot depend on this module) compiled as they
 * stand through kvcache-testkit's {@link ReadmeSnippets}, and run.
 */
class ModuleReadmeTest {

    @Test
    void theOffheapReadmeCompilesAndItsAttentionGivesTheValues(@TempDir Path tmp) throws Exception {
        List<ReadmeSnippets.Snippet> blocks = ReadmeSnippets.javaBlocks(Path.of("README.md"));
        assertFalse(blocks.isEmpty(), "kvcache-offheap/README.md has Java blocks");
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PrintStream realOut = System.out;
        for (ReadmeSnippets.Snippet s : blocks) {
            try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(s,
                    List.of("dev.kvcache.*", "dev.kvcache.offheap.*", "java.util.*"), tmp)) {
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
        Matcher m = Pattern.compile("out\\[0] = (\\S+)").matcher(printed);
        assertTrue(m.find(), printed);
        // every V is 1: attention averages ones, whatever the weights (Q8_0 rounds 1 to 127 * fp16(1/127))
        assertEquals(1.0, Float.parseFloat(m.group(1)), 1e-3, printed);
    }

    @Test
    void theTestkitReadmesPropertyCompilesAndHoldsOnSampledWorkloads(@TempDir Path tmp) throws Exception {
        ReadmeSnippets.Snippet property = ReadmeSnippets.javaBlocks(Path.of("..", "kvcache-testkit", "README.md"))
                .getFirst();
        assertTrue(property.isCompilationUnit(), property.toString());
        try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(property, List.of(), tmp)) {
            Class<?> type = c.mainClass();
            Constructor<?> ctor = type.getDeclaredConstructor();
            ctor.setAccessible(true);
            Object instance = ctor.newInstance();
            Method workload = type.getDeclaredMethod("workload");
            workload.setAccessible(true);
            Method prop = type.getDeclaredMethod("myStoreKeepsEveryPrefixsKv", int.class, int.class, List.class);
            prop.setAccessible(true);
            Arbitrary<?> ops = (Arbitrary<?>) workload.invoke(instance);
            Random rnd = new Random(16);
            for (int i = 0; i < 25; i++) {
                int blocks = 4 + rnd.nextInt(21);
                int blockTokens = 1 + rnd.nextInt(8);
                Object sample = ops.sample();
                try {
                    prop.invoke(instance, blocks, blockTokens, sample);
                } catch (InvocationTargetException e) {
                    throw new AssertionError("the README's property failed for blocks " + blocks + ", blockTokens "
                            + blockTokens + ", " + sample, e.getCause());
                }
            }
        }
    }
}
