package dev.kvcache.cuda;

import org.lwjgl.PointerBuffer;
import org.lwjgl.cuda.CU;
import org.lwjgl.system.Configuration;
import org.lwjgl.system.Library;
import org.lwjgl.system.MemoryStack;
import org.lwjgl.system.MemoryUtil;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.IntBuffer;
import java.util.Locale;

/**
 * The CUDA device this JVM uses, probed once: driver library, device, primary context and the
 * kernel module ({@code kvcache_kernels.fatbin}, loaded with {@code cuModuleLoadData}).
 *
 * <h2>Probe</h2>
 * The first call of {@link #status()}, {@link #isAvailable()} or {@link #get()} runs the probe on a
 * daemon thread and waits at most {@value #DEFAULT_PROBE_TIMEOUT_MS} ms (property
 * {@value #PROBE_TIMEOUT_PROPERTY}). Every failure becomes a reason string instead of an exception
 * or a crash: LWJGL's own native library missing ({@code UnsatisfiedLinkError}), the driver library
 * ({@code libcuda}) missing or unloadable, a required driver symbol missing, {@code cuInit}
 * errors ({@code CUDA_ERROR_NO_DEVICE}, the toolkit's stub library, an old driver), a device
 * below compute capability 8.0, a kernel image the driver rejects, or a probe that does not
 * return in time (after which this JVM never touches the driver again, since a stuck class
 * initializer would block every later caller). The result never changes for the life of the JVM.
 *
 * <h2>Configuration (system properties, read once)</h2>
 * <ul>
 *   <li>{@value #LIB_PROPERTY}: driver library name or path (default {@code libcuda.so.1} on Linux);
 *       sets LWJGL's {@code org.lwjgl.cuda.libname} unless that is set itself.</li>
 *   <li>{@value #DEVICE_PROPERTY}: device ordinal, default 0.</li>
 *   <li>{@value #DISABLE_PROPERTY}{@code =true}: report CUDA unavailable without probing.</li>
 * </ul>
 *
 * <h2>Threads</h2>
 * The primary context is made current on whichever thread calls {@link #makeCurrent()}; stores do
 * that at the start of every operation, so any thread may use them.
 */
public final class CudaRuntime {

    /** Driver library name or path. */
    public static final String LIB_PROPERTY = "kvcache.cuda.lib";
    /** Device ordinal. */
    public static final String DEVICE_PROPERTY = "kvcache.cuda.device";
    /** {@code true}: never probe, CUDA is unavailable. */
    public static final String DISABLE_PROPERTY = "kvcache.cuda.disable";
    /** Milliseconds the probe may take. */
    public static final String PROBE_TIMEOUT_PROPERTY = "kvcache.cuda.probeTimeoutMs";
    /** Default for {@link #PROBE_TIMEOUT_PROPERTY}. */
    public static final long DEFAULT_PROBE_TIMEOUT_MS = 30_000;
    /** Lowest supported compute capability, major * 10 + minor (the fatbin holds sm_80 and sm_90 SASS). */
    public static final int MIN_COMPUTE_CAPABILITY = 80;
    /** The kernel image, a resource of this package. */
    static final String KERNEL_RESOURCE = "kvcache_kernels.fatbin";
    /** cuda.h's CUDA_ERROR_INSUFFICIENT_DRIVER (LWJGL 3.3.6 has no constant for it). */
    private static final int CUDA_ERROR_INSUFFICIENT_DRIVER = 35;

    /**
     * What the probe found.
     *
     * @param available true when {@link #get()} returns a runtime
     * @param detail    the device ("NVIDIA H100 ..., sm_90, ...") or why CUDA is unavailable
     */
    public record Status(boolean available, String detail) {
        @Override
        public String toString() {
            return available ? "CUDA available: " + detail : "CUDA unavailable: " + detail;
        }
    }

    private static final Object LOCK = new Object();
    private static Status status;
    private static CudaRuntime runtime;

    private final int ordinal;
    private final String deviceName;
    private final int computeCapability;
    private final int driverVersion;
    private final long totalMemory;
    private final int multiprocessors;
    private final long context;
    private final long module;

    private final long[] functions;
    private final LwjglDriver driver;

    private CudaRuntime(int ordinal, String deviceName, int cc, int driverVersion, long totalMemory,
                        int multiprocessors, long context, long module, long[] fns) {
        this.ordinal = ordinal;
        this.deviceName = deviceName;
        this.computeCapability = cc;
        this.driverVersion = driverVersion;
        this.totalMemory = totalMemory;
        this.multiprocessors = multiprocessors;
        this.context = context;
        this.module = module;
        this.functions = fns.clone();
        this.driver = new LwjglDriver(this);
    }

