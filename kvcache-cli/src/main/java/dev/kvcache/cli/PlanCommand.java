package dev.kvcache.cli;

import dev.kvcache.CapacityPlanner;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code kvcache plan}: capacity planning for one model layout under a memory budget.
 *
 * <p>Every number comes from {@link KvLayout}, {@link KvFormats} and {@link CapacityPlanner}; this
 * class only chooses what to ask and lays the answers out. The one division of its own is the
 * sliding-window row's "max sequences" (budget / bytes per windowed sequence), because the planner
 * has no window-aware {@code maxSequences}.
 */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = {"Capacity planning for a model layout under a memory budget.",
                "Bytes per token in every KV format, how many sequences fit at a context, how long a context fits",
                "at a concurrency, and what FP8, Q4_0, KIVI-2 or a sliding window would change."})
final class PlanCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    @Mixin
    LayoutOptions layoutOptions;

    @Option(names = "--budget", paramLabel = "SIZE", defaultValue = "80GiB", converter = LayoutOptions.SizeConverter.class,
            description = "KV memory budget, e.g. 80GiB, 40GB, 512MiB (default: ${DEFAULT-VALUE})")
    long budget;

    @Option(names = "--context", paramLabel = "TOKENS",
            description = "tokens per sequence (default: the model's max context)")
    Integer context;

    @Option(names = "--concurrency", paramLabel = "N", defaultValue = "32",
            description = "concurrent sequences for the max-context column (default: ${DEFAULT-VALUE})")
    long concurrency;

    @Option(names = "--window", paramLabel = "TOKENS", defaultValue = "1024",
            description = "sliding-window size for the what-if row (default: ${DEFAULT-VALUE})")
    int window;

    @Option(names = "--sinks", paramLabel = "TOKENS", defaultValue = "4",
            description = "attention-sink tokens kept besides the window (default: ${DEFAULT-VALUE})")
    int sinks;

    @Option(names = "--list", description = "list the model catalog and exit")
    boolean list;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        if (list) {
            printCatalog(out, layoutOptions.blockTokens);
            out.flush();
            return 0;
        }
        LayoutOptions.Resolved r = layoutOptions.resolve("Llama-2-7B");
        KvLayout base = r.layout();
        long ctx = context != null ? context : r.maxContext();
        if (ctx <= 0) {
            throw new IllegalArgumentException("--context must be > 0, got " + ctx);
        }
        if (concurrency <= 0) {
            throw new IllegalArgumentException("--concurrency must be > 0, got " + concurrency);
        }
        if (budget < base.bytesPerBlock()) {
            throw new IllegalArgumentException("--budget " + budget + " bytes is less than one block of "
                    + base.bytesPerBlock() + " bytes");
        }

        out.printf(Locale.ROOT, "model    %s: %d layers x %d KV heads x %d head dim%s (from %s)%n", r.name(),
                base.layers(), base.kvHeads(), base.headDim(),
                r.queryHeads() > 0 ? ", " + r.queryHeads() + " query heads" : "", r.source());
        out.printf(Locale.ROOT, "budget   %s (%s bytes), context %s tokens, concurrency %s, blocks of %d tokens%n",
                Sizes.human(budget), Sizes.count(budget), Sizes.count(ctx), Sizes.count(concurrency), base.blockTokens());
        if (ctx > r.maxContext()) {
            out.printf(Locale.ROOT, "note     context %s exceeds the model's max context %s%n",
                    Sizes.count(ctx), Sizes.count(r.maxContext()));
        }
        out.println();

        out.println("Per format (K and V, all layers, scales included):");
        Table t = new Table("format", "bits/elem", "bytes/token", "bytes/block",
                "KV of one " + Sizes.count(ctx) + "-token seq", "max seqs @ " + Sizes.count(ctx),
                "max context @ " + Sizes.count(concurrency) + " seqs");
        for (KvFormat f : KvFormats.all()) {
            KvLayout l;
            try {
                l = base.withFormat(f);
            } catch (IllegalArgumentException e) {
                t.row(f.name(), "-", "-", "-", "-", "-", "n/a: " + e.getMessage());
                continue;
            }
            long maxCtx = CapacityPlanner.maxContextTokens(l, budget, concurrency);
            t.row(f.name() + (f == base.format() ? " *" : ""),
                    String.format(Locale.ROOT, "%.2f", f.bitsPerElement(l.headDim(), l.blockTokens())),
                    Sizes.count(l.bytesPerToken()), Sizes.count(l.bytesPerBlock()),
                    Sizes.human(CapacityPlanner.kvBytes(l, ctx)),
                    Sizes.count(CapacityPlanner.maxSequences(l, budget, ctx)),
                    Sizes.count(maxCtx) + (maxCtx > r.maxContext() ? " (model max " + Sizes.count(r.maxContext()) + ")" : ""));
        }
        t.print(out, "  ");
        out.println("  * base format");
        out.println();

        long baseSeqs = CapacityPlanner.maxSequences(base, budget, ctx);
        out.printf(Locale.ROOT, "What-if (against %s at %s tokens per sequence):%n", base.format().name(), Sizes.count(ctx));
        Table w = new Table("change", "KV per seq", "max seqs", "vs base", "<cost");
        w.row(base.format().name() + " (base)", Sizes.human(CapacityPlanner.kvBytes(base, ctx)), Sizes.count(baseSeqs), "1.00x", "-");
        for (KvFormat f : List.of(KvFormats.FP8_E4M3, KvFormats.Q4_0, KvFormats.KIVI_2)) {
            if (f == base.format()) {
                continue;
            }
            KvLayout l;
            try {
                l = base.withFormat(f);
            } catch (IllegalArgumentException e) {
                w.row(f.name(), "-", "-", "-", "n/a: " + e.getMessage());
                continue;
            }
            long seqs = CapacityPlanner.maxSequences(l, budget, ctx);
            w.row(f.name(), Sizes.human(CapacityPlanner.kvBytes(l, ctx)), Sizes.count(seqs), ratio(seqs, baseSeqs),
                    String.format(Locale.ROOT, "lossy, %.2f bits/elem", f.bitsPerElement(l.headDim(), l.blockTokens())));
        }
        long windowed = CapacityPlanner.kvBytesWithWindow(base, ctx, sinks, window);
        long windowSeqs = budget / windowed;
        w.row("sliding window " + sinks + " sinks + " + Sizes.count(window), Sizes.human(windowed), Sizes.count(windowSeqs),
                ratio(windowSeqs, baseSeqs),
                windowed == CapacityPlanner.kvBytes(base, ctx) ? "none: the window covers the whole context"
                        : "attention sees only the sinks and the last " + Sizes.count(window) + " tokens");
        w.print(out, "  ");
        out.flush();
        return 0;
    }

    private static String ratio(long a, long b) {
        return b == 0 ? (a == 0 ? "-" : "inf") : String.format(Locale.ROOT, "%.2fx", (double) a / b);
    }

    private static void printCatalog(PrintWriter out, int blockTokens) {
        Table t = new Table("model", "<config.json", "layers", "query heads", "KV heads", "head dim", "max context", "F16 bytes/token");
        for (ModelCatalog.Model m : ModelCatalog.MODELS) {
            t.row(m.name(), m.hfId(), m.layers(), m.queryHeads(), m.kvHeads(), m.headDim(), Sizes.count(m.maxContext()),
                    Sizes.count(m.layout(blockTokens, KvFormats.F16).bytesPerToken()));
        }
        t.print(out, "");
    }
}
