package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvLayout;

import java.util.Objects;

/**
 * Where every byte of an {@link OffHeapKvStore} lives: the one place that defines the memory layout.
 *
 * <h2>Encoded blocks (the main allocation)</h2>
 * <pre>
 *   store   = block[blocks]                               blockBytes = layout.bytesPerBlock()
 *   block   = layer[layers]                               layerBytes = kvHeads * (K + V)
 *   layer   = K-slice[kvHeads] then V-slice[kvHeads]
 *   K-slice = format.encode(keys of blockTokens tokens x headDim)     K = format.keyBytes(B, headDim)
 *   V-slice = format.encode(values of blockTokens tokens x headDim)   V = format.valueBytes(B, headDim)
 * </pre>
 * i.e. {@code [block][layer][K|V][head][token][dim]} (within a slice the order is whatever the
 * quantizer writes for {@code [tokens][dim]} rows; row formats put row r at {@code r * rowBytes}).
 *
 * <p>Why this order: one decode step of one layer walks a sequence's blocks in order and, in each
 * block, reads for every KV head its K slice (dot products against the query heads of its group)
 * and then its V slice (weighted sum). With heads innermost above {@code token}, each of those reads
 * is one contiguous run of {@code K} or {@code V} bytes (8 KiB for F32, B=16, headDim=128), so the
 * hardware prefetcher streams it and a slice is read once for all query heads of its group. Putting
 * the layer directly under the block keeps one layer's K and V of a block together (two runs of
 * {@code kvHeads*K} and {@code kvHeads*V} bytes), and keeps every byte of a block in one range so
 * {@code copyBlock} and swapping are single bulk copies. Token-major orders ({@code [token][head]})
 * would interleave heads and force strided reads; block formats (FP8 scale per block and head, KIVI
 * keys grouped per channel across tokens) need the whole {@code [token][dim]} slice of one head
 * together anyway.
 *
 * <p>The allocation is 64-byte aligned (a cache line); {@code blockBytes} is not padded (the
 * contract sizes blocks with {@link KvLayout#bytesPerBlock()}), so slices after the first are only
 * aligned when the sizes happen to be (all F32/F16/BF16/Q8_0 layouts with headDim a multiple of 32).
 *
 * <h2>Staging (the residual window of block formats)</h2>
 * FP8 and KIVI encode a whole slice at once. Until the last row of a block is written, the rows of
 * that (block, layer) live in a staging slot in full precision, laid out exactly like an F32 layer:
 * {@code [K|V][head][token][dim]} float32, {@link #stageBytes()} bytes. Staging slots come from
 * separately allocated chunks and are only held by partially written blocks (about one per layer
 * per live sequence), so the residual window costs {@code stageBytes * layers} per live sequence,
 * not per block. When a manager frees a partial block it tells the store
 * ({@link OffHeapKvStore#blockReleased}), which gives the slots back; without a manager they are
 * kept until the block is reused and filled, or until {@link OffHeapKvStore#trimStaging} seals them.
 */
public final class StoreLayout {

    private final KvLayout layout;
    private final long keySliceBytes;
    private final long valueSliceBytes;
    private final long layerBytes;
    private final long blockBytes;
    private final long stageSliceBytes;

