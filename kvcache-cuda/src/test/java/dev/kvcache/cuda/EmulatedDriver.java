package dev.kvcache.cuda;

import org.lwjgl.system.MemoryUtil;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A {@link CudaDriver} that runs the real kernel source on the CPU (src/test/cuda/kvemu.cpp,
 * compiled here with g++ against the CUDA headers) so that CudaKvStore's whole logic can be
 * tested without a GPU. Device memory is host memory; streams and events are ids and every
 * operation completes before it returns (so stream ordering itself is not exercised). Tracks live
 * allocations so tests can check that close() frees everything.
 *
 * <p>{@link #get()} builds the library once per JVM into target/kvemu; it returns null, with
 * {@link #unavailableReason()} set, when g++ or the CUDA headers are missing, and throws when the
 * emulator does not compile (a broken kernel source must fail, not skip).
 */
final class EmulatedDriver implements CudaDriver {

    private static EmulatedDriver instance;
    private static String unavailable;

    private final MethodHandle launch;
    private final Map<Long, Long> live = new HashMap<>();
    private long nextHandle = 1;

    private EmulatedDriver(MethodHandle launch) {
        this.launch = launch;
    }

    static synchronized EmulatedDriver get() {
        if (instance == null && unavailable == null) {
            try {
                instance = build();
            } catch (IOException e) {
                throw new IllegalStateException("could not build the kernel emulator: " + e.getMessage(), e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                unavailable = "interrupted";
            }
        }
        return instance;
    }

    static synchronized String unavailableReason() {
        return unavailable;
    }

    private static Path cudaInclude() {
        List<Path> candidates = new ArrayList<>();
        String home = System.getenv("CUDA_HOME");
        if (home != null) {
            candidates.add(Path.of(home, "include"));
        }
        candidates.add(Path.of("/usr/local/cuda/include"));
        try (var dirs = Files.list(Path.of("/usr/local"))) {
            dirs.filter(d -> d.getFileName().toString().startsWith("cuda-")).sorted().forEach(d -> candidates.add(d.resolve("include")));
        } catch (IOException e) {
            // no /usr/local: no candidates from there
        }
        for (Path p : candidates) {
            if (Files.isRegularFile(p.resolve("cuda_fp8.h"))) {
                return p;
            }
        }
        return null;
    }

    private static EmulatedDriver build() throws IOException, InterruptedException {
        Path include = cudaInclude();
        if (include == null) {
            unavailable = "no CUDA headers (cuda_fp8.h) in $CUDA_HOME/include or /usr/local/cuda*/include";
            return null;
        }
        Path src = Path.of("src", "test", "cuda", "kvemu.cpp");
        Path kernels = Path.of("src", "main", "cuda", "kvcache_kernels.cu");
        Path out = Path.of("target", "kvemu", "libkvemu.so");
        Files.createDirectories(out.getParent());
        FileTime newest = Files.getLastModifiedTime(src).compareTo(Files.getLastModifiedTime(kernels)) > 0
                ? Files.getLastModifiedTime(src) : Files.getLastModifiedTime(kernels);
        if (!Files.exists(out) || Files.getLastModifiedTime(out).compareTo(newest) < 0) {
            List<String> cmd = List.of("g++", "-std=c++20", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-pthread",
                    "-I" + include, "-I" + kernels.getParent(), src.toString(), "-o", out.toString());
            Process p;
            try {
                p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            } catch (IOException e) {
                unavailable = "g++ not found (" + e.getMessage() + ")";
                return null;
            }
            String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(300, TimeUnit.SECONDS) || p.exitValue() != 0) {
                throw new IOException(String.join(" ", cmd) + " failed:\n" + log);
            }
        }
        SymbolLookup lib = SymbolLookup.libraryLookup(out.toAbsolutePath(), Arena.global());
        MethodHandle h = Linker.nativeLinker().downcallHandle(lib.find("kvemu_launch").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS));
        return new EmulatedDriver(h);
    }

    /** Allocations (device, host) not freed yet. */
    synchronized int liveAllocations() {
        return live.size();
    }

    @Override
    public void makeCurrent() {
    }

    @Override
    public String deviceName() {
        return "CPU kernel emulator";
    }

    @Override
    public int multiprocessors() {
        return 4; // small, so that moderate lengths already use several decode splits
    }

    private synchronized long alloc(long bytes) {
        long p = MemoryUtil.nmemAlignedAlloc(256, bytes);
        if (p == 0) {
            throw new CudaException("emulated alloc", 2, "CUDA_ERROR_OUT_OF_MEMORY");
        }
        live.put(p, bytes);
        return p;
    }

    private synchronized void free(long p) {
        if (live.remove(p) == null) {
            throw new CudaException("emulated free of 0x" + Long.toHexString(p), 1, "CUDA_ERROR_INVALID_VALUE");
        }
        MemoryUtil.nmemAlignedFree(p);
    }

    /** Fails like the driver would for an access outside every live allocation. */
    private synchronized void checkRange(long p, long bytes) {
        for (var e : live.entrySet()) {
            if (p >= e.getKey() && p + bytes <= e.getKey() + e.getValue()) {
                return;
            }
        }
        throw new CudaException("emulated access [0x" + Long.toHexString(p) + ", +" + bytes + ")", 700,
                "CUDA_ERROR_ILLEGAL_ADDRESS");
    }

    @Override
    public long memAlloc(long bytes) {
        return alloc(bytes);
    }

    @Override
    public void memFree(long devicePtr) {
        free(devicePtr);
    }

    @Override
    public long hostAlloc(long bytes) {
        return alloc(bytes);
    }

    @Override
    public void hostFree(long hostPtr) {
        free(hostPtr);
    }

    @Override
    public synchronized long streamCreate() {
        return nextHandle++;
    }

    @Override
    public void streamDestroy(long stream) {
    }

    @Override
    public void streamSynchronize(long stream) {
    }

    @Override
    public synchronized long eventCreate() {
        return nextHandle++;
    }

    @Override
    public void eventDestroy(long event) {
    }

    @Override
    public void eventRecord(long event, long stream) {
    }

    @Override
    public void streamWaitEvent(long stream, long event) {
    }

    @Override
    public void memsetD8Async(long devicePtr, byte value, long bytes, long stream) {
        checkRange(devicePtr, bytes);
        MemoryUtil.memSet(devicePtr, value, bytes);
    }

    @Override
    public void memcpyHtoDAsync(long devicePtr, long hostPtr, long bytes, long stream) {
        copy(hostPtr, devicePtr, bytes);
    }

    @Override
    public void memcpyDtoHAsync(long hostPtr, long devicePtr, long bytes, long stream) {
        copy(devicePtr, hostPtr, bytes);
    }

    @Override
    public void memcpyDtoDAsync(long dst, long src, long bytes, long stream) {
        copy(src, dst, bytes);
    }

    private void copy(long src, long dst, long bytes) {
        checkRange(src, bytes);
        checkRange(dst, bytes);
        MemoryUtil.memCopy(src, dst, bytes);
    }

    @Override
    public void launch(int kernel, int gridX, int gridY, int blockX, int sharedBytes, long stream, Object... args) {
        if (gridX <= 0 || gridY <= 0 || gridY > 65535 || blockX <= 0 || blockX > 1024 || sharedBytes > 48 * 1024) {
            throw new CudaException("emulated launch grid (" + gridX + ", " + gridY + ") block " + blockX
                    + " shared " + sharedBytes, 1, "CUDA_ERROR_INVALID_VALUE");
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment slots = arena.allocate(8L * Math.max(1, args.length), 8);
            MemorySegment ptrs = arena.allocate(ValueLayout.ADDRESS, Math.max(1, args.length));
            for (int i = 0; i < args.length; i++) {
                switch (args[i]) {
                    case Long l -> slots.set(ValueLayout.JAVA_LONG, 8L * i, l);
                    case Integer n -> slots.set(ValueLayout.JAVA_INT, 8L * i, n);
                    case Float f -> slots.set(ValueLayout.JAVA_FLOAT, 8L * i, f);
                    default -> throw new IllegalArgumentException("kernel argument " + i + ": " + args[i]);
                }
                ptrs.setAtIndex(ValueLayout.ADDRESS, i, slots.asSlice(8L * i));
            }
            int rc = (int) launch.invokeExact(kernel, gridX, gridY, blockX, sharedBytes, ptrs);
            if (rc != 0) {
                throw new CudaException("emulated launch of kernel " + kernel, 500, "CUDA_ERROR_NOT_FOUND");
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
