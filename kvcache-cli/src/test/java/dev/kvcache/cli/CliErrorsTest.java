package dev.kvcache.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue #16, the CLI on bad input: every user error is one line on stderr naming the value, exit
 * code 2, no stack trace and no page of usage; sizes and paths are checked before the work starts.
 */
class CliErrorsTest {

    @TempDir
    Path dir;

    /** Exit 2, exactly one line on stderr containing each of {@code named}, no trace, nothing on stdout. */
    private static CliRun refused(String[] named, String... args) {
        CliRun r = refusedAfterLoading(named, args);
        // the up-front checks: nothing was printed, so no simulation (not even its header) ran
        assertEquals("", r.out(), r.out());
        return r;
    }

    /** {@link #refused} for generate, which names the model it loaded before it can check against it. */
    private static CliRun refusedAfterLoading(String[] named, String... args) {
        CliRun r = CliRun.of(args);
        String all = r.out() + r.err();
        assertEquals(2, r.exitCode(), all);
        assertEquals(1, r.err().lines().count(), r.err());
        for (String n : named) {
            assertTrue(r.err().contains(n), "'" + n + "' not named in: " + r.err());
        }
        assertFalse(all.contains("Exception"), all);
        assertFalse(all.contains("at dev."), all);
        assertFalse(all.contains("Usage:"), all);
        assertFalse(r.out().contains("generated"), r.out());
        return r;
    }

    private Path workload(String name, String... lines) throws IOException {
        return Files.writeString(dir.resolve(name), String.join("\n", lines) + "\n");
    }

    @Test
    void huge_sessions_are_refused_before_the_run() throws IOException {
        Path w = workload("sessions.jsonl", "{\"name\": \"a\", \"sessions\": 2000000000, \"activeTokens\": 4096}");
        refused(new String[] {"2000000000", String.valueOf(Simulator.MAX_SESSIONS), "line 1"},
                "simulate", "--workload", w.toString());
        // each route under the limit, all of them together over it
        Path sum = workload("sum.jsonl", "{\"name\": \"a\", \"sessions\": 600000, \"activeTokens\": 4096}",
                "{\"name\": \"b\", \"sessions\": 600000, \"activeTokens\": 4096}");
        refused(new String[] {"1200000", String.valueOf(Simulator.MAX_SESSIONS)},
                "simulate", "--workload", sum.toString());
    }

    @Test
    void huge_active_tokens_are_refused_before_the_run() throws IOException {
        Path w = workload("tokens.jsonl", "{\"name\": \"a\", \"sessions\": 4, \"activeTokens\": 2000000000}");
        refused(new String[] {"2000000000", String.valueOf(Simulator.MAX_TOKENS)},
                "simulate", "--workload", w.toString());
    }

    @Test
    void huge_steps_and_decode_chunk_are_refused_before_the_run() {
        refused(new String[] {"2000000000", String.valueOf(Simulator.MAX_STEPS)}, "simulate", "--steps", "2000000000");
        refused(new String[] {"2000000000", String.valueOf(Simulator.MAX_TOKENS)},
                "simulate", "--decode-chunk", "2000000000");
    }

    @Test
    void a_missing_workload_file_is_one_line() {
        Path missing = dir.resolve("nope.jsonl");
        refused(new String[] {missing.toString(), "no such file"}, "simulate", "--workload", missing.toString());
    }

    @Test
    void a_directory_as_workload_is_one_line() {
        refused(new String[] {dir.toString(), "directory"}, "simulate", "--workload", dir.toString());
    }

    @Test
    void a_directory_or_device_as_model_config_or_checkpoint_is_named_as_such() {
        refused(new String[] {dir.toString(), "directory"}, "plan", "--config", dir.toString());
        refused(new String[] {dir.toString(), "directory", "not a llama2.c checkpoint"}, "generate", "--model", dir.toString());
        Path device = Path.of("/dev/null");
        if (Files.exists(device)) {
            refused(new String[] {"/dev/null", "not a regular file"}, "plan", "--config", "/dev/null");
            refused(new String[] {"/dev/null", "not a regular file"}, "generate", "--model", "/dev/null");
        }
    }

    @Test
    void a_binary_workload_file_is_one_line() throws IOException {
        Path bin = Files.write(dir.resolve("model.bin"), new byte[] {(byte) 0xff, (byte) 0xfe, 0, 1, (byte) 0xc3, 10});
        refused(new String[] {bin.toString(), "UTF-8"}, "simulate", "--workload", bin.toString());
    }

