package dev.kvcache.cli;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;

/**
 * Turns a {@code PagedAttentionBenchmark} run's JMH results ({@link BenchCommand#scores}) into the table
 * the issue asks for: for each size and format, the paged decode's effective bandwidth as a share
 * of the memory copy measured in the same run, the two-thread split against both copies, and
 * paged time against the contiguous baselines.
 *
 * <p>Bandwidth = bytes of K and V read / time. The bytes come from {@link KvFormat#keyBytes} and
 * {@link KvFormat#valueBytes} (metadata included) at the benchmark's shape, which this class
 * repeats: 8 KV heads of 128 values, 16-token blocks (Llama-3-8B). The copy moves the F32 cache's
 * byte count, so share of copy = (format bytes / paged time) / (F32 bytes / copy time).
 */
final class AttentionReport {

    static final int KV_HEADS = 8;
    static final int HEAD_DIM = 128;
    static final int BLOCK_TOKENS = 16;

    private AttentionReport() {
    }

    /** K+V bytes of {@code tokens} tokens of one layer at the benchmark's shape. */
    static double kvBytes(KvFormat f, int tokens) {
        long perBlock = (long) KV_HEADS * (f.keyBytes(BLOCK_TOKENS, HEAD_DIM) + f.valueBytes(BLOCK_TOKENS, HEAD_DIM));
        return (double) tokens / BLOCK_TOKENS * perBlock;
    }

    /** Scores in microseconds keyed by "method|format|tokens" (format "N/A" for the baselines). */
    static Map<String, Double> micros(List<BenchCommand.Score> scores) {
        Map<String, Double> out = new LinkedHashMap<>();
        for (BenchCommand.Score r : scores) {
            if (r.param("tokens").isEmpty()) {
                throw new IllegalArgumentException("row " + r + " has no tokens parameter");
            }
            String fmt = r.param("format").isEmpty() ? "N/A" : r.param("format");
            out.put(r.method() + "|" + fmt + "|" + r.param("tokens"), r.micros());
        }
        return out;
    }

    /** The report table; "-" where the run lacks a benchmark. */
    static String table(Map<String, Double> us) {
        TreeSet<Integer> sizes = new TreeSet<>();
        List<String> formats = new ArrayList<>();
        for (String k : us.keySet()) {
            String[] p = k.split("\\|");
            sizes.add(Integer.parseInt(p[2]));
            if (!p[1].equals("N/A") && !formats.contains(p[1])) {
                formats.add(p[1]);
            }
        }
        StringBuilder sb = new StringBuilder();
        sb.append("| tokens | format | paged ms | share of copy | split2 share of copy | split2 share of copySplit2"
                + " | paged / contiguous | paged / contiguousVector |\n");
        sb.append("|---:|---|---:|---:|---:|---:|---:|---:|\n");
        for (int t : sizes) {
            Double copy = us.get("copy|N/A|" + t);
            Double copy2 = us.get("copySplit2|N/A|" + t);
            Double contig = us.get("contiguous|N/A|" + t);
            Double contigV = us.get("contiguousVector|N/A|" + t);
            double f32 = kvBytes(KvFormats.F32, t);
            for (String fmt : formats) {
                Double paged = us.get("paged|" + fmt + "|" + t);
                Double split = us.get("pagedSplit2|" + fmt + "|" + t);
                if (paged == null && split == null) {
                    continue;
                }
                double bytes = kvBytes(KvFormats.byName(fmt), t);
                sb.append(String.format(Locale.ROOT, "| %,d | %s | %s | %s | %s | %s | %s | %s |%n", t, fmt,
                        paged == null ? "-" : String.format(Locale.ROOT, "%.2f", paged / 1000),
                        share(bytes, paged, f32, copy), share(bytes, split, f32, copy),
                        share(bytes, split, f32, copy2), ratio(paged, contig), ratio(paged, contigV)));
            }
        }
        return sb.toString();
    }

    /** (bytes / time) / (f32Bytes / copyTime) as a percentage. */
    static String share(double bytes, Double time, double f32Bytes, Double copyTime) {
        if (time == null || copyTime == null) {
            return "-";
        }
        return String.format(Locale.ROOT, "%.0f%%", 100 * (bytes / time) / (f32Bytes / copyTime));
    }

    private static String ratio(Double a, Double b) {
        return a == null || b == null ? "-" : String.format(Locale.ROOT, "%.3f", a / b);
    }
}
