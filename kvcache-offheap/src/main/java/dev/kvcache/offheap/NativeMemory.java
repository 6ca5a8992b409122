package dev.kvcache.offheap;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Zeroed native memory for a store, committed lazily where the OS can do that.
 *
 * <p>{@link Arena#allocate(long, long)} zeroes what it allocates with a memset, so allocating a
 * store touches every page of it: each first touch is a page fault in which the kernel zeroes the
 * page, and the memset then writes it again. On the 2-vCPU VM of
 * {@code kvcache-offheap/bench-results/alloc-2026-12-03.txt} that is seconds per GiB. An anonymous
 * {@code mmap} is zero by definition: the kernel hands out a zeroed page on its first touch, so
 * the allocation costs a system call and the faults are paid later, by the writes that touch a
 * page for the first time, spread over the prefill that fills the store (and never for blocks
 * that are never used). On Linux, regions of at least {@link #LAZY_THRESHOLD} bytes are therefore
 * mapped with {@code mmap(MAP_PRIVATE | MAP_ANONYMOUS)} and tied to the caller's arena with a
 * cleanup that {@code munmap}s them when the arena closes (so the shared arena's close handshake
 * still guarantees that no access touches freed memory).
 *
 * <p>Not advised {@code MADV_HUGEPAGE}: with the common {@code defrag=madvise} setting an advised
 * region's first touches compact memory synchronously, and on the test VM filling 4 GiB so took
 * 2.8 to 42 s against 1.4 to 4.1 s with 4 KiB pages (the bench-results file): a stall inside a
 * prefill is worse than the TLB misses huge pages would save.
 *
 * <p>The trade-off: memory is committed on first touch, not at allocation. With the kernel's
 * default overcommit heuristic a mapping larger than RAM + swap is still refused up front (an
 * OutOfMemoryError naming the size and errno), but memory that other processes take in the
 * meantime is not reserved for the store, and under pressure the OOM killer may pick the process
 * later instead of the allocation failing now. Resident memory grows with the blocks written, not
 * with the store's size.
 *
 * <p>The mapping needs native access ({@code --enable-native-access=dev.kvcache.offheap} on the
 * module path, {@code ALL-UNNAMED} on the class path). Without it, and on other operating systems,
 * the memory comes from {@link Arena#allocate(long, long)} as before (eager, correct, slow for
 * large stores); a large allocation says so once through {@link System.Logger} at WARNING.
 */
final class NativeMemory {

    /** Regions this large or larger are mapped lazily (one 2 MiB huge page). */
    static final long LAZY_THRESHOLD = 2L << 20;

    private static final System.Logger LOG = System.getLogger(NativeMemory.class.getName());

    private static final int PROT_READ_WRITE = 0x1 | 0x2;
    private static final int MAP_PRIVATE_ANONYMOUS = 0x02 | 0x20; // Linux, every architecture

    /** Bytes mapped by this class and not yet unmapped (tests check that close gives them back). */
    private static final AtomicLong MAPPED = new AtomicLong();

    private static volatile boolean warned;

    private NativeMemory() {
    }

    /** The downcalls, or why there are none. */
    private static final class Calls {
        static final MethodHandle MMAP;
        static final MethodHandle MUNMAP;
        static final VarHandle ERRNO;
        static final MemoryLayout CAPTURE;
        static final String UNAVAILABLE;

        static {
            MethodHandle mmap = null;
            MethodHandle munmap = null;
            VarHandle errno = null;
            MemoryLayout capture = null;
            String why = null;
            if (!System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("linux")) {
                why = "not Linux (" + System.getProperty("os.name") + ")";
            } else if (!NativeMemory.class.getModule().isNativeAccessEnabled()) {
                why = "native access is not enabled for " + moduleName()
                        + " (add --enable-native-access=" + moduleName() + ")";
            } else {
                try {
                    Linker linker = Linker.nativeLinker();
                    SymbolLookup libc = linker.defaultLookup();
                    Linker.Option ccs = Linker.Option.captureCallState("errno");
                    capture = Linker.Option.captureStateLayout();
                    errno = capture.varHandle(MemoryLayout.PathElement.groupElement("errno"));
                    mmap = linker.downcallHandle(libc.find("mmap").orElseThrow(),
                            FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG,
                                    ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                                    ValueLayout.JAVA_LONG), ccs);
                    munmap = linker.downcallHandle(libc.find("munmap").orElseThrow(),
                            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
                } catch (RuntimeException | LinkageError e) {
                    why = "mmap could not be linked: " + e;
                    mmap = munmap = null;
                }
            }
            MMAP = mmap;
            MUNMAP = munmap;
            ERRNO = errno;
            CAPTURE = capture;
            UNAVAILABLE = why;
        }

        private static String moduleName() {
            Module m = NativeMemory.class.getModule();
            return m.isNamed() ? m.getName() : "ALL-UNNAMED";
        }
    }

    /** True when regions of {@link #LAZY_THRESHOLD} bytes or more are mapped lazily in this JVM. */
    static boolean lazy() {
        return Calls.UNAVAILABLE == null;
    }

    /** Bytes mapped now and not yet unmapped. */
    static long mappedBytes() {
        return MAPPED.get();
    }

    /**
     * {@code bytes} zeroed bytes aligned to {@code alignment} (at most a page), freed when
     * {@code arena} closes.
     *
     * @throws OutOfMemoryError the OS refused the memory (the message names the size)
     */
    static MemorySegment allocateZeroed(Arena arena, long bytes, long alignment) {
        if (bytes < LAZY_THRESHOLD || alignment > 4096) {
            return arena.allocate(bytes, alignment);
        }
        if (Calls.UNAVAILABLE != null) {
            if (!warned) {
                warned = true;
                LOG.log(System.Logger.Level.WARNING, "kvcache-offheap: allocating and zeroing " + bytes
                        + " bytes eagerly, which touches every page (seconds per GiB on a small VM): "
                        + Calls.UNAVAILABLE);
            }
            return arena.allocate(bytes, alignment);
        }
        long address;
        try (Arena scratch = Arena.ofConfined()) {
            MemorySegment state = scratch.allocate(Calls.CAPTURE);
            MemorySegment p = (MemorySegment) Calls.MMAP.invokeExact(state, MemorySegment.NULL, bytes,
                    PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0L);
            address = p.address();
            if (address == -1L) {
                int errno = (int) Calls.ERRNO.get(state, 0L);
                throw new OutOfMemoryError("mmap of " + bytes + " bytes failed (errno " + errno + ")");
            }
        } catch (OutOfMemoryError | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("mmap of " + bytes + " bytes", t);
        }
        MAPPED.addAndGet(bytes);
        try {
            return MemorySegment.ofAddress(address).reinterpret(bytes, arena, s -> unmap(address, bytes));
        } catch (RuntimeException | Error e) {
            // the segment was never handed out (the arena may be closed already): give the mapping back now
            unmap(address, bytes);
            throw e;
        }
    }

    private static void unmap(long address, long bytes) {
        int rc;
        try {
            rc = (int) Calls.MUNMAP.invokeExact(MemorySegment.ofAddress(address), bytes);
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "kvcache-offheap: munmap of " + bytes + " bytes threw", t);
            return;
        }
        if (rc != 0) {
            // cannot happen for a mapping made here; losing it silently would hide a leak
            LOG.log(System.Logger.Level.ERROR, "kvcache-offheap: munmap of " + bytes + " bytes at 0x"
                    + Long.toHexString(address) + " failed");
            return;
        }
        MAPPED.addAndGet(-bytes);
    }
}
