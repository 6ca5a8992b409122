package dev.kvcache.offheap;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Fixed-size staging slots (see {@link StoreLayout}), allocated from the store's arena in chunks
 * on demand and recycled through a free stack. Slots are only taken when a block of a block format
 * is first written and given back when its last row is written, so the pool's size tracks the
 * number of partially written (block, layer) pairs, not the number of blocks. Chunks are freed with
 * the arena. Acquire and release synchronize; {@link #segment}/{@link #offset} read a published
 * chunk array and need no lock.
 */
final class StagingPool {

    private final Arena arena;
    private final long slotBytes;
    private final int slotsPerChunk;
    private volatile MemorySegment[] chunks = new MemorySegment[4];
    private int chunkCount;
    private int[] free = new int[0];
    private int freeTop;
    private int inUse;
    private long allocatedBytes;

    StagingPool(Arena arena, long slotBytes) {
        this.arena = arena;
        this.slotBytes = slotBytes;
        // about 1 MiB per chunk, at least one slot
        this.slotsPerChunk = (int) Math.max(1, Math.min(256, (1L << 20) / slotBytes));
    }

    synchronized int acquire() {
        if (freeTop == 0) {
            grow();
        }
        inUse++;
        return free[--freeTop];
    }

    synchronized void release(int slot) {
        free[freeTop++] = slot;
        inUse--;
    }

    MemorySegment segment(int slot) {
        return chunks[slot / slotsPerChunk];
    }

    long offset(int slot) {
        return (slot % slotsPerChunk) * slotBytes;
    }

    synchronized long allocatedBytes() {
        return allocatedBytes;
    }

    synchronized int inUse() {
        return inUse;
    }

    private void grow() {
        MemorySegment chunk = arena.allocate(slotBytes * slotsPerChunk, 64);
        MemorySegment[] c = chunks;
        if (chunkCount == c.length) {
            c = java.util.Arrays.copyOf(c, c.length * 2);
        } else {
            c = c.clone();
        }
        c[chunkCount] = chunk;
        int base = chunkCount * slotsPerChunk;
        chunkCount++;
        chunks = c; // publish before any slot index of the chunk escapes
        int capacity = chunkCount * slotsPerChunk;
        if (free.length < capacity) {
            free = java.util.Arrays.copyOf(free, capacity);
        }
        // push highest first so the lowest index is handed out first
        for (int i = slotsPerChunk - 1; i >= 0; i--) {
            free[freeTop++] = base + i;
        }
        allocatedBytes += chunk.byteSize();
    }
}
