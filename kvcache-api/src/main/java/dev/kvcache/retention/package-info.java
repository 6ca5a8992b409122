/**
 * Token retention for live sequences: which tokens' KV to keep when a sequence outgrows its
 * memory. The block manager already keeps a sliding window with attention sinks
 * ({@link dev.kvcache.KvCacheManager.Builder#slidingWindow}); the policies here choose by attention:
 * {@link dev.kvcache.retention.HeavyHitterRetention} (H2O: accumulated attention mass, kept top-k
 * plus a recent window) and {@link dev.kvcache.retention.SnapKvRetention} (SnapKV: a one-shot
 * compression of a long prompt, scored by the attention of its last queries, pooled).
 *
 * <p>A policy only chooses positions; {@link dev.kvcache.KvCacheManager#dropTokens} drops them,
 * masking them from attention and releasing every block whose tokens are all dropped. Memory is
 * block-granular, so the policies can be asked to choose whole blocks ({@code blockGranular}),
 * which is what frees memory; token-granular choices mask tokens and free a block only once all its
 * tokens are gone.
 */
package dev.kvcache.retention;
