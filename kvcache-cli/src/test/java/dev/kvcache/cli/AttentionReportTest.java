package dev.kvcache.cli;

import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AttentionReportTest {

    private static final String HEADER =
            "\"Benchmark\",\"Mode\",\"Threads\",\"Samples\",\"Score\",\"Score Error (99.9%)\",\"Unit\",\"Param: format\",\"Param: tokens\"";

    private static String row(String method, String format, int tokens, double score, String unit) {
        return "\"dev.kvcache.bench.PagedAttentionBenchmark." + method + "\",\"avgt\",1,3," + score + ",12.5,\""
                + unit + "\"," + (format == null ? "" : "\"" + format + "\"") + "," + tokens;
    }

    @Test
    void bytesComeFromTheFormats() {
        // F32: 1024 tokens x 8 heads x 128 values x 4 bytes x (K+V)
        assertEquals(1024.0 * 8 * 128 * 4 * 2, AttentionReport.kvBytes(KvFormats.F32, 1024));
        // Q8_0: 34 bytes per 32 values
        assertEquals(1024.0 * 8 * 128 * 34 / 32 * 2, AttentionReport.kvBytes(KvFormats.Q8_0, 1024));
    }

    @Test
    void sharesAndRatiosFromOneRun() {
        List<String> csv = List.of(HEADER,
                row("copy", null, 1024, 200, "us/op"),
                row("copySplit2", null, 1024, 100, "us/op"),
                row("contiguous", null, 1024, 3.2, "ms/op"),
                row("paged", "F32", 1024, 320, "us/op"),
                row("paged:gc.alloc.rate", "F32", 1024, 99, "MB/sec"),
                row("pagedSplit2", "F32", 1024, 160, "us/op"),
                row("paged", "Q8_0", 1024, 281, "us/op"));
        Map<String, Double> us = AttentionReport.parse(csv);
        assertEquals(3200.0, us.get("contiguous|N/A|1024"), 1e-9, "ms converted to us");
        String t = AttentionReport.table(us);
        // F32: 200/320 = 62.5% (printed 63%); split: 200/160 = 125% of copy, 100/160 = 62.5% of copySplit2; 320/3200
        assertTrue(t.contains("| 1,024 | F32 | 0.32 | 63% | 125% | 63% | 0.100 | - |"), t);
        // Q8_0 reads 34/128 of F32's bytes: 0.265625 * 200/281 = 18.9%
        assertTrue(t.contains("| 1,024 | Q8_0 | 0.28 | 19% | - | - | 0.088 | - |"), t);
        assertEquals(4, t.lines().count(), t);
    }

    @Test
    void otherCsvIsRefused() {
        assertThrows(IllegalArgumentException.class, () -> AttentionReport.parse(List.of("\"a\",\"b\"")));
        assertThrows(IllegalArgumentException.class, () -> AttentionReport.parse(
                List.of(HEADER, row("paged", "F32", 1024, 5, "ops/us"))));
    }

    @Test
    void reportRunsAddTheBenchmarkAndCsvOutput() {
        Path csv = Path.of("r.csv");
        assertEquals(List.of("PagedAttentionBenchmark", "-p", "tokens=32768", "-rf", "csv", "-rff", "r.csv"),
                BenchCommand.reportArgs("PagedAttentionBenchmark", List.of("-p", "tokens=32768"), csv));
        assertEquals(List.of("PagedAttentionBenchmark\\.paged$", "-rf", "csv", "-rff", "r.csv"),
                BenchCommand.reportArgs("PagedAttentionBenchmark", List.of("PagedAttentionBenchmark\\.paged$"), csv));
    }

    @Test
    void benchHelpIsThisCommandsUsage() {
        var sw = new java.io.StringWriter();
        var cl = KvCacheCli.commandLine();
        cl.setOut(new java.io.PrintWriter(sw));
        assertEquals(0, cl.execute("bench", "--help"));
        assertTrue(sw.toString().contains("--attention-report"), sw.toString());
    }

    @Test
    void picocliTakesTheReportFlagAndPassesTheRest() {
        var parsed = KvCacheCli.commandLine().parseArgs("bench", "--attention-report", "-p", "format=F32");
        BenchCommand b = (BenchCommand) parsed.subcommand().commandSpec().userObject();
        assertTrue(b.attentionReport);
        assertEquals(List.of("-p", "format=F32"), b.jmhArgs);
    }
}
