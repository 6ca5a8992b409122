package dev.kvcache;

/**
 * Physical KV memory addressed by the block manager's slots: slot = block * blockTokens + offset.
 *
 * <p>The block manager decides <em>where</em> a token's KV goes; a store holds the bytes, in the
 * layout's format (quantized on write). The CPU implementation is
 * {@code dev.kvcache.offheap.OffHeapKvStore}; {@code dev.kvcache.cuda.CudaKvStore} keeps the same
 * contract in device memory.
 *
 * <p>Every method throws {@link IllegalArgumentException} naming the value and its limit for a
 * layer, slot, block or array length out of range, and {@link IllegalStateException} after
 * {@link #close()}.
 *
 * <h2>Values</h2>
 * {@link #write} refuses NaN, infinities and any element with {@code |x| > }{@link #MAX_ABS_VALUE}
 * (IllegalArgumentException naming layer, slot, K or V, the element, the value and the limit),
 * writing nothing; {@link #checkValues} is that check for implementations. Attention refuses a
 * query element outside the same bound ({@link #checkQuery}). Why: one huge but finite key makes
 * {@code q . k} overflow to infinity and the softmax of every later decode of that sequence NaN;
 * with both sides bounded every score and every weighted sum stays finite.
 */
public interface KvStore extends AutoCloseable {

    /**
     * The largest {@code |x|} a key, value or query element may have: {@value}, the largest finite
     * IEEE binary16 number.
     *
     * <p>Why this value:
     * <ul>
     *   <li>No real model's KV reaches it: F16 is llama.cpp's default KV-cache type for every model
     *       it runs, which would saturate such KV; keys and values are projections of a normalized
     *       hidden state and stay orders of magnitude below it.</li>
     *   <li>Every standard format stores every value within it without refusal: KIVI's and Q8_0's
     *       and Q4_0's fp16 group metadata hold it, F16 holds it exactly, FP8 scales it. A store
     *       therefore never refuses later (when a staged block is sealed) a value it accepted now.</li>
     *   <li>Attention stays finite: with {@code |q|, |k| <= MAX_ABS_VALUE} a score is at most
     *       {@code headDim * MAX_ABS_VALUE^2} in magnitude, and {@code headDim} is below
     *       {@link Integer#MAX_VALUE} ({@link KvLayout} caps a block at that many bytes); that
     *       product, and the softmax-weighted sum of at most {@link Integer#MAX_VALUE} values of at
     *       most {@code MAX_ABS_VALUE} each, are far below {@link Float#MAX_VALUE} (a test checks
     *       both bounds).</li>
     * </ul>
     */
    float MAX_ABS_VALUE = 65504f;

    /**
     * Throws IllegalArgumentException, naming the layer, the slot, K or V, the element index, the
     * value and {@link #MAX_ABS_VALUE}, if any of the first {@code n} elements of {@code k} or
     * {@code v} is NaN, infinite or larger in magnitude than {@code MAX_ABS_VALUE}. The arrays must
     * hold at least {@code n} floats (check lengths first). Allocates nothing unless it throws.
     *
     * @param layer the layer being written (for the message)
     * @param slot  the slot being written (for the message)
     * @param k     the keys
     * @param v     the values
     * @param n     how many elements of each to check
     */
    static void checkValues(int layer, long slot, float[] k, float[] v, int n) {
        // one pass over both arrays; Math.max propagates NaN, so a NaN fails the comparison below.
        // A max-reduction of this shape is a loop C2 vectorizes.
        float m = 0f;
        for (int i = 0; i < n; i++) {
            m = Math.max(m, Math.max(Math.abs(k[i]), Math.abs(v[i])));
        }
        if (!(m <= MAX_ABS_VALUE)) {
            int bad = firstOutOfRange(k, n);
            String which = bad >= 0 ? "k" : "v"; // the parameter names: keys (K) or values (V)
            float[] a = bad >= 0 ? k : v;
            int i = bad >= 0 ? bad : firstOutOfRange(v, n);
            throw new IllegalArgumentException("layer " + layer + ", slot " + slot + ": " + which
                    + "[" + i + "] = " + a[i] + (Float.isFinite(a[i]) ? "" : " is not finite;") + " ("
                    + (bad >= 0 ? "K" : "V") + ") KV values must be finite with |x| <= " + MAX_ABS_VALUE
                    + " (KvStore.MAX_ABS_VALUE; larger values would overflow attention)");
        }
    }

    /**
     * Throws IllegalArgumentException naming the element, its value and {@link #MAX_ABS_VALUE} if
     * any of {@code q[0 .. n)} is NaN, infinite or larger in magnitude than {@code MAX_ABS_VALUE}.
     * Attention calls it once per decode: {@code n} floats against a pass over the whole context.
     *
     * @param q the query
     * @param n how many elements to check
     */
    static void checkQuery(float[] q, int n) {
        float m = 0f;
        for (int i = 0; i < n; i++) {
            m = Math.max(m, Math.abs(q[i]));
        }
        if (!(m <= MAX_ABS_VALUE)) {
            int i = firstOutOfRange(q, n);
            throw new IllegalArgumentException("q[" + i + "] = " + q[i] + (Float.isFinite(q[i]) ? "" : " is not finite;")
                    + " query values must be finite with |x| <= " + MAX_ABS_VALUE
                    + " (KvStore.MAX_ABS_VALUE; larger values would overflow attention)");
        }
    }

