package dev.kvcache;

import java.util.Arrays;

/**
 * What a {@link KvCacheListener} is told. The first three are enough for a cache-aware router to
 * mirror which prefixes a worker holds (the same three events vLLM publishes); the others report
 * the levers pulled when memory runs short, for the ledger, JFR and metrics.
 */
public sealed interface KvCacheEvent {

    /**
     * A full block was published: its KV is written and later prompts with the same prefix may hit
     * it. {@code key} is its {@link PrefixKey} and {@code hash} that key's {@link PrefixKey#hi()};
     * {@code parentKey} is the key of the block before it (null for the first, whose
     * {@code parentHash} is {@link KvCacheManager#ROOT_HASH}); {@code scope} is the tenant whose
     * prefix cache holds it (null when the manager shares its cache across tenants).
     *
     * @param block      the physical block
     * @param hash       {@code key.hi()}, the 64-bit form routers index by
     * @param parentHash the parent's hash, or {@link KvCacheManager#ROOT_HASH} for a first block
     * @param cacheSalt  the sequence's cache salt
     * @param tokenIds   the block's token ids ({@code blockTokens} of them)
     * @param key        the block's 128-bit prefix key
     * @param parentKey  the key of the block before it, or null for a first block
     * @param scope      the tenant whose prefix cache holds it, or null when shared
     */
    record BlockStored(int block, long hash, long parentHash, long cacheSalt, int[] tokenIds, PrefixKey key,
                       PrefixKey parentKey, String scope) implements KvCacheEvent {
        @Override
        public String toString() {
            return "BlockStored[block=" + block + ", key=" + key + ", parent=" + parentKey + ", salt=" + cacheSalt
                    + ", scope=" + scope + ", tokens=" + Arrays.toString(tokenIds) + "]";
        }
    }

    /**
     * Block {@code block} no longer holds the content published under {@code key} ({@code hash} is
     * its {@link PrefixKey#hi()}; both 0/null when the key was never computed, i.e. the block was
     * published while nobody listened).
     *
     * @param block the physical block
     * @param hash  the hash it was published under, or 0
     * @param key   the key it was published under, or null
     */
    record BlockRemoved(int block, long hash, PrefixKey key) implements KvCacheEvent {
    }

    /** Every published hash was dropped ({@link KvCacheManager#resetPrefixCache()}). */
    record AllBlocksCleared() implements KvCacheEvent {
    }

    /**
     * An append of {@code tokens} tokens to sequence {@code id} returned -1 for {@code reason}.
     *
     * @param id         the sequence
     * @param tenant     its tenant
     * @param reason     why it was refused
     * @param tokens     the tokens the append asked for
     * @param freeBlocks blocks free (empty or cached) at the time
     */
    record AppendRefused(String id, String tenant, Refusal reason, int tokens, int freeBlocks)
            implements KvCacheEvent {
    }

    /**
     * Sequence {@code id} was preempted, returning {@code blocks} blocks.
     *
     * @param id     the sequence
     * @param tenant its tenant
     * @param mode   recompute or swap
     * @param tokens the tokens it held
     * @param blocks the blocks it gave back
     */
    record SequencePreempted(String id, String tenant, PreemptionMode mode, int tokens, int blocks)
            implements KvCacheEvent {
    }

    /**
     * A sequence idle past its lease was released.
     *
     * @param release who it was and what it held
     */
    record IdleReleased(IdleRelease release) implements KvCacheEvent {
    }

    /**
     * A retention policy dropped {@code tokens} tokens of sequence {@code id}, releasing {@code blocks} blocks.
     *
     * @param id     the sequence
     * @param tokens the tokens dropped
     * @param blocks the blocks released
     */
    record TokensDropped(String id, int tokens, int blocks) implements KvCacheEvent {
    }
}
