package dev.kvcache.offheap;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.quant.SliceKernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Comparator;
import java.util.Objects;

/**
 * A {@link KvStore} in native memory: one 64-byte-aligned allocation of
 * {@code blocks * layout.bytesPerBlock()} bytes laid out as described in {@link StoreLayout}
 * ({@code [block][layer][K|V][head][token][dim]}).
 *
 * <h2>Writes</h2>
 * Row formats (F32, F16, BF16, Q8_0, Q4_0) quantize each written token straight into its row of
 * every head's slice. Block formats (FP8_*, KIVI_*) need a whole block to encode (a scale per
 * block and head; KIVI keys grouped per channel across the block's tokens): the first write into
 * a (block, layer) takes a staging slot and copies the slice's current contents into it in full
 * precision; rows are written there; writing the block's last row ({@code offset == blockTokens-1})
 * encodes every head's K and V slice from staging and gives the slot back. Reads and attention use
 * the staging rows while a slot is held and the encoded bytes otherwise, so a partial block is
 * exact and a full one is quantized. Rewriting a row of an already encoded block (a reused block,
 * or a recomputed token) reopens it the same way; its other rows then go through one extra
 * quantization round trip when it is sealed again. Never-written memory is zero and reads as 0.0.
 * Every write first refuses NaN, infinities and values beyond {@link KvStore#MAX_ABS_VALUE} (which
 * every format can encode, so a row staged in full precision can always be sealed later), then
 * encodes into per-thread scratch and copies into place only once every head encoded, so a refused
 * write changes nothing.
 *
 * <h2>Memory: zero, committed on first touch</h2>
 * The main allocation is made zero without touching it: on Linux, with native access enabled for
 * this module, a region of 2 MiB or more is an anonymous {@code mmap} whose 4 KiB pages the
 * kernel zero-fills when they are first written (no transparent huge pages: see
 * {@code NativeMemory}), so creating even a
 * multi-GiB store takes microseconds and the page faults are paid by the first write into each
 * page, spread over the prefill, and never for blocks that are never used. The trade-off: the
 * memory is committed lazily, so it is not reserved at allocation. A store larger than the kernel
 * will ever grant is still refused up front (OutOfMemoryError naming the size), but memory taken
 * by others in the meantime can make the OS fail the process later, under pressure, rather than
 * this call now; and resident memory grows with the blocks written, not with {@link #blocks()}.
 * An engine that wants the memory committed before serving writes (or copies) through its blocks
 * once. Without native access, or off Linux, the memory comes from {@link Arena#allocate(long,
 * long)}, which zeroes it eagerly (seconds per GiB on a small VM; one WARNING says so). Either way
 * the memory belongs to this store's shared arena: {@link #close()} unmaps or frees it, and so
 * does a constructor that fails after the allocation. Measured:
 * {@code kvcache-offheap/bench-results/alloc-2026-12-03.txt}.
 *
 * <h2>Threads</h2>
 * The memory comes from {@link Arena#ofShared()}, so any thread may call any method. Writes to
 * distinct blocks may run concurrently (only taking/returning staging slots synchronizes); a block
 * must not be written while another thread reads or writes the same block (the engine orders
 * that, as it must for the values anyway). {@link #close()} may race with other calls only in the
 * sense that those calls then fail with {@link IllegalStateException} (the shared arena's close
 * handshake guarantees that no access touches freed memory), never with a crash.
 *
 * <h2>Errors</h2>
 * Layers, slots, blocks and array lengths out of range throw {@link IllegalArgumentException}
 * naming the value and the limit before anything is written; every call after {@link #close()}
 * throws {@link IllegalStateException}.
 */
public final class OffHeapKvStore implements KvStore {

    /** Alignment of the main allocation and of staging chunks: one cache line. */
    public static final long ALIGNMENT = 64;

