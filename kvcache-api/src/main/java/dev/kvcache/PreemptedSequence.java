package dev.kvcache;

/**
 * What {@link KvCacheManager#preempt} leaves of a sequence: enough to {@link KvCacheManager#resume}
 * it. Token ids are kept either way; {@code swapHandles} holds one {@link SwapSpace} handle per
 * logical block ({@code -1} where the block had been released) when the mode is SWAP.
 */
public record PreemptedSequence(String id, SequenceOptions options, int[] tokens, PreemptionMode mode,
                                long[] swapHandles, int releasedBlocks) {

    /** Tokens the sequence had. */
    public int length() {
        return tokens.length;
    }
}
