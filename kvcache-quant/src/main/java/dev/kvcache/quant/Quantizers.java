package dev.kvcache.quant;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.Quantizer;

import java.util.List;
import java.util.Optional;

/**
 * Quantizers and slice kernels for every standard {@link KvFormat} of {@link KvFormats}.
 *
 * <h2>Keys and values</h2>
 * Every format except KIVI encodes keys and values the same way, so {@link #keys}, {@link #values}
 * and {@link #of} return the same codec. KIVI quantizes keys per channel across a block's tokens and
 * values per token in groups of 32, so a store must use {@link #keys(KvFormat)} /
 * {@link #keyKernels(KvFormat)} for K slices and {@link #values(KvFormat)} /
 * {@link #valueKernels(KvFormat)} for V slices. {@link #of} and {@link #kernels} return the
 * <em>key</em> codec; their sizes match {@link KvFormat#keyBytes}.
 *
 * <h2>Providers</h2>
 * The kernels come from a provider chosen once per JVM: the Vector API one when the module
 * {@code jdk.incubator.vector} is in the boot layer (add {@code --add-modules jdk.incubator.vector})
 * and the system property {@code kvcache.vector} is not {@code false}; the scalar one otherwise.
 * Both produce identical encoded bytes; dot products and weighted sums may differ in the last
 * bits because they sum in a different order. {@link #provider()} names the one in use.
 *
 * <h2>Input</h2>
 * Encoding rejects NaN and infinities with an {@link IllegalArgumentException} naming the index and
 * value, before anything is written (KV values are finite; a NaN is a bug upstream and would poison
 * a whole block's scale). Finite values out of a format's range saturate (F16, BF16, FP8) or, when
 * a block's fp16 metadata would overflow (Q8_0, Q4_0, KIVI), are rejected naming the limit.
 * Undersized arrays or segments, bad offsets, read-only destinations and shapes the format cannot
 * hold ({@code dim % 32 != 0} for the grouped formats) are rejected the same way.
 */
public final class Quantizers {

    private Quantizers() {
    }

    private static final System.Logger LOG = System.getLogger(Quantizers.class.getName());

    private static final List<KvFormat> FORMATS = KvFormats.all();

    /**
     * Why the scalar kernels run is logged once per JVM, however often providers are looked up
     * (declared before the static block that selects the provider).
     */
    private static final java.util.concurrent.atomic.AtomicBoolean SCALAR_REPORTED =
            new java.util.concurrent.atomic.AtomicBoolean();

    private static final KernelProvider ACTIVE;
    private static final Codec[] SCALAR_KEYS;
    private static final Codec[] SCALAR_VALUES;
    private static final Codec[] ACTIVE_KEYS;
    private static final Codec[] ACTIVE_VALUES;

    static {
        KernelProvider vector = loadVectorProvider();
        ACTIVE = vector != null ? vector : ScalarProvider.INSTANCE;
        SCALAR_KEYS = table(ScalarProvider.INSTANCE, true, null);
        SCALAR_VALUES = table(ScalarProvider.INSTANCE, false, SCALAR_KEYS);
        ACTIVE_KEYS = vector != null ? table(vector, true, null) : SCALAR_KEYS;
        ACTIVE_VALUES = vector != null ? table(vector, false, ACTIVE_KEYS) : SCALAR_VALUES;
    }

