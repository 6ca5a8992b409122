package dev.kvcache.model;

import dev.kvcache.BlockCopier;
import dev.kvcache.SwapSpace;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The engine side of a {@link ManagerModel} run: what KV each physical slot holds, recorded as the
 * token prefix it was computed for (the tokens up to and including its position). The manager
 * never sees this; the model writes a slot only where a real engine would (the tokens an append
 * did not get as hits), copies slots where the manager asks for a copy-on-write, and moves them
 * through an in-memory {@link SwapSpace}. "Served KV computed for another prefix" then shows as a
 * slot whose recorded prefix differs from the reader's.
 *
 * <p>Faults on demand: the copier can be armed to copy half a block and throw (a device error in
 * the middle of a copy).
 */
final class ModelEngine implements BlockCopier {

    private final int blockTokens;
    private final Map<Long, List<Integer>> written = new HashMap<>();
    private boolean failCopies;
    private int copies;
    final Swap swap;

    ModelEngine(int blockTokens, int swapBlocks) {
        this.blockTokens = blockTokens;
        this.swap = new Swap(swapBlocks);
    }

    /** The prefix slot {@code slot} was last written for, or null. */
    List<Integer> at(long slot) {
        return written.get(slot);
    }

    /** Writes KV for position {@code p} of a sequence holding {@code tokens} at {@code slot}. */
    void write(long slot, List<Integer> tokens, int p) {
        written.put(slot, List.copyOf(tokens.subList(0, p + 1)));
    }

    void failCopies(boolean on) {
        failCopies = on;
    }

    int copies() {
        return copies;
    }

    @Override
    public void copy(int src, int dst) {
        int n = failCopies ? blockTokens / 2 : blockTokens;
        for (int o = 0; o < n; o++) {
            copySlot((long) src * blockTokens + o, (long) dst * blockTokens + o);
        }
        if (failCopies) {
            throw new IllegalStateException("injected copy failure " + src + " -> " + dst);
        }
        copies++;
    }

    private void copySlot(long from, long to) {
        List<Integer> v = written.get(from);
        if (v == null) {
            written.remove(to);
        } else {
            written.put(to, v);
        }
    }

    /** Host memory for swapped blocks, each handle used once. */
    final class Swap implements SwapSpace {
        private final int capacity;
        private final Map<Long, List<List<Integer>>> held = new HashMap<>();
        private long next = 1;

        Swap(int capacity) {
            this.capacity = capacity;
        }

        @Override
        public long bytesPerBlock() {
            return 1;
        }

        @Override
        public int freeBlocks() {
            return capacity - held.size();
        }

        @Override
        public long swapOut(int block) {
            if (held.size() == capacity) {
                return -1;
            }
            List<List<Integer>> slots = new ArrayList<>();
            for (int o = 0; o < blockTokens; o++) {
                slots.add(written.get((long) block * blockTokens + o));
            }
            held.put(next, slots);
            return next++;
        }

        @Override
        public void swapIn(long handle, int block) {
            List<List<Integer>> slots = held.remove(handle);
            if (slots == null) {
                throw new IllegalArgumentException("swap handle " + handle + " is not held");
            }
            for (int o = 0; o < blockTokens; o++) {
                long slot = (long) block * blockTokens + o;
                if (slots.get(o) == null) {
                    written.remove(slot);
                } else {
                    written.put(slot, slots.get(o));
                }
            }
        }

        @Override
        public void discard(long handle) {
            if (held.remove(handle) == null) {
                throw new IllegalArgumentException("swap handle " + handle + " is not held");
            }
        }

        int held() {
            return held.size();
        }
    }
}