    static final String[] KERNEL_NAMES = {
        "kv_write_row", "kv_read_row", "kv_open", "kv_seal_fp8", "kv_copy_blocks", "paged_decode", "paged_decode_combine"
    };

    // ------------------------------------------------------------------ public surface

    /**
     * Probes on first use; the same answer afterwards.
     *
     * @return what the probe found: available with the device's description, or unavailable with
     *         the reason; never null, and the same object for the life of the JVM
     */
    public static Status status() {
        synchronized (LOCK) {
            if (status == null) {
                probe();
            }
            return status;
        }
    }

    /**
     * True when a CUDA device is usable.
     *
     * @return {@code status().available()}: true when {@link #get()} returns a runtime instead of throwing
     */
    public static boolean isAvailable() {
        return status().available();
    }

    /**
     * The runtime; {@link CudaUnavailableException} ("CUDA unavailable: reason") otherwise.
     *
     * @return the probed device's runtime, the same instance on every call
     * @throws CudaUnavailableException if the probe found no usable device (the reason is
     *                                  {@link #status()}{@code .detail()})
     */
    public static CudaRuntime get() {
        synchronized (LOCK) {
            Status s = status();
            if (!s.available()) {
                throw new CudaUnavailableException(s.detail());
            }
            return runtime;
        }
    }

    /**
     * Device ordinal in use.
     *
     * @return the ordinal of the device in use (property {@value #DEVICE_PROPERTY}, default 0), {@code >= 0}
     */
    public int ordinal() {
        return ordinal;
    }

    /**
     * The device's name as the driver reports it.
     *
     * @return the name {@code cuDeviceGetName} returned, e.g. "NVIDIA H100 80GB HBM3"
     */
    public String deviceName() {
        return deviceName;
    }

    /**
     * Compute capability, major * 10 + minor (90 for H100).
     *
     * @return major * 10 + minor, at least {@link #MIN_COMPUTE_CAPABILITY}
     */
    public int computeCapability() {
        return computeCapability;
    }

    /**
     * {@code cuDriverGetVersion}, e.g. 13000 for CUDA 13.0.
     *
     * @return the CUDA version the driver supports, major * 1000 + minor * 10
     */
    public int driverVersion() {
        return driverVersion;
    }

    /**
     * Device memory in bytes.
     *
     * @return the device's total memory in bytes ({@code cuDeviceTotalMem}), not what is free now
     */
    public long totalMemory() {
        return totalMemory;
    }

    /**
     * Streaming multiprocessors.
     *
     * @return the device's streaming multiprocessor count, {@code > 0}
     */
    public int multiprocessors() {
        return multiprocessors;
    }

    /**
     * Prints the probe's result; exit status 0 either way (bin/gpu-check and tests read the line).
     *
     * @param args ignored
     */
    public static void main(String[] args) {
        System.out.println(status());
    }

    // ------------------------------------------------------------------ package surface

    /** The CUfunction of kernel {@code id} (a {@link CudaDriver} kernel id). */
    long function(int id) {
        return functions[id];
    }

    /** The driver operations over this device. */
    CudaDriver driver() {
        return driver;
    }

    /** Makes the primary context current on the calling thread. */
    void makeCurrent() {
        check(CU.cuCtxSetCurrent(context), "cuCtxSetCurrent");
    }

    /** Throws {@link CudaException} naming the call and the error unless {@code rc} is CUDA_SUCCESS. */
    static void check(int rc, String call) {
        if (rc != CU.CUDA_SUCCESS) {
            throw new CudaException(call, rc, errorName(rc));
        }
    }

    static String errorName(int rc) {
        try (MemoryStack stack = MemoryStack.stackPush()) {
            PointerBuffer p = stack.mallocPointer(1);
            if (CU.cuGetErrorName(rc, p) == CU.CUDA_SUCCESS && p.get(0) != 0) {
                return MemoryUtil.memASCII(p.get(0));
            }
        } catch (RuntimeException | LinkageError e) {
            // fall through: the code alone still identifies the error
        }
        return "CUresult " + rc;
    }

