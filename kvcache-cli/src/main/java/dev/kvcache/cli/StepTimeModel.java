package dev.kvcache.cli;

import java.util.Locale;

/**
 * How long an engine iteration takes, from a {@link HardwareProfile} and a model's weights: a
 * roofline with stated efficiencies, the usual first-order model of LLM serving.
 *
 * <h2>The model</h2>
 * One engine iteration runs every decoding request one token and a share of the admitted prompts
 * (chunked prefill mixed into the decode batch, as vLLM's scheduler does). It takes
 * <pre>
 *   max( bytes read / (memory bandwidth x memEfficiency),  FLOPs / (tensor throughput x flopEfficiency) )
 * </pre>
 * where bytes read = every weight once plus the KV of every decoding request's context, and FLOPs
 * = 2 x active parameters per token (decoded or prefilled) plus attention: 4 x layers x query
 * heads x head dim per (query token, context token) pair. Weights in FP8 are half the bytes and
 * run at the FP8 rate; KV bytes come from the layout's format, so a quantized KV cache makes the
 * memory-bound decode faster. Tensor parallelism over {@code gpus} devices multiplies bandwidth
 * and throughput (its all-reduces are left out). A prefill alone (no decode) is the same formula
 * with no KV read, i.e. compute-bound for any prompt of more than a few hundred tokens.
 *
 * <p>Transfers (swap, tier loads and stores) cost bytes / host-link bandwidth and stall the
 * iteration that makes them ({@link #transferSeconds}). Recompute costs its prefill FLOPs.
 *
 * <p>The efficiencies are stated, not fitted: 0.8 of peak memory bandwidth (what a well-tuned
 * decode kernel reaches) and 0.5 of peak FLOPs (a typical prefill MFU). With them, Llama-3-8B in
 * BF16 on one H100-SXM at batch 1 and a 1,024-token context decodes a token in about 6 ms, the
 * 5-8 ms that published serving benchmarks report (tested).
 *
 * @param hardware        the accelerator
 * @param gpus            tensor-parallel devices
 * @param totalParams     every weight (bytes read per iteration)
 * @param activeParams    weights one token uses (FLOPs)
 * @param fp8Weights      weights stored in FP8 (1 byte, FP8 rate) rather than BF16 (2 bytes, BF16 rate)
 * @param layers          transformer layers
 * @param queryHeads      attention query heads
 * @param headDim         values per head
 * @param memEfficiency   fraction of peak memory bandwidth reached
 * @param flopEfficiency  fraction of peak tensor throughput reached
 */
