package dev.kvcache.cuda;

/**
 * The driver operations a {@link CudaKvStore} performs, so that its logic (offsets, scratch
 * layout, staging, swaps, launch arguments) can run against the real driver ({@link LwjglDriver})
 * or, in tests, against a CPU emulation of the same kernels. Pointers are device addresses
 * ({@code CUdeviceptr}) or host addresses; handles are {@code CUstream}/{@code CUevent}. Every
 * method throws {@link CudaException} when the driver reports an error.
 */
interface CudaDriver {

    /** Kernel ids: indexes into {@link CudaRuntime#KERNEL_NAMES}. */
    int K_WRITE_ROW = 0;
    int K_READ_ROW = 1;
    int K_OPEN = 2;
    int K_SEAL_FP8 = 3;
    int K_COPY_BLOCKS = 4;
    int K_DECODE = 5;
    int K_DECODE_COMBINE = 6;

    /** Makes the context current on the calling thread. */
    void makeCurrent();

    /** A short description of the device, for messages. */
    String deviceName();

    /** Streaming multiprocessors (sizes the decode split). */
    int multiprocessors();

    long memAlloc(long bytes);

    void memFree(long devicePtr);

    /** Page-locked host memory. */
    long hostAlloc(long bytes);

    void hostFree(long hostPtr);

    /** A stream that does not synchronize with the legacy default stream. */
    long streamCreate();

    void streamDestroy(long stream);

    void streamSynchronize(long stream);

    /** An event without timing. */
    long eventCreate();

    void eventDestroy(long event);

    void eventRecord(long event, long stream);

    void streamWaitEvent(long stream, long event);

    void memsetD8Async(long devicePtr, byte value, long bytes, long stream);

    void memcpyHtoDAsync(long devicePtr, long hostPtr, long bytes, long stream);

    void memcpyDtoHAsync(long hostPtr, long devicePtr, long bytes, long stream);

    void memcpyDtoDAsync(long dst, long src, long bytes, long stream);

    /**
     * Launches kernel {@code kernel} with a (gridX, gridY) grid of blockX threads. {@code args} are
     * the kernel's parameters in order: {@link Long} (pointers, {@code long long}), {@link Integer}
     * or {@link Float}.
     */
    void launch(int kernel, int gridX, int gridY, int blockX, int sharedBytes, long stream, Object... args);
}
