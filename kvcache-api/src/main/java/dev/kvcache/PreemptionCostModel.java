package dev.kvcache;

/**
 * Chooses between swapping a sequence out and recomputing it: moving its bytes out and back at
 * {@code swapBytesPerSecond}, against re-prefilling its tokens at {@code recomputeTokensPerSecond}.
 * Measure both on the serving hardware (PCIe or host copy bandwidth; prefill throughput).
 */
public record PreemptionCostModel(double swapBytesPerSecond, double recomputeTokensPerSecond) {

    public PreemptionCostModel {
        if (!(swapBytesPerSecond > 0)) {
            throw new IllegalArgumentException("swapBytesPerSecond must be > 0, got " + swapBytesPerSecond);
        }
        if (!(recomputeTokensPerSecond > 0)) {
            throw new IllegalArgumentException("recomputeTokensPerSecond must be > 0, got " + recomputeTokensPerSecond);
        }
    }

    /** Seconds to move {@code bytes} out and back in. */
    public double swapSeconds(long bytes) {
        return 2.0 * bytes / swapBytesPerSecond;
    }

    /** Seconds to recompute {@code tokens} tokens. */
    public double recomputeSeconds(long tokens) {
        return tokens / recomputeTokensPerSecond;
    }

    /** The cheaper mode for a sequence holding {@code bytes} bytes and {@code tokens} tokens. */
    public PreemptionMode choose(long bytes, long tokens) {
        return swapSeconds(bytes) < recomputeSeconds(tokens) ? PreemptionMode.SWAP : PreemptionMode.RECOMPUTE;
    }
}
