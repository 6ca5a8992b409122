package dev.kvcache.cli;

import dev.kvcache.CapacityPlanner;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PlanCommandTest {

    private static List<String> cells(String line) {
        return Arrays.asList(line.strip().split("\\s{2,}"));
    }

    @Test
    void llama2_7b_f16_is_524288_bytes_per_token() {
        CliRun r = CliRun.of("plan", "--model", "Llama-2-7B", "--format", "F16");
        assertEquals(0, r.exitCode(), r.err());
        // columns: format, bits/elem, bytes/token, bytes/block, ...
        List<String> f16 = cells(r.line("F16 *"));
        assertEquals("16.00", f16.get(1));
        assertEquals("524,288", f16.get(2)); // 32 layers x 32 KV heads x 128 x 2 (K and V) x 2 bytes
        assertEquals("8,388,608", f16.get(3));
        // every KvFormats format has a row
        for (var f : KvFormats.all()) {
            r.line(f.name());
        }
    }

    @Test
    void capacity_columns_match_the_planner() {
        CliRun r = CliRun.of("plan", "-m", "qwen2.5-32b", "--budget", "80GiB", "--context", "8192", "--concurrency", "10");
        assertEquals(0, r.exitCode(), r.err());
        KvLayout l = new KvLayout(64, 8, 128, 16, KvFormats.Q4_0);
        long budget = 80L << 30;
        List<String> q4 = cells(r.line("Q4_0"));
        assertEquals(Sizes.count(l.bytesPerToken()), q4.get(2));
        assertEquals(Sizes.count(CapacityPlanner.maxSequences(l, budget, 8192)), q4.get(5));
        assertTrue(q4.get(6).startsWith(Sizes.count(CapacityPlanner.maxContextTokens(l, budget, 10))), q4.toString());
        // what-if window row uses the planner's windowed size
        String window = r.line("sliding window");
        long windowed = CapacityPlanner.kvBytesWithWindow(l.withFormat(KvFormats.F16), 8192, 4, 1024);
        assertTrue(window.contains(Sizes.human(windowed)), window);
    }

    @Test
    void custom_layout_needs_no_catalog() {
        CliRun r = CliRun.of("plan", "--layers", "2", "--kv-heads", "2", "--head-dim", "64", "--context", "100");
        assertEquals(0, r.exitCode(), r.err());
        assertEquals("1,024", cells(r.line("F16 *")).get(2)); // 2 x 2 x 64 x 2 x 2
        assertTrue(r.out().contains("custom"));
    }

    @Test
    void head_dim_that_a_format_cannot_store_is_reported_per_row() {
        CliRun r = CliRun.of("plan", "--layers", "2", "--kv-heads", "2", "--head-dim", "80", "--context", "100");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.line("Q4_0").contains("multiple of 32"), r.line("Q4_0"));
    }

    @Test
    void bad_input_names_the_value() {
        CliRun unknown = CliRun.of("plan", "--model", "gpt-9");
        assertEquals(2, unknown.exitCode());
        assertTrue(unknown.err().contains("gpt-9") && unknown.err().contains("Llama-2-7B"), unknown.err());

        CliRun size = CliRun.of("plan", "--budget", "80 parsecs");
        assertEquals(2, size.exitCode());
        assertTrue(size.err().contains("80 parsecs"), size.err());

        CliRun ctx = CliRun.of("plan", "--context", "0");
        assertEquals(2, ctx.exitCode());
        assertTrue(ctx.err().contains("--context must be > 0, got 0"), ctx.err());
    }

    @Test
    void layout_whose_sizes_overflow_is_one_line_on_stderr_and_exit_2() {
        // kvHeads x headDim wraps an int and the block size wrapped a long (issue #12)
        CliRun r = CliRun.of("plan", "--layers", "1058633899", "--kv-heads", "1361828043", "--head-dim", "381175291",
                "--block-tokens", "65536", "--format", "F16");
        assertEquals(2, r.exitCode(), r.out() + r.err());
        assertEquals("", r.out(), "nothing printed for a refused layout");
        assertEquals(1, r.err().lines().count(), r.err());
        assertTrue(r.err().startsWith("kvcache plan: "), r.err());
        assertTrue(r.err().contains("1361828043") && r.err().contains(String.valueOf(Integer.MAX_VALUE)), r.err());

        // fits an int and a long, but a block is over the limit
        CliRun big = CliRun.of("plan", "--layers", "4096", "--kv-heads", "1", "--head-dim", "1024", "--block-tokens", "1024");
        assertEquals(2, big.exitCode(), big.out() + big.err());
        assertEquals(1, big.err().lines().count(), big.err());
        assertTrue(big.err().contains("the limit is " + Integer.MAX_VALUE), big.err());
    }

    @Test
    void list_shows_the_catalog() {
        CliRun r = CliRun.of("plan", "--list");
        assertEquals(0, r.exitCode(), r.err());
        for (ModelCatalog.Model m : ModelCatalog.MODELS) {
            List<String> c = cells(r.line(m.name() + " "));
            assertEquals(Sizes.count(m.layout(16, KvFormats.F16).bytesPerToken()), c.get(c.size() - 1));
        }
    }
}
