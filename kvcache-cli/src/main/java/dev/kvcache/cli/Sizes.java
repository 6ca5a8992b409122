package dev.kvcache.cli;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Byte sizes as people type and read them: {@code 80GiB}, {@code 512 MiB}, {@code 24GB}, plain
 * byte counts. Binary suffixes (KiB, MiB, GiB, TiB, and the bare K/M/G/T that GPU vendors use for
 * binary memory) multiply by 1024; decimal ones (KB, MB, GB, TB) by 1000, because an "80 GB" H100
 * has 80 GiB and a cloud quota in GB does not.
 */
final class Sizes {

    private Sizes() {
    }

    private static final Pattern SIZE = Pattern.compile(
            "\\s*(\\d+(?:\\.\\d+)?)\\s*(|B|K|KB|KIB|M|MB|MIB|G|GB|GIB|T|TB|TIB)\\s*",
            Pattern.CASE_INSENSITIVE);

    /** Parses a size; IllegalArgumentException naming the text when it is not one. */
    static long parse(String text) {
        if (text == null) {
            throw new IllegalArgumentException("size is missing");
        }
        Matcher m = SIZE.matcher(text);
        if (!m.matches()) {
            throw new IllegalArgumentException("'" + text
                    + "' is not a size; use e.g. 80GiB, 512MiB, 24GB or a byte count");
        }
        String unit = m.group(2).toUpperCase(Locale.ROOT);
        long mult = switch (unit) {
            case "", "B" -> 1L;
            case "K", "KIB" -> 1L << 10;
            case "M", "MIB" -> 1L << 20;
            case "G", "GIB" -> 1L << 30;
            case "T", "TIB" -> 1L << 40;
            case "KB" -> 1_000L;
            case "MB" -> 1_000_000L;
            case "GB" -> 1_000_000_000L;
            case "TB" -> 1_000_000_000_000L;
            default -> throw new AssertionError(unit);
        };
        java.math.BigDecimal v = new java.math.BigDecimal(m.group(1)).multiply(java.math.BigDecimal.valueOf(mult));
        if (v.compareTo(java.math.BigDecimal.valueOf(Long.MAX_VALUE)) > 0) {
            throw new IllegalArgumentException("size '" + text + "' exceeds " + Long.MAX_VALUE + " bytes");
        }
        return v.setScale(0, java.math.RoundingMode.DOWN).longValueExact();
    }

    /** "80.0 GiB", "256 KiB", "17 B": the largest binary unit that keeps the number >= 1. */
    static String human(long bytes) {
        if (bytes < 0) {
            return "-" + human(-bytes);
        }
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        int u = 0;
        double v = bytes;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        if (u == 0) {
            return bytes + " B";
        }
        if (v == Math.rint(v) && v < 10_000) {
            return String.format(Locale.ROOT, "%.0f %s", v, units[u]);
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }

    /** A count with thousands separators: 524,288. */
    static String count(long n) {
        return String.format(Locale.ROOT, "%,d", n);
    }
}