    @Test
    void chart_and_jfr_into_a_missing_directory_are_refused_before_the_run() {
        Path chart = dir.resolve("no-such-dir").resolve("memory.svg");
        refused(new String[] {"--chart", chart.toString(), "does not exist"}, "simulate", "--chart", chart.toString());
        Path jfr = dir.resolve("no-such-dir").resolve("run.jfr");
        refused(new String[] {"--jfr", jfr.toString(), "does not exist"}, "simulate", "--jfr", jfr.toString());
        refused(new String[] {"--chart", dir.toString(), "directory"}, "simulate", "--chart", dir.toString());
        assertFalse(Files.exists(dir.resolve("no-such-dir")));
    }

    @Test
    void generate_with_too_many_sequences_is_refused() {
        refusedAfterLoading(new String[] {"100000", "--sequences", "512"}, "generate", "--sequences=100000");
    }

    @Test
    void generate_with_a_negative_prefix_is_refused() {
        refused(new String[] {"--prefix", "-1"}, "generate", "--sequences=2", "--prefix=-1");
    }

    @Test
    void a_bad_option_is_one_line_with_a_help_hint_and_no_usage() {
        CliRun r = refused(new String[] {"--budgett", "--help"}, "plan", "--budgett", "1GiB");
        assertTrue(r.err().startsWith("kvcache plan: "), r.err());
        refused(new String[] {"80 parsecs"}, "simulate", "--budget", "80 parsecs");
        refused(new String[] {"nope"}, "simulate", "--steps", "nope");
        refused(new String[] {"frobnicate"}, "frobnicate");
        // --help is unchanged: the usage on stdout, exit 0
        CliRun help = CliRun.of("simulate", "--help");
        assertEquals(0, help.exitCode(), help.err());
        assertTrue(help.out().startsWith("Usage: kvcache simulate"), help.out());
    }

    @Test
    void no_subcommand_prints_the_usage_on_stderr_and_exits_2() {
        CliRun r = CliRun.of();
        assertEquals(2, r.exitCode(), r.err());
        assertEquals("", r.out());
        assertTrue(r.err().startsWith("Usage: kvcache"), r.err());
        assertTrue(r.err().contains("simulate"), r.err());
    }

    @Test
    void the_time_model_and_lever_flags_are_checked_up_front() throws IOException {
        refused(new String[] {"--over-context", "chop"}, "simulate", "--over-context", "chop");
        refused(new String[] {"--policy", "mru"}, "simulate", "--policy", "mru");
        refused(new String[] {"--weights", "int4"}, "simulate", "--weights", "int4");
        refused(new String[] {"--tp", "0"}, "simulate", "--tp", "0");
        refused(new String[] {"--long-share", "1.5"}, "simulate", "--long-share", "1.5");
        refused(new String[] {"--tflops-fp8", "fast"}, "simulate", "--tflops-fp8", "fast");
        refused(new String[] {"--network", "0"}, "simulate", "--network", "0");
        refused(new String[] {"--chart", ".svg or .png"}, "simulate", "--chart", dir.resolve("m.gif").toString());
        refused(new String[] {"--json", "does not exist"}, "simulate", "--json", dir.resolve("no/x.json").toString());
        refused(new String[] {"--csv", "directory"}, "simulate", "--csv", dir.toString());
        refused(new String[] {"--max-model-len 40000", "32768"}, "simulate", "--max-model-len", "40000");
        refused(new String[] {"--configs", "two formats"}, "simulate", "--configs", "paged+fp8+q4");
        Path w = workload("ctx.jsonl", "{\"name\":\"big\",\"sessions\":1,\"activeTokens\":50000}");
        refused(new String[] {"'big' needs 50000 tokens", "32768", "--over-context truncate"},
                "simulate", "--workload", w.toString());
        Path d = workload("dist.jsonl", "{\"name\":\"d\",\"sessions\":1,\"activeTokens\":{\"dist\":\"uniform\",\"min\":9,\"max\":3}}");
        refused(new String[] {"line 1", "min <= max"}, "simulate", "--workload", d.toString());
        Path p = workload("rate.jsonl", "{\"name\":\"p\",\"arrival\":\"poisson\",\"activeTokens\":100}");
        refused(new String[] {"line 1", "'rate'"}, "simulate", "--workload", p.toString());
    }
}
