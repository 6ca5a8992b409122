package dev.kvcache.policy;

import dev.kvcache.EvictionPolicy;

/** Least recently released cached block first; see {@link EvictionPolicy#lru()}. */
public final class LruEvictionPolicy implements EvictionPolicy {

    /** The one instance; the policy holds no state (its queues do). */
    public static final LruEvictionPolicy INSTANCE = new LruEvictionPolicy();

    private LruEvictionPolicy() {
    }

    @Override
    public String name() {
        return "lru";
    }

    @Override
    public Queue newQueue(int totalBlocks) {
        BlockLists lists = new BlockLists(totalBlocks, 1);
        return new Queue() {
            @Override
            public void add(int block, int priority) {
                lists.append(0, block);
            }

            @Override
            public void remove(int block) {
                lists.remove(block);
            }

            @Override
            public int poll() {
                return lists.pollHead(0);
            }

            @Override
            public int size() {
                return lists.size();
            }
        };
    }

    @Override
    public String toString() {
        return name();
    }
}
