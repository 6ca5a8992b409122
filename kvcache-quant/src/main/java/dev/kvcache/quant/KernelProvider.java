package dev.kvcache.quant;

import dev.kvcache.KvFormat;

/*
 * Where codecs come from: the scalar provider always works; the Vector API provider
 * (VectorProvider) is loaded reflectively by Quantizers only when jdk.incubator.vector is in the
 * boot layer, so this module runs without it.
 */
interface KernelProvider {

    /** Short description for logs and reports, e.g. "scalar" or "vector(512-bit)". */
    String name();

    /** The codec for a standard format and role, or null if the format is not a standard one. */
    Codec codec(KvFormat format, boolean keys);

    /** The softmax arithmetic of this provider. */
    SoftmaxKernels softmax();
}
