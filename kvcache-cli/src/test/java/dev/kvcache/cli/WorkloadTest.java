package dev.kvcache.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.StringReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class WorkloadTest {

    private static List<Workload.Route> parse(String text) throws IOException {
        return Workload.parse(new StringReader(text), "w.jsonl");
    }

    private static String error(String text) {
        return assertThrows(IllegalArgumentException.class, () -> parse(text)).getMessage();
    }

    @Test
    void parses_every_field_and_applies_defaults() throws IOException {
        List<Workload.Route> rs = parse("""
                {"name": "chat \\"a\\"", "sessions": 3, "activeTokens": 2048, "sharedPrefix": 100, "decode": 48, "idle": true, "priority": 5, "rampSteps": 0, "thinkSteps": 7}

                {"name":"min","sessions":1,"activeTokens":400}
                """);
        assertEquals(2, rs.size());
        assertEquals(new Workload.Route("chat \"a\"", 3, 2048, 100, 48, true, 5, 0, 7), rs.get(0));
        Workload.Route min = rs.get(1);
        assertEquals(100, min.decode()); // min(512, 400/4)
        assertEquals(0, min.sharedPrefix());
        assertFalse(min.idle());
        assertEquals(20, min.rampSteps());
        assertEquals(2, min.thinkSteps());
    }

    @Test
    void a_bad_line_is_named() {
        String msg = error("""
                {"name":"ok","sessions":1,"activeTokens":400}
                {"name":"ok2","sessions":1,"activeTokens":400}
                {"name":"broken","sessions":1 "activeTokens":400}
                """);
        assertTrue(msg.startsWith("w.jsonl line 3: column 31: ") && msg.contains("comma"), msg);
    }

    @Test
    void schema_errors_name_line_and_key() {
        assertTrue(error("{\"name\":\"a\",\"sessions\":1,\"activeTokens\":400,\"sesions\":2}")
                .matches("w.jsonl line 1: unknown key 'sesions'.*"));
        assertTrue(error("\n{\"name\":\"a\",\"activeTokens\":400}").startsWith("w.jsonl line 2: missing required key 'sessions'"));
        assertTrue(error("{\"name\":\"a\",\"sessions\":\"3\",\"activeTokens\":400}")
                .contains("line 1: 'sessions' must be an integer, got 3"));
        assertTrue(error("{\"name\":\"a\",\"sessions\":0,\"activeTokens\":400}").contains("sessions must be >= 1, got 0"));
        assertTrue(error("{\"name\":\"a\",\"sessions\":1,\"activeTokens\":400,\"decode\":400}")
                .contains("decode must be in 1..399 (activeTokens - 1), got 400"));
        assertTrue(error("{\"name\":\"a\",\"sessions\":1,\"activeTokens\":400,\"sharedPrefix\":300}")
                .contains("sharedPrefix must be in 0..299"));
        assertTrue(error("{\"name\":\"a\",\"sessions\":1.5,\"activeTokens\":400}").contains("'sessions' must be an integer, got 1.5"));
        assertTrue(error("{\"name\":\"a\",\"sessions\":1,\"activeTokens\":400} x").contains("unexpected text after the object"));
        assertTrue(error("[1,2]").contains("column 1: expected a JSON object"));
        String dup = error("{\"name\":\"a\",\"name\":\"b\"}");
        assertTrue(dup.toLowerCase(java.util.Locale.ROOT).contains("duplicate") && dup.contains("name"), dup);
        assertTrue(error("\n\n").contains("no routes"));
    }

    @Test
    void simulate_reports_the_bad_line_and_exits_2(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("bad.jsonl");
        Files.writeString(f, "{\"name\":\"a\",\"sessions\":1,\"activeTokens\":400}\n{\"name\":\"b\",\"sessions\":1,\n");
        CliRun r = CliRun.of("simulate", "--workload", f.toString());
        assertEquals(2, r.exitCode(), r.out() + r.err());
        assertTrue(r.err().contains(f + " line 2: "), r.err());
    }

    @Test
    void the_example_file_parses() throws IOException {
        Path example = Path.of("workloads/rag-and-batch.jsonl"); // surefire runs in the module directory
        List<Workload.Route> rs = Workload.read(example);
        assertEquals(List.of("rag chat", "batch summaries", "abandoned tabs"), rs.stream().map(Workload.Route::name).toList());
        assertTrue(rs.get(2).idle());
        assertEquals(0, rs.get(1).thinkSteps());
    }

    @Test
    void the_default_workload_file_is_the_built_in_one() throws IOException {
        assertEquals(Workload.defaults(), Workload.read(Path.of("workloads/default.jsonl")));
    }

    @Test
    void default_workload_is_the_documented_one() {
        List<Workload.Route> d = Workload.defaults();
        assertEquals(List.of("short chat", "long support", "agent trace", "disconnected streams"),
                d.stream().map(Workload.Route::name).toList());
        assertEquals(List.of(48, 24, 12, 7), d.stream().map(Workload.Route::sessions).toList());
        assertTrue(d.get(3).idle());
    }
}