    /**
     * Launches {@code fn} on {@code stream}. {@code args} are the kernel's parameters in order, each
     * a {@link Long} (pointers and {@code long long}), {@link Integer} or {@link Float}; the driver
     * reads {@code sizeof(param)} bytes behind each pointer of {@code kernelParams}.
     */
    static void launch(long fn, int gridX, int gridY, int blockX, int sharedBytes, long stream, Object... args) {
        try (MemoryStack stack = MemoryStack.stackPush()) {
            long slots = stack.nmalloc(8, 8 * args.length);
            PointerBuffer params = stack.mallocPointer(args.length);
            for (int i = 0; i < args.length; i++) {
                long at = slots + 8L * i;
                switch (args[i]) {
                    case Long l -> MemoryUtil.memPutLong(at, l);
                    case Integer n -> MemoryUtil.memPutInt(at, n);
                    case Float f -> MemoryUtil.memPutFloat(at, f);
                    default -> throw new IllegalArgumentException("kernel argument " + i + " is a "
                            + args[i].getClass().getName() + "; only Long, Integer and Float are passed");
                }
                params.put(i, at);
            }
            check(CU.cuLaunchKernel(fn, gridX, gridY, 1, blockX, 1, 1, sharedBytes, stream, params, null),
                    "cuLaunchKernel");
        }
    }

    // ------------------------------------------------------------------ the probe

    private static Status unavailable(String reason) {
        return new Status(false, reason);
    }

    /** Runs {@link #open()} on a daemon thread with a deadline; sets status (and runtime). Holds LOCK. */
    private static void probe() {
        if (Boolean.getBoolean(DISABLE_PROPERTY)) {
            status = unavailable("disabled by -D" + DISABLE_PROPERTY + "=true");
            return;
        }
        long timeoutMs = Long.getLong(PROBE_TIMEOUT_PROPERTY, DEFAULT_PROBE_TIMEOUT_MS);
        Object[] result = new Object[1];
        Thread t = Thread.ofPlatform().daemon().name("kvcache-cuda-probe").unstarted(() -> {
            Object r;
            try {
                r = open();
            } catch (Throwable e) { // UnsatisfiedLinkError, ExceptionInInitializerError, NPE "required function missing"
                r = "CUDA initialisation threw " + describe(e);
            }
            synchronized (result) {
                result[0] = r;
            }
        });
        t.start();
        try {
            t.join(Math.max(1, timeoutMs));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            status = unavailable("interrupted while probing the CUDA driver");
            return;
        }
        Object r;
        synchronized (result) {
            r = result[0];
        }
        if (r == null) {
            status = unavailable("the CUDA driver probe did not finish within " + timeoutMs + " ms (-D"
                    + PROBE_TIMEOUT_PROPERTY + "); not retried in this JVM");
        } else if (r instanceof CudaRuntime rt) {
            runtime = rt;
            status = new Status(true, rt.describeDevice());
        } else {
            status = unavailable((String) r);
        }
    }

    private String describeDevice() {
        return String.format(Locale.ROOT, "device %d: %s, sm_%d, %d SMs, %.1f GiB, driver API %d.%d",
                ordinal, deviceName, computeCapability, multiprocessors, totalMemory / (double) (1L << 30),
                driverVersion / 1000, (driverVersion % 1000) / 10);
    }

    static String describe(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        String msg = root.getMessage();
        return root.getClass().getSimpleName() + (msg == null ? "" : ": " + msg.strip());
    }

    /** The driver library LWJGL will load. */
    static String libraryName() {
        String own = System.getProperty(LIB_PROPERTY);
        String lwjgl = System.getProperty("org.lwjgl.cuda.libname");
        if (own != null && !own.isBlank()) {
            return own.strip();
        }
        if (lwjgl != null && !lwjgl.isBlank()) {
            return lwjgl.strip();
        }
        // the driver always installs the versioned name; the bare libcuda.so is a -dev symlink
        return System.getProperty("os.name", "").toLowerCase(Locale.ROOT).contains("win") ? "nvcuda" : "libcuda.so.1";
    }

