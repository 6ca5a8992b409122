package dev.kvcache.cli;

import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class QuantizerReportTest {

    private static BenchCommand.Score row(String method, String format, String kernels, double us) {
        return new BenchCommand.Score(method, Map.of("format", format, "kernels", kernels, "role", "keys",
                "tokens", "131072"), us);
    }

    @Test
    void throughputRatiosAndSpeedups() {
        // 131072 tokens x 128 values x 4 bytes = 67,108,864 bytes of fp32 values
        List<BenchCommand.Score> scores = List.of(
                row("decode", "Q8_0", "vector", 2500),
                row("copyFp32", "Q8_0", "vector", 2500 * 1.01),
                row("copy", "Q8_0", "vector", 445.6),
                row("encode", "Q8_0", "vector", 1000),
                row("decode", "Q8_0", "scalar", 5000),
                row("encode", "Q8_0", "scalar", 19800));
        String t = QuantizerReport.table(scores);
        // decode 67.1 MB / 2500 us = 26.8 GB/s; copyFp32 26.6; ratio 1.01; encode 67.1; copy: 17.8 MB / 445.6 us = 40.0
        assertTrue(t.contains("| 131,072 | Q8_0 | keys | vector | 67.1 | 26.8 | 26.6 | 1.01 | - | - | 40.0 |"), t);
        assertTrue(t.contains("| 131,072 | Q8_0 | keys | scalar | 3.4 | 13.4 | - | - | - | - | - |"), t);
        assertTrue(t.contains("| 131,072 | Q8_0 | keys | 19.80 | 2.00 | - | - |"), t);
    }

    @Test
    void encodedBytesFollowTheFormatsAndRoles() {
        assertEquals(131072.0 * 128 / 32 * 34, QuantizerReport.encodedBytes(KvFormats.Q8_0, "keys", 131072));
        assertEquals(16.0 / 16 * KvFormats.KIVI_4.valueBytes(16, 128),
                QuantizerReport.encodedBytes(KvFormats.KIVI_4, "values", 16));
        assertEquals(16.0 / 16 * KvFormats.KIVI_4.keyBytes(16, 128),
                QuantizerReport.encodedBytes(KvFormats.KIVI_4, "keys", 16));
    }
}
