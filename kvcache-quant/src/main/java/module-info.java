/** Quantizers for every {@link dev.kvcache.KvFormat}, with Vector API kernels and scalar references. */
module dev.kvcache.quant {
    requires transitive dev.kvcache;
    requires static jdk.incubator.vector;

    exports dev.kvcache.quant;
}
