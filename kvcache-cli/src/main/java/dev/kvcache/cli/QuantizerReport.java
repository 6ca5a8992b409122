package dev.kvcache.cli;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Turns a {@code QuantizerBenchmark} run's JMH results ({@link BenchCommand#scores}) into throughput per format: GB/s of
 * fp32 values for encode, decode and the fused kernels, decode against {@code copyFp32} (a copy of
 * the same fp32 bytes into the same array, measured in the same run: the "8-bit decode
 * >= 50% of copy bandwidth"), the copy of the encoded bytes, and vector/scalar speedups when both
 * providers ran. Shape as in the benchmark: slices of 16 tokens x 128 values.
 */
final class QuantizerReport {

    static final int HEAD_DIM = 128;
    static final int BLOCK_TOKENS = 16;
    private static final List<String> KERNELS = List.of("encode", "decode", "dotRows", "accumulateRows");

    private QuantizerReport() {
    }

    /** GB/s of fp32 values: {@code tokens * HEAD_DIM * 4} bytes per operation of {@code micros}. */
    static double fp32GBps(int tokens, double micros) {
        return (double) tokens * HEAD_DIM * Float.BYTES / (micros * 1e-6) / 1e9;
    }

    /** Encoded bytes of {@code tokens} tokens of one head in {@code role} ("keys" or "values"). */
    static double encodedBytes(KvFormat f, String role, int tokens) {
        long slice = role.equals("values") ? f.valueBytes(BLOCK_TOKENS, HEAD_DIM) : f.keyBytes(BLOCK_TOKENS, HEAD_DIM);
        return (double) tokens / BLOCK_TOKENS * slice;
    }

    /** The report table (and vector/scalar speedups when both providers ran) for {@code rows}. */
    static String table(List<BenchCommand.Score> rows) {
        // (tokens|format|role|kernels) -> method -> us
        Map<String, Map<String, Double>> cells = new LinkedHashMap<>();
        for (BenchCommand.Score r : rows) {
            String key = r.param("tokens") + "|" + r.param("format") + "|"
                    + (r.param("role").isEmpty() ? "keys" : r.param("role")) + "|" + r.param("kernels");
            cells.computeIfAbsent(key, k -> new LinkedHashMap<>()).put(r.method(), r.micros());
        }
        StringBuilder sb = new StringBuilder();
        sb.append("GB/s of fp32 values (copy: GB/s of encoded bytes); decode / copyFp32 = time(copyFp32) / time(decode)\n");
        sb.append("| tokens | format | role | kernels | encode | decode | copyFp32 | decode / copyFp32 | dotRows"
                + " | accumulateRows | copy |\n");
        sb.append("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        List<String> speedups = new ArrayList<>();
        for (var e : cells.entrySet()) {
            String[] k = e.getKey().split("\\|", -1);
            int tokens = Integer.parseInt(k[0]);
            Map<String, Double> m = e.getValue();
            Double copy = m.get("copy");
            sb.append(String.format(Locale.ROOT, "| %,d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |%n",
                    tokens, k[1], k[2], k[3], gbps(tokens, m.get("encode")), gbps(tokens, m.get("decode")),
                    gbps(tokens, m.get("copyFp32")), ratio(m.get("copyFp32"), m.get("decode")),
                    gbps(tokens, m.get("dotRows")), gbps(tokens, m.get("accumulateRows")),
                    copy == null ? "-" : String.format(Locale.ROOT, "%.1f",
                            encodedBytes(KvFormats.byName(k[1]), k[2], tokens) / (copy * 1e-6) / 1e9)));
            if (k[3].equals("vector")) {
                Map<String, Double> scalar = cells.get(k[0] + "|" + k[1] + "|" + k[2] + "|scalar");
                if (scalar != null) {
                    StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "| %,d | %s | %s |",
                            tokens, k[1], k[2]));
                    for (String method : KERNELS) {
                        line.append(' ').append(ratio(scalar.get(method), m.get(method))).append(" |");
                    }
                    speedups.add(line.toString());
                }
            }
        }
        if (!speedups.isEmpty()) {
            sb.append("\nVector / scalar speedup (time scalar / time vector, same run)\n");
            sb.append("| tokens | format | role | encode | decode | dotRows | accumulateRows |\n");
            sb.append("|---:|---|---|---:|---:|---:|---:|\n");
            for (String s : speedups) {
                sb.append(s).append('\n');
            }
        }
        return sb.toString();
    }

    private static String gbps(int tokens, Double micros) {
        return micros == null ? "-" : String.format(Locale.ROOT, "%.1f", fp32GBps(tokens, micros));
    }

    private static String ratio(Double a, Double b) {
        return a == null || b == null ? "-" : String.format(Locale.ROOT, "%.2f", a / b);
    }
}
