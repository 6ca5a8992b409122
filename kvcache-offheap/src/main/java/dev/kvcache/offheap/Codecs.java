package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.quant.Quantizers;
import dev.kvcache.quant.SliceKernels;
import dev.kvcache.quant.SoftmaxKernels;

/**
 * The fused kernels one store uses, from kvcache-quant's active provider (Vector API when
 * {@code jdk.incubator.vector} is present, scalar otherwise): separate ones for keys and values
 * (KIVI groups keys per channel across tokens and values per token), plus the F32 kernels that
 * read and write staging slots, and the same provider's softmax arithmetic for the attention step.
 */
record Codecs(SliceKernels keyKernels, SliceKernels valueKernels, SliceKernels f32, SoftmaxKernels softmax) {

    static Codecs of(KvFormat f) {
        return new Codecs(Quantizers.keyKernels(f), Quantizers.valueKernels(f),
                Quantizers.kernels(KvFormats.F32), Quantizers.softmaxKernels());
    }

    /** True for formats encoded row by row (F32, F16, BF16, Q8_0, Q4_0). */
    boolean rowFormat() {
        return keyKernels.rowIndependent() && valueKernels.rowIndependent();
    }
}
