package dev.kvcache.testkit;

import dev.kvcache.KvFormat;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;

import java.util.Objects;

/**
 * Your {@link KvStore} wired into a {@link ManagerModel} run, so that the model's random workloads
 * check your store's writes, reads, block copies and the swap and tier moves through it, not only
 * the manager's bookkeeping.
 *
 * <p>With a store under test the model builds its manager with {@code .store(yourStore)} (wrapped:
 * the wrapper also records, for every slot, which prefix the KV written there was computed from).
 * Wherever a real engine would compute KV, the model writes into your store, for every layer, a
 * key and a value vector derived from that prefix: integers in [-7, 7], a different pattern per
 * layer and per K or V. After every step, for every slot that a live sequence maps and every slot
 * of a published block, it reads your store back ({@code readKey} / {@code readValue}, all layers)
 * and requires each element to lie within {@link #tolerance()} of the vector of the prefix that
 * slot must hold. A store that writes to the wrong offset, copies the wrong block or only some
 * layers on a copy-on-write, or loses bytes on a swap or a tier round trip, fails the property
 * with the slot, layer and element it got wrong.
 *
 * <p>The layout is {@code new KvLayout(2, 1, 32, config.blockTokens(), format)}: two layers, one KV
 * head of 32 values (a whole quantization group of Q8_0 and Q4_0). A swap space and a tier, when
 * the {@link ManagerModel.Config} asks for them, are the model's own: they move your store's
 * contents through {@code readKey}/{@code readValue} and {@code write}, so they exercise your
 * store's reads and writes, not its export hooks. The model closes the store at the end of every
 * run, a failed one included.
 *
 * @param format    the format the store is created in (the layout's)
 * @param factory   creates a store of exactly {@code blocks} blocks of {@code layout}; called once
 *                  per run
 * @param tolerance how far each element read back may lie from the value written (absolute; the
 *                  values are integers in [-7, 7], so anything below 0.5 tells every prefix apart
 *                  exactly, and the default of {@link #of} depends on the format's bytes per value)
 */
public record StoreUnderTest(KvFormat format, Factory factory, float tolerance) {

    /** Creates the store under test; {@code OffHeapKvStore::allocate} is one. */
    @FunctionalInterface
    public interface Factory {
        /**
         * A new, empty store.
         *
         * @param layout the layout the model uses (see {@link StoreUnderTest})
         * @param blocks the number of blocks, the model's {@link ManagerModel.Config#blocks()}
         * @return a store of {@code blocks} blocks of {@code layout}; the model closes it
         */
        KvStore create(KvLayout layout, int blocks);
    }

    /** Checks the arguments. */
    public StoreUnderTest {
        Objects.requireNonNull(format, "format");
        Objects.requireNonNull(factory, "factory");
        if (!(tolerance >= 0 && tolerance < 7)) {
            throw new IllegalArgumentException("tolerance must be in [0, 7), got " + tolerance);
        }
    }

    /**
     * A store under test with a tolerance for its format's rounding: 0.05 for two or more bytes a
     * value (F32, F16, BF16), 0.5 for about one (Q8_0, FP8), 1.0 for about half a byte (Q4_0,
     * 4-bit KIVI), 4.7 below that (2-bit KIVI: four levels over [-7, 7], a half step of 2.33, and a
     * row may be quantized twice: the model's swaps write a block's dequantized rows back, and a
     * rewritten row of a sealed block re-quantizes the others, so two half steps). A row of
     * another prefix's KV still misses these bounds in most of its 32 elements.
     *
     * @param format  the format the store is created in
     * @param factory creates the store
     * @return the store under test
     */
    public static StoreUnderTest of(KvFormat format, Factory factory) {
        Objects.requireNonNull(format, "format");
        double bytesPerValue = (format.keyBytes(16, 32) + format.valueBytes(16, 32)) / (2.0 * 16 * 32);
        float tol = bytesPerValue >= 2 ? 0.05f : bytesPerValue >= 0.9 ? 0.5f : bytesPerValue >= 0.45 ? 1.0f : 4.7f;
        return new StoreUnderTest(format, factory, tol);
    }

    /**
     * The same store with another tolerance.
     *
     * @param tolerance the absolute tolerance per element
     * @return a copy with that tolerance
     */
    public StoreUnderTest withTolerance(float tolerance) {
        return new StoreUnderTest(format, factory, tolerance);
    }

    /**
     * The layout of the store for {@code blockTokens} tokens a block.
     *
     * @param blockTokens tokens per block
     * @return {@code new KvLayout(2, 1, 32, blockTokens, format)}
     */
    public KvLayout layout(int blockTokens) {
        return new KvLayout(2, 1, 32, blockTokens, format);
    }
}
