package dev.kvcache.cli;

import dev.kvcache.CapacityPlanner;
import dev.kvcache.KvLayout;

import java.util.List;

/**
 * The contiguous baseline: no manager; each admitted request reserves
 * {@link CapacityPlanner#contiguousBytes contiguousBytes(layout, 1, maxModelLen)} up front, as an
 * engine without paging preallocates its maximum length, and never needs more. Appends never
 * fail, so it is neither {@link MemoryModel.Preempting} nor {@link MemoryModel.IdleReleasing}.
 */
final class ContiguousMemory implements MemoryModel {
    private final KvLayout layout;
    private final long perRequest;
    private final long capacity;
    private long used;

    ContiguousMemory(KvLayout layout, long budget, int maxModelLen) {
        this.layout = layout;
        this.perRequest = CapacityPlanner.contiguousBytes(layout, 1, maxModelLen);
        this.capacity = budget;
    }

    @Override
    public boolean open(Request r) {
        if (used + perRequest > capacity) {
            return false;
        }
        used += perRequest;
        r.reserved = true;
        return true;
    }

    @Override
    public int append(Request r, int[] tokens, int n) {
        return 0; // the reservation already covers maxModelLen tokens
    }

    @Override
    public void commit(Request r) {
        // nothing is shared between contiguous reservations
    }

    @Override
    public void release(Request r) {
        if (r.reserved) {
            used -= perRequest;
            r.reserved = false;
        }
    }

    @Override
    public boolean canAdmit(Request r, int tokens) {
        return used + perRequest <= capacity;
    }

    @Override
    public long usedBytes() {
        return used;
    }

    @Override
    public long cachedBytes() {
        return 0;
    }

    @Override
    public long capacityBytes() {
        return capacity;
    }

    @Override
    public int totalBlocks() {
        return 0;
    }

    @Override
    public long heldBytes(List<Request> rs) {
        return rs.size() * perRequest;
    }

    @Override
    public long evictedBlocks() {
        return 0;
    }

    @Override
    public long kvBytesRead(Request r) {
        return (long) r.length * layout.bytesPerToken();
    }

    @Override
    public long[] idleHeld(List<Request> running, int step, int deadline, int routes) {
        long[] out = new long[routes];
        for (Request q : running) {
            if (step - q.lastAppendStep > deadline) {
                out[q.route] += perRequest;
            }
        }
        return out;
    }
}
