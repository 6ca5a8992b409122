package dev.kvcache;

/** How a preempted sequence gets its KV back. */
public enum PreemptionMode {
    /** Blocks are freed (they stay in the prefix cache while nobody needs them); the engine re-prefills the tokens. */
    RECOMPUTE,
    /** Blocks are copied to a {@link SwapSpace} and back; nothing is recomputed. */
    SWAP
}
