package dev.kvcache.cuda;

/**
 * No usable CUDA device in this JVM: no driver library, no LWJGL natives, no device, a device
 * older than {@link CudaRuntime#MIN_COMPUTE_CAPABILITY}, kernels that do not load, or the probe
 * disabled. The message is {@code "CUDA unavailable: <reason>"}; the same reason is in
 * {@link CudaRuntime#status()}.
 */
public final class CudaUnavailableException extends IllegalStateException {

    private static final long serialVersionUID = 1L;

    CudaUnavailableException(String reason) {
        super("CUDA unavailable: " + reason);
    }
}
