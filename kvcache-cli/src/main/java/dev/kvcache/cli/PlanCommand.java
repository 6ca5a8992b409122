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

    @Option(names = "--gpu", paramLabel = "NAME", defaultValue = "H100-SXM",
            description = "hardware preset for the load-vs-recompute line: A100-80GB, H100-SXM, H200, L40S (default: ${DEFAULT-VALUE})")
    String gpu;

    @Option(names = "--tp", paramLabel = "N", defaultValue = "1",
            description = "tensor-parallel GPUs computing the prefill (default: ${DEFAULT-VALUE})")
    int tp;

    @Option(names = "--host-link", paramLabel = "GB/s",
            description = "bandwidth a tier loads KV at, GB/s (default: the preset's host link, 64 = PCIe Gen5 x16)")
    String hostLink;

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
        out.println();
        loadVsRecompute(out, r, base);
        out.flush();
        return 0;
    }

    /**
     * LMCache's argument made concrete: the prefix length from which loading its KV from a tier
     * beats recomputing it, from the same {@link StepTimeModel} as {@code simulate}.
     */
    private void loadVsRecompute(PrintWriter out, LayoutOptions.Resolved r, KvLayout base) {
        HardwareProfile hw = HardwareProfile.byName(gpu).with(null, null, null,
                SimulateCommand.gbps("--host-link", hostLink), null);
        StepTimeModel time = StepTimeModel.of(hw, tp, r.model(), false);
        long bpt = base.bytesPerToken();
        out.printf(Locale.ROOT, "Load vs recompute (LMCache's argument; %s KV = %s bytes/token, %s%s params%s, prefill on %s%s at "
                        + "%,.0f TFLOPS BF16 x %.0f%%):%n", base.format().name(), Sizes.count(bpt),
                StepTimeModel.billions(time.activeParams()), r.model().experts() > 1 ? " active" : "",
                r.estimated() ? " estimated from the shape" : "", tp > 1 ? tp + " x " : "", hw.name(), hw.bf16Tflops(),
                time.flopEfficiency() * 100);
        Table t = new Table("link", "GB/s", "load 1,024 tokens", "recompute 1,024 tokens", "<loading wins from");
        for (Object[] link : new Object[][] {{"host link (PCIe)", hw.hostLinkGBps()}, {"network", hw.networkGBps()},
                {"10 GbE", 1.25}}) {
            double gbps = (double) link[1];
            long from = time.loadBeatsRecomputeFrom(bpt, gbps, Simulator.MAX_TOKENS);
            String wins = from < 0 ? "never within " + Sizes.count(Simulator.MAX_TOKENS) + " tokens"
                    : from <= 1 ? "the first token"
                    : Sizes.count(from) + " tokens" + (from > r.maxContext()
                    ? " (beyond the model's max context of " + Sizes.count(r.maxContext()) + ")" : "");
            t.row(link[0], HardwareProfile.num(gbps), SimulationReport.millis(1024.0 * bpt / (gbps * 1e9)),
                    SimulationReport.millis(time.recomputeSeconds(0, 1024)), wins);
        }
        t.print(out, "  ");
        // linear terms only: load bytes/token / link against 2 x active params / FLOP rate
        double flopRate = time.prefillFlops(0, 1024) / time.recomputeSeconds(0, 1024);
        out.printf(Locale.ROOT, "  loading wins at every length over a link above %.1f GB/s (bytes/token x FLOP rate / (2 x active params)); "
                        + "attention's quadratic FLOPs only widen the gap for longer prefixes%n",
                bpt * flopRate / (2.0 * time.activeParams()) / 1e9);
    }

    private static String ratio(long a, long b) {
        return b == 0 ? (a == 0 ? "-" : "inf") : String.format(Locale.ROOT, "%.2fx", (double) a / b);
    }

    private static void printCatalog(PrintWriter out, int blockTokens) {
        Table t = new Table("model", "<config.json", "layers", "query heads", "KV heads", "head dim", "max context",
                "params", "active", "F16 bytes/token");
        for (ModelCatalog.Model m : ModelCatalog.MODELS) {
            t.row(m.name(), m.hfId(), m.layers(), m.queryHeads(), m.kvHeads(), m.headDim(), Sizes.count(m.maxContext()),
                    StepTimeModel.billions(m.totalParams()), StepTimeModel.billions(m.activeParams()),
                    Sizes.count(m.layout(blockTokens, KvFormats.F16).bytesPerToken()));
        }
        t.print(out, "");
    }
}
