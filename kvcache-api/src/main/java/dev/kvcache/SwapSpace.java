package dev.kvcache;

/**
 * A slower tier that a preempted or idle sequence's blocks can be moved to and back from (host
 * memory under a GPU, or compressed memory under a CPU store). {@code dev.kvcache.offheap}'s host
 * swap space implements it over an {@link KvStore}.
 *
 * <p>Handles are opaque; each is used once ({@link #swapIn} or {@link #discard} frees it).
 */
public interface SwapSpace {

    /** Bytes one block takes to move either way. */
    long bytesPerBlock();

    /** Host blocks still free. */
    int freeBlocks();

    /** Copies {@code block} out of the store; returns a handle, or -1 when the tier is full. */
    long swapOut(int block);

    /** Copies the block behind {@code handle} into store block {@code block} and frees the handle. */
    void swapIn(long handle, int block);

    /** Frees {@code handle} without copying it back. */
    void discard(long handle);
}
