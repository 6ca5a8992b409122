/**
 * Serves Jlama's KV cache from kvcache's paged block manager: a {@code KvBufferCache} whose buffers
 * are views of kvcache blocks, plus a llama2.c to safetensors converter for offline tests.
 */
module dev.kvcache.jlama {
    requires transitive dev.kvcache;
    requires transitive jlama.core;
    requires jdk.incubator.vector;

    exports dev.kvcache.jlama;
}
