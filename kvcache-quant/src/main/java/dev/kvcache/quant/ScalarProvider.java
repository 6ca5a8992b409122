package dev.kvcache.quant;

import dev.kvcache.KvFormat;

/* Plain-Java codecs for every standard format: the scalar factories of the Formats registry. */
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
        return Formats.scalar(f, keys);
    }
}
