package dev.kvcache;

/**
 * Chooses between swapping a sequence out and recomputing it: moving its bytes out and back at
 * {@code swapBytesPerSecond}, against re-prefilling its tokens at {@code recomputeTokensPerSecond}.
 * Measure both on the serving hardware (PCIe or host copy bandwidth; prefill throughput).
 *
 * @param swapBytesPerSecond       copy bandwidth to the swap space and back, bytes per second
 * @param recomputeTokensPerSecond prefill throughput, tokens per second
 */
public record PreemptionCostModel(double swapBytesPerSecond, double recomputeTokensPerSecond) {

    /** Checks that both rates are positive. */
    public PreemptionCostModel {
        if (!(swapBytesPerSecond > 0)) {
            throw new IllegalArgumentException("swapBytesPerSecond must be > 0, got " + swapBytesPerSecond);
        }
        if (!(recomputeTokensPerSecond > 0)) {
            throw new IllegalArgumentException("recomputeTokensPerSecond must be > 0, got " + recomputeTokensPerSecond);
        }
    }

    /**
     * Seconds to move {@code bytes} out and back in.
     *
     * @param bytes the bytes a sequence holds
     * @return {@code 2 * bytes / swapBytesPerSecond}
     */
    public double swapSeconds(long bytes) {
        return 2.0 * bytes / swapBytesPerSecond;
    }

    /**
     * Seconds to recompute {@code tokens} tokens.
     *
     * @param tokens the tokens to prefill again
     * @return {@code tokens / recomputeTokensPerSecond}
     */
    public double recomputeSeconds(long tokens) {
        return tokens / recomputeTokensPerSecond;
    }

    /**
     * The cheaper mode for a sequence holding {@code bytes} bytes and {@code tokens} tokens.
     *
     * @param bytes  the bytes it holds
     * @param tokens the tokens it holds
     * @return SWAP when moving is faster than recomputing, else RECOMPUTE
     */
    public PreemptionMode choose(long bytes, long tokens) {
        return swapSeconds(bytes) < recomputeSeconds(tokens) ? PreemptionMode.SWAP : PreemptionMode.RECOMPUTE;
    }
}
