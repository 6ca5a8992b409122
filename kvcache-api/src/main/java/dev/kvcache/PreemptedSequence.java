package dev.kvcache;

/**
 * What {@link KvCacheManager#preempt} leaves of a sequence: enough to {@link KvCacheManager#resume}
 * it. Token ids are kept either way; {@code swapHandles} holds one {@link SwapSpace} handle per
 * logical block ({@code -1} where the block had been released) when the mode is SWAP.
 *
 * @param id             the sequence's id
 * @param options        the options it was opened with
 * @param tokens         its token ids
 * @param mode           how it was preempted
 * @param swapHandles    with SWAP, a handle per logical block ({@code -1}: released); else empty
 * @param releasedBlocks the blocks it gave back
 */
public record PreemptedSequence(String id, SequenceOptions options, int[] tokens, PreemptionMode mode,
                                long[] swapHandles, int releasedBlocks) {

    /**
     * Tokens the sequence had.
     *
     * @return {@code tokens().length}
     */
    public int length() {
        return tokens.length;
    }
}
