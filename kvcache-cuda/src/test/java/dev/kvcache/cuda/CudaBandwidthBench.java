package dev.kvcache.cuda;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import org.junit.jupiter.api.Test;
import org.lwjgl.PointerBuffer;
import org.lwjgl.cuda.CU;
import org.lwjgl.system.MemoryStack;

import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.Locale;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A small GPU benchmark, run only when named ({@code -Dtest=CudaBandwidthBench}; bin/gpu-check
 * does): block copy and decode-attention bandwidth as fractions of the device's own
 * {@code cuMemcpyDtoD} bandwidth measured in the same run. Prints lines starting with "BENCH".
 *
 * <ul>
 *   <li>memcpy: one {@code cuMemcpyDtoDAsync} of 64 contiguous 2 MiB blocks, timed with CUDA
 *       events; bandwidth counts bytes read plus bytes written.</li>
 *   <li>copyBlocks: the same 128 MiB as 64 scattered block pairs in one {@code kv_copy_blocks}
 *       launch; copyBlock: 64 calls of {@link CudaKvStore#copyBlock}. Wall time of the synchronous
 *       calls (host overhead included); read plus written bytes.</li>
 *   <li>decode: one {@link CudaKvStore#decode} over 32768 tokens, 8 KV heads x 128, 32 query
 *       heads; bandwidth counts the KV bytes read once (GQA re-reads hit L2), wall time of the
 *       synchronous call (uploading the 2048-entry block table included).</li>
 * </ul>
 * Medians of 20 runs after 3 warm-ups.
 */
class CudaBandwidthBench {

    static final int RUNS = 20;
    static final int WARMUP = 3;

    static double median(double[] a) {
        double[] s = a.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }

    static void print(String fmt, Object... args) {
        System.out.println("BENCH " + String.format(Locale.ROOT, fmt, args));
    }

    @Test
    void bandwidth() {
        assumeTrue(CudaRuntime.isAvailable(), () -> CudaRuntime.status().toString());
        print("%s", CudaRuntime.status());
        double memcpy = copies();
        for (KvFormat f : new KvFormat[] {KvFormats.F32, KvFormats.F16, KvFormats.Q8_0, KvFormats.FP8_E4M3}) {
            decode(f, memcpy);
        }
    }

    /** Returns the memcpy bandwidth in GB/s (read + write). */
    double copies() {
        KvLayout l = new KvLayout(32, 8, 128, 16, KvFormats.F16); // 2 MiB blocks
        int pairs = 64;
        try (CudaKvStore s = CudaKvStore.allocate(l, 4 * pairs)) {
            long bb = s.blockLayout().blockBytes();
            long bytes = pairs * bb;
            double[] t = new double[RUNS];
            CudaRuntime rt = CudaRuntime.get();
            try (MemoryStack stack = MemoryStack.stackPush()) {
                rt.makeCurrent();
                PointerBuffer p = stack.mallocPointer(1);
                CudaRuntime.check(CU.cuEventCreate(p, CU.CU_EVENT_DEFAULT), "cuEventCreate");
                long e0 = p.get(0);
                CudaRuntime.check(CU.cuEventCreate(p, CU.CU_EVENT_DEFAULT), "cuEventCreate");
                long e1 = p.get(0);
                FloatBuffer ms = stack.mallocFloat(1);
                for (int i = -WARMUP; i < RUNS; i++) {
                    CudaRuntime.check(CU.cuEventRecord(e0, s.stream()), "cuEventRecord");
                    CudaRuntime.check(CU.cuMemcpyDtoDAsync(s.devicePointer() + bytes, s.devicePointer(), bytes, s.stream()),
                            "cuMemcpyDtoDAsync");
                    CudaRuntime.check(CU.cuEventRecord(e1, s.stream()), "cuEventRecord");
                    CudaRuntime.check(CU.cuEventSynchronize(e1), "cuEventSynchronize");
                    CudaRuntime.check(CU.cuEventElapsedTime(ms, e0, e1), "cuEventElapsedTime");
                    if (i >= 0) {
                        t[i] = ms.get(0) / 1e3;
                    }
                }
                CU.cuEventDestroy(e0);
                CU.cuEventDestroy(e1);
            }
            double memcpy = 2.0 * bytes / median(t) / 1e9;
            print("memcpyDtoD    %4d MiB: %8.1f GB/s (read+write)", bytes >> 20, memcpy);

            Random rnd = new Random(1);
            int[] perm = new int[4 * pairs];
            for (int i = 0; i < perm.length; i++) {
                perm[i] = i;
            }
            for (int i = perm.length - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1);
                int x = perm[i];
                perm[i] = perm[j];
                perm[j] = x;
            }
            int[] src = Arrays.copyOfRange(perm, 0, pairs);
            int[] dst = Arrays.copyOfRange(perm, pairs, 2 * pairs);
            for (int i = -WARMUP; i < RUNS; i++) {
                long t0 = System.nanoTime();
                s.copyBlocks(src, dst);
                if (i >= 0) {
                    t[i] = (System.nanoTime() - t0) / 1e9;
                }
            }
            double batched = 2.0 * bytes / median(t) / 1e9;
            print("copyBlocks    %4d x %d MiB: %8.1f GB/s = %.2f x memcpy", pairs, bb >> 20, batched, batched / memcpy);
            for (int i = -WARMUP; i < RUNS; i++) {
                long t0 = System.nanoTime();
                for (int j = 0; j < pairs; j++) {
                    s.copyBlock(src[j], dst[j]);
                }
                if (i >= 0) {
                    t[i] = (System.nanoTime() - t0) / 1e9;
                }
            }
            double single = 2.0 * bytes / median(t) / 1e9;
            print("copyBlock x%d  %d MiB each: %8.1f GB/s = %.2f x memcpy", pairs, bb >> 20, single, single / memcpy);
            assertTrue(memcpy > 0 && batched > 0 && single > 0);
            return memcpy;
        }
    }

    void decode(KvFormat f, double memcpy) {
        KvLayout l = new KvLayout(1, 8, 128, 16, f);
        int length = 32768;
        int blocks = length / 16;
        int queryHeads = 32;
        try (CudaKvStore s = CudaKvStore.allocate(l, blocks)) {
            // one block of valid encoded data (written through the reference), copied everywhere
            Random rnd = new Random(3);
            RefCodec.Model m = new RefCodec.Model(l, 1);
            for (int row = 0; row < 16; row++) {
                m.write(0, row, CudaKvStoreDeviceTest.token(rnd, l.kvDim(), 1), CudaKvStoreDeviceTest.token(rnd, l.kvDim(), 1));
            }
            for (int b = 0; b < blocks; b++) {
                s.writeBlock(b, m.bytes);
            }
            int[] table = new int[blocks];
            for (int i = 0; i < blocks; i++) {
                table[i] = (int) ((i * 7919L) % blocks); // scattered, every block once (7919 is prime)
            }
            float[] q = CudaKvStoreDeviceTest.token(rnd, queryHeads * 128, 1);
            float[] out = new float[queryHeads * 128];
            double[] t = new double[RUNS];
            for (int i = -WARMUP; i < RUNS; i++) {
                long t0 = System.nanoTime();
                s.decode(0, q, queryHeads, table, length, out);
                if (i >= 0) {
                    t[i] = (System.nanoTime() - t0) / 1e9;
                }
            }
            double kvBytes = (double) blocks * s.blockLayout().blockBytes();
            double bw = kvBytes / median(t) / 1e9;
            print("decode %-8s %d tokens, %5.1f MiB KV: %8.3f ms, %8.1f GB/s = %.2f x memcpy",
                    f.name(), length, kvBytes / (1 << 20), median(t) * 1e3, bw, bw / memcpy);
            for (float x : out) {
                assertTrue(Float.isFinite(x), "decode output is finite");
            }
        }
    }
}