    /**
     * The codec of {@code f}; for KIVI the key codec (see the class comment).
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the quantizer of {@code f} (shared, stateless, thread-safe)
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static Quantizer of(KvFormat f) {
        return keys(f);
    }

    /**
     * The codec for key slices of {@code f}.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the quantizer for key slices of {@code f} (shared, stateless, thread-safe)
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static Quantizer keys(KvFormat f) {
        return get(ACTIVE_KEYS, f);
    }

    /**
     * The codec for value slices of {@code f}.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the quantizer for value slices of {@code f} (shared, stateless, thread-safe)
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static Quantizer values(KvFormat f) {
        return get(ACTIVE_VALUES, f);
    }

    /**
     * The key codec of {@code f} behind a normalized Hadamard rotation: stores {@code H k}, decodes
     * back to k's space; dim must be a power of two. See {@link HadamardRotation}.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return a quantizer with the sizes and format of {@code keys(f)} that stores rotated keys; its
     *         calls throw IllegalArgumentException when {@code dim} is not a power of two
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static Quantizer rotatedKeys(KvFormat f) {
        return HadamardRotation.rotated(keys(f));
    }

    /**
     * Slice kernels of {@code f} from the active provider; for KIVI the key kernels.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the kernels of {@code f} from the active provider (stateless, thread-safe)
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static SliceKernels kernels(KvFormat f) {
        return keyKernels(f);
    }

    /**
     * Slice kernels for key slices of {@code f} from the active provider.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the key-slice kernels of {@code f} from the active provider (stateless, thread-safe)
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static SliceKernels keyKernels(KvFormat f) {
        return get(ACTIVE_KEYS, f);
    }

    /**
     * Slice kernels for value slices of {@code f} from the active provider.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the value-slice kernels of {@code f} from the active provider (stateless, thread-safe)
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static SliceKernels valueKernels(KvFormat f) {
        return get(ACTIVE_VALUES, f);
    }

    /**
     * Plain-Java kernels of {@code f} (keys for KIVI), whatever the active provider.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the scalar provider's kernels of {@code f}
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static SliceKernels scalarKernels(KvFormat f) {
        return get(SCALAR_KEYS, f);
    }

    /**
     * Plain-Java kernels for key slices of {@code f}.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the scalar provider's key-slice kernels of {@code f}
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static SliceKernels scalarKeyKernels(KvFormat f) {
        return get(SCALAR_KEYS, f);
    }

    /**
     * Plain-Java kernels for value slices of {@code f}.
     *
     * @param f one of the formats of {@code KvFormats}
     * @return the scalar provider's value-slice kernels of {@code f}
     * @throws IllegalArgumentException if {@code f} is null or not a known format
     */
    public static SliceKernels scalarValueKernels(KvFormat f) {
        return get(SCALAR_VALUES, f);
    }

    /**
     * The softmax arithmetic of the active provider (Vector API exponentials when available), for
     * attention kernels that fuse it with these slice kernels.
     *
     * @return the active provider's softmax kernels (stateless, thread-safe)
     */
    public static SoftmaxKernels softmaxKernels() {
        return ACTIVE.softmax();
    }

    /**
     * The plain-Java softmax arithmetic, whatever the active provider.
     *
     * @return the scalar softmax kernels (stateless, thread-safe)
     */
    public static SoftmaxKernels scalarSoftmaxKernels() {
        return ScalarSoftmax.INSTANCE;
    }

    /**
     * Name of the active provider: {@code "scalar"} or e.g. {@code "vector(512-bit)"}.
     *
     * @return the active provider's name, fixed for the life of the JVM
     */
    public static String provider() {
        return ACTIVE.name();
    }

    /**
     * True when the Vector API provider is active.
     *
     * @return true for the Vector API provider, false for the scalar one
     */
    public static boolean vectorized() {
        return ACTIVE != ScalarProvider.INSTANCE;
    }

    // ------------------------------------------------------------------ internals (tests use these)

    /** Every provider this JVM can run: the scalar one, then the Vector API one if available. */
    static List<KernelProvider> availableProviders() {
        KernelProvider vector = loadVectorProvider();
        return vector == null ? List.of(ScalarProvider.INSTANCE) : List.of(ScalarProvider.INSTANCE, vector);
    }

    static KernelProvider activeProvider() {
        return ACTIVE;
    }

    static Codec codec(KernelProvider p, KvFormat f, boolean keys) {
        Codec c = p.codec(check(f), keys);
        return c != null || p == ScalarProvider.INSTANCE ? c : ScalarProvider.INSTANCE.codec(f, keys);
    }

    /** Codecs by format index; a values table shares the key codec of every format but KIVI. */
    private static Codec[] table(KernelProvider p, boolean keys, Codec[] keyTable) {
        Codec[] t = new Codec[FORMATS.size()];
        for (int i = 0; i < t.length; i++) {
            KvFormat f = FORMATS.get(i);
            boolean split = Formats.splitRoles(f);
            t[i] = keyTable != null && !split ? keyTable[i] : codec(p, f, keys);
        }
        return t;
    }

    private static Codec get(Codec[] table, KvFormat f) {
        Codec c = table[index(f)];
        if (c == null) {
            throw new UnsupportedOperationException("format " + f + " is not implemented yet");
        }
        return c;
    }

