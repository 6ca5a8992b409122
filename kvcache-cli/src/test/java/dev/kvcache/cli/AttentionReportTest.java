package dev.kvcache.cli;

import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Test;
import org.openjdk.jmh.runner.options.CommandLineOptions;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.TimeValue;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AttentionReportTest {

    private static BenchCommand.Score row(String method, String format, int tokens, double micros) {
        Map<String, String> params = new LinkedHashMap<>();
        if (format != null) {
            params.put("format", format);
        }
        params.put("tokens", Integer.toString(tokens));
        return new BenchCommand.Score(method, params, micros);
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
        List<BenchCommand.Score> scores = List.of(
                row("copy", null, 1024, 200),
                row("copySplit2", null, 1024, 100),
                row("contiguous", null, 1024, 3.2 * BenchCommand.microsPer("ms/op")),
                row("paged", "F32", 1024, 320),
                row("pagedSplit2", "F32", 1024, 160),
                row("paged", "Q8_0", 1024, 281));
        Map<String, Double> us = AttentionReport.micros(scores);
        assertEquals(3200.0, us.get("contiguous|N/A|1024"), 1e-9, "ms converted to us");
        String t = AttentionReport.table(us);
        // F32: 200/320 = 62.5% (printed 63%); split: 200/160 = 125% of copy, 100/160 = 62.5% of copySplit2; 320/3200
        assertTrue(t.contains("| 1,024 | F32 | 0.32 | 63% | 125% | 63% | 0.100 | - |"), t);
        // Q8_0 reads 34/128 of F32's bytes: 0.265625 * 200/281 = 18.9%
        assertTrue(t.contains("| 1,024 | Q8_0 | 0.28 | 19% | - | - | 0.088 | - |"), t);
        assertEquals(4, t.lines().count(), t);
    }

    @Test
    void resultsWithoutTokensOrInAThroughputUnitAreRefused() {
        var e = assertThrows(IllegalArgumentException.class, () -> AttentionReport.micros(
                List.of(new BenchCommand.Score("paged", Map.of("format", "F32"), 5))));
        assertTrue(e.getMessage().contains("no tokens parameter"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> BenchCommand.microsPer("ops/us"));
        assertTrue(e.getMessage().contains("unit ops/us is not a time per operation"), e.getMessage());
        assertEquals(1e-3, BenchCommand.microsPer("ns/op"));
        assertEquals(1e6, BenchCommand.microsPer("s/op"));
    }

    @Test
    void reportOptionsIncludeTheBenchmarkAndShortDefaultsTheUserDidNotSet() throws Exception {
        Options o = BenchCommand.reportOptions("PagedAttentionBenchmark",
                new CommandLineOptions("-p", "tokens=32768", "-i", "5"));
        assertEquals(List.of("PagedAttentionBenchmark"), o.getIncludes());
        assertEquals(List.of("32768"), List.copyOf(o.getParameter("tokens").get()));
        assertEquals(5, o.getMeasurementIterations().get(), "the user's -i wins");
        assertEquals(1, o.getForkCount().get());
        assertEquals(2, o.getWarmupIterations().get());
        assertEquals(TimeValue.seconds(1), o.getWarmupTime().get());
        assertEquals(TimeValue.seconds(1), o.getMeasurementTime().get());
        // an include that names the benchmark is the user's choice of its methods
        o = BenchCommand.reportOptions("PagedAttentionBenchmark",
                new CommandLineOptions("PagedAttentionBenchmark\\.paged$", "-f", "0", "-r", "200ms"));
        assertEquals(List.of("PagedAttentionBenchmark\\.paged$"), o.getIncludes());
        assertEquals(0, o.getForkCount().get());
        assertEquals(TimeValue.milliseconds(200), o.getMeasurementTime().get());
    }

    @Test
    void badJmhArgumentsAreOneLineAndExitTwo() {
        var err = new java.io.StringWriter();
        var cl = KvCacheCli.commandLine();
        cl.setErr(new java.io.PrintWriter(err));
        assertEquals(2, cl.execute("bench", "--attention-report", "-f", "many"));
        String e = err.toString();
        assertTrue(e.startsWith("kvcache bench: "), e);
        assertEquals(1, e.lines().count(), e);
        assertTrue(e.contains("many"), e);
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
