package dev.kvcache.policy;

import dev.kvcache.EvictionPolicy;
import dev.kvcache.SequenceOptions;

/**
 * Lowest priority first, least recently released within a priority; see
 * {@link EvictionPolicy#priority()}.
 *
 * <p>One LRU list per priority level ({@link SequenceOptions#MAX_PRIORITY}+1 of them) and a bitmap
 * of the non-empty levels, so finding the victim is a count of trailing zeros: O(1) whatever the
 * number of cached blocks.
 */
public final class PriorityEvictionPolicy implements EvictionPolicy {

    /** The one instance; the policy holds no state (its queues do). */
    public static final PriorityEvictionPolicy INSTANCE = new PriorityEvictionPolicy();

    private static final int LEVELS = SequenceOptions.MAX_PRIORITY + 1;

    private PriorityEvictionPolicy() {
    }

    @Override
    public String name() {
        return "priority";
    }

    @Override
    public Queue newQueue(int totalBlocks) {
        return new PriorityQueue(totalBlocks);
    }

    @Override
    public String toString() {
        return name();
    }

    private static final class PriorityQueue implements Queue {
        private final BlockLists lists;
        private final long[] nonEmpty = new long[(LEVELS + 63) / 64];

        PriorityQueue(int totalBlocks) {
            lists = new BlockLists(totalBlocks, LEVELS);
        }

        @Override
        public void add(int block, int priority) {
            if (priority < 0 || priority >= LEVELS) {
                throw new IllegalArgumentException(
                        "priority must be in 0.." + (LEVELS - 1) + ", got " + priority);
            }
            lists.append(priority, block);
            nonEmpty[priority >>> 6] |= 1L << priority;
        }

        @Override
        public void remove(int block) {
            int l = lists.remove(block);
            if (l != BlockLists.NIL && lists.size(l) == 0) {
                nonEmpty[l >>> 6] &= ~(1L << l);
            }
        }

        @Override
        public int poll() {
            for (int w = 0; w < nonEmpty.length; w++) {
                long bits = nonEmpty[w];
                if (bits != 0) {
                    int l = (w << 6) + Long.numberOfTrailingZeros(bits);
                    int block = lists.pollHead(l);
                    if (lists.size(l) == 0) {
                        nonEmpty[w] &= ~(1L << l);
                    }
                    return block;
                }
            }
            return BlockLists.NIL;
        }

        @Override
        public int size() {
            return lists.size();
        }
    }
}
