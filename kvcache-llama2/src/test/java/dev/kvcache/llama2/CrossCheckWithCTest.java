package dev.kvcache.llama2;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Compiles src/test/c/llama2_greedy.c (an independent decoder written from the algorithm) with
 * gcc -O0 and checks that it and the Java reference emit the same ids for the full seq_len.
 * Skipped, not passed, where gcc is missing.
 */
class CrossCheckWithCTest {

    @TempDir
    Path tmp;

    private static boolean gccAvailable() {
        try {
            Process p = new ProcessBuilder("gcc", "--version").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }

    private static String run(Path dir, String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("timed out: " + String.join(" ", cmd));
        }
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + ":\n" + out);
        return out;
    }

    @Test
    void javaReferenceMatchesAnIndependentCDecoder() throws Exception {
        assumeTrue(gccAvailable(), "gcc not installed");
        Path src = Path.of("src/test/c/llama2_greedy.c").toAbsolutePath();
        Path exe = tmp.resolve("llama2_greedy");
        run(tmp, "gcc", "-O0", "-std=c11", "-o", exe.toString(), src.toString(), "-lm");
        int steps = TestModels.stories().config().seqLen();
        String out = run(tmp, exe.toString(), TestModels.storiesPath().toString(), Integer.toString(steps)).trim();
        int[] c = out.isEmpty() ? new int[0] : Arrays.stream(out.split("\\s+")).mapToInt(Integer::parseInt).toArray();
        int[] java = Llama2Reference.greedyFromBos(TestModels.stories(), steps);
        assertEquals(TestModels.agreement(c, java), Math.max(c.length, java.length),
                "C and Java agree on " + TestModels.agreement(c, java) + " leading ids");
        assertArrayEquals(c, java);
    }
}
