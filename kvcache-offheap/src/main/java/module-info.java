/**
 * The CPU backend: an off-heap {@link dev.kvcache.KvStore} over one java.lang.foreign allocation,
 * paged decode attention with dequantization fused into the dot products, and a host swap tier.
 */
module dev.kvcache.offheap {
    requires transitive dev.kvcache;
    requires dev.kvcache.quant;
    requires static jdk.incubator.vector;

    exports dev.kvcache.offheap;
}
