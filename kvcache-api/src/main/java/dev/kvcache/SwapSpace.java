package dev.kvcache;

/**
 * A slower tier that a preempted or idle sequence's blocks can be moved to and back from (host
 * memory under a GPU, or compressed memory under a CPU store). {@code dev.kvcache.offheap}'s host
 * swap space implements it over an {@link KvStore}.
 *
 * <p>Handles are opaque; each is used once ({@link #swapIn} or {@link #discard} frees it). A
 * handle this space did not issue, or one already swapped in or discarded, is refused with
 * IllegalArgumentException naming the handle, and nothing changes.
 *
 * <p>Each call is all or nothing: if a copy fails (the store was closed meanwhile, any exception),
 * every tier block the call took is free again before the exception propagates, so
 * {@link #freeBlocks()} reads as before the call.
 */
public interface SwapSpace {

    /**
     * Bytes one block takes to move either way.
     *
     * @return bytes one block takes to move either way
     */
    long bytesPerBlock();

    /**
     * Host blocks still free.
     *
     * @return host blocks still free
     */
    int freeBlocks();

    /**
     * Copies {@code block} out of the store; returns a handle, or -1 when the tier is full. A copy
     * that fails keeps no tier block (IllegalStateException if the store was closed).
     *
     * @param block a block of the store
     * @return a handle for {@link #swapIn} or {@link #discard}, or -1 when the space is full
     */
    long swapOut(int block);

    /**
     * Copies the block behind {@code handle} into store block {@code block} and frees the handle;
     * IllegalArgumentException naming the handle if it is not one this space issued and still holds.
     *
     * @param handle a handle {@link #swapOut} returned, not used since
     * @param block the block to copy into
     */
    void swapIn(long handle, int block);

    /**
     * Frees {@code handle} without copying it back; refuses unknown or used handles like {@link #swapIn}.
     *
     * @param handle a handle {@link #swapOut} returned, not used since
     */
    void discard(long handle);
}
