package dev.kvcache.cli;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * JMH's CSV results ({@code -rf csv}) as rows of (benchmark method, parameters, microseconds per
 * operation). Secondary results (profiler rows, {@code method:metric}) and other classes' rows are
 * skipped; scores in other time units are converted, a throughput unit is refused.
 */
final class JmhCsv {

    /** One primary result: the method's simple name, its parameters by name, the score in us/op. */
    record Row(String method, Map<String, String> params, double micros) {
        String param(String name) {
            return params.getOrDefault(name, "");
        }
    }

    private JmhCsv() {
    }

    /** The rows of benchmark class {@code className} (simple name) in {@code csv}. */
    static List<Row> parse(List<String> csv, String className) {
        if (csv.isEmpty()) {
            throw new IllegalArgumentException("empty JMH CSV");
        }
        List<String> header = fields(csv.getFirst());
        int name = header.indexOf("Benchmark");
        int score = header.indexOf("Score");
        int unit = header.indexOf("Unit");
        if (name < 0 || score < 0 || unit < 0) {
            throw new IllegalArgumentException("not a JMH CSV: header " + header);
        }
        List<Row> rows = new ArrayList<>();
        for (String line : csv.subList(1, csv.size())) {
            if (line.isBlank()) {
                continue;
            }
            List<String> f = fields(line);
            String bench = f.get(name);
            if (bench.contains(":") || !bench.contains("." + className + ".")) {
                continue;
            }
            Map<String, String> params = new LinkedHashMap<>();
            for (int i = 0; i < header.size() && i < f.size(); i++) {
                if (header.get(i).startsWith("Param: ") && !f.get(i).isEmpty()) {
                    params.put(header.get(i).substring("Param: ".length()), f.get(i));
                }
            }
            rows.add(new Row(bench.substring(bench.lastIndexOf('.') + 1), params,
                    Double.parseDouble(f.get(score)) * microsPer(f.get(unit))));
        }
        return rows;
    }

    static double microsPer(String unit) {
        return switch (unit) {
            case "ns/op" -> 1e-3;
            case "us/op" -> 1.0;
            case "ms/op" -> 1e3;
            case "s/op" -> 1e6;
            default -> throw new IllegalArgumentException("unit " + unit + " is not a time per operation"
                    + " (run with the benchmark's average-time mode)");
        };
    }

    /** One CSV line's fields: comma-separated, optionally double-quoted (JMH quotes text fields). */
    static List<String> fields(String line) {
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        boolean quoted = false;
        for (int i = 0; i < line.length(); i++) {
            char c = line.charAt(i);
            if (c == '"') {
                if (quoted && i + 1 < line.length() && line.charAt(i + 1) == '"') {
                    cur.append('"');
                    i++;
                } else {
                    quoted = !quoted;
                }
            } else if (c == ',' && !quoted) {
                out.add(cur.toString());
                cur.setLength(0);
            } else {
                cur.append(c);
            }
        }
        out.add(cur.toString());
        return out;
    }
}
