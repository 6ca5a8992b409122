package dev.kvcache.cuda;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.offheap.StoreLayout;

import java.util.List;
import java.util.Objects;

/**
 * Where every byte of a {@link CudaKvStore} lives. It is the off-heap store's layout
 * ({@link StoreLayout}, which computes every offset here) byte for byte, so a block moves between
 * the two backends as one bulk copy:
 * <pre>
 *   store   = block[blocks]                               blockBytes = layout.bytesPerBlock()
 *   block   = layer[layers]                               layerBytes = kvHeads * (K + V)
 *   layer   = K-slice[kvHeads] then V-slice[kvHeads]
 *   K-slice = keys of blockTokens tokens x headDim, encoded    K = format.keyBytes(B, headDim)
 *   V-slice = values of blockTokens tokens x headDim, encoded  V = format.valueBytes(B, headDim)
 * </pre>
 * Row formats (F32, F16, BF16, Q8_0, Q4_0) put row r of a slice at {@code r * rowBytes}; Q8_0 and
 * Q4_0 rows are llama.cpp {@code block_q8_0}/{@code block_q4_0} streams. An FP8 slice is
 * {@code blockTokens * headDim} codes and one float32 scale ({@link #FP8_SCALE_FIRST} says where).
 *
 * <p>FP8 slices are encoded whole: until a (block, layer)'s last row is written its rows live in a
 * float32 <em>staging slot</em> ({@link #stageBytes()}, {@code [K|V][head][row][dim]}), exactly as
 * in the off-heap store.
 *
 * <p>The kernels (src/main/cuda/kvcache_kernels.cu) compute the same offsets from the numbers this
 * class passes them; {@link #formatCode()} is the kernels' format id.
 */
public final class CudaBlockLayout {

    /**
     * FP8 slices hold their float32 scale before the codes ({@code true}) or after them. This must
     * match kvcache-quant's FP8 quantizer; it is passed to the kernels at launch, so changing it
     * needs no kernel rebuild.
     */
    public static final boolean FP8_SCALE_FIRST = true;

    /**
     * The formats the kernels implement. KIVI and Q5_0 are not supported on the device: a layout in
     * either is refused by the constructor, naming the format (Q5_0 has CPU kernels only, issue #17).
     */
    public static final List<KvFormat> SUPPORTED = List.of(KvFormats.F32, KvFormats.F16, KvFormats.BF16,
            KvFormats.FP8_E4M3, KvFormats.FP8_E5M2, KvFormats.Q8_0, KvFormats.Q4_0);

    /** Largest head the decode kernel handles (32 lanes x 16 values). */
    public static final int MAX_DECODE_HEAD_DIM = 512;

    private final KvLayout layout;
    private final int formatCode;
    /** The one layout descriptor both backends share: every offset comes from it. */
    private final StoreLayout bytes;

    /**
     * The byte layout of blocks of {@code layout}.
     *
     * @param layout the model shape and KV format; its format must be one of {@link #SUPPORTED}
     * @throws NullPointerException     if {@code layout} is null
     * @throws IllegalArgumentException if the format is not in {@link #SUPPORTED} (KIVI, Q5_0); the
     *                                  message names it and the supported ones
     * @throws IllegalStateException    if the format's slice sizes do not add up to
     *                                  {@link KvLayout#bytesPerBlock()}, or its K and V slices differ
     *                                  in size (the kernels take one slice stride)
     */
    public CudaBlockLayout(KvLayout layout) {
        this.layout = Objects.requireNonNull(layout, "layout");
        this.formatCode = SUPPORTED.indexOf(layout.format());
        if (formatCode < 0) {
            throw new IllegalArgumentException("format " + layout.format().name()
                    + " is not supported by the CUDA store; supported: "
                    + SUPPORTED.stream().map(KvFormat::name).toList());
        }
        this.bytes = new StoreLayout(layout);
        if (bytes.keySliceBytes() != bytes.valueSliceBytes()) {
            // every supported format sizes K and V alike; the kernels take one slice stride
            throw new IllegalStateException("K slice " + bytes.keySliceBytes() + " != V slice " + bytes.valueSliceBytes());
        }
    }

    /**
     * The model shape and format this describes.
     *
     * @return the layout given to the constructor
     */
    public KvLayout kvLayout() {
        return layout;
    }

    /**
     * The kernels' format id: the index in {@link #SUPPORTED}.
     *
     * @return the format's index in {@link #SUPPORTED}, in {@code [0, SUPPORTED.size())}
     */
    public int formatCode() {
        return formatCode;
    }