    private final KvLayout layout;
    private final StoreLayout bytes;
    private final int blocks;
    private final int layers;
    private final int kvHeads;
    private final int headDim;
    private final int blockTokens;
    private final long slots;
    private final Codecs codecs;
    private final boolean rowFormat;

    private final Arena arena;
    private final MemorySegment memory;
    private final StagingPool staging;
    /** Block formats: staging slot of (block * layers + layer), or -1 when the encoded bytes are current. */
    private final int[] stageOf;
    /** Block formats: when (block * layers + layer) last took a staging slot (a counter), for trimStaging. */
    private final long[] stagedAt;
    private long stageClock;
    private final ThreadLocal<WriteScratch> scratch;

    private volatile boolean closed;

    private OffHeapKvStore(KvLayout layout, int blocks) {
        this.layout = layout;
        this.bytes = new StoreLayout(layout);
        this.blocks = blocks;
        this.layers = layout.layers();
        this.kvHeads = layout.kvHeads();
        this.headDim = layout.headDim();
        this.blockTokens = layout.blockTokens();
        this.slots = (long) blocks * blockTokens;
        this.codecs = Codecs.of(layout.format());
        this.rowFormat = codecs.rowFormat();
        long total = Math.multiplyExact(bytes.blockBytes(), (long) blocks);
        long states = (long) blocks * layers;
        if (!rowFormat && states > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(blocks + " blocks x " + layers + " layers = " + states
                    + " staging states; the limit is " + (Integer.MAX_VALUE - 8));
        }
        this.arena = Arena.ofShared();
        try {
            this.memory = NativeMemory.allocateZeroed(arena, total, ALIGNMENT); // zero, lazily committed
            this.staging = new StagingPool(arena, bytes.stageBytes());
            if (rowFormat) {
                this.stageOf = new int[0];
                this.stagedAt = new long[0];
            } else {
                this.stageOf = new int[(int) states];
                Arrays.fill(stageOf, -1);
                this.stagedAt = new long[(int) states];
            }
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
        int rowFloats = blockTokens * headDim;
        long layerBytes = bytes.layerBytes();
        this.scratch = ThreadLocal.withInitial(() -> new WriteScratch(rowFloats, layerBytes));
    }

    /**
     * A store of {@code blocks} blocks of {@code layout}: one zero, 64-byte-aligned allocation of
     * {@code blocks * layout.bytesPerBlock()} bytes, committed on first touch where the OS allows
     * (see the class comment).
     *
     * @param layout the layout of every block
     * @param blocks how many blocks, at least 1
     * @return the store, owning its memory until {@link #close()}
     * @throws IllegalArgumentException {@code blocks} is not positive or the slots exceed
     *                                  {@code Integer.MAX_VALUE}
     * @throws OutOfMemoryError         the OS refused the memory
     */
    public static OffHeapKvStore allocate(KvLayout layout, int blocks) {
        Objects.requireNonNull(layout, "layout");
        if (blocks <= 0) {
            throw new IllegalArgumentException("blocks must be > 0, got " + blocks);
        }
        long slotCount = (long) blocks * layout.blockTokens();
        if (slotCount > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(blocks + " blocks of " + layout.blockTokens()
                    + " tokens is " + slotCount + " slots; the limit is " + Integer.MAX_VALUE);
        }
        return new OffHeapKvStore(layout, blocks);
    }

    @Override
    public KvLayout layout() {
        checkOpen();
        return layout;
    }

    /**
     * The byte layout of this store's blocks.
     *
     * @return where each block, layer, K/V slice and head lies
     */
    public StoreLayout storeLayout() {
        checkOpen();
        return bytes;
    }

    @Override
    public int blocks() {
        checkOpen();
        return blocks;
    }

    /**
     * Native bytes this store holds: the blocks plus staging chunks allocated so far (address
     * space: the blocks' pages are committed on first touch, see the class comment).
     *
     * @return the bytes allocated
     */
    public long allocatedBytes() {
        checkOpen();
        return memory.byteSize() + staging.allocatedBytes();
    }

    /**
     * Staging slots held now (partially written (block, layer) pairs of a block format).
     *
     * @return the slots in use
     */
    public int stagedSlices() {
        checkOpen();
        return staging.inUse();
    }

    /**
     * True after {@link #close()}.
     *
     * @return whether the store is closed
     */
    public boolean isClosed() {
        return closed;
    }

    @Override
    public void write(int layer, long slot, float[] k, float[] v) {
        checkOpen();
        checkLayer(layer);
        checkSlot(slot);
        checkArray("k", k);
        checkArray("v", v);
        // NaN, infinities and |x| > MAX_ABS_VALUE: refused before anything changes. Within that
        // bound every format encodes every value, so rows staged now never fail at the seal.
        KvStore.checkValues(layer, slot, k, v, kvHeads * headDim);
        int block = (int) (slot / blockTokens);
        int row = (int) (slot % blockTokens);
        WriteScratch ws = scratch.get();
        SliceKernels kk = codecs.keyKernels();
        SliceKernels vk = codecs.valueKernels();
        if (rowFormat) {
            // encode every head into scratch first, so an encoder's refusal changes nothing
            long kRowBytes = kk.rowBytes(headDim);
            long vRowBytes = vk.rowBytes(headDim);
            MemorySegment enc = ws.encoded;
            long vBase = kvHeads * kRowBytes;
            for (int h = 0; h < kvHeads; h++) {
                kk.encodeRow(k, h * headDim, headDim, enc, h * kRowBytes);
                vk.encodeRow(v, h * headDim, headDim, enc, vBase + h * vRowBytes);
            }
            for (int h = 0; h < kvHeads; h++) {
                MemorySegment.copy(enc, h * kRowBytes, memory,
                        bytes.keyOffset(block, layer, h) + row * kRowBytes, kRowBytes);
                MemorySegment.copy(enc, vBase + h * vRowBytes, memory,
                        bytes.valueOffset(block, layer, h) + row * vRowBytes, vRowBytes);
            }
            return;
        }
        int state = block * layers + layer;
        int stage = stageOf[state];
        if (row == blockTokens - 1) {
            seal(block, layer, stage, row, k, v, ws);
            if (stage >= 0) {
                stageOf[state] = -1;
                staging.release(stage);
            }
            return;
        }
        if (stage < 0) {
            stage = open(block, layer, ws);
            stageOf[state] = stage;
            stagedAt[state] = ++stageClock; // racy across threads: only orders trimStaging, harmless
        }
        MemorySegment seg = staging.segment(stage);
        long base = staging.offset(stage);
        SliceKernels f32 = codecs.f32();
        long rowOff = (long) row * headDim * Float.BYTES;
        for (int h = 0; h < kvHeads; h++) {
            f32.encodeRow(k, h * headDim, headDim, seg, base + bytes.stageKeyOffset(h) + rowOff);
            f32.encodeRow(v, h * headDim, headDim, seg, base + bytes.stageValueOffset(h) + rowOff);
        }
    }

    /** Per-thread scratch of the write path: one head's rows as floats, one layer's encoded bytes. */
    private static final class WriteScratch {
        final float[] rows;
        final MemorySegment encoded;

        WriteScratch(int rowFloats, long layerBytes) {
            rows = new float[rowFloats];
            // a heap segment over byte[]: the Vector API kernels accept native or byte[] segments
            encoded = MemorySegment.ofArray(new byte[(int) layerBytes]);
        }
    }

    /** Takes a staging slot for (block, layer) and fills it with the slices' current contents. */
    private int open(int block, int layer, WriteScratch ws) {
        int stage = staging.acquire();
        MemorySegment seg = staging.segment(stage);
        long base = staging.offset(stage);
        float[] rows = ws.rows;
        for (int h = 0; h < kvHeads; h++) {
            codecs.keyKernels().decode(memory, bytes.keyOffset(block, layer, h), blockTokens, headDim, rows, 0);
            codecs.f32().encode(rows, 0, blockTokens, headDim, seg, base + bytes.stageKeyOffset(h));
            codecs.valueKernels().decode(memory, bytes.valueOffset(block, layer, h), blockTokens, headDim, rows, 0);
            codecs.f32().encode(rows, 0, blockTokens, headDim, seg, base + bytes.stageValueOffset(h));
        }
        return stage;
    }

    /**
     * Encodes (block, layer) with {@code k}/{@code v} as row {@code row}: the other rows come from
     * the staging slot ({@code stage >= 0}) or from the encoded slices. Everything is encoded into
     * scratch first and copied over the layer's bytes only when every head succeeded.
     */
    private void seal(int block, int layer, int stage, int row, float[] k, float[] v, WriteScratch ws) {
        float[] rows = ws.rows;
        MemorySegment enc = ws.encoded;
        long kBytes = bytes.keySliceBytes();
        long vBase = kvHeads * kBytes;
        long vBytes = bytes.valueSliceBytes();
        MemorySegment seg = stage >= 0 ? staging.segment(stage) : null;
        long base = stage >= 0 ? staging.offset(stage) : 0;
        for (int h = 0; h < kvHeads; h++) {
            if (stage >= 0) {
                codecs.f32().decode(seg, base + bytes.stageKeyOffset(h), blockTokens, headDim, rows, 0);
            } else {
                codecs.keyKernels().decode(memory, bytes.keyOffset(block, layer, h), blockTokens, headDim, rows, 0);
            }
            System.arraycopy(k, h * headDim, rows, row * headDim, headDim);
            codecs.keyKernels().encode(rows, 0, blockTokens, headDim, enc, h * kBytes);
            if (stage >= 0) {
                codecs.f32().decode(seg, base + bytes.stageValueOffset(h), blockTokens, headDim, rows, 0);
            } else {
                codecs.valueKernels().decode(memory, bytes.valueOffset(block, layer, h), blockTokens, headDim, rows, 0);
            }
            System.arraycopy(v, h * headDim, rows, row * headDim, headDim);
            codecs.valueKernels().encode(rows, 0, blockTokens, headDim, enc, vBase + h * vBytes);
        }
        // K slices then V slices of one layer are one contiguous run (StoreLayout)
        MemorySegment.copy(enc, 0, memory, bytes.keyOffset(block, layer, 0), bytes.layerBytes());
    }

    /**
     * Seals partially written blocks of a block format, oldest first, until at most
     * {@code maxSlices} (block, layer) staging slots remain; returns how many it sealed.
     *
     * <p>Why: a staging slot is held until its block's last row is written. A store attached to a
     * {@code KvCacheManager} gets its freed blocks' slots back at once ({@link #blockReleased});
     * a store driven directly, without a manager, keeps a freed partial block's slots until the
     * block is reused and filled, so in the worst case (many freed partial blocks sitting empty)
     * staging could approach the F32 size of those blocks. Sealing encodes the rows as they are (unwritten rows as zeros or stale data;
     * for FP8 they take part in the block's scale) and frees the slots; a later write to such a block
     * reopens it, so nothing is lost except that its rows are now quantized. Engines call this
     * between steps, e.g. after freeing sequences; it must not run concurrently with other calls on
     * this store (it changes other blocks' state). Row formats never stage: returns 0.
     *
     * @param maxSlices staging slots that may stay held, >= 0
     * @return how many (block, layer) slots it sealed
     */
    public int trimStaging(int maxSlices) {
        checkOpen();
        if (maxSlices < 0) {
            throw new IllegalArgumentException("maxSlices must be >= 0, got " + maxSlices);
        }
        if (rowFormat) {
            return 0;
        }
        int excess = staging.inUse() - maxSlices;
        if (excess <= 0) {
            return 0;
        }
        // maintenance path (allocates): the staged states, oldest first
        Integer[] order = new Integer[staging.inUse()];
        int n = 0;
        for (int i = 0; i < stageOf.length && n < order.length; i++) {
            if (stageOf[i] >= 0) {
                order[n++] = i;
            }
        }
        Arrays.sort(order, 0, n, Comparator.comparingLong(st -> stagedAt[st]));
        WriteScratch ws = scratch.get();
        int sealed = 0;
        for (int i = 0; i < n && sealed < excess; i++) {
            int state = order[i];
            int block = state / layers;
            int layer = state % layers;
            int stage = stageOf[state];
            sealStaged(block, layer, stage, ws);
            stageOf[state] = -1;
            staging.release(stage);
            sealed++;
        }
        return sealed;
    }

    /** Encodes (block, layer) from its staging slot as it is. */
    private void sealStaged(int block, int layer, int stage, WriteScratch ws) {
        float[] rows = ws.rows;
        MemorySegment enc = ws.encoded;
        MemorySegment seg = staging.segment(stage);
        long base = staging.offset(stage);
        long kBytes = bytes.keySliceBytes();
        long vBase = kvHeads * kBytes;
        long vBytes = bytes.valueSliceBytes();
        for (int h = 0; h < kvHeads; h++) {
            codecs.f32().decode(seg, base + bytes.stageKeyOffset(h), blockTokens, headDim, rows, 0);
            codecs.keyKernels().encode(rows, 0, blockTokens, headDim, enc, h * kBytes);
            codecs.f32().decode(seg, base + bytes.stageValueOffset(h), blockTokens, headDim, rows, 0);
            codecs.valueKernels().encode(rows, 0, blockTokens, headDim, enc, vBase + h * vBytes);
        }
        MemorySegment.copy(enc, 0, memory, bytes.keyOffset(block, layer, 0), bytes.layerBytes());
    }

    @Override
    public void readKey(int layer, long slot, float[] out) {
        read(layer, slot, out, true);
    }

    @Override
    public void readValue(int layer, long slot, float[] out) {
        read(layer, slot, out, false);
    }

    private void read(int layer, long slot, float[] out, boolean key) {
        checkOpen();
        checkLayer(layer);
        checkSlot(slot);
        checkArray("out", out);
        int block = (int) (slot / blockTokens);
        int row = (int) (slot % blockTokens);
        int stage = rowFormat ? -1 : stageOf[block * layers + layer];
        if (stage >= 0) {
            MemorySegment seg = staging.segment(stage);
            long base = staging.offset(stage);
            for (int h = 0; h < kvHeads; h++) {
                long off = base + (key ? bytes.stageKeyOffset(h) : bytes.stageValueOffset(h));
                codecs.f32().decodeRow(seg, off, blockTokens, row, headDim, out, h * headDim);
            }
            return;
        }
        SliceKernels kernels = key ? codecs.keyKernels() : codecs.valueKernels();
        for (int h = 0; h < kvHeads; h++) {
            long off = key ? bytes.keyOffset(block, layer, h) : bytes.valueOffset(block, layer, h);
            kernels.decodeRow(memory, off, blockTokens, row, headDim, out, h * headDim);
        }
    }

    @Override
    public void copyBlock(int srcBlock, int dstBlock) {
        checkOpen();
        checkBlock("srcBlock", srcBlock);
        checkBlock("dstBlock", dstBlock);
        if (srcBlock != dstBlock) {
            transfer(this, srcBlock, this, dstBlock);
        }
    }

    /**
     * Copies block {@code sb} of {@code src} onto block {@code db} of {@code dst} (same layout):
     * the encoded bytes and, for block formats, the staging rows of partially written layers.
     */
    static void transfer(OffHeapKvStore src, int sb, OffHeapKvStore dst, int db) {
        StoreLayout bl = src.bytes;
        MemorySegment.copy(src.memory, bl.blockOffset(sb), dst.memory, bl.blockOffset(db), bl.blockBytes());
        if (src.rowFormat) {
            return;
        }
        long stageBytes = bl.stageBytes();
        for (int layer = 0; layer < src.layers; layer++) {
            int s = src.stageOf[sb * src.layers + layer];
            int di = db * dst.layers + layer;
            int d = dst.stageOf[di];
            if (s < 0) {
                if (d >= 0) {
                    dst.stageOf[di] = -1;
                    dst.staging.release(d);
                }
                continue;
            }
            if (d < 0) {
                d = dst.staging.acquire();
                dst.stageOf[di] = d;
            }
            dst.stagedAt[di] = ++dst.stageClock;
            MemorySegment.copy(src.staging.segment(s), src.staging.offset(s),
                    dst.staging.segment(d), dst.staging.offset(d), stageBytes);
        }
    }

    /**
     * Copies the {@code layout().bytesPerBlock()} encoded bytes of block {@code block} (all layers,
     * K then V slices with their scales, see {@link StoreLayout}) into {@code dst[0, bytesPerBlock)}:
     * one {@link MemorySegment#copy}, since a block is one contiguous range.
     *
     * <p>Only a published (full) block can be exported: a block of a block format (FP8_*, KIVI_*)
     * that has any layer in staging (some rows written since it was last sealed) holds its current
     * rows in full precision outside the block's bytes, so its bytes are not what it reads as. That
     * is refused with IllegalStateException naming the block and the staged layer. Row formats
     * never stage, so every block of theirs is exportable.
     *
     * @throws IllegalArgumentException {@code block} out of range, or {@code dst} smaller than a
     *                                  block or read-only (nothing is written)
     * @throws IllegalStateException    the block is partially written, or the store is closed
     */
    @Override
    public void exportBlock(int block, MemorySegment dst) {
        exportChecks(block, dst);
        MemorySegment.copy(memory, bytes.blockOffset(block), dst, 0, bytes.blockBytes());
    }

    private void exportChecks(int block, MemorySegment dst) {
        checkOpen();
        checkBlock("block", block);
        checkTierSegment("dst", dst);
        if (dst.isReadOnly()) {
            throw new IllegalArgumentException("dst is read-only");
        }
        if (!rowFormat) {
            for (int layer = 0; layer < layers; layer++) {
                if (stageOf[block * layers + layer] >= 0) {
                    throw new IllegalStateException("block " + block + " is partially written (layer " + layer
                            + " is staged in full precision); only a full block of " + layout.format().name()
                            + " can be exported");
                }
            }
        }
    }

    /**
     * {@link #exportBlock} fused with the CRC32C of what it wrote: each {@value #EXPORT_CHUNK}-byte
     * chunk is checksummed right after it is copied, from the core's cache, so a demotion reads the
     * block from memory once instead of twice (kvcache-api/bench-results/tiers-*.txt has the
     * measurement). Same refusals as {@code exportBlock}, checked before any byte moves.
     */
    @Override
    public int exportBlockCrc32c(int block, MemorySegment dst) {
        exportChecks(block, dst);
        long n = bytes.blockBytes();
        long from = bytes.blockOffset(block);
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        java.nio.ByteBuffer view = dst.asSlice(0, n).asByteBuffer();
        for (long at = 0; at < n; at += EXPORT_CHUNK) {
            int len = (int) Math.min(EXPORT_CHUNK, n - at);
            MemorySegment.copy(memory, from + at, dst, at, len);
            view.limit((int) at + len).position((int) at);
            crc.update(view);
        }
        return (int) crc.getValue();
    }

    /** Bytes a fused export copies before checksumming them: well inside a core's L1 + L2. */
    static final int EXPORT_CHUNK = 16 * 1024;

    /**
     * Overwrites block {@code block} with {@code src[0, bytesPerBlock)}, bytes {@link #exportBlock}
     * produced under the same layout, and drops any staging state the block had (block formats),
     * so the block then reads exactly as the exported one did. One {@link MemorySegment#copy}.
     *
     * @throws IllegalArgumentException {@code block} out of range or {@code src} smaller than a
     *                                  block (nothing is written)
     * @throws IllegalStateException    the store is closed
     */
    @Override
    public void importBlock(int block, MemorySegment src) {
        checkOpen();
        checkBlock("block", block);
        checkTierSegment("src", src);
        MemorySegment.copy(src, 0, memory, bytes.blockOffset(block), bytes.blockBytes());
        if (!rowFormat) {
            for (int layer = 0; layer < layers; layer++) {
                dropStage(block, layer);
            }
        }
    }

    private void checkTierSegment(String name, MemorySegment seg) {
        Objects.requireNonNull(seg, name);
        if (seg.byteSize() < bytes.blockBytes()) {
            throw new IllegalArgumentException(name + " holds " + seg.byteSize() + " bytes; a block of "
                    + layout + " is " + bytes.blockBytes() + " bytes");
        }
    }

    /**
     * Gives back the staging slots of {@code block}'s partially written layers (block formats; row
     * formats hold none): the manager freed the block, so those rows are dead. Without this they
     * stayed held until the block was written again or {@link #trimStaging} sealed them. Does
     * nothing once closed or for an out-of-range block (the manager never passes one).
     */
    @Override
    public void blockReleased(int block) {
        if (rowFormat || closed || block < 0 || block >= blocks) {
            return;
        }
        for (int layer = 0; layer < layers; layer++) {
            dropStage(block, layer);
        }
    }

    /**
     * Frees the memory. Idempotent; every other call afterwards throws IllegalStateException.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        arena.close();
    }

    @Override
    public String toString() {
        return "OffHeapKvStore[" + layout + ", blocks=" + blocks + (closed ? ", closed]" : "]");
    }

    // ------------------------------------------------------------------ for PagedAttention, HostSwapSpace

    Codecs codecs() {
        return codecs;
    }

    MemorySegment memory() {
        return memory;
    }

    boolean rowFormat() {
        return rowFormat;
    }

    /** Staging slot of (block, layer), or -1. */
    int stage(int block, int layer) {
        return rowFormat ? -1 : stageOf[block * layers + layer];
    }

    /** Gives back the staging slot of (block, layer), if any, without encoding it. */
    void dropStage(int block, int layer) {
        if (rowFormat) {
            return;
        }
        int i = block * layers + layer;
        int st = stageOf[i];
        if (st >= 0) {
            stageOf[i] = -1;
            staging.release(st);
        }
    }

    StagingPool staging() {
        return staging;
    }

    int blockCount() {
        return blocks;
    }

    // ------------------------------------------------------------------ checks

    void checkOpen() {
        if (closed) {
            throw new IllegalStateException("OffHeapKvStore is closed");
        }
    }

    void checkLayer(int layer) {
        if (layer < 0 || layer >= layers) {
            throw new IllegalArgumentException("layer " + layer + " out of range [0, " + layers + ")");
        }
    }

    private void checkSlot(long slot) {
        if (slot < 0 || slot >= slots) {
            throw new IllegalArgumentException("slot " + slot + " out of range [0, " + slots + ")");
        }
    }

    void checkBlock(String name, int block) {
        if (block < 0 || block >= blocks) {
            throw new IllegalArgumentException(name + " " + block + " out of range [0, " + blocks + ")");
        }
    }

    private void checkArray(String name, float[] a) {
        Objects.requireNonNull(a, name);
        int need = kvHeads * headDim;
        if (a.length < need) {
            throw new IllegalArgumentException(name + ".length " + a.length
                    + " is less than kvHeads*headDim = " + need);
        }
    }
}
