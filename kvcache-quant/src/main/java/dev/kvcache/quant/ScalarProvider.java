package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;

/* Plain-Java codecs for every standard format. */
final class ScalarProvider implements KernelProvider {

    static final ScalarProvider INSTANCE = new ScalarProvider();

    private ScalarProvider() {
    }

    @Override
    public String name() {
        return "scalar";
    }

    @Override
    public SoftmaxKernels softmax() {
        return ScalarSoftmax.INSTANCE;
    }

    @Override
    public Codec codec(KvFormat f, boolean keys) {
        if (f == KvFormats.F32) {
            return new ScalarCodecs.F32Codec(keys);
        } else if (f == KvFormats.F16) {
            return new ScalarCodecs.F16Codec(keys);
        } else if (f == KvFormats.BF16) {
            return new ScalarCodecs.BF16Codec(keys);
        } else if (f == KvFormats.Q8_0) {
            return new ScalarCodecs.Q8Codec(keys);
        } else if (f == KvFormats.Q4_0) {
            return new ScalarCodecs.Q4Codec(keys);
        } else if (f == KvFormats.FP8_E4M3 || f == KvFormats.FP8_E5M2) {
            return new Fp8Codec(f, keys);
        } else if (f == KvFormats.KIVI_4 || f == KvFormats.KIVI_2) {
            return keys ? new KiviCodecs.Keys(f) : new KiviCodecs.Values(f);
        }
        return null;
    }
}
