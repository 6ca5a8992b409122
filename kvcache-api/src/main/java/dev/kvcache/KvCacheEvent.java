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
     */
    record BlockRemoved(int block, long hash, PrefixKey key) implements KvCacheEvent {
    }

    /** Every published hash was dropped ({@link KvCacheManager#resetPrefixCache()}). */
    record AllBlocksCleared() implements KvCacheEvent {
    }

    /** An append of {@code tokens} tokens to sequence {@code id} returned -1 for {@code reason}. */
    record AppendRefused(String id, String tenant, Refusal reason, int tokens, int freeBlocks)
            implements KvCacheEvent {
    }

    /** Sequence {@code id} was preempted, returning {@code blocks} blocks. */
    record SequencePreempted(String id, String tenant, PreemptionMode mode, int tokens, int blocks)
            implements KvCacheEvent {
    }

    /** A sequence idle past its lease was released. */
    record IdleReleased(IdleRelease release) implements KvCacheEvent {
    }

    /** A retention policy dropped {@code tokens} tokens of sequence {@code id}, releasing {@code blocks} blocks. */
    record TokensDropped(String id, int tokens, int blocks) implements KvCacheEvent {
    }
}
