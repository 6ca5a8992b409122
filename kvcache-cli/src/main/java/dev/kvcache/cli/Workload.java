package dev.kvcache.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A serving workload for {@code kvcache simulate}: routes of concurrent sessions.
 *
 * <h2>JSONL schema</h2>
 * One route per line, a flat JSON object; blank lines are skipped. Unknown keys are an error (a
 * typo must not silently fall back to a default).
 * <pre>
 * {"name": "short chat", "sessions": 48, "activeTokens": 2048, "sharedPrefix": 512, "decode": 512,
 *  "idle": false, "priority": 1, "rampSteps": 20, "thinkSteps": 2}
 * </pre>
 * <ul>
 *   <li>{@code name} (string, required): the route's label.</li>
 *   <li>{@code sessions} (integer 1..{@value Simulator#MAX_SESSIONS}, required; all routes together
 *       at most as many): concurrent sessions (client connections).</li>
 *   <li>{@code activeTokens} (integer 2..{@value Simulator#MAX_TOKENS}, required): tokens a request
 *       holds when it finishes (prompt plus generated).</li>
 *   <li>{@code sharedPrefix} (integer, default 0): leading prompt tokens every request of the route
 *       shares (system prompt, tool definitions); must leave at least one prompt token after it.</li>
 *   <li>{@code decode} (integer &gt;= 1, default min(512, activeTokens/4)): generated tokens; the
 *       prompt is {@code activeTokens - decode}.</li>
 *   <li>{@code idle} (boolean, default false): the client disconnected mid-stream; the request stops
 *       at {@code activeTokens} and never finishes (its memory stays held).</li>
 *   <li>{@code priority} (0..127, default 0): preemption picks the newest request of the lowest
 *       priority first.</li>
 *   <li>{@code rampSteps} (integer &gt;= 0, default 20): the sessions' first requests arrive spread
 *       evenly over this many steps.</li>
 *   <li>{@code thinkSteps} (integer &gt;= 0, default 2): steps between a finished request and the
 *       session's next one.</li>
 * </ul>
 */
final class Workload {

    private Workload() {
    }

    /** One traffic class; see the class comment for the meaning of each field. */
    record Route(String name, int sessions, int activeTokens, int sharedPrefix, int decode, boolean idle,
                 int priority, int rampSteps, int thinkSteps) {

        Route {
            check(name != null && !name.isBlank(), "name must be a non-empty string");
            check(sessions >= 1, "sessions must be >= 1, got " + sessions);
            check(sessions <= Simulator.MAX_SESSIONS, "sessions " + sessions + " exceeds the limit of "
                    + Simulator.MAX_SESSIONS + " (the simulator keeps state per session)");
            check(activeTokens >= 2, "activeTokens must be >= 2, got " + activeTokens);
            check(activeTokens <= Simulator.MAX_TOKENS, "activeTokens " + activeTokens + " exceeds the limit of "
                    + Simulator.MAX_TOKENS + " (the simulator's token buffer, 4 bytes a token)");
            check(decode >= 1 && decode < activeTokens,
                    "decode must be in 1.." + (activeTokens - 1) + " (activeTokens - 1), got " + decode);
            check(sharedPrefix >= 0 && sharedPrefix < activeTokens - decode,
                    "sharedPrefix must be in 0.." + (activeTokens - decode - 1)
                            + " (the prompt, activeTokens - decode, minus one), got " + sharedPrefix);
            check(priority >= 0 && priority <= 127, "priority must be in 0..127, got " + priority);
            check(rampSteps >= 0, "rampSteps must be >= 0, got " + rampSteps);
            check(thinkSteps >= 0, "thinkSteps must be >= 0, got " + thinkSteps);
        }

        /** Tokens of the prompt (prefilled on admission). */
        int promptTokens() {
            return activeTokens - decode;
        }

        static int defaultDecode(int activeTokens) {
            return Math.max(1, Math.min(512, activeTokens / 4));
        }

        private static void check(boolean ok, String message) {
            if (!ok) {
                throw new IllegalArgumentException(message);
            }
        }
    }

    /**
     * The built-in workload: interactive chat, long support conversations, agent traces and
     * streams whose clients went away.
     */
    static List<Route> defaults() {
        return List.of(
                new Route("short chat", 48, 2_048, 512, 512, false, 1, 20, 2),
                new Route("long support", 24, 24_576, 2_048, 1_024, false, 1, 20, 2),
                new Route("agent trace", 12, 40_960, 4_096, 2_048, false, 0, 20, 2),
                new Route("disconnected streams", 7, 18_432, 512, 1_024, true, 1, 20, 2));
    }

    /**
     * Reads a JSONL workload file; IllegalArgumentException naming the file, line and problem, or
     * naming the file when it is missing, a directory, unreadable or not UTF-8 text.
     */
    static List<Route> read(Path file) throws IOException {
        if (Files.isDirectory(file)) {
            throw new IllegalArgumentException("--workload " + file + " is a directory, not a JSONL file");
        }
        if (!Files.exists(file)) {
            throw new IllegalArgumentException("--workload " + file + ": no such file");
        }
        if (!Files.isRegularFile(file) || !Files.isReadable(file)) {
            throw new IllegalArgumentException("--workload " + file + " is not a readable file");
        }
        try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            return parse(r, file.toString());
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new IllegalArgumentException("--workload " + file
                    + " is not UTF-8 text (a binary file?); one JSON object per line expected");
        }
    }

    private static final Set<String> KEYS = Set.of("name", "sessions", "activeTokens", "sharedPrefix", "decode",
            "idle", "priority", "rampSteps", "thinkSteps");

    /** Parses JSONL from {@code in}; {@code source} names it in error messages. */
    static List<Route> parse(Reader in, String source) throws IOException {
        BufferedReader br = in instanceof BufferedReader b ? b : new BufferedReader(in);
        List<Route> routes = new ArrayList<>();
        String line;
        int no = 0;
        while ((line = br.readLine()) != null) {
            no++;
            if (line.isBlank()) {
                continue;
            }
            try {
                routes.add(route(new FlatJson(line).object()));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(source + " line " + no + ": " + e.getMessage(), e);
            }
        }
        if (routes.isEmpty()) {
            throw new IllegalArgumentException(source + ": no routes (one JSON object per line expected)");
        }
        return List.copyOf(routes);
    }

    private static Route route(Map<String, Object> o) {
        for (String k : o.keySet()) {
            if (!KEYS.contains(k)) {
                throw new IllegalArgumentException("unknown key '" + k + "'; known: " + KEYS.stream().sorted().toList());
            }
        }
        String name = string(o, "name");
        int active = integer(o, "activeTokens", null);
        return new Route(name, integer(o, "sessions", null), active,
                integer(o, "sharedPrefix", 0), integer(o, "decode", Route.defaultDecode(active)),
                bool(o, "idle", false), integer(o, "priority", 0), integer(o, "rampSteps", 20),
                integer(o, "thinkSteps", 2));
    }

    private static String string(Map<String, Object> o, String key) {
        Object v = o.get(key);
        if (v == null) {
            throw new IllegalArgumentException("missing required key '" + key + "'");
        }
        if (!(v instanceof String s)) {
            throw new IllegalArgumentException("'" + key + "' must be a string, got " + v);
        }
        return s;
    }

    private static int integer(Map<String, Object> o, String key, Integer dflt) {
        Object v = o.get(key);
        if (v == null) {
            if (dflt == null) {
                throw new IllegalArgumentException("missing required key '" + key + "'");
            }
            return dflt;
        }
        if (!(v instanceof Long n) || n < Integer.MIN_VALUE || n > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("'" + key + "' must be an integer, got " + v);
        }
        return (int) (long) n;
    }

    private static boolean bool(Map<String, Object> o, String key, boolean dflt) {
        Object v = o.get(key);
        if (v == null) {
            return dflt;
        }
        if (!(v instanceof Boolean b)) {
            throw new IllegalArgumentException("'" + key + "' must be true or false, got " + v);
        }
        return b;
    }

    /**
     * A strict parser for one flat JSON object whose values are strings, integers, booleans or
     * null: just what a workload line needs. Errors name the column.
     */
    static final class FlatJson {
        private final String s;
        private int i;

        FlatJson(String s) {
            this.s = s;
        }

        Map<String, Object> object() {
            Map<String, Object> out = new LinkedHashMap<>();
            ws();
            expect('{');
            ws();
            if (peek() == '}') {
                i++;
            } else {
                while (true) {
                    ws();
                    int at = i;
                    String key = str();
                    ws();
                    expect(':');
                    ws();
                    Object value = value();
                    if (out.containsKey(key)) {
                        throw error(at, "duplicate key '" + key + "'");
                    }
                    if (value != null) {
                        out.put(key, value);
                    }
                    ws();
                    char c = next();
                    if (c == '}') {
                        break;
                    }
                    if (c != ',') {
                        throw error(i - 1, "expected ',' or '}' but found '" + c + "'");
                    }
                }
            }
            ws();
            if (i < s.length()) {
                throw error(i, "unexpected text after the object");
            }
            return out;
        }

        private Object value() {
            char c = peek();
            if (c == '"') {
                return str();
            }
            if (c == '-' || Character.isDigit(c)) {
                int start = i;
                if (c == '-') {
                    i++;
                }
                while (i < s.length() && Character.isDigit(s.charAt(i))) {
                    i++;
                }
                if (i < s.length() && (s.charAt(i) == '.' || s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
                    throw error(start, "expected an integer");
                }
                try {
                    return Long.parseLong(s.substring(start, i));
                } catch (NumberFormatException e) {
                    throw error(start, "bad number '" + s.substring(start, i) + "'");
                }
            }
            for (String lit : new String[] {"true", "false", "null"}) {
                if (s.startsWith(lit, i)) {
                    i += lit.length();
                    return lit.equals("null") ? null : Boolean.valueOf(lit);
                }
            }
            if (c == '{' || c == '[') {
                throw error(i, "nested objects and arrays are not part of the schema");
            }
            throw error(i, "expected a value");
        }

        private String str() {
            expect('"');
            StringBuilder sb = new StringBuilder();
            while (true) {
                if (i >= s.length()) {
                    throw error(i, "unterminated string");
                }
                char c = s.charAt(i++);
                if (c == '"') {
                    return sb.toString();
                }
                if (c == '\\') {
                    if (i >= s.length()) {
                        throw error(i, "unterminated escape");
                    }
                    char e = s.charAt(i++);
                    switch (e) {
                        case '"', '\\', '/' -> sb.append(e);
                        case 'n' -> sb.append('\n');
                        case 't' -> sb.append('\t');
                        case 'r' -> sb.append('\r');
                        case 'b' -> sb.append('\b');
                        case 'f' -> sb.append('\f');
                        case 'u' -> {
                            if (i + 4 > s.length()) {
                                throw error(i, "short \\u escape");
                            }
                            try {
                                sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                            } catch (NumberFormatException ex) {
                                throw error(i, "bad \\u escape");
                            }
                            i += 4;
                        }
                        default -> throw error(i - 1, "bad escape '\\" + e + "'");
                    }
                } else {
                    sb.append(c);
                }
            }
        }

        private void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        private char peek() {
            if (i >= s.length()) {
                throw error(i, "unexpected end of line");
            }
            return s.charAt(i);
        }

        private char next() {
            char c = peek();
            i++;
            return c;
        }

        private void expect(char c) {
            char got = peek();
            if (got != c) {
                throw error(i, "expected '" + c + "' but found '" + got + "'");
            }
            i++;
        }

        private IllegalArgumentException error(int at, String message) {
            return new IllegalArgumentException("column " + (at + 1) + ": " + message);
        }
    }
}
