package dev.kvcache.bench;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.offheap.OffHeapKvStore;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * Where the time of creating a large store goes (issue #16): a harness, not JMH, because each
 * sample allocates and frees 4 GiB and a JMH fork's warm-up iterations would only repeat that
 * (single-shot work; the JIT plays no part in a memset or a page fault).
 *
 * <p>One region of {@code --gib} GiB (default 4) exists at a time; each of {@code --reps} rounds
 * (default 3) measures, in this order:
 * <ol>
 *   <li>{@code arena.allocate} - {@code Arena.allocate(bytes, 64)}, what the store did before:
 *       malloc (an mmap for this size) and a memset that touches every page (fault + zero);</li>
 *   <li>{@code memset again} - {@code fill(0)} of that region, now resident: the memset alone,
 *       so {@code arena.allocate - memset again} is the page faults' share;</li>
 *   <li>{@code mmap + touch} - the baseline of the target: {@code mmap} anonymous memory and write
 *       one byte in every 4 KiB page (the kernel zeroes each page in its fault);</li>
 *   <li>{@code mmap + copy every block} - the same mapping, filled by copying a block into every
 *       block (what the store's first writes do), and both again after {@code madvise(HUGEPAGE)}
 *       (transparent huge pages, as the store advises);</li>
 *   <li>{@code store.allocate} - {@code OffHeapKvStore.allocate} of a layout of exactly that size
 *       (F16, 32 layers x 8 KV heads x 128, 16 tokens: 2 MiB a block), until it returns;</li>
 *   <li>{@code store.allocate + import every block} - the same, then {@code importBlock} into every
 *       block (one copy each): the faults the lazy allocation defers, paid by the first writes;</li>
 *   <li>{@code store.close}.</li>
 * </ol>
 * Then once: the README's store, 4,096 blocks of Q8_0 (32 x 8 x 128, 16 tokens; 4.56 GB), through
 * {@code OffHeapKvStore.allocate}. Reported: every sample and the median of each, and the target
 * ratio {@code store.allocate / (mmap + touch)} (at most 2).
 *
 * <p>Run: {@code flock /tmp/kvcache-jmh.lock java --add-modules jdk.incubator.vector
 * --enable-native-access=ALL-UNNAMED -cp benchmarks/target/benchmarks.jar
 * dev.kvcache.bench.AllocationBenchmark [--gib 4] [--reps 3]}.
 */
public final class AllocationBenchmark {

    private static final long PAGE = 4096;

    private AllocationBenchmark() {
    }

    public static void main(String[] args) throws Throwable {
        int gib = 4;
        int reps = 3;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--gib" -> gib = Integer.parseInt(args[++i]);
                case "--reps" -> reps = Integer.parseInt(args[++i]);
                default -> throw new IllegalArgumentException("unknown argument " + args[i]
                        + " (known: --gib N, --reps N)");
            }
        }
        long bytes = (long) gib << 30;
        KvLayout layout = new KvLayout(32, 8, 128, 16, KvFormats.F16);
        int blocks = Math.toIntExact(bytes / layout.bytesPerBlock());
        if ((long) blocks * layout.bytesPerBlock() != bytes) {
            throw new IllegalStateException(layout + " does not divide " + bytes);
        }
        Linker linker = Linker.nativeLinker();
        MethodHandle mmap = linker.downcallHandle(linker.defaultLookup().find("mmap").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG,
                        ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
        MethodHandle munmap = linker.downcallHandle(linker.defaultLookup().find("munmap").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
        MethodHandle madvise = linker.downcallHandle(linker.defaultLookup().find("madvise").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG,
                        ValueLayout.JAVA_INT));

        System.out.printf("region %,d bytes (%d GiB), %d rounds; store layout %s x %d blocks%n",
                bytes, gib, reps, layout, blocks);
        Map<String, List<Double>> samples = new LinkedHashMap<>();
        for (int r = 0; r < reps; r++) {
            try (Arena arena = Arena.ofConfined()) {
                long t0 = System.nanoTime();
                MemorySegment seg = arena.allocate(bytes, 64);
                long t1 = System.nanoTime();
                seg.fill((byte) 0);
                long t2 = System.nanoTime();
                record(samples, "arena.allocate (malloc + memset)", t1 - t0);
                record(samples, "memset again (resident)", t2 - t1);
            }
            for (boolean huge : new boolean[] {false, true}) {
                for (boolean copy : new boolean[] {false, true}) {
                    long t0 = System.nanoTime();
                    MemorySegment p = (MemorySegment) mmap.invokeExact(MemorySegment.NULL, bytes, 3, 0x22, -1, 0L);
                    if (p.address() == -1L) {
                        throw new OutOfMemoryError("mmap " + bytes);
                    }
                    if (huge) {
                        int ignored = (int) madvise.invokeExact(p, bytes, 14);
                    }
                    MemorySegment seg = p.reinterpret(bytes);
                    long sum = copy ? copyBlocks(seg, bytes, layout.bytesPerBlock()) : touch(seg, bytes);
                    long t1 = System.nanoTime();
                    int rc = (int) munmap.invokeExact(p, bytes);
                    if (rc != 0 || sum != 0) {
                        throw new IllegalStateException("munmap " + rc + ", sum " + sum);
                    }
                    String what = (huge ? "mmap + madvise(HUGEPAGE)" : "mmap") + (copy ? " + copy every block" : " + touch");
                    record(samples, huge || copy ? what : what + " (baseline)", t1 - t0);
                }
            }
            {
                long t0 = System.nanoTime();
                OffHeapKvStore store = OffHeapKvStore.allocate(layout, blocks);
                long t1 = System.nanoTime();
                long t2 = System.nanoTime();
                store.close();
                long t3 = System.nanoTime();
                record(samples, "store.allocate", t1 - t0);
                record(samples, "store.close (untouched)", t3 - t2);
            }
            try (Arena src = Arena.ofConfined()) {
                MemorySegment block = src.allocate(layout.bytesPerBlock(), 64);
                long t0 = System.nanoTime();
                OffHeapKvStore store = OffHeapKvStore.allocate(layout, blocks);
                for (int b = 0; b < blocks; b++) {
                    store.importBlock(b, block);
                }
                long t1 = System.nanoTime();
                store.close();
                long t2 = System.nanoTime();
                record(samples, "store.allocate + import every block", t1 - t0);
                record(samples, "store.close (resident)", t2 - t1);
            }
        }
        KvLayout readme = new KvLayout(32, 8, 128, 16, KvFormats.Q8_0);
        timeOnce(samples, "README store: 4,096 blocks Q8_0 (" + readme.bytesPerBlock() * 4096 + " bytes), allocate",
                () -> {
                    long t0 = System.nanoTime();
                    OffHeapKvStore s = OffHeapKvStore.allocate(readme, 4096);
                    long t = System.nanoTime() - t0;
                    s.close();
                    return t;
                });

        System.out.println();
        System.out.printf("%-62s %12s   %s%n", "what", "median ms", "samples ms");
        for (Map.Entry<String, List<Double>> e : samples.entrySet()) {
            System.out.printf("%-62s %12.3f   %s%n", e.getKey(), median(e.getValue()), fmt(e.getValue()));
        }
        double base = median(samples.get("mmap + touch (baseline)"));
        double alloc = median(samples.get("store.allocate"));
        double oldAlloc = median(samples.get("arena.allocate (malloc + memset)"));
        double memset = median(samples.get("memset again (resident)"));
        System.out.println();
        System.out.printf("arena.allocate: %.0f ms, of which memset of resident pages %.0f ms (%.0f%%)"
                        + " and page faults (kernel zeroing included) %.0f ms (%.0f%%)%n",
                oldAlloc, memset, 100 * memset / oldAlloc, oldAlloc - memset, 100 * (oldAlloc - memset) / oldAlloc);
        System.out.printf("target: store.allocate / (mmap + touch) = %.6f (at most 2): %s%n",
                alloc / base, alloc / base <= 2 ? "met" : "NOT met");
        System.out.printf("store.allocate + import every block / (mmap + touch) = %.3f%n",
                median(samples.get("store.allocate + import every block")) / base);
        System.out.printf("arena.allocate / (mmap + touch) = %.3f%n", oldAlloc / base);
    }

    /** Copies a zero block into every block of {@code seg}, as importBlock does; returns 0. */
    private static long copyBlocks(MemorySegment seg, long bytes, long blockBytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment block = a.allocate(blockBytes, 64);
            for (long o = 0; o + blockBytes <= bytes; o += blockBytes) {
                MemorySegment.copy(block, 0, seg, o, blockBytes);
            }
        }
        return 0;
    }

    /** Writes 0 into one byte of every page and returns the sum of what it read back (0). */
    private static long touch(MemorySegment seg, long bytes) {
        long sum = 0;
        for (long o = 0; o < bytes; o += PAGE) {
            seg.set(ValueLayout.JAVA_BYTE, o, (byte) 0);
            sum += seg.get(ValueLayout.JAVA_BYTE, o);
        }
        return sum;
    }

    private static void timeOnce(Map<String, List<Double>> samples, String name, LongSupplier nanos) {
        record(samples, name, nanos.getAsLong());
    }

    private static void record(Map<String, List<Double>> samples, String name, long nanos) {
        samples.computeIfAbsent(name, k -> new ArrayList<>()).add(nanos / 1e6);
    }

    private static double median(List<Double> xs) {
        List<Double> s = new ArrayList<>(xs);
        s.sort(null);
        int n = s.size();
        return n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2;
    }

    private static String fmt(List<Double> xs) {
        StringBuilder b = new StringBuilder();
        for (double x : xs) {
            b.append(b.isEmpty() ? "" : ", ").append(String.format("%.3f", x));
        }
        return b.toString();
    }
}
