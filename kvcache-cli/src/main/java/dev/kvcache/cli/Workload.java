package dev.kvcache.cli;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.jr.ob.JSON;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * A serving workload for {@code kvcache simulate}: routes of traffic, parsed from JSONL with
 * jackson-jr.
 *
 * <h2>JSONL schema</h2>
 * One route per line, a JSON object; blank lines are skipped. Unknown keys are an error (a typo
 * must not silently fall back to a default).
 * <pre>
 * {"name": "short chat", "sessions": 48, "activeTokens": {"dist": "lognormal", "median": 2000, "sigma": 0.4},
 *  "sharedPrefix": 500, "decode": {"dist": "uniform", "min": 200, "max": 700}, "priority": 1,
 *  "ttftSloMs": 1000, "itlSloMs": 50}
 * </pre>
 * <ul>
 *   <li>{@code name} (string, required): the route's label.</li>
 *   <li>{@code sessions} (integer 1..{@value Simulator#MAX_SESSIONS}, all routes together at most as
 *       many; required for closed arrivals, default 1,000 for Poisson): concurrent sessions (client
 *       connections); under Poisson arrivals the most requests the route has outstanding (more are
 *       dropped at arrival and counted).</li>
 *   <li>{@code activeTokens} (length, required): tokens a request holds when it finishes (prompt
 *       plus generated).</li>
 *   <li>{@code sharedPrefix} (integer, default 0): leading prompt tokens every request of the route
 *       shares (system prompt, tool definitions).</li>
 *   <li>{@code decode} (length, default min(512, activeTokens/4)): generated tokens; the prompt is
 *       {@code activeTokens - decode}.</li>
 *   <li>{@code idle} (boolean, default false): the client disconnected mid-stream; the request stops
 *       at {@code activeTokens} and never finishes (its memory stays held).</li>
 *   <li>{@code priority} (0..127, default 0): preemption picks the newest request of the lowest
 *       priority first.</li>
 *   <li>{@code arrival} ("closed" or "poisson", default "closed"): closed sessions send a request,
 *       wait for it, think, and send the next; Poisson requests arrive at {@code rate} per second of
 *       simulated time, independent of the service.</li>
 *   <li>{@code rate} (requests per second, Poisson only).</li>
 *   <li>{@code rampSteps} (integer &gt;= 0, default 20): closed sessions' first requests arrive
 *       spread evenly over this many steps.</li>
 *   <li>{@code thinkSteps} (integer &gt;= 0, default 2): steps between a finished request and the
 *       session's next one.</li>
 *   <li>{@code seed} (integer, default 1): seeds the route's length and arrival samples.</li>
 *   <li>{@code ttftSloMs}, {@code itlSloMs} (numbers &gt; 0): the route's service-level objectives,
 *       time to first token and mean inter-token latency; default {@link #defaultTtftSlo} and 100 ms.</li>
 * </ul>
 * A length is an integer or a {@link LengthDist} object. With distributions each request draws its
 * own lengths; the decode length is then clamped so that at least one prompt token follows the
 * shared prefix.
 */
final class Workload {

    private Workload() {
    }

    /** One traffic class; see the class comment for the meaning of each field (SLOs in seconds). */
    record Route(String name, int sessions, LengthDist active, int sharedPrefix, LengthDist decodeLength,
                 boolean idle, int priority, int rampSteps, int thinkSteps, double rate, long seed,
                 double ttftSlo, double itlSlo) {

        Route {
            check(name != null && !name.isBlank(), "name must be a non-empty string");
            check(sessions >= 1, "sessions must be >= 1, got " + sessions);
            check(sessions <= Simulator.MAX_SESSIONS, "sessions " + sessions + " exceeds the limit of "
                    + Simulator.MAX_SESSIONS + " (the simulator keeps state per session)");
            if (active.isFixed() && decodeLength.isFixed()) {
                int a = active.min();
                int decode = decodeLength.min();
                check(a >= 2, "activeTokens must be >= 2, got " + a);
                check(decode >= 1 && decode < a, "decode must be in 1.." + (a - 1) + " (activeTokens - 1), got " + decode);
                check(sharedPrefix >= 0 && sharedPrefix < a - decode, "sharedPrefix must be in 0.." + (a - decode - 1)
                        + " (the prompt, activeTokens - decode, minus one), got " + sharedPrefix);
            } else {
                check(sharedPrefix >= 0 && sharedPrefix + 2 <= active.max(), "sharedPrefix must be in 0.."
                        + (active.max() - 2) + " (activeTokens' largest value minus two), got " + sharedPrefix);
            }
            check(priority >= 0 && priority <= 127, "priority must be in 0..127, got " + priority);
            check(rampSteps >= 0, "rampSteps must be >= 0, got " + rampSteps);
            check(thinkSteps >= 0, "thinkSteps must be >= 0, got " + thinkSteps);
            check(rate >= 0 && Double.isFinite(rate) && rate <= 1e6, "rate must be in (0, 1000000] requests/s, got " + rate);
            check(ttftSlo > 0 && Double.isFinite(ttftSlo), "ttftSloMs must be > 0, got " + ttftSlo * 1000);
            check(itlSlo > 0 && Double.isFinite(itlSlo), "itlSloMs must be > 0, got " + itlSlo * 1000);
        }

        /** A closed route of fixed lengths, seed 1 and the default SLOs. */
        Route(String name, int sessions, int activeTokens, int sharedPrefix, int decode, boolean idle,
              int priority, int rampSteps, int thinkSteps) {
            this(name, sessions, LengthDist.fixed(Math.max(1, activeTokens)), sharedPrefix,
                    LengthDist.fixed(Math.max(1, decode)), idle, priority, rampSteps, thinkSteps, 0, 1,
                    defaultTtftSlo(activeTokens - decode), DEFAULT_ITL_SLO);
        }

        /** This route with these SLOs (seconds). */
        Route withSlo(double ttft, double itl) {
            return new Route(name, sessions, active, sharedPrefix, decodeLength, idle, priority, rampSteps, thinkSteps,
                    rate, seed, ttft, itl);
        }

        boolean poisson() {
            return rate > 0;
        }

        /** Typical tokens a request holds at the end (the fixed value, a uniform's mean, a lognormal's median). */
        int activeTokens() {
            return active.typical();
        }

        /** Typical generated tokens. */
        int decode() {
            return Math.min(decodeLength.typical(), Math.max(1, activeTokens() - sharedPrefix - 1));
        }

        /** Typical prompt tokens (prefilled on admission). */
        int promptTokens() {
            return activeTokens() - decode();
        }

        /** The longest request this route can send. */
        int maxActiveTokens() {
            return active.max();
        }

        /**
         * One request's lengths, {active, decode}, drawn from the route's seed and the request's
         * identity, so every configuration replays the same requests.
         */
        int[] sample(int session, int serial) {
            if (active.isFixed() && decodeLength.isFixed()) {
                return new int[] {active.min(), decodeLength.min()};
            }
            SplittableRandom rnd = new SplittableRandom(seed * 0x9E3779B97F4A7C15L ^ ((long) session << 32) ^ serial);
            int a = Math.max(active.sample(rnd), sharedPrefix + 2);
            int d = Math.max(1, Math.min(decodeLength.sample(rnd), a - sharedPrefix - 1));
            return new int[] {a, d};
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

    /** Default ITL SLO, seconds. */
    static final double DEFAULT_ITL_SLO = 0.1;

    /** Default TTFT SLO: 2 s plus 0.25 s per 1,000 prompt tokens (a long prompt is allowed its prefill). */
    static double defaultTtftSlo(int promptTokens) {
        return 2.0 + 0.25 * Math.max(0, promptTokens) / 1000.0;
    }

    /**
     * The built-in workload: interactive chat, long support conversations, agent traces and
     * streams whose clients went away; lengths drawn so that they are not multiples of the block
     * size (fragmentation shows), every one within Qwen2.5-32B's 32,768-token context.
     */
    static List<Route> defaults() {
        return List.of(
                new Route("short chat", 48, LengthDist.lognormal(2000, 0.4, 600, 6000), 500,
                        LengthDist.uniform(200, 700), false, 1, 20, 2, 0, 1, 1.0, 0.05),
                new Route("long support", 24, LengthDist.uniform(16000, 28000), 2000,
                        LengthDist.uniform(500, 1500), false, 1, 20, 2, 0, 2, 8.0, 0.1),
                new Route("agent trace", 12, LengthDist.uniform(24000, 32000), 4000,
                        LengthDist.uniform(1000, 3000), false, 0, 20, 2, 0, 3, 20.0, 0.15),
                new Route("disconnected streams", 7, LengthDist.fixed(18000), 500, LengthDist.fixed(1000), true, 1,
                        20, 2, 0, 4, 5.0, 0.1));
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
            "idle", "priority", "rampSteps", "thinkSteps", "arrival", "rate", "seed", "ttftSloMs", "itlSloMs");

    private static final JSON JSON_READER = JSON.std.with(JSON.Feature.FAIL_ON_DUPLICATE_MAP_KEYS,
            JSON.Feature.PRESERVE_FIELD_ORDERING);

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
                routes.add(route(object(line)));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(source + " line " + no + ": " + e.getMessage(), e);
            }
        }
        if (routes.isEmpty()) {
            throw new IllegalArgumentException(source + ": no routes (one JSON object per line expected)");
        }
        return List.copyOf(routes);
    }

    /** One line as a JSON object; syntax errors name the column (jackson's message, first line). */
    static Map<String, Object> object(String line) {
        try (JsonParser p = JSON_READER.getStreamingFactory().createParser(line)) {
            JsonToken first = p.nextToken();
            if (first != JsonToken.START_OBJECT) {
                throw new IllegalArgumentException("column " + column(p.currentTokenLocation())
                        + ": expected a JSON object ('{'), found " + (first == null ? "nothing" : p.getText()));
            }
            Map<String, Object> o = JSON_READER.mapFrom(p);
            boolean trailing;
            try {
                trailing = p.nextToken() != null;
            } catch (JacksonException e) {
                trailing = true; // not even a token
            }
            if (trailing) {
                throw new IllegalArgumentException("column " + column(p.currentTokenLocation())
                        + ": unexpected text after the object");
            }
            return o;
        } catch (JacksonException e) {
            String m = e.getOriginalMessage();
            int nl = m == null ? -1 : m.indexOf('\n');
            return fail(e.getLocation(), nl < 0 ? m : m.substring(0, nl));
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot parse: " + e.getMessage());
        }
    }

    private static Map<String, Object> fail(JsonLocation at, String message) {
        throw new IllegalArgumentException((at == null ? "" : "column " + column(at) + ": ") + message);
    }

    private static long column(JsonLocation at) {
        return at == null ? 0 : at.getColumnNr();
    }

    private static Route route(Map<String, Object> o) {
        for (String k : o.keySet()) {
            if (!KEYS.contains(k)) {
                throw new IllegalArgumentException("unknown key '" + k + "'; known: " + KEYS.stream().sorted().toList());
            }
        }
        String name = string(o, "name", null);
        String arrival = string(o, "arrival", "closed");
        if (!arrival.equals("closed") && !arrival.equals("poisson")) {
            throw new IllegalArgumentException("'arrival' must be \"closed\" or \"poisson\", got \"" + arrival + "\"");
        }
        boolean poisson = arrival.equals("poisson");
        double rate = number(o, "rate", poisson ? null : 0.0);
        if (poisson && !(rate > 0)) {
            throw new IllegalArgumentException("'rate' must be > 0 requests/s for Poisson arrivals, got " + rate);
        }
        if (!poisson && o.containsKey("rate")) {
            throw new IllegalArgumentException("'rate' is for \"arrival\": \"poisson\"; closed sessions arrive by rampSteps and thinkSteps");
        }
        if (!o.containsKey("activeTokens")) {
            throw new IllegalArgumentException("missing required key 'activeTokens'");
        }
        LengthDist active = LengthDist.parse("activeTokens", o.get("activeTokens"));
        LengthDist decode = o.containsKey("decode") ? LengthDist.parse("decode", o.get("decode"))
                : LengthDist.fixed(Route.defaultDecode(active.typical()));
        int shared = integer(o, "sharedPrefix", 0);
        int prompt = active.typical() - decode.typical();
        double ttft = o.containsKey("ttftSloMs") ? number(o, "ttftSloMs", null) / 1000 : defaultTtftSlo(prompt);
        double itl = o.containsKey("itlSloMs") ? number(o, "itlSloMs", null) / 1000 : DEFAULT_ITL_SLO;
        return new Route(name, integer(o, "sessions", poisson ? 1000 : null), active, shared, decode,
                bool(o, "idle", false), integer(o, "priority", 0), integer(o, "rampSteps", 20),
                integer(o, "thinkSteps", 2), rate, integer(o, "seed", 1), ttft, itl);
    }

    private static String string(Map<String, Object> o, String key, String dflt) {
        Object v = o.get(key);
        if (v == null) {
            if (dflt == null) {
                throw new IllegalArgumentException("missing required key '" + key + "'");
            }
            return dflt;
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
        if (!(v instanceof Number n) || v instanceof Double || v instanceof Float
                || n.longValue() < Integer.MIN_VALUE || n.longValue() > Integer.MAX_VALUE
                || v instanceof java.math.BigInteger) {
            throw new IllegalArgumentException("'" + key + "' must be an integer, got " + v);
        }
        return n.intValue();
    }

    private static double number(Map<String, Object> o, String key, Double dflt) {
        Object v = o.get(key);
        if (v == null) {
            if (dflt == null) {
                throw new IllegalArgumentException("missing required key '" + key + "'");
            }
            return dflt;
        }
        if (!(v instanceof Number n)) {
            throw new IllegalArgumentException("'" + key + "' must be a number, got " + v);
        }
        return n.doubleValue();
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

    /** The route as one JSONL line (what {@link #parse} reads back). */
    static String toJsonLine(Route r) {
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("name", r.name());
        m.put("sessions", r.sessions());
        m.put("activeTokens", r.active().toJson());
        m.put("sharedPrefix", r.sharedPrefix());
        m.put("decode", r.decodeLength().toJson());
        if (r.idle()) {
            m.put("idle", true);
        }
        m.put("priority", r.priority());
        if (r.poisson()) {
            m.put("arrival", "poisson");
            m.put("rate", r.rate());
        }
        m.put("seed", r.seed());
        m.put("ttftSloMs", Math.round(r.ttftSlo() * 1000));
        m.put("itlSloMs", Math.round(r.itlSlo() * 1000));
        try {
            return JSON.std.asString(m);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    static String describeArrival(Route r) {
        return r.poisson() ? String.format(Locale.ROOT, "Poisson %.2f/s", r.rate())
                : "closed, ramp " + r.rampSteps() + ", think " + r.thinkSteps();
    }
}
