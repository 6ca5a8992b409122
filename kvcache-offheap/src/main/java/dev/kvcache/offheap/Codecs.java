package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.Quantizer;
import dev.kvcache.quant.SliceKernels;

/**
 * The encoders and fused kernels one store uses: separate ones for keys and values (KIVI groups
 * keys per channel and values per token), plus the F32 kernels that read staging slots.
 */
record Codecs(SliceKernels keyKernels, SliceKernels valueKernels,
              Quantizer keyQuantizer, Quantizer valueQuantizer, SliceKernels f32) {

    static Codecs of(KvFormat f) {
        if (f == KvFormats.F32) {
            return new Codecs(F32Kernels.INSTANCE, F32Kernels.INSTANCE, null, null, F32Kernels.INSTANCE);
        }
        throw new UnsupportedOperationException("format " + f + " needs kvcache-quant's kernels (not wired yet)");
    }

    /** True for formats encoded row by row (F32, F16, BF16, Q8_0, Q4_0). */
    boolean rowFormat() {
        return keyKernels.rowIndependent() && valueKernels.rowIndependent();
    }
}
