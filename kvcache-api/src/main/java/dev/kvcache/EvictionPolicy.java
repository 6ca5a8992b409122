package dev.kvcache;

import dev.kvcache.policy.LruEvictionPolicy;
import dev.kvcache.policy.PriorityEvictionPolicy;

/**
 * Chooses which cached block is reused next when no empty block is left.
 *
 * <p>A cached block is one that no live sequence holds but whose content is reusable (a full block
 * with a prefix hash). The block manager hands a policy's {@link Queue} every block that becomes
 * cached, takes back every block that a prefix hit revives, and asks it for a victim when it needs
 * a block and has no empty one. Blocks without reusable content never reach the policy: they are
 * always reused first.
 *
 * <p>Queues are driven under the manager's lock, from one thread at a time, and must be O(1) per
 * call and allocation-free: the standard ones keep intrusive linked lists in {@code int[]}s indexed
 * by block id ({@link dev.kvcache.policy.BlockLists}).
 */
public interface EvictionPolicy {

    /**
     * Short name for reports, e.g. {@code "lru"}.
     *
     * @return the policy's name
     */
    String name();

    /**
     * A new, empty queue for a pool of {@code totalBlocks} blocks.
     *
     * @param totalBlocks the pool's blocks
     * @return a new, empty queue for a pool of {@code totalBlocks} blocks
     */
    Queue newQueue(int totalBlocks);

    /** The cached blocks of one pool, in the order this policy would reuse them. */
    interface Queue {
        /**
         * Block {@code block} just became cached; {@code priority} is the highest priority of the sequences that held it.
         *
         * @param block a cached block
         * @param priority the highest priority among its holders since it was last free
         */
        void add(int block, int priority);

        /**
         * Block {@code block}, currently queued, leaves the queue (a prefix hit revived it, or the cache was reset).
         *
         * @param block a queued block (a prefix hit revived it)
         */
        void remove(int block);

        /**
         * Removes and returns the next block to reuse, or -1 when the queue is empty.
         *
         * @return the next block to reuse (removed from the queue), or -1 when the queue is empty
         */
        int poll();

        /**
         * Number of queued blocks.
         *
         * @return number of queued blocks
         */
        int size();
    }

    /**
     * Least recently released first. The block manager releases a sequence's blocks tail first,
     * so within one sequence the tail is reused before the head and a shared prefix outlives the
     * suffixes behind it.
     *
     * @return the LRU policy
     */
    static EvictionPolicy lru() {
        return LruEvictionPolicy.INSTANCE;
    }

    /**
     * Lowest priority first, least recently released first within a priority. Priorities are
     * {@link SequenceOptions#priority()} values, 0 to {@link SequenceOptions#MAX_PRIORITY}.
     *
     * @return the priority policy
     */
    static EvictionPolicy priority() {
        return PriorityEvictionPolicy.INSTANCE;
    }
}
