package dev.kvcache.cli;

import org.junit.jupiter.api.Test;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The report path end to end through JMH's Runner: real, very short runs of the benchmarks (in this
 * JVM, {@code -f 0}, so no fork needs this test's module path), their RunResults turned into the
 * report tables.
 */
class BenchReportRunTest {

    static {
        // JMH refuses to start while another JMH process holds /tmp/jmh.lock (a benchmark run on this
        // machine); these in-process runs measure nothing, so they need not wait for it. Read once,
        // when JMH's Runner class initializes.
        System.setProperty("jmh.ignoreLock", "true");
    }

    private static String run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        var cl = KvCacheCli.commandLine();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int rc = cl.execute(args);
        assertEquals(0, rc, "exit " + rc + "; stderr: " + err);
        return out.toString();
    }

    @Test
    void quantizerReportFromARealRun() {
        String t = run("bench", "--quantizer-report", "QuantizerBenchmark\\.(decode|copyFp32)$",
                "-p", "tokens=2048", "-p", "format=Q8_0", "-p", "kernels=vector",
                "-f", "0", "-wi", "0", "-i", "1", "-r", "100ms");
        // GB/s for decode and copyFp32, their ratio; no encode, no scalar rows
        assertTrue(Pattern.compile("\\| 2,048 \\| Q8_0 \\| keys \\| vector \\| - \\| \\d+\\.\\d \\| \\d+\\.\\d \\| \\d+\\.\\d\\d \\| - \\| - \\| - \\|")
                .matcher(t).find(), t);
        assertTrue(!t.contains("scalar"), t);
    }

    @Test
    void attentionReportFromARealRun() {
        String t = run("bench", "--attention-report", "PagedAttentionBenchmark\\.(paged|copy)$",
                "-p", "tokens=1024", "-p", "format=F32", "-f", "0", "-wi", "0", "-i", "1", "-r", "100ms");
        assertTrue(t.contains("Share of copy"), t);
        // paged ms and its share of the copy measured in the same run
        assertTrue(Pattern.compile("\\| 1,024 \\| F32 \\| \\d+\\.\\d\\d \\| \\d+% \\| - \\| - \\| - \\| - \\|").matcher(t).find(), t);
    }

    @Test
    void aReportOfNothingIsAnError() {
        StringWriter err = new StringWriter();
        var cl = KvCacheCli.commandLine();
        cl.setErr(new PrintWriter(err));
        cl.setOut(new PrintWriter(new StringWriter()));
        int rc = cl.execute("bench", "--quantizer-report", "QuantizerBenchmark\\.noSuchMethod$", "-f", "0");
        assertEquals(1, rc, err.toString());
        assertTrue(err.toString().startsWith("kvcache bench: JMH failed: "), err.toString());
        assertEquals(1, err.toString().lines().count(), err.toString());
    }
}