    /**
     * Whether slices are encoded whole through a staging slot.
     *
     * @return true for FP8_E4M3 and FP8_E5M2 (encoded a whole slice at a time through a staging
     *         slot), false for the row formats
     */
    public boolean blockFormat() {
        return layout.format() == KvFormats.FP8_E4M3 || layout.format() == KvFormats.FP8_E5M2;
    }

    /**
     * Bytes of one head's keys of one layer of one block.
     *
     * @return the K slice size in bytes, {@code format.keyBytes(blockTokens, headDim)}
     */
    public long keySliceBytes() {
        return bytes.keySliceBytes();
    }

    /**
     * Bytes of one head's values of one layer of one block.
     *
     * @return the V slice size in bytes, {@code format.valueBytes(blockTokens, headDim)}; equal to
     *         {@link #keySliceBytes()} for every supported format
     */
    public long valueSliceBytes() {
        return bytes.valueSliceBytes();
    }

    /**
     * Bytes of one layer of one block.
     *
     * @return {@code kvHeads * (keySliceBytes() + valueSliceBytes())}
     */
    public long layerBytes() {
        return bytes.layerBytes();
    }

    /**
     * Bytes of one block ({@link KvLayout#bytesPerBlock()}).
     *
     * @return {@code layers * layerBytes()}, the block stride of the device allocation
     */
    public long blockBytes() {
        return bytes.blockBytes();
    }

    /**
     * Offset of block {@code block}.
     *
     * @param block the block id, in {@code [0, blocks)} of the store (not range-checked: the caller
     *              keeps it in range)
     * @return the byte offset {@code block * blockBytes()} of the block's first byte
     */
    public long blockOffset(int block) {
        return bytes.blockOffset(block);
    }

    /**
     * Offset of the K slice of {@code head} in {@code layer} of {@code block}.
     *
     * @param block the block id, in {@code [0, blocks)} of the store
     * @param layer the layer, in {@code [0, layers)}
     * @param head  the KV head, in {@code [0, kvHeads)} (no argument is range-checked: the caller
     *              keeps them in range)
     * @return the byte offset, in the block allocation, of the first of {@link #keySliceBytes()} bytes
     */
    public long keyOffset(int block, int layer, int head) {
        return bytes.keyOffset(block, layer, head);
    }

    /**
     * Offset of the V slice of {@code head} in {@code layer} of {@code block}.
     *
     * @param block the block id, in {@code [0, blocks)} of the store
     * @param layer the layer, in {@code [0, layers)}
     * @param head  the KV head, in {@code [0, kvHeads)} (no argument is range-checked: the caller
     *              keeps them in range)
     * @return the byte offset, in the block allocation, of the first of {@link #valueSliceBytes()}
     *         bytes; the V slices of a layer follow all its K slices
     */
    public long valueOffset(int block, int layer, int head) {
        return bytes.valueOffset(block, layer, head);
    }

    /**
     * Bytes of one staging slot: one layer of one block in float32, K then V.
     *
     * @return {@code 2 * kvHeads * stageSliceBytes()}
     */
    public long stageBytes() {
        return bytes.stageBytes();
    }

    /**
     * Bytes of one head's rows in a staging slot.
     *
     * @return {@code blockTokens * headDim * Float.BYTES}
     */
    public long stageSliceBytes() {
        return bytes.stageSliceBytes();
    }

    /**
     * Offset of the key rows of {@code head} in a staging slot.
     *
     * @param head the KV head, in {@code [0, kvHeads)} (not range-checked)
     * @return the byte offset from the slot's start of the head's {@link #stageSliceBytes()} key bytes
     */
    public long stageKeyOffset(int head) {
        return bytes.stageKeyOffset(head);
    }

    /**
     * Offset of the value rows of {@code head} in a staging slot.
     *
     * @param head the KV head, in {@code [0, kvHeads)} (not range-checked)
     * @return the byte offset from the slot's start of the head's {@link #stageSliceBytes()} value
     *         bytes; the value rows follow every head's key rows
     */
    public long stageValueOffset(int head) {
        return bytes.stageValueOffset(head);
    }

    /**
     * Bytes of one block in host swap space: the block, plus for FP8 one staging slot per layer so a
     * partially written block comes back bit-identical.
     *
     * @return {@code blockBytes()}, plus {@code layers * stageBytes()} for FP8
     */
    public long swapBlockBytes() {
        return blockBytes() + (blockFormat() ? layout.layers() * stageBytes() : 0);
    }

    @Override
    public String toString() {
        return "CudaBlockLayout[" + bytes + ", format code " + formatCode + "]";
    }
}
