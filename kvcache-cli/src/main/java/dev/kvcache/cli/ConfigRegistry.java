package dev.kvcache.cli;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The levers of {@code kvcache simulate} by name, and the configurations they compose into
 * ({@code --configs "paged+prefix+fp8+idle,paged+prefix+longpool"}).
 *
 * <p>Lever names: {@code contiguous} (alone: preallocation of the max model length, no manager),
 * {@code paged} (the block manager; implied by every lever below), {@code prefix} (prefix
 * sharing), {@code tier} (a host tier below the pool; needs {@code prefix}), {@code shared} (a
 * remote shared tier instead, priced at the network bandwidth), a KV format
 * ({@code fp8} = FP8_E4M3, {@code fp8e5}, {@code q8}, {@code q4}, {@code kivi4}, {@code kivi2}, or
 * any {@code KvFormats} name), {@code window} (sliding window), {@code idle} (idle release),
 * {@code longpool} (long-context separation) and {@code swap} (swap-vs-recompute preemption).
 */
final class ConfigRegistry {

    private ConfigRegistry() {
    }

    static final String PREFIX_ROW = "paged + prefix sharing";

    /** Every lever name and what it does (for --help and errors). */
    static final Map<String, String> LEVERS;

    static {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("contiguous", "preallocate the max model length per request (no manager; alone)");
        m.put("paged", "the block manager (implied by the others)");
        m.put("prefix", "prefix sharing");
        m.put("tier", "a host tier below the pool (needs prefix)");
        m.put("shared", "a remote shared tier below the pool, copies at the network bandwidth (needs prefix; not with tier)");
        m.put("fp8", "KV in FP8_E4M3 (also fp8e5, q8, q4, kivi4, kivi2, or a KvFormats name)");
        m.put("window", "sliding window of --sinks + --window tokens");
        m.put("idle", "idle release after --idle-deadline steps");
        m.put("longpool", "long-context routes in their own tenant under --long-share of the pool, admitted apart");
        m.put("swap", "preemption swaps or recomputes, as the cost model prices it");
        LEVERS = Map.copyOf(m);
    }

    private static final Map<String, KvFormat> FORMAT_ALIASES = Map.of(
            "fp8", KvFormats.FP8_E4M3, "fp8e5", KvFormats.FP8_E5M2, "q8", KvFormats.Q8_0,
            "q4", KvFormats.Q4_0, "kivi4", KvFormats.KIVI_4, "kivi2", KvFormats.KIVI_2);

    /** One configuration from a lever list; IllegalArgumentException naming an unknown or conflicting lever. */
    static SimConfig parse(String spec) {
        String s = spec.strip();
        if (s.isEmpty()) {
            throw new IllegalArgumentException("--configs: an empty configuration; give levers joined by '+', e.g. paged+prefix+fp8");
        }
        boolean contiguous = false;
        boolean prefix = false;
        boolean window = false;
        boolean idle = false;
        boolean tier = false;
        boolean longPool = false;
        boolean swap = false;
        boolean shared = false;
        KvFormat format = null;
        int levers = 0;
        for (String raw : s.split("\\+")) {
            String l = raw.strip().toLowerCase(Locale.ROOT);
            levers++;
            switch (l) {
                case "contiguous" -> contiguous = true;
                case "paged" -> { }
                case "prefix" -> prefix = true;
                case "window" -> window = true;
                case "idle" -> idle = true;
                case "tier", "hosttier" -> tier = true;
                case "longpool" -> longPool = true;
                case "swap" -> swap = true;
                case "shared", "sharedtier" -> shared = true;
                default -> {
                    KvFormat f = FORMAT_ALIASES.get(l);
                    if (f == null) {
                        try {
                            f = KvFormats.byName(raw.strip());
                        } catch (IllegalArgumentException e) {
                            throw new IllegalArgumentException("--configs: unknown lever '" + raw.strip() + "' in '" + s
                                    + "'; levers: " + String.join(", ", LEVERS.keySet()));
                        }
                    }
                    if (format != null && format != f) {
                        throw new IllegalArgumentException("--configs: '" + s + "' names two formats, "
                                + format.name() + " and " + f.name());
                    }
                    format = f;
                }
            }
        }
        if (contiguous && levers > 1) {
            throw new IllegalArgumentException("--configs: '" + s + "': contiguous combines with no other lever");
        }
        if (tier && !prefix) {
            throw new IllegalArgumentException("--configs: '" + s + "': tier needs prefix (the tier keeps evicted prefix blocks)");
        }
        if (shared && !prefix) {
            throw new IllegalArgumentException("--configs: '" + s + "': shared needs prefix (the tier keeps evicted prefix blocks)");
        }
        if (shared && tier) {
            throw new IllegalArgumentException("--configs: '" + s + "': give tier or shared, not both (the manager demotes to its first tier only)");
        }
        return new SimConfig(s, !contiguous, format, prefix, window, idle, null, tier, longPool, swap, shared);
    }

    /**
     * Configurations from a comma-separated list; each is compared with the listed configuration
     * whose levers it includes and that has the most of them.
     */
    static List<SimConfig> parseList(String list) {
        List<SimConfig> out = new ArrayList<>();
        for (String spec : list.split(",")) {
            SimConfig c = parse(spec);
            if (out.stream().anyMatch(o -> o.name().equals(c.name()))) {
                throw new IllegalArgumentException("--configs: '" + c.name() + "' is listed twice");
            }
            out.add(c);
        }
        List<SimConfig> named = new ArrayList<>();
        for (SimConfig c : out) {
            SimConfig best = null;
            for (SimConfig o : out) {
                if (o != c && c.includes(o) && o.levers() < c.levers() && (best == null || o.levers() > best.levers())) {
                    best = o;
                }
            }
            named.add(c.withName(c.name(), best == null ? null : best.name()));
        }
        return named;
    }

    /**
     * The default rows, the seed's comparison: contiguous, paged, paged + prefix sharing, then on
     * top of that the host tier, the shared tier, each lossy format, the sliding window, idle release, the
     * long-context pool and swap.
     */
    static List<SimConfig> defaults(KvFormat base) {
        List<SimConfig> c = new ArrayList<>();
        c.add(new SimConfig("contiguous", false, null, false, false, false, null));
        c.add(new SimConfig("paged", true, null, false, false, false, "contiguous"));
        c.add(new SimConfig(PREFIX_ROW, true, null, true, false, false, "paged"));
        c.add(new SimConfig("  + host tier", true, null, true, false, false, PREFIX_ROW, true));
        c.add(new SimConfig("  + shared tier", true, null, true, false, false, PREFIX_ROW, false, false, false, true));
        for (KvFormat f : List.of(KvFormats.FP8_E4M3, KvFormats.Q4_0, KvFormats.KIVI_2)) {
            if (f != base) {
                c.add(new SimConfig("  + " + f.name(), true, f, true, false, false, PREFIX_ROW));
            }
        }
        c.add(new SimConfig("  + sliding window", true, null, true, true, false, PREFIX_ROW));
        c.add(new SimConfig("  + idle release", true, null, true, false, true, PREFIX_ROW));
        c.add(new SimConfig("  + long-context pool", true, null, true, false, false, PREFIX_ROW, false, true, false, false));
        c.add(new SimConfig("  + swap", true, null, true, false, false, PREFIX_ROW, false, false, true, false));
        return c;
    }
}
