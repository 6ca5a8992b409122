package dev.kvcache.cli;

import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A token-length distribution of a workload route: fixed, uniform or lognormal. Sampling is a
 * pure function of the random source, so a route's seed fixes every request's length.
 *
 * <p>In JSONL a length is an integer (fixed) or an object: {@code {"dist": "uniform", "min": 1000,
 * "max": 3000}} or {@code {"dist": "lognormal", "median": 2000, "sigma": 0.5}} (optionally with
 * {@code "min"} and {@code "max"}, which clamp the samples; default 1 and
 * {@value Simulator#MAX_TOKENS}).
 *
 * @param kind   "fixed", "uniform" or "lognormal"
 * @param min    smallest value (fixed: the value)
 * @param max    largest value (fixed: the value)
 * @param median lognormal median (0 otherwise)
 * @param sigma  lognormal sigma of the underlying normal (0 otherwise)
 */
record LengthDist(String kind, int min, int max, double median, double sigma) {

    LengthDist {
        if (!kind.equals("fixed") && !kind.equals("uniform") && !kind.equals("lognormal")) {
            throw new IllegalArgumentException("dist must be \"fixed\", \"uniform\" or \"lognormal\", got \"" + kind + "\"");
        }
        if (min < 1 || max < min) {
            throw new IllegalArgumentException("a length needs 1 <= min <= max, got min " + min + ", max " + max);
        }
        if (max > Simulator.MAX_TOKENS) {
            throw new IllegalArgumentException("length " + max + " exceeds the limit of " + Simulator.MAX_TOKENS
                    + " (the simulator's token buffer, 4 bytes a token)");
        }
        if (kind.equals("lognormal") && !(median >= 1 && sigma > 0 && sigma <= 4)) {
            throw new IllegalArgumentException("lognormal needs median >= 1 and sigma in (0, 4], got median "
                    + median + ", sigma " + sigma);
        }
    }

    static LengthDist fixed(int n) {
        return new LengthDist("fixed", n, n, 0, 0);
    }

    static LengthDist uniform(int min, int max) {
        return new LengthDist("uniform", min, max, 0, 0);
    }

    static LengthDist lognormal(double median, double sigma, int min, int max) {
        return new LengthDist("lognormal", min, max, median, sigma);
    }

    boolean isFixed() {
        return kind.equals("fixed");
    }

    /** The typical value: the fixed value, the uniform mean, the lognormal median (clamped). */
    int typical() {
        return switch (kind) {
            case "fixed" -> min;
            case "uniform" -> (int) (((long) min + max) / 2);
            default -> (int) Math.max(min, Math.min(max, Math.round(median)));
        };
    }

    /** The mean (for planning tables). */
    double mean() {
        return switch (kind) {
            case "fixed" -> min;
            case "uniform" -> ((double) min + max) / 2;
            default -> Math.max(min, Math.min(max, median * Math.exp(sigma * sigma / 2)));
        };
    }

    int sample(SplittableRandom rnd) {
        return switch (kind) {
            case "fixed" -> min;
            case "uniform" -> min + rnd.nextInt(max - min + 1);
            default -> (int) Math.max(min, Math.min(max, Math.round(median * Math.exp(sigma * rnd.nextGaussian()))));
        };
    }

    /** Parses a JSONL value: an integer or a distribution object. */
    static LengthDist parse(String key, Object v) {
        if (v instanceof Number n && !(n instanceof Double) && !(n instanceof Float)) {
            long x = n.longValue();
            if (x < 1 || x > Simulator.MAX_TOKENS) {
                if (x > Simulator.MAX_TOKENS) {
                    throw new IllegalArgumentException(key + " " + x + " exceeds the limit of " + Simulator.MAX_TOKENS
                            + " (the simulator's token buffer, 4 bytes a token)");
                }
                throw new IllegalArgumentException(key + " must be >= 1, got " + x);
            }
            return fixed((int) x);
        }
        if (!(v instanceof Map<?, ?> m)) {
            throw new IllegalArgumentException("'" + key + "' must be an integer or a distribution object "
                    + "({\"dist\": \"uniform\", \"min\": .., \"max\": ..} or {\"dist\": \"lognormal\", \"median\": .., \"sigma\": ..}), got " + v);
        }
        for (Object k : m.keySet()) {
            if (!java.util.Set.of("dist", "min", "max", "median", "sigma", "value").contains(String.valueOf(k))) {
                throw new IllegalArgumentException("'" + key + "': unknown key '" + k
                        + "'; known: [dist, max, median, min, sigma, value]");
            }
        }
        Object d = m.get("dist");
        if (!(d instanceof String kind)) {
            throw new IllegalArgumentException("'" + key + "' needs \"dist\": \"fixed\", \"uniform\" or \"lognormal\"");
        }
        try {
            return switch (kind) {
                case "fixed" -> fixed(intOf(m, "value", null));
                case "uniform" -> uniform(intOf(m, "min", null), intOf(m, "max", null));
                case "lognormal" -> lognormal(num(m, "median"), num(m, "sigma"), intOf(m, "min", 1),
                        intOf(m, "max", Simulator.MAX_TOKENS));
                default -> throw new IllegalArgumentException("dist must be \"fixed\", \"uniform\" or \"lognormal\", got \"" + kind + "\"");
            };
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("'" + key + "': " + e.getMessage());
        }
    }

    private static int intOf(Map<?, ?> m, String k, Integer dflt) {
        Object v = m.get(k);
        if (v == null) {
            if (dflt == null) {
                throw new IllegalArgumentException("missing '" + k + "'");
            }
            return dflt;
        }
        if (!(v instanceof Number n) || n instanceof Double || n instanceof Float
                || n.longValue() < Integer.MIN_VALUE || n.longValue() > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("'" + k + "' must be an integer, got " + v);
        }
        return n.intValue();
    }

    private static double num(Map<?, ?> m, String k) {
        Object v = m.get(k);
        if (!(v instanceof Number n)) {
            throw new IllegalArgumentException("missing or non-numeric '" + k + "'");
        }
        return n.doubleValue();
    }

    /** As written in JSONL. */
    Object toJson() {
        if (kind.equals("fixed")) {
            return min;
        }
        Map<String, Object> m = new java.util.LinkedHashMap<>(); // written in the order the docs show
        m.put("dist", kind);
        if (kind.equals("lognormal")) {
            m.put("median", median);
            m.put("sigma", sigma);
        }
        m.put("min", min);
        m.put("max", max);
        return m;
    }

    @Override
    public String toString() {
        return switch (kind) {
            case "fixed" -> Sizes.count(min);
            case "uniform" -> Sizes.count(min) + ".." + Sizes.count(max);
            default -> String.format(Locale.ROOT, "logn(%s, %.2f)", Sizes.count(Math.round(median)), sigma);
        };
    }
}
