package dev.kvcache;

/**
 * One sequence's view of the paged cache: its length and where each of its tokens' KV lives.
 * Obtained from {@link KvCacheManager#open}, {@link KvCacheManager#fork} or
 * {@link KvCacheManager#sequence}; changed only through the manager.
 */
public interface Sequence {

    /**
     * The id it was opened with.
     *
     * @return the id it was opened with
     */
    String id();

    /**
     * Tokens appended so far (including tokens a sliding window released).
     *
     * @return tokens appended so far (including tokens a sliding window released)
     */
    int length();

    /**
     * Logical blocks spanned by the tokens: ceil(length / blockTokens), released ones included.
     *
     * @return logical blocks spanned by the tokens: ceil(length / blockTokens), released ones included
     */
    int blockCount();

    /**
     * Physical block ids in logical order, -1 for a block a sliding window released; a copy.
     *
     * @return physical block ids in logical order, -1 for a block a sliding window released; a copy
     */
    int[] blockTable();

    /**
     * {@link #blockTable()} without allocating: copies the {@link #blockCount()} entries into
     * {@code dst} and returns how many. For engines that read the table every decode step.
     * IllegalArgumentException naming both sizes when {@code dst} is shorter.
     *
     * @param dst at least {@link #blockCount()} entries
     * @return {@link #blockTable()} without allocating: copies the {@link #blockCount()} entries into {@code dst} and returns how many
     */
    int blockTable(int[] dst);

    /**
     * The physical slot of token {@code position}: block * blockTokens + offset, or -1 when a
     * sliding window released its block. IllegalArgumentException outside 0..length-1.
     *
     * @param position a token position, 0 to {@code length() - 1}
     * @return the physical slot of token {@code position}: block * blockTokens + offset, or -1 when a sliding window released its block
     */
    long slot(int position);

    /**
     * Blocks this sequence still holds (blockCount minus released ones).
     *
     * @return blocks this sequence still holds (blockCount minus released ones)
     */
    int heldBlocks();

    /**
     * Leading tokens of this sequence that were served from the prefix cache.
     *
     * @return leading tokens of this sequence that were served from the prefix cache
     */
    int cachedTokens();

    /**
     * The token id at {@code position}.
     *
     * @param position a token position, 0 to {@code length() - 1}
     * @return the token id at {@code position}
     */
    int token(int position);

    /**
     * False once freed.
     *
     * @return false once freed
     */
    boolean isLive();

    /**
     * The options it was opened with (a fork inherits its parent's).
     *
     * @return the options it was opened with (a fork inherits its parent's)
     */
    SequenceOptions options();

    /**
     * True when a retention policy dropped the token at {@code position} ({@link KvCacheManager#dropTokens}).
     *
     * @param position a token position, 0 to {@code length() - 1}
     * @return true when a retention policy dropped the token at {@code position} ({@link KvCacheManager#dropTokens})
     */
    boolean isDropped(int position);

    /**
     * Tokens dropped by retention policies so far.
     *
     * @return tokens dropped by retention policies so far
     */
    int droppedTokens();

    /**
     * The tenant its blocks are charged to.
     *
     * @return the tenant its blocks are charged to
     */
    String tenant();
}
