package dev.kvcache;

/**
 * A lower level of the prefix cache: it holds copies of published blocks by their
 * {@link PrefixKey}, so that a block evicted from the store comes back instead of being recomputed
 * (vLLM's CPU offloading, SGLang HiCache's host pool, LMCache's CPU and disk tiers).
 *
 * <h2>Contract</h2>
 * <ul>
 *   <li>The manager calls a tier under its lock, from one thread at a time; a tier shared by
 *       several managers synchronizes itself.</li>
 *   <li>Whatever a tier holds is checked before it is served: {@link #load} must verify the held
 *       copy against the {@link TierEntry} the manager expects (key, parent key, salt, scope, token
 *       ids, layout fingerprint) and against a checksum of the bytes taken at {@link #put}; any
 *       mismatch is a miss (false), never a load. The manager cannot see the bytes, so it relies on
 *       a tier implementation keeping this contract (the shipped ones are tested for it: a
 *       corrupted, truncated or mismatched copy is a counted miss); what a remote store holds is
 *       never trusted.</li>
 *   <li>Failure is a miss: a tier that is full, refuses, or throws costs the manager a
 *       recomputation, never a stall or a wrong block (the manager counts the throw).</li>
 *   <li>Capacity is bounded: a full tier makes room by its own policy (LRU for the standard ones)
 *       or refuses.</li>
 * </ul>
 */
public interface KvTier extends AutoCloseable {

    /**
     * Short name for stats and events, e.g. {@code "host"}.
     *
     * @return the tier's name
     */
    String name();

    /**
     * How many leading keys of {@code keys[from, from + count)} this tier holds: it stops at the
     * first key it lacks. One call for a whole prompt. The manager loads what it found in the same
     * call of its own, after allocations that may demote blocks into this tier, so a tier with an
     * eviction order should refresh what it found (the first key most recent).
     *
     * @param keys the prompt's block keys
     * @param from the first key to look up
     * @param count how many keys to look up
     * @return how many leading keys of {@code keys[from, from + count)} this tier holds: it stops at the first key it lacks
     */
    int leadingHits(PrefixKey[] keys, int from, int count);

    /**
     * {@link #leadingHits(PrefixKey[], int, int)} for a prompt of the sequence's cache salt
     * {@code salt}, which is what the manager calls. A tier that files blocks by tenant salt (the
     * Redis tier spells it in its keys, so that an operator can find or drop one tenant's blocks)
     * needs it to find them; the salt is also inside every key already (a key's chain starts from
     * a root made of the salt), so the default, which ignores it, is just as exact.
     *
     * @param keys  the prompt's block keys
     * @param from  the first key to look up
     * @param count how many keys to look up
     * @param salt  the cache salt the keys were chained from ({@link TierEntry#salt()} of their entries)
     * @return how many leading keys of {@code keys[from, from + count)} this tier holds
     */
    default int leadingHits(PrefixKey[] keys, int from, int count, long salt) {
        return leadingHits(keys, from, count);
    }

    /**
     * Takes a copy of block {@code block} of {@code store}, a published block described by
     * {@code entry}. False when it refuses (no room it may make, or an error): the block is simply
     * not kept.
     *
     * @param entry what the block is
     * @param store the store holding it
     * @param block the block in the store
     * @return true when the tier keeps the copy, false when it refuses
     */
    boolean put(TierEntry entry, KvStore store, int block);

    /**
     * Copies the block held under {@code expected.key()} into block {@code block} of {@code store},
     * if what it holds matches {@code expected} exactly and its bytes pass their checksum. False
     * otherwise (nothing held, a mismatch, a corrupted copy): the manager then computes the block.
     * A load may leave {@code block} partly written when it returns false; the manager never
     * serves it.
     *
     * @param expected what the block must be
     * @param store the store to load into
     * @param block the block to overwrite
     * @return true when the block was loaded and verified, false otherwise
     */
    boolean load(TierEntry expected, KvStore store, int block);

    /**
     * Drops the copy held under {@code key}; false when there was none.
     *
     * @param key the key
     * @return false when there was no copy
     */
    boolean remove(PrefixKey key);

    /**
     * What it holds and what it did.
     *
     * @return what it holds and what it did
     */
    TierStats stats();

    /** Releases its memory or files. */
    @Override
    void close();
}
