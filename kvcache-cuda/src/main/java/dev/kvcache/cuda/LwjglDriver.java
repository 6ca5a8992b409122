package dev.kvcache.cuda;

import org.lwjgl.PointerBuffer;
import org.lwjgl.cuda.CU;
import org.lwjgl.system.MemoryStack;

/** {@link CudaDriver} over LWJGL's driver-API bindings and the module {@link CudaRuntime} loaded. */
final class LwjglDriver implements CudaDriver {

    private final CudaRuntime rt;

    LwjglDriver(CudaRuntime rt) {
        this.rt = rt;
    }

    private static void check(int rc, String call) {
        CudaRuntime.check(rc, call);
    }

    @Override
    public void makeCurrent() {
        rt.makeCurrent();
    }

    @Override
    public String deviceName() {
        return rt.deviceName();
    }

    @Override
    public int multiprocessors() {
        return rt.multiprocessors();
    }

    @Override
    public long memAlloc(long bytes) {
        try (MemoryStack stack = MemoryStack.stackPush()) {
            PointerBuffer p = stack.mallocPointer(1);
            check(CU.cuMemAlloc(p, bytes), "cuMemAlloc(" + bytes + " bytes)");
            return p.get(0);
        }
    }

    @Override
    public void memFree(long devicePtr) {
        check(CU.cuMemFree(devicePtr), "cuMemFree");
    }

    @Override
    public long hostAlloc(long bytes) {
        try (MemoryStack stack = MemoryStack.stackPush()) {
            PointerBuffer p = stack.mallocPointer(1);
            check(CU.cuMemHostAlloc(p, bytes, CU.CU_MEMHOSTALLOC_PORTABLE), "cuMemHostAlloc(" + bytes + " bytes)");
            return p.get(0);
        }
    }

    @Override
    public void hostFree(long hostPtr) {
        check(CU.ncuMemFreeHost(hostPtr), "cuMemFreeHost");
    }

    @Override
    public long streamCreate() {
        try (MemoryStack stack = MemoryStack.stackPush()) {
            PointerBuffer p = stack.mallocPointer(1);
            check(CU.cuStreamCreate(p, CU.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
            return p.get(0);
        }
    }

    @Override
    public void streamDestroy(long stream) {
        check(CU.cuStreamDestroy(stream), "cuStreamDestroy");
    }

    @Override
    public void streamSynchronize(long stream) {
        check(CU.cuStreamSynchronize(stream), "cuStreamSynchronize");
    }

    @Override
    public long eventCreate() {
        try (MemoryStack stack = MemoryStack.stackPush()) {
            PointerBuffer p = stack.mallocPointer(1);
            check(CU.cuEventCreate(p, CU.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
            return p.get(0);
        }
    }

    @Override
    public void eventDestroy(long event) {
        check(CU.cuEventDestroy(event), "cuEventDestroy");
    }

    @Override
    public void eventRecord(long event, long stream) {
        check(CU.cuEventRecord(event, stream), "cuEventRecord");
    }

    @Override
    public void streamWaitEvent(long stream, long event) {
        check(CU.cuStreamWaitEvent(stream, event, 0), "cuStreamWaitEvent");
    }

    @Override
    public void memsetD8Async(long devicePtr, byte value, long bytes, long stream) {
        check(CU.cuMemsetD8Async(devicePtr, value, bytes, stream), "cuMemsetD8Async");
    }

    @Override
    public void memcpyHtoDAsync(long devicePtr, long hostPtr, long bytes, long stream) {
        check(CU.ncuMemcpyHtoDAsync(devicePtr, hostPtr, bytes, stream), "cuMemcpyHtoDAsync");
    }

    @Override
    public void memcpyDtoHAsync(long hostPtr, long devicePtr, long bytes, long stream) {
        check(CU.ncuMemcpyDtoHAsync(hostPtr, devicePtr, bytes, stream), "cuMemcpyDtoHAsync");
    }

    @Override
    public void memcpyDtoDAsync(long dst, long src, long bytes, long stream) {
        check(CU.cuMemcpyDtoDAsync(dst, src, bytes, stream), "cuMemcpyDtoDAsync");
    }

    @Override
    public void launch(int kernel, int gridX, int gridY, int blockX, int sharedBytes, long stream, Object... args) {
        CudaRuntime.launch(rt.function(kernel), gridX, gridY, blockX, sharedBytes, stream, args);
    }
}
