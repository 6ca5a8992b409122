package dev.kvcache.cuda;

import dev.kvcache.KvLayout;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Every test of {@link CudaKvStoreDeviceTest}, with CudaKvStore driving the real kernel source
 * compiled for the CPU ({@link EmulatedDriver}) instead of a GPU: the store's offsets, scratch
 * layout, staging, swaps and launch arguments and the kernels' indexing and arithmetic are checked
 * against the same references. Not covered: the LWJGL driver calls, stream ordering, timing. Runs
 * where g++ and the CUDA headers exist (skips with the reason otherwise); a smaller decode grid
 * keeps it quick, since the threaded kernels run one OS thread per CUDA thread.
 */
class CudaKvStoreEmulatedTest extends CudaKvStoreDeviceTest {

    private EmulatedDriver drv;

    @BeforeEach
    @Override
    void requireCuda() {
        drv = EmulatedDriver.get();
        assumeTrue(drv != null, () -> "kernel emulator unavailable: " + EmulatedDriver.unavailableReason());
    }

    @AfterEach
    void everythingFreed() {
        if (drv != null) {
            assertEquals(0, drv.liveAllocations(), "allocations left after the test closed its stores");
        }
    }

    @Override
    CudaKvStore open(KvLayout layout, int blocks) {
        return new CudaKvStore(drv, CudaKvStore.checkAllocation(layout, blocks), blocks);
    }

    @Override
    int[] decodeLengths() {
        return new int[] {1, 17, 100};
    }

    @Override
    int[] decodeHeadDims() {
        return new int[] {64};
    }

    @Override
    int[] decodeChunks() {
        return new int[] {0, 7};
    }
}