    /** Returns a CudaRuntime or a reason string. Runs on the probe thread. */
    private static Object open() {
        String lib = libraryName();
        try {
            Library.initialize();
        } catch (Throwable e) {
            return "LWJGL's native library did not load (" + describe(e)
                    + "); put org.lwjgl:lwjgl:" + org.lwjgl.Version.getVersion().split("[ +]")[0]
                    + ":natives-linux on the class path";
        }
        Configuration.CUDA_LIBRARY_NAME.set(lib);
        int rc;
        try {
            rc = CU.cuInit(0);
        } catch (Throwable e) {
            return "the CUDA driver library '" + lib + "' could not be bound (" + describe(e)
                    + "); install the NVIDIA driver or set -D" + LIB_PROPERTY + "=/path/to/libcuda.so.1";
        }
        if (rc != CU.CUDA_SUCCESS) {
            String name = errorName(rc);
            return switch (rc) {
                case CU.CUDA_ERROR_NO_DEVICE -> "no CUDA device (cuInit: " + name + ")";
                case CU.CUDA_ERROR_STUB_LIBRARY -> "'" + lib + "' is the CUDA toolkit's stub library, not a driver (cuInit: "
                        + name + ")";
                case CUDA_ERROR_INSUFFICIENT_DRIVER -> "the NVIDIA driver is too old for this CUDA library (cuInit: "
                        + name + ")";
                default -> "cuInit failed: " + name + " (" + rc + ")";
            };
        }
        try (MemoryStack stack = MemoryStack.stackPush()) {
            IntBuffer ib = stack.mallocInt(1);
            check(CU.cuDeviceGetCount(ib), "cuDeviceGetCount");
            int count = ib.get(0);
            if (count <= 0) {
                return "no CUDA device (cuDeviceGetCount = " + count + ")";
            }
            int ordinal = Integer.getInteger(DEVICE_PROPERTY, 0);
            if (ordinal < 0 || ordinal >= count) {
                return "-D" + DEVICE_PROPERTY + "=" + ordinal + " out of range [0, " + count + ")";
            }
            check(CU.cuDeviceGet(ib, ordinal), "cuDeviceGet");
            int device = ib.get(0);
            ByteBuffer nameBuf = stack.calloc(256);
            check(CU.cuDeviceGetName(nameBuf, device), "cuDeviceGetName");
            String name = MemoryUtil.memASCII(MemoryUtil.memAddress(nameBuf));
            check(CU.cuDeviceGetAttribute(ib, CU.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device), "cuDeviceGetAttribute");
            int major = ib.get(0);
            check(CU.cuDeviceGetAttribute(ib, CU.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device), "cuDeviceGetAttribute");
            int cc = major * 10 + ib.get(0);
            check(CU.cuDeviceGetAttribute(ib, CU.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device), "cuDeviceGetAttribute");
            int sms = ib.get(0);
            check(CU.cuDriverGetVersion(ib), "cuDriverGetVersion");
            int driver = ib.get(0);
            PointerBuffer pb = stack.mallocPointer(1);
            check(CU.cuDeviceTotalMem(pb, device), "cuDeviceTotalMem");
            long total = pb.get(0);
            if (cc < MIN_COMPUTE_CAPABILITY) {
                return String.format(Locale.ROOT, "%s has compute capability %d.%d; kvcache's kernels need %d.%d or newer",
                        name, major, cc % 10, MIN_COMPUTE_CAPABILITY / 10, MIN_COMPUTE_CAPABILITY % 10);
            }
            check(CU.cuDevicePrimaryCtxRetain(pb, device), "cuDevicePrimaryCtxRetain");
            long ctx = pb.get(0);
            check(CU.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
            byte[] image;
            try {
                image = kernelImage();
            } catch (IOException e) {
                CU.cuDevicePrimaryCtxRelease(device);
                return "kernel image missing: " + describe(e);
            }
            ByteBuffer direct = MemoryUtil.memAlloc(image.length);
            long module;
            try {
                direct.put(0, image);
                int lrc = CU.cuModuleLoadData(pb, direct);
                if (lrc != CU.CUDA_SUCCESS) {
                    CU.cuDevicePrimaryCtxRelease(device);
                    return "the driver rejected the kernel image for sm_" + cc + " (cuModuleLoadData: "
                            + errorName(lrc) + "); regenerate it with src/main/cuda/build-kernels.sh";
                }
                module = pb.get(0);
            } finally {
                MemoryUtil.memFree(direct);
            }
            long[] fns = new long[KERNEL_NAMES.length];
            for (int i = 0; i < fns.length; i++) {
                int frc = CU.cuModuleGetFunction(pb, module, KERNEL_NAMES[i]);
                if (frc != CU.CUDA_SUCCESS) {
                    CU.cuModuleUnload(module);
                    CU.cuDevicePrimaryCtxRelease(device);
                    return "kernel " + KERNEL_NAMES[i] + " not in the image (" + errorName(frc) + ")";
                }
                fns[i] = pb.get(0);
            }
            return new CudaRuntime(ordinal, name, cc, driver, total, sms, ctx, module, fns);
        } catch (CudaException e) {
            return e.getMessage();
        }
    }

    /** The committed fatbin, from this class's package. */
    static byte[] kernelImage() throws IOException {
        try (InputStream in = CudaRuntime.class.getResourceAsStream(KERNEL_RESOURCE)) {
            if (in == null) {
                throw new IOException("resource dev/kvcache/cuda/" + KERNEL_RESOURCE + " not found");
            }
            return in.readAllBytes();
        }
    }
}
