package dev.kvcache.quant;

import dev.kvcache.KvFormat;

import java.util.Optional;

/* Placeholder until the Vector API kernels land: reports itself unavailable. */
final class VectorProvider implements KernelProvider {

    private VectorProvider() {
    }

    static Optional<KernelProvider> create() {
        return Optional.empty();
    }

    @Override
    public String name() {
        return "vector";
    }

    @Override
    public Codec codec(KvFormat format, boolean keys) {
        return null;
    }
}
