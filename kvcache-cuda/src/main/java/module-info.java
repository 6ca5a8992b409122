/**
 * The CUDA backend: a {@link dev.kvcache.KvStore} in device memory with quantize-on-write,
 * block copies, host swaps and paged decode attention, through the LWJGL driver-API bindings.
 */
module dev.kvcache.cuda {
    requires transitive dev.kvcache;
    requires dev.kvcache.quant;
    requires dev.kvcache.offheap;
    requires org.lwjgl;
    requires org.lwjgl.cuda;

    exports dev.kvcache.cuda;
}
