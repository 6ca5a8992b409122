package dev.kvcache;

import java.util.Arrays;

/**
 * What a {@link KvCacheListener} is told. The first three are enough for a cache-aware router to
 * mirror which prefixes a worker holds (the same three events vLLM publishes); the others report
 * the levers pulled when memory runs short, for the ledger, JFR and metrics.
 */
public sealed interface KvCacheEvent {

    /**
     * A full block was published under a prefix hash; {@code parentHash} is the hash of the block
     * before it ({@link KvCacheManager#ROOT_HASH} for the first), {@code tokenIds} its tokens.
     */
    record BlockStored(int block, long hash, long parentHash, long cacheSalt, int[] tokenIds)
            implements KvCacheEvent {
        @Override
        public String toString() {
            return "BlockStored[block=" + block + ", hash=" + Long.toHexString(hash) + ", parent="
                    + Long.toHexString(parentHash) + ", salt=" + cacheSalt + ", tokens="
                    + Arrays.toString(tokenIds) + "]";
        }
    }

    /** Block {@code block} no longer holds the content published under {@code hash}. */
    record BlockRemoved(int block, long hash) implements KvCacheEvent {
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