    /**
     * The byte layout of blocks of {@code layout}.
     *
     * @param layout the model shape and format whose blocks this lays out; not null
     * @throws NullPointerException  if {@code layout} is null
     * @throws IllegalStateException if the format's slice sizes do not add up to
     *                               {@link KvLayout#bytesPerBlock()} (this class is out of date with
     *                               {@code KvFormats})
     */
    public StoreLayout(KvLayout layout) {
        this.layout = Objects.requireNonNull(layout, "layout");
        KvFormat f = layout.format();
        this.keySliceBytes = f.keyBytes(layout.blockTokens(), layout.headDim());
        this.valueSliceBytes = f.valueBytes(layout.blockTokens(), layout.headDim());
        this.layerBytes = (long) layout.kvHeads() * (keySliceBytes + valueSliceBytes);
        this.blockBytes = layerBytes * layout.layers();
        if (blockBytes != layout.bytesPerBlock()) {
            // KvFormats is the single source of truth; a mismatch means this class is out of date
            throw new IllegalStateException("layout sizes a block at " + layout.bytesPerBlock()
                    + " bytes, the slices add up to " + blockBytes);
        }
        this.stageSliceBytes = (long) layout.blockTokens() * layout.headDim() * Float.BYTES;
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
     * Bytes of one head's keys of one layer of one block.
     *
     * @return {@code format.keyBytes(blockTokens, headDim)}, {@code > 0}
     */
    public long keySliceBytes() {
        return keySliceBytes;
    }

    /**
     * Bytes of one head's values of one layer of one block.
     *
     * @return {@code format.valueBytes(blockTokens, headDim)}, {@code > 0}
     */
    public long valueSliceBytes() {
        return valueSliceBytes;
    }

    /**
     * Bytes of one layer of one block: K slices of all heads, then V slices of all heads.
     *
     * @return {@code kvHeads * (keySliceBytes() + valueSliceBytes())}
     */
    public long layerBytes() {
        return layerBytes;
    }

    /**
     * Bytes of one block, all layers ({@link KvLayout#bytesPerBlock()}).
     *
     * @return {@code layers * layerBytes()}, equal to {@link KvLayout#bytesPerBlock()}
     */
    public long blockBytes() {
        return blockBytes;
    }

    /**
     * Offset of block {@code block} in the main allocation.
     *
     * @param block the block id, in {@code [0, blocks)} of the store (no range check: the caller keeps it in range)
     * @return the byte offset {@code block * blockBytes()} of the block's first byte
     */
    public long blockOffset(int block) {
        return block * blockBytes;
    }

    /**
     * Offset of the K slice of {@code head} in {@code layer} of {@code block}.
     *
     * @param block the block id, in {@code [0, blocks)} of the store
     * @param layer the layer, in {@code [0, layers)}
     * @param head  the KV head, in {@code [0, kvHeads)} (no argument is range-checked: the caller keeps them in range)
     * @return the byte offset, in the main allocation, of the first of {@link #keySliceBytes()} bytes
     */
    public long keyOffset(int block, int layer, int head) {
        return block * blockBytes + layer * layerBytes + head * keySliceBytes;
    }

    /**
     * Offset of the V slice of {@code head} in {@code layer} of {@code block}.
     *
     * @param block the block id, in {@code [0, blocks)} of the store
     * @param layer the layer, in {@code [0, layers)}
     * @param head  the KV head, in {@code [0, kvHeads)} (no argument is range-checked: the caller keeps them in range)
     * @return the byte offset, in the main allocation, of the first of {@link #valueSliceBytes()}
     *         bytes; the V slices of a layer follow all its K slices
     */
    public long valueOffset(int block, int layer, int head) {
        return block * blockBytes + layer * layerBytes
                + layout.kvHeads() * keySliceBytes + head * valueSliceBytes;
    }

    /**
     * Bytes of one staging slot: one layer of one block in F32, K then V.
     *
     * @return {@code 2 * kvHeads * stageSliceBytes()}
     */
    public long stageBytes() {
        return 2 * layout.kvHeads() * stageSliceBytes;
    }

    /**
     * Bytes of one head's rows in a staging slot ({@code blockTokens * headDim * 4}).
     *
     * @return {@code blockTokens * headDim * Float.BYTES}
     */
    public long stageSliceBytes() {
        return stageSliceBytes;
    }

    /**
     * Offset of the key rows of {@code head} within a staging slot.
     *
     * @param head the KV head, in {@code [0, kvHeads)} (not range-checked)
     * @return the byte offset from the slot's start of the head's {@link #stageSliceBytes()} key bytes
     */
    public long stageKeyOffset(int head) {
        return head * stageSliceBytes;
    }

    /**
     * Offset of the value rows of {@code head} within a staging slot.
     *
     * @param head the KV head, in {@code [0, kvHeads)} (not range-checked)
     * @return the byte offset from the slot's start of the head's {@link #stageSliceBytes()} value
     *         bytes; the value rows follow every head's key rows
     */
    public long stageValueOffset(int head) {
        return (layout.kvHeads() + head) * stageSliceBytes;
    }

    @Override
    public String toString() {
        return "StoreLayout[" + layout + ", K=" + keySliceBytes + ", V=" + valueSliceBytes
                + ", layer=" + layerBytes + ", block=" + blockBytes + "]";
    }
}