record StepTimeModel(HardwareProfile hardware, int gpus, long totalParams, long activeParams, boolean fp8Weights,
                     int layers, int queryHeads, int headDim, double memEfficiency, double flopEfficiency) {

    /** Stated default: fraction of peak memory bandwidth a decode kernel reaches. */
    static final double MEM_EFFICIENCY = 0.8;
    /** Stated default: fraction of peak FLOPs a prefill reaches (MFU). */
    static final double FLOP_EFFICIENCY = 0.5;

    StepTimeModel {
        if (gpus < 1 || gpus > 1024) {
            throw new IllegalArgumentException("--tp must be in 1..1024, got " + gpus);
        }
        if (totalParams <= 0 || activeParams <= 0 || activeParams > totalParams) {
            throw new IllegalArgumentException("parameters must be > 0 (active <= total), got " + activeParams
                    + " of " + totalParams);
        }
        if (!(memEfficiency > 0 && memEfficiency <= 1)) {
            throw new IllegalArgumentException("--mem-efficiency must be in (0, 1], got " + memEfficiency);
        }
        if (!(flopEfficiency > 0 && flopEfficiency <= 1)) {
            throw new IllegalArgumentException("--flop-efficiency must be in (0, 1], got " + flopEfficiency);
        }
    }

    /** The model of {@code m} on {@code gpus} x {@code hw}, with the stated efficiencies. */
    static StepTimeModel of(HardwareProfile hw, int gpus, ModelCatalog.Model m, boolean fp8Weights) {
        return new StepTimeModel(hw, gpus, m.totalParams(), m.activeParams(), fp8Weights, m.layers(),
                m.queryHeads(), m.headDim(), MEM_EFFICIENCY, FLOP_EFFICIENCY);
    }

    /** Bytes of the weights. */
    long weightBytes() {
        return totalParams * (fp8Weights ? 1 : 2);
    }

    private double bytesPerSecond() {
        return hardware.hbmGBps() * 1e9 * gpus * memEfficiency;
    }

    private double flopsPerSecond() {
        return (fp8Weights ? hardware.fp8Tflops() : hardware.bf16Tflops()) * 1e12 * gpus * flopEfficiency;
    }

    /** Attention FLOPs of one query token against {@code context} tokens. */
    double attentionFlops(double context) {
        return 4.0 * layers * queryHeads * headDim * context;
    }

    /** FLOPs to prefill tokens {@code from} .. {@code from + n - 1} of a prompt (linear plus attention). */
    double prefillFlops(long from, long n) {
        return 2.0 * activeParams * n + attentionFlops(from * (double) n + n * (n + 1) / 2.0);
    }

    /**
     * Seconds of one iteration that decodes {@code batch} requests holding {@code kvBytes} of KV
     * (over {@code contextTokens} tokens together) and prefills work of {@code prefillFlops}.
     */
    double iterationSeconds(int batch, long kvBytes, long contextTokens, double prefillFlops) {
        double bytes = weightBytes() + (double) kvBytes;
        double flops = 2.0 * activeParams * batch + attentionFlops(contextTokens) + prefillFlops;
        return Math.max(bytes / bytesPerSecond(), flops / flopsPerSecond());
    }

    /** Seconds to prefill {@code n} prompt tokens starting at {@code from} in an iteration of its own. */
    double prefillSeconds(long from, long n) {
        return iterationSeconds(0, 0, 0, prefillFlops(from, n));
    }

    /**
     * Compute seconds that prefilling {@code n} tokens from {@code from} adds to a batch: its FLOPs
     * at the stated throughput. The weights are read for the batch anyway, so this, not
     * {@link #prefillSeconds}, is what a recompute costs.
     */
    double recomputeSeconds(long from, long n) {
        return prefillFlops(from, n) / flopsPerSecond();
    }

    /** Prompt tokens per second a recompute of {@code promptTokens} reaches (the preemption cost model's rate). */
    double recomputeTokensPerSecond(long promptTokens) {
        return promptTokens / recomputeSeconds(0, Math.max(1, promptTokens));
    }

    /** Seconds the host link takes to move {@code bytes} one way. */
    double transferSeconds(long bytes) {
        return bytes / (hardware.hostLinkGBps() * 1e9);
    }

    /**
     * The shortest prefix, in tokens, whose KV loads over a link of {@code linkGBps} faster than
     * its recompute costs (LMCache's argument): load = tokens x bytesPerToken / link, compute =
     * {@link #recomputeSeconds}(0, tokens). Compute grows faster (attention is quadratic) so above the
     * answer loading wins. -1 when loading never wins within {@code maxTokens}, 0 when it always does.
     */
    long loadBeatsRecomputeFrom(long bytesPerToken, double linkGBps, long maxTokens) {
        java.util.function.LongPredicate wins = t -> t * (double) bytesPerToken / (linkGBps * 1e9) < recomputeSeconds(0, t);
        if (wins.test(1)) {
            return 1;
        }
        if (!wins.test(maxTokens)) {
            return -1;
        }
        long lo = 1;
        long hi = maxTokens; // !wins(lo), wins(hi)
        while (hi - lo > 1) {
            long mid = (lo + hi) >>> 1;
            if (wins.test(mid)) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        return hi;
    }

    String describe() {
        return String.format(Locale.ROOT, "%s%s, weights %s (%s params, %s active, %s); iteration = max(bytes / "
                        + "(%.0f%% of peak bandwidth), FLOPs / (%.0f%% of peak %s))",
                gpus > 1 ? gpus + " x " : "", hardware.name(), Sizes.human(weightBytes()), billions(totalParams),
                billions(activeParams), fp8Weights ? "FP8" : "BF16", memEfficiency * 100, flopEfficiency * 100,
                fp8Weights ? "FP8" : "BF16");
    }

    static String billions(long p) {
        return String.format(Locale.ROOT, "%.2fB", p / 1e9);
    }
}
