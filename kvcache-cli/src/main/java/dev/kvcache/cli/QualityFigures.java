package dev.kvcache.cli;

import dev.kvcache.KvFormat;
import dev.kvcache.quant.AccuracyReport;

import com.fasterxml.jackson.jr.ob.JSON;
import dev.kvcache.KvFormats;
import dev.kvcache.quant.Quantizers;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The quality side of the ledger: each lossy format's error as the project's accuracy harness
 * ({@code bin/kvcache accuracy}, {@link AccuracyReport#measure}) measures it on synthetic KV
 * (head_dim 128, keys with outlier channels). The harness takes seconds (more on a busy machine),
 * so its rows are cached in {@link #cacheFile()} ({@code kvcache-cli/target/} of the checkout, else
 * {@code ~/.cache/kvcache/}), written by the
 * first run that needs them, keyed by the harness's parameters and kernel provider) and read back
 * by later runs; delete the file to measure again. Nothing here is typed in.
 */
final class QualityFigures {
    static final int TOKENS = 1024;
    static final int BLOCK_TOKENS = 16;
    static final long SEED = 1;

    private final Map<KvFormat, AccuracyReport.Row> rows = new HashMap<>();
    private final long elapsedMillis;

    private final String failure;

    private final List<AccuracyReport.Row> measured;
    private final boolean cached;

    private QualityFigures(List<AccuracyReport.Row> measured, long elapsedMillis, String failure, boolean cached) {
        this.failure = failure;
        this.measured = List.copyOf(measured);
        this.cached = cached;
        for (AccuracyReport.Row r : measured) {
            // the plain rows (not the Hadamard-rotated variants) are what the KV formats store
            if (r.name().equals(r.format().name())) {
                rows.putIfAbsent(r.format(), r);
            }
        }
        this.elapsedMillis = elapsedMillis;
    }

    /** The cache of the harness's rows. */
    static Path cacheFile() {
        Path cli = KvCacheHome.root().resolve("kvcache-cli");
        // outside a checkout (a copied jar) the user's cache directory, never a new folder in the working directory
        Path dir = Files.isDirectory(cli) ? cli.resolve("target")
                : Path.of(System.getProperty("user.home"), ".cache", "kvcache");
        return dir.resolve("accuracy-" + TOKENS + "-" + BLOCK_TOKENS + "-" + SEED + ".json");
    }

    /** The cached rows when the cache matches this build's kernel provider, else a fresh measurement (cached). */
    static QualityFigures cachedOrMeasured() {
        Path f = cacheFile();
        String provider = String.valueOf(Quantizers.provider());
        try {
            if (Files.isRegularFile(f)) {
                Map<String, Object> o = JSON.std.mapFrom(Files.readString(f));
                if (provider.equals(o.get("provider")) && o.get("rows") instanceof List<?> rows) {
                    List<AccuracyReport.Row> out = new ArrayList<>();
                    for (Object x : rows) {
                        Map<?, ?> r = (Map<?, ?>) x;
                        out.add(new AccuracyReport.Row((String) r.get("name"), KvFormats.byName((String) r.get("format")),
                                num(r, "bitsPerElement"), num(r, "keyError"), num(r, "valueError"),
                                num(r, "outputError"), num(r, "kl")));
                    }
                    return new QualityFigures(out, 0, null, true);
                }
            }
        } catch (IOException | RuntimeException e) {
            // an unreadable or stale cache is measured again
        }
        QualityFigures q = measure();
        if (q.failure == null) {
            try {
                Files.createDirectories(f.getParent());
                List<Object> rows = new ArrayList<>();
                for (AccuracyReport.Row r : q.measured) {
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("name", r.name());
                    m.put("format", r.format().name());
                    m.put("bitsPerElement", r.bitsPerElement());
                    m.put("keyError", r.keyError());
                    m.put("valueError", r.valueError());
                    m.put("outputError", r.outputError());
                    m.put("kl", r.kl());
                    rows.add(m);
                }
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("source", source());
                o.put("provider", provider);
                o.put("rows", rows);
                Files.writeString(f, JSON.std.asString(o), StandardCharsets.UTF_8);
            } catch (IOException | RuntimeException e) {
                // no cache then; the figures of this run stand
            }
        }
        return q;
    }

    private static double num(Map<?, ?> r, String k) {
        return ((Number) r.get(k)).doubleValue();
    }

    /** Whether the figures came from the cache. */
    boolean cached() {
        return cached;
    }

    /**
     * Runs the harness once. A harness that fails (a format it lists is not implemented in this
     * build, say) leaves the figures out and says why, rather than failing the replay.
     */
    static QualityFigures measure() {
        long t0 = System.nanoTime();
        try {
            List<AccuracyReport.Row> m = AccuracyReport.measure(TOKENS, BLOCK_TOKENS, SEED);
            return new QualityFigures(m, (System.nanoTime() - t0) / 1_000_000, null, false);
        } catch (RuntimeException e) {
            return new QualityFigures(List.of(), (System.nanoTime() - t0) / 1_000_000,
                    "the accuracy harness failed: " + e.getMessage(), false);
        }
    }

    /** Why there are no figures (null when there are). */
    String failure() {
        return failure;
    }

    /** The harness's row for {@code f}, or null when it does not measure that format. */
    AccuracyReport.Row row(KvFormat f) {
        return rows.get(f);
    }

    long elapsedMillis() {
        return elapsedMillis;
    }

    static String source() {
        return "bin/kvcache accuracy --tokens " + TOKENS + " --block-tokens " + BLOCK_TOKENS + " --seed " + SEED;
    }
}
