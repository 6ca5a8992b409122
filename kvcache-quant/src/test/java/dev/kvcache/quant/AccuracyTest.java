package dev.kvcache.quant;

import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The accuracy targets on AccuracyReport's synthetic KV (fresh seed each run, printed on failure).
 *
 * <p>Target "8-bit formats <= 2% attention-output error": met by Q8_0 with Hadamard-rotated keys.
 * Plain Q8_0 (about 3%) and FP8 (about 6% E4M3, 12% E5M2) do NOT meet it on this data: four
 * outlier channels at 10x land in all four Q8_0 blocks of a head, and FP8's 3 or 2 mantissa bits
 * bound its per-element error whatever the scale. Those rows are held to regression bounds here
 * (measured value plus margin), not to the target; see the report to the lead.
 */
class AccuracyTest {

    @Test
    void targets() {
        long seed = new SplittableRandom().nextLong();
        List<AccuracyReport.Row> rows = AccuracyReport.measure(1024, 16, seed);
        String table = "seed " + seed + "\n" + AccuracyReport.table(rows);

        AccuracyReport.Row f32 = row(rows, "F32");
        assertEquals(0.0, f32.keyError(), table);
        assertEquals(0.0, f32.valueError(), table);
        assertTrue(f32.outputError() < 1e-5, table);
        assertTrue(row(rows, "F16").outputError() < 0.002, table);

        // the 8-bit target, met with rotation
        assertTrue(row(rows, "Q8_0+H").outputError() <= 0.02, table);
        // regression bounds for the 8-bit rows that miss the target on this data
        assertTrue(row(rows, "Q8_0").outputError() <= 0.05, table);
        assertTrue(row(rows, "FP8_E4M3").outputError() <= 0.10, table);
        assertTrue(row(rows, "FP8_E5M2").outputError() <= 0.20, table);
        assertTrue(row(rows, "FP8_E4M3+H").outputError() <= 0.10, table);

        // KIVI-4 beats Q4_0 on outlier keys: key error, attention output and attention probabilities
        AccuracyReport.Row kivi = row(rows, "KIVI_4"), q4 = row(rows, "Q4_0");
        assertTrue(kivi.keyError() < q4.keyError(), table);
        assertTrue(kivi.outputError() < q4.outputError(), table);
        assertTrue(kivi.kl() < q4.kl(), table);
        // Hadamard rotation cuts Q4_0's key error and attention error
        assertTrue(row(rows, "Q4_0+H").keyError() < 0.6 * q4.keyError(), table);
        assertTrue(row(rows, "Q4_0+H").outputError() < q4.outputError(), table);

        // bits per element include the metadata (KvFormats sizes)
        assertEquals(8.5, row(rows, "Q8_0").bitsPerElement(), 1e-12);
        assertEquals(4.5, q4.bitsPerElement(), 1e-12);
        assertEquals(5.5, kivi.bitsPerElement(), 1e-12);
        assertEquals(KvFormats.FP8_E4M3.bitsPerElement(128, 16), row(rows, "FP8_E4M3").bitsPerElement(), 1e-12);
    }

    static AccuracyReport.Row row(List<AccuracyReport.Row> rows, String name) {
        return rows.stream().filter(r -> r.name().equals(name)).findFirst().orElseThrow();
    }
}