    /** Index of the first element of {@code a[0 .. n)} that is not finite or exceeds the limit; -1 if none. */
    private static int firstOutOfRange(float[] a, int n) {
        for (int i = 0; i < n; i++) {
            if (!(Math.abs(a[i]) <= MAX_ABS_VALUE)) {
                return i;
            }
        }
        return -1;
    }

    /**
     * The layout every block follows.
     *
     * @return the layout
     */
    KvLayout layout();

    /**
     * Number of blocks, ids 0 to blocks()-1.
     *
     * @return the number of blocks
     */
    int blocks();

    /**
     * Stores one token's keys and values ({@code kvHeads*headDim} floats each) at {@code slot} of
     * {@code layer}. A NaN, an infinity or an element beyond {@link #MAX_ABS_VALUE} is refused with
     * IllegalArgumentException (see {@link #checkValues}) and nothing is written.
     *
     * @param layer the layer, 0 to {@code layers - 1}
     * @param slot  the slot, {@code block * blockTokens + offset}
     * @param k     at least {@code kvHeads*headDim} keys
     * @param v     at least {@code kvHeads*headDim} values
     */
    void write(int layer, long slot, float[] k, float[] v);

    /**
     * Reads one token's keys, dequantized, into {@code out} ({@code kvHeads*headDim} floats).
     *
     * @param layer the layer
     * @param slot  the slot
     * @param out   at least {@code kvHeads*headDim} floats
     */
    void readKey(int layer, long slot, float[] out);

    /**
     * Reads one token's values, dequantized, into {@code out} ({@code kvHeads*headDim} floats).
     *
     * @param layer the layer
     * @param slot  the slot
     * @param out   at least {@code kvHeads*headDim} floats
     */
    void readValue(int layer, long slot, float[] out);

    /**
     * Copies every layer of block {@code srcBlock} onto {@code dstBlock} (copy-on-write).
     *
     * @param srcBlock the block to copy from
     * @param dstBlock the block to copy into
     */
    void copyBlock(int srcBlock, int dstBlock);

    /**
     * Called by {@link KvCacheManager} when block {@code block} returns to its free pool: its last
     * reference is gone and it is not kept for prefix reuse, so its contents are dead until the
     * block is written again. Stores drop per-block side state here (the off-heap store gives back
     * the full-precision staging rows of a partially written block of a block format, which would
     * otherwise be held until the block is reused). Called under the manager's lock: it must be
     * cheap and must not call back into the manager. Default: nothing. After {@link #close()} it
     * does nothing.
     *
     * @param block the released block
     */
    default void blockReleased(int block) {
    }

    /**
     * Copies every byte of block {@code block} (all layers, K and V, in the store's format with its
     * scales) into {@code dst[0, layout().bytesPerBlock())}: what a {@link KvTier} keeps of a
     * published (full) block. Stores that keep KV elsewhere (a device) copy it to host memory here.
     * Default: unsupported (such a store cannot have tiers).
     *
     * @param block a published block
     * @param dst   at least {@code layout().bytesPerBlock()} writable bytes
     */
    default void exportBlock(int block, java.lang.foreign.MemorySegment dst) {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " cannot export blocks to a tier");
    }

    /**
     * {@link #exportBlock} that also returns the CRC32C ({@link java.util.zip.CRC32C}) of the bytes
     * it wrote to {@code dst[0, layout().bytesPerBlock())}: the checksum a tier keeps to verify a
     * later load against. A store whose bytes are in host memory overrides it to checksum each
     * chunk right after copying it, while the chunk is still in the core's cache, so that the
     * checksum hides under the copy instead of reading the block a second time. Same refusals as
     * {@code exportBlock}; on a throw the checksum is lost and {@code dst} may hold a partial copy.
     * Default: {@code exportBlock}, then one CRC32C pass over {@code dst}.
     *
     * @param block a published block
     * @param dst   at least {@code layout().bytesPerBlock()} writable bytes
     * @return the CRC32C of the exported bytes
     */
    default int exportBlockCrc32c(int block, java.lang.foreign.MemorySegment dst) {
        exportBlock(block, dst);
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        crc.update(dst.asSlice(0, layout().bytesPerBlock()).asByteBuffer());
        return (int) crc.getValue();
    }

    /**
     * Overwrites block {@code block} with bytes {@link #exportBlock} produced under the same layout:
     * the block then reads exactly as the exported one did. Default: unsupported.
     *
     * @param block the block to overwrite
     * @param src   {@code layout().bytesPerBlock()} bytes from {@link #exportBlock}
     */
    default void importBlock(int block, java.lang.foreign.MemorySegment src) {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " cannot import blocks from a tier");
    }

    /** Releases the memory; later calls fail with IllegalStateException. Idempotent. */
    @Override
    void close();
}