    private static KvFormat check(KvFormat f) {
        index(f);
        return f;
    }

    private static int index(KvFormat f) {
        int i = f == null ? -1 : FORMATS.indexOf(f);
        if (i < 0) {
            throw new IllegalArgumentException("no quantizer for format " + f
                    + "; known: " + FORMATS.stream().map(KvFormat::name).toList());
        }
        return i;
    }

    /** True when the vector module is present and not disabled by -Dkvcache.vector=false. */
    static boolean vectorWanted() {
        return !vectorDisabledByProperty() && vectorModulePresent();
    }

    private static boolean vectorDisabledByProperty() {
        return "false".equalsIgnoreCase(System.getProperty("kvcache.vector", "true").trim());
    }

    private static boolean vectorModulePresent() {
        return ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent();
    }

    /**
     * The WARNING logged once per JVM when the scalar kernels run because {@code jdk.incubator.vector}
     * is not in the boot layer (issue #16). The slowdowns are the "Vector / scalar speedup" table of
     * kvcache-quant/bench-results/quantizer-report-2026-11-25.txt (2026-11-25, QuantizerBenchmark,
     * 131,072 tokens, 2-core AMD EPYC with AVX-512, 512-bit provider, JDK 25): dotRows Q8_0 6.23,
     * FP8_E4M3 4.32, FP8_E5M2 3.85, F32 1.67; accumulateRows Q8_0 5.84, FP8_E4M3 5.25, FP8_E5M2 4.55,
     * F32 1.78; encode Q8_0 19.71.
     */
    static final String MISSING_MODULE_WARNING = "kvcache-quant: module jdk.incubator.vector is not"
            + " in the boot layer, so the scalar (plain Java) kernels are in use. Add the JVM flag"
            + " --add-modules jdk.incubator.vector (on the class path; on the module path the same flag, or"
            + " 'requires jdk.incubator.vector' in your module-info.java: dev.kvcache.quant only"
            + " 'requires static' it, which does not resolve it). Measured slowdown of the scalar kernels"
            + " (kvcache-quant/bench-results/quantizer-report-2026-11-25.txt, 2026-11-25, AVX-512):"
            + " attention dot products 3.9-6.2x and weighted sums 4.6-5.8x slower for Q8_0/FP8"
            + " (1.7-1.8x for F32), Q8_0 encode 19.7x. Set -Dkvcache.vector=false to choose the scalar"
            + " kernels on purpose without this warning.";

    private static void reportScalarOnce(System.Logger.Level level, String message) {
        if (SCALAR_REPORTED.compareAndSet(false, true)) {
            LOG.log(level, message);
        }
    }

    /*
     * Lucene-style: the class that touches jdk.incubator.vector is named only as a string, so the
     * scalar path never links against the incubator module. Each reason for the scalar path gets
     * its own message, once per JVM: the missing module a WARNING with the flag and the measured
     * slowdown; -Dkvcache.vector=false (a deliberate choice) only DEBUG; a CPU whose vectors are
     * narrower than 256 bits INFO; a failure (linkage error, ...) a WARNING naming it.
     * -Dkvcache.vector.bits caps the vector width and never turns the vector path off.
     */
    private static KernelProvider loadVectorProvider() {
        if (vectorDisabledByProperty()) {
            reportScalarOnce(System.Logger.Level.DEBUG,
                    "kvcache-quant: scalar kernels in use, as set by -Dkvcache.vector=false");
            return null;
        }
        if (!vectorModulePresent()) {
            reportScalarOnce(System.Logger.Level.WARNING, MISSING_MODULE_WARNING);
            return null;
        }
        try {
            Class<?> c = Class.forName("dev.kvcache.quant.VectorProvider");
            Optional<?> p = (Optional<?>) c.getDeclaredMethod("create").invoke(null);
            if (p.isEmpty()) {
                reportScalarOnce(System.Logger.Level.INFO, "kvcache-quant: scalar kernels in use: this"
                        + " CPU's preferred vectors are narrower than the 256 bits the Vector API kernels need");
            }
            return (KernelProvider) p.orElse(null);
        } catch (ReflectiveOperationException | LinkageError | RuntimeException e) {
            reportScalarOnce(System.Logger.Level.WARNING,
                    "kvcache-quant: Vector API kernels unavailable, using scalar: " + e);
            return null;
        }
    }
}
