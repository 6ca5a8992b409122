package dev.kvcache.cli;

import dev.kvcache.SwapSpace;

import java.util.BitSet;

/**
 * A byte-less {@link SwapSpace} of a fixed number of host blocks for the {@code swap} lever: it
 * moves no bytes (the simulator computes no KV) but keeps the contract, handles used once and
 * refused otherwise, and counts the bytes a real space would have moved, which the
 * {@link StepTimeModel} prices at the host link.
 */
final class SimulatedSwapSpace implements SwapSpace {
    private final long bytesPerBlock;
    private final int capacity;
    private final BitSet used = new BitSet();
    private int inUse;
    private long bytesMoved;

    SimulatedSwapSpace(long bytesPerBlock, int capacity) {
        if (bytesPerBlock <= 0 || capacity <= 0) {
            throw new IllegalArgumentException("a swap space needs blocks > 0 of > 0 bytes, got " + capacity
                    + " of " + bytesPerBlock);
        }
        this.bytesPerBlock = bytesPerBlock;
        this.capacity = capacity;
    }

    @Override
    public long bytesPerBlock() {
        return bytesPerBlock;
    }

    @Override
    public int freeBlocks() {
        return capacity - inUse;
    }

    @Override
    public long swapOut(int block) {
        if (inUse == capacity) {
            return -1;
        }
        int h = used.nextClearBit(0);
        used.set(h);
        inUse++;
        bytesMoved += bytesPerBlock;
        return h;
    }

    @Override
    public void swapIn(long handle, int block) {
        take(handle);
        bytesMoved += bytesPerBlock;
    }

    @Override
    public void discard(long handle) {
        take(handle);
    }

    private void take(long handle) {
        if (handle < 0 || handle >= capacity || !used.get((int) handle)) {
            throw new IllegalArgumentException("swap handle " + handle + " is not held by this space");
        }
        used.clear((int) handle);
        inUse--;
    }

    /** Bytes moved either way so far. */
    long bytesMoved() {
        return bytesMoved;
    }

    int blocksHeld() {
        return inUse;
    }
}
