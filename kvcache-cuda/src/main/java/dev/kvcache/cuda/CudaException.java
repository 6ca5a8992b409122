package dev.kvcache.cuda;

/**
 * A CUDA driver call failed. Carries the {@code CUresult} code and its name (e.g.
 * {@code CUDA_ERROR_OUT_OF_MEMORY}). After an error raised by a kernel (an illegal address, a
 * launch failure) the CUDA context is unusable and every later call fails the same way; errors
 * raised by a call's arguments (out of memory) leave it usable.
 */
public final class CudaException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    /** The driver's {@code CUresult} code of the failed call (never {@code CUDA_SUCCESS}, 0). */
    private final int code;

    CudaException(String call, int code, String name) {
        super(call + " failed: " + name + " (" + code + ")");
        this.code = code;
    }

    /**
     * The driver's {@code CUresult}.
     *
     * @return the {@code CUresult} code the failed call returned, e.g. 2 for
     *         {@code CUDA_ERROR_OUT_OF_MEMORY}; never 0 ({@code CUDA_SUCCESS})
     */
    public int code() {
        return code;
    }
}
