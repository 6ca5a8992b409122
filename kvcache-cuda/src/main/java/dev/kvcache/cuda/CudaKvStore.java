package dev.kvcache.cuda;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import org.lwjgl.system.MemoryUtil;

import java.lang.foreign.MemorySegment;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * A {@link KvStore} in CUDA device memory: one {@code cuMemAlloc} of
 * {@code blocks * layout.bytesPerBlock()} bytes, zeroed, laid out as {@link CudaBlockLayout}
 * describes (the off-heap store's {@code [block][layer][K|V][head][token][dim]} order, byte for byte).
 *
 * <h2>Operations</h2>
 * <ul>
 *   <li>{@link #write}: the token's K and V go to the device through a pinned staging buffer and
 *       {@code kv_write_row} quantizes them into row r of every head's slice (F32/F16/BF16 round to
 *       nearest even; Q8_0/Q4_0 byte-identical to llama.cpp's reference quantizers). FP8 keeps the
 *       off-heap store's residual window: the first write into a (block, layer) takes a float32
 *       staging slot ({@code kv_open} decodes the slice into it), rows go there, and writing the
 *       block's last row encodes every head's slices with one scale each ({@code kv_seal_fp8}) and
 *       gives the slot back.</li>
 *   <li>{@link #readKey}/{@link #readValue}: {@code kv_read_row} dequantizes one row of every head.</li>
 *   <li>{@link #copyBlock} ({@code cuMemcpyDtoDAsync}) and {@link #copyBlocks} (one kernel for many
 *       pairs): copy-on-write, staging rows included.</li>
 *   <li>{@link #decode}: one step of paged decode attention ({@code paged_decode}: one CTA per
 *       query head and split of the positions, 4 warps per CTA, online softmax, GQA, scale
 *       {@code 1/sqrt(headDim)}; {@code paged_decode_combine} merges the splits), the same
 *       contract as {@code dev.kvcache.offheap.PagedAttention}.</li>
 *   <li>{@link CudaSwapSpace}: asynchronous swaps of blocks to and from pinned host memory on a
 *       second stream.</li>
 * </ul>
 *
 * <h2>Streams and ordering</h2>
 * Every method except the swap enqueues runs on the store's stream and synchronizes it before
 * returning, so the host-side state (which FP8 slices are staged, the scratch buffers) always
 * matches the device. Swaps run on a second stream; each swap records an event after it, and the
 * next operation on the main stream waits for that event on the device, so a block is never read
 * or written while a swap of it is in flight, without blocking the host. A swap in turn waits on
 * the device for everything the main stream has done before it.
 *
 * <h2>Threads, errors, memory</h2>
 * Public methods synchronize on the store. Arguments are checked before anything changes:
 * out-of-range layers, slots, blocks and array lengths throw IllegalArgumentException naming the
 * value and the limit; every call after {@link #close()} throws IllegalStateException. A failing
 * driver call throws {@link CudaException}. {@link #close()} frees the device memory, the staging
 * chunks, the pinned buffers and the swap spaces of this store; it is idempotent.
 */
public final class CudaKvStore implements KvStore {

    private static final int THREADS = 128;
    private static final int SEAL_THREADS = 256;
    private static final int DECODE_WARPS = 4; // WARPS in paged_decode
    private static final int FMT_F32 = 0;
    /** Fewest positions one decode CTA handles (below that, merging splits costs more than it saves). */
    static final int MIN_CHUNK = 128;
    /** gridDim.y limit. */
    private static final int MAX_SPLITS = 65535;

    /** Positions per decode split; 0 = chosen from the SM count. Tests force small values. */
    int decodeChunk;

    private final CudaDriver drv;
    private final KvLayout layout;
    private final CudaBlockLayout bl;
    private final int blocks;
    private final int layers;
    private final int kvHeads;
    private final int headDim;
    private final int blockTokens;
    private final int kvDim;
    private final long slots;
    private final boolean blockFormat;
    private final int fmt;
    private final int scaleFirst;

    private long mem;
    private long stream;
    private long swapStream;
    private long swapEvent;
    private long mainEvent;
    private boolean swapPending;
    private long hostScratch;      // pinned
    private long hostScratchBytes;
    private long devScratch;
    private long devScratchBytes;
    private final int[] stageOf;   // FP8: staging slot of (block * layers + layer), or -1
    private final Staging staging;
    private final List<CudaSwapSpace> swapSpaces = new ArrayList<>();
    private boolean closed;

    CudaKvStore(CudaDriver drv, CudaBlockLayout bl, int blocks) {
        this.drv = drv;
        this.bl = bl;
        this.layout = bl.kvLayout();
        this.blocks = blocks;
        this.layers = layout.layers();
        this.kvHeads = layout.kvHeads();
        this.headDim = layout.headDim();
        this.blockTokens = layout.blockTokens();
        this.kvDim = layout.kvDim();
        this.slots = (long) blocks * blockTokens;
        this.blockFormat = bl.blockFormat();
        this.fmt = bl.formatCode();
        this.scaleFirst = CudaBlockLayout.FP8_SCALE_FIRST ? 1 : 0;
        this.stageOf = new int[blockFormat ? blocks * layers : 0];
        Arrays.fill(stageOf, -1);
        this.staging = new Staging(drv, bl.stageBytes());
        drv.makeCurrent();
        try {
            long total = bl.blockBytes() * blocks;
            mem = drv.memAlloc(total);
            stream = drv.streamCreate();
            // on the store's stream: a non-blocking stream does not wait for the legacy stream's cuMemsetD8
            drv.memsetD8Async(mem, (byte) 0, total, stream);
            drv.streamSynchronize(stream);
            swapStream = drv.streamCreate();
            swapEvent = drv.eventCreate();
            mainEvent = drv.eventCreate();
            ensureScratch(4096);
        } catch (RuntimeException | Error e) {
            release();
            throw e;
        }
    }

    /**
     * A store of {@code blocks} zeroed blocks of {@code layout} on the probed device. Arguments are
     * checked first (IllegalArgumentException), then {@link CudaRuntime#get()} (a
     * {@link CudaUnavailableException} without a device), then the allocation
     * ({@link CudaException} CUDA_ERROR_OUT_OF_MEMORY when it does not fit).
     *
     * @param layout the model shape and format of every block; its format must be one of
     *               {@link CudaBlockLayout#SUPPORTED} (KIVI is refused)
     * @param blocks the number of blocks, {@code > 0}; {@code blocks * layout.blockTokens()} slots
     *               must not exceed {@code Integer.MAX_VALUE}
     * @return a new open store of {@code blocks} zeroed blocks; the caller closes it
     * @throws NullPointerException     if {@code layout} is null
     * @throws IllegalArgumentException if {@code blocks <= 0}, the slots or (FP8) the
     *                                  {@code blocks * layers} staging states exceed the int range,
     *                                  or the format is not supported
     * @throws CudaUnavailableException if no CUDA device is usable ({@link CudaRuntime#status()})
     * @throws CudaException            if a driver call fails, e.g. CUDA_ERROR_OUT_OF_MEMORY when the
     *                                  blocks do not fit in device memory (nothing stays allocated)
     */
    public static CudaKvStore allocate(KvLayout layout, int blocks) {
        CudaBlockLayout bl = checkAllocation(layout, blocks);
        return new CudaKvStore(CudaRuntime.get().driver(), bl, blocks);
    }

    /** The argument checks of {@link #allocate}, without a device. */
    static CudaBlockLayout checkAllocation(KvLayout layout, int blocks) {
        Objects.requireNonNull(layout, "layout");
        if (blocks <= 0) {
            throw new IllegalArgumentException("blocks must be > 0, got " + blocks);
        }
        long slotCount = (long) blocks * layout.blockTokens();
        if (slotCount > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(blocks + " blocks of " + layout.blockTokens()
                    + " tokens is " + slotCount + " slots; the limit is " + Integer.MAX_VALUE);
        }
        CudaBlockLayout bl = new CudaBlockLayout(layout);
        if (bl.blockFormat() && (long) blocks * layout.layers() > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(blocks + " blocks x " + layout.layers() + " layers = "
                    + (long) blocks * layout.layers() + " staging states; the limit is " + (Integer.MAX_VALUE - 8));
        }
        return bl;
    }

    // ------------------------------------------------------------------ KvStore

    @Override
    public KvLayout layout() {
        return layout;
    }

    @Override
    public synchronized int blocks() {
        checkOpen();
        return blocks;
    }

    /**
     * The byte layout of this store's blocks.
     *
     * @return the layout every device offset of this store comes from (also after {@link #close()})
     */
    public CudaBlockLayout blockLayout() {
        return bl;
    }

    /**
     * The device this store lives on, as the driver names it.
     *
     * @return the device's name as {@link CudaRuntime#deviceName()} reports it
     */
    public String deviceName() {
        return drv.deviceName();
    }

    /**
     * Device bytes held: the blocks plus the staging chunks allocated so far.
     *
     * @return {@code blockLayout().blockBytes() * blocks()} plus the bytes of the FP8 staging chunks
     *         allocated so far (0 for other formats); the scratch buffers are not counted
     * @throws IllegalStateException if the store is closed
     */
    public synchronized long deviceBytes() {
        checkOpen();
        return bl.blockBytes() * blocks + staging.allocatedBytes();
    }

    /**
     * Staging slots held now (partially written (block, layer) pairs of an FP8 format).
     *
     * @return the number of (block, layer) pairs whose rows sit in a float32 staging slot now,
     *         {@code >= 0}; always 0 for a format other than FP8
     * @throws IllegalStateException if the store is closed
     */
    public synchronized int stagedSlices() {
        checkOpen();
        return staging.inUse();
    }

    /**
     * True after {@link #close()}.
     *
     * @return true once {@link #close()} has run; every other operation then throws IllegalStateException
     */
    public synchronized boolean isClosed() {
        return closed;
    }

    @Override
    public synchronized void write(int layer, long slot, float[] k, float[] v) {
        checkOpen();
        checkLayer(layer);
        checkSlot(slot);
        checkArray("k", k, kvDim);
        checkArray("v", v, kvDim);
        // NaN, infinities and |x| > MAX_ABS_VALUE refused before anything changes, as in the off-heap
        // store; within that bound Q8_0/Q4_0 group scales and FP8 block scales cannot overflow
        KvStore.checkValues(layer, slot, k, v, kvDim);
        int block = (int) (slot / blockTokens);
        int row = (int) (slot % blockTokens);
        beginOp();
        long bytes = (long) kvDim * Float.BYTES;
        ensureScratch(2 * bytes);
        MemoryUtil.memFloatBuffer(hostScratch, kvDim).put(0, k, 0, kvDim);
        MemoryUtil.memFloatBuffer(hostScratch + bytes, kvDim).put(0, v, 0, kvDim);
        upload(2 * bytes);
        long dk = devScratch;
        long dv = devScratch + bytes;
        if (!blockFormat) {
            drv.launch(CudaDriver.K_WRITE_ROW, kvHeads, 2, THREADS, 0, stream,
                    mem + bl.keyOffset(block, layer, 0), mem + bl.valueOffset(block, layer, 0),
                    bl.keySliceBytes(), row, dk, dv, headDim, fmt);
            sync();
            return;
        }
        int state = block * layers + layer;
        int stage = stageOf[state];
        boolean opened = stage < 0;
        if (opened) {
            stage = staging.acquire();
        }
        long st = staging.address(stage);
        try {
            if (opened) {
                drv.launch(CudaDriver.K_OPEN, kvHeads, 2, THREADS * 2, 0, stream,
                        mem + bl.keyOffset(block, layer, 0), mem + bl.valueOffset(block, layer, 0),
                        bl.keySliceBytes(), st, headDim, blockTokens, fmt, scaleFirst);
            }
            drv.launch(CudaDriver.K_WRITE_ROW, kvHeads, 2, THREADS, 0, stream,
                    st, st + bl.stageValueOffset(0), bl.stageSliceBytes(), row, dk, dv, headDim, FMT_F32);
            boolean seal = row == blockTokens - 1;
            if (seal) {
                drv.launch(CudaDriver.K_SEAL_FP8, kvHeads, 2, SEAL_THREADS, 0, stream,
                        st, mem + bl.keyOffset(block, layer, 0), mem + bl.valueOffset(block, layer, 0),
                        bl.keySliceBytes(), headDim, blockTokens, fmt, scaleFirst);
            }
            sync();
            if (seal) {
                stageOf[state] = -1;
                staging.release(stage);
            } else {
                stageOf[state] = stage;
            }
        } catch (RuntimeException e) {
            if (opened) {
                staging.release(stage);
            }
            throw e;
        }
    }

    @Override
    public synchronized void readKey(int layer, long slot, float[] out) {
        read(layer, slot, out, true);
    }

    @Override
    public synchronized void readValue(int layer, long slot, float[] out) {
        read(layer, slot, out, false);
    }

    private void read(int layer, long slot, float[] out, boolean key) {
        checkOpen();
        checkLayer(layer);
        checkSlot(slot);
        checkArray("out", out, kvDim);
        int block = (int) (slot / blockTokens);
        int row = (int) (slot % blockTokens);
        beginOp();
        ensureScratch((long) kvDim * Float.BYTES);
        int stage = blockFormat ? stageOf[block * layers + layer] : -1;
        if (stage >= 0) {
            long st = staging.address(stage);
            drv.launch(CudaDriver.K_READ_ROW, kvHeads, 1, THREADS, 0, stream,
                    st + (key ? bl.stageKeyOffset(0) : bl.stageValueOffset(0)), bl.stageSliceBytes(), row,
                    devScratch, headDim, blockTokens, FMT_F32, 0);
        } else {
            long base = mem + (key ? bl.keyOffset(block, layer, 0) : bl.valueOffset(block, layer, 0));
            drv.launch(CudaDriver.K_READ_ROW, kvHeads, 1, THREADS, 0, stream,
                    base, bl.keySliceBytes(), row, devScratch, headDim, blockTokens, fmt, scaleFirst);
        }
        download(0, (long) kvDim * Float.BYTES);
        sync();
        MemoryUtil.memFloatBuffer(hostScratch, kvDim).get(0, out, 0, kvDim);
    }

    @Override
    public synchronized void copyBlock(int srcBlock, int dstBlock) {
        checkOpen();
        checkBlock("srcBlock", srcBlock);
        checkBlock("dstBlock", dstBlock);
        if (srcBlock == dstBlock) {
            return;
        }
        beginOp();
        drv.memcpyDtoDAsync(mem + bl.blockOffset(dstBlock), mem + bl.blockOffset(srcBlock), bl.blockBytes(), stream);
        copyStaging(srcBlock, dstBlock);
        sync();
    }

    /**
     * Copies {@code src[i]} onto {@code dst[i]} for every i with one kernel launch (vLLM's
     * {@code copy_blocks}). Every id must be in range, no block may be a destination twice, and no
     * destination may also be a source (the copies run concurrently); otherwise
     * IllegalArgumentException and nothing is copied.
     *
     * @param src the source block ids, each in {@code [0, blocks())}; may repeat
     * @param dst the destination block ids, as many as {@code src}, each in {@code [0, blocks())},
     *            all distinct and none also in {@code src}
     * @throws NullPointerException     if {@code src} or {@code dst} is null
     * @throws IllegalArgumentException if the lengths differ, an id is out of range, a block is a
     *                                  destination twice or a destination is also a source
     * @throws IllegalStateException    if the store is closed
     * @throws CudaException            if a driver call fails
     */
    public synchronized void copyBlocks(int[] src, int[] dst) {
        checkOpen();
        Objects.requireNonNull(src, "src");
        Objects.requireNonNull(dst, "dst");
        if (src.length != dst.length) {
            throw new IllegalArgumentException("src.length " + src.length + " != dst.length " + dst.length);
        }
        int n = src.length;
        boolean[] isDst = new boolean[blocks];
        for (int i = 0; i < n; i++) {
            checkBlock("src[" + i + "]", src[i]);
            checkBlock("dst[" + i + "]", dst[i]);
            if (isDst[dst[i]]) {
                throw new IllegalArgumentException("dst[" + i + "] = " + dst[i] + " is a destination twice");
            }
            isDst[dst[i]] = true;
        }
        for (int i = 0; i < n; i++) {
            if (isDst[src[i]]) {
                throw new IllegalArgumentException("src[" + i + "] = " + src[i] + " is also a destination");
            }
        }
        if (n == 0) {
            return;
        }
        beginOp();
        long bytes = 8L * n;
        ensureScratch(bytes);
        var pairs = MemoryUtil.memIntBuffer(hostScratch, 2 * n);
        for (int i = 0; i < n; i++) {
            pairs.put(2 * i, src[i]).put(2 * i + 1, dst[i]);
        }
        upload(bytes);
        int chunks = (int) Math.max(1, Math.min(64, bl.blockBytes() / (64 * 1024)));
        drv.launch(CudaDriver.K_COPY_BLOCKS, n, chunks, 256, 0, stream, mem, devScratch, n, bl.blockBytes());
        for (int i = 0; i < n; i++) {
            copyStaging(src[i], dst[i]);
        }
        sync();
    }

    /** FP8: gives dst the staging rows src has (or drops dst's). Enqueued on the main stream. */
    private void copyStaging(int srcBlock, int dstBlock) {
        if (!blockFormat) {
            return;
        }
        for (int layer = 0; layer < layers; layer++) {
            int s = stageOf[srcBlock * layers + layer];
            int di = dstBlock * layers + layer;
            int d = stageOf[di];
            if (s < 0) {
                if (d >= 0) {
                    stageOf[di] = -1;
                    staging.release(d);
                }
                continue;
            }
            if (d < 0) {
                d = staging.acquire();
                stageOf[di] = d;
            }
            drv.memcpyDtoDAsync(staging.address(d), staging.address(s), bl.stageBytes(), stream);
        }
    }

    /**
     * One decode step of attention for one sequence, as {@code PagedAttention.decode}: query head h
     * reads KV head {@code h / (queryHeads / kvHeads)}, scores are scaled by {@code 1/sqrt(headDim)},
     * positions {@code 0..length-1} are read through {@code blockTable}; -1 entries (released by a
     * sliding window) are skipped; with nothing readable {@code out} is zero.
     *
     * @param layer      the layer whose K and V are read, in {@code [0, layout().layers())}
     * @param q          the query, {@code queryHeads * headDim} floats, head-major; each finite with
     *                   {@code |x| <= KvStore.MAX_ABS_VALUE}; longer arrays are read only that far
     * @param queryHeads the number of query heads, a positive multiple of {@code layout().kvHeads()}
     * @param blockTable the sequence's block ids in position order: entry {@code i} holds positions
     *                   {@code [i * blockTokens, (i + 1) * blockTokens)}; at least
     *                   {@code layout().blocksFor(length)} entries, each in {@code [-1, blocks())},
     *                   -1 for a released block
     * @param length     the number of positions to attend over, {@code >= 0}
     * @param out        receives the attention output, {@code queryHeads * headDim} floats, head-major;
     *                   only that prefix is written
     * @throws NullPointerException     if {@code q}, {@code blockTable} or {@code out} is null
     * @throws IllegalArgumentException if {@code layer}, {@code queryHeads} or {@code length} is out of
     *                                  range, {@code headDim} exceeds
     *                                  {@link CudaBlockLayout#MAX_DECODE_HEAD_DIM}, an array is too
     *                                  short, a table entry is out of range, or a query value is not
     *                                  finite or too large
     * @throws IllegalStateException    if the store is closed
     * @throws CudaException            if a driver call or the kernel fails
     */
    public synchronized void decode(int layer, float[] q, int queryHeads, int[] blockTable, int length, float[] out) {
        checkOpen();
        Objects.requireNonNull(q, "q");
        Objects.requireNonNull(blockTable, "blockTable");
        Objects.requireNonNull(out, "out");
        checkLayer(layer);
        if (queryHeads <= 0 || queryHeads % kvHeads != 0) {
            throw new IllegalArgumentException("queryHeads " + queryHeads + " must be a positive multiple of kvHeads " + kvHeads);
        }
        if (headDim > CudaBlockLayout.MAX_DECODE_HEAD_DIM) {
            throw new IllegalArgumentException("headDim " + headDim + " exceeds the decode kernel's limit "
                    + CudaBlockLayout.MAX_DECODE_HEAD_DIM);
        }
        long need = (long) queryHeads * headDim;
        if (need > Integer.MAX_VALUE / 4) {
            throw new IllegalArgumentException("queryHeads*headDim = " + need + " is too large");
        }
        if (q.length < need) {
            throw new IllegalArgumentException("q.length " + q.length + " is less than queryHeads*headDim = " + need);
        }
        if (out.length < need) {
            throw new IllegalArgumentException("out.length " + out.length + " is less than queryHeads*headDim = " + need);
        }
        if (length < 0) {
            throw new IllegalArgumentException("length must be >= 0, got " + length);
        }
        int nBlocks = (int) layout.blocksFor(length);
        if (blockTable.length < nBlocks) {
            throw new IllegalArgumentException("blockTable has " + blockTable.length + " entries; length "
                    + length + " needs " + nBlocks);
        }
        for (int i = 0; i < nBlocks; i++) {
            int b = blockTable[i];
            if (b < -1 || b >= blocks) {
                throw new IllegalArgumentException("blockTable[" + i + "] = " + b + " out of range [-1, " + blocks + ")");
            }
        }
        int qn = (int) need;
        // a query beyond the value bound would overflow the scores (queryHeads*headDim floats: cheap)
        KvStore.checkQuery(q, qn);
        if (nBlocks == 0) {
            Arrays.fill(out, 0, qn, 0f);
            return;
        }
        beginOp();
        // scratch: q | table (padded to 8) | stage pointers (FP8 only) | out | split partials
        long qBytes = 4L * qn;
        long tableOff = (qBytes + 7) & ~7L;    // every region 8-aligned: stage pointers are 8-byte loads
        long stageOff = tableOff + ((4L * nBlocks + 7) & ~7L);
        long outOff = stageOff + (blockFormat ? 8L * nBlocks : 0);
        // split the positions so that about two CTAs per SM run (flash decoding), at least MIN_CHUNK each
        int chunk = decodeChunk > 0 ? decodeChunk
                : Math.max(MIN_CHUNK, ceilDiv(length, ceilDiv(2 * drv.multiprocessors(), queryHeads)));
        chunk = Math.max(chunk, ceilDiv(length, MAX_SPLITS));
        int splits = ceilDiv(length, chunk);
        long partOff = (outOff + qBytes + 7) & ~7L;
        long partBytes = splits > 1 ? 4L * queryHeads * splits * (headDim + 2) : 0;
        ensureScratch(partOff + partBytes);
        MemoryUtil.memFloatBuffer(hostScratch, qn).put(0, q, 0, qn);
        MemoryUtil.memIntBuffer(hostScratch + tableOff, nBlocks).put(0, blockTable, 0, nBlocks);
        if (blockFormat) {
            var ptrs = MemoryUtil.memLongBuffer(hostScratch + stageOff, nBlocks);
            for (int i = 0; i < nBlocks; i++) {
                int b = blockTable[i];
                int st = b < 0 ? -1 : stageOf[b * layers + layer];
                ptrs.put(i, st < 0 ? 0L : staging.address(st));
            }
        }
        upload(outOff);
        long layerOffK = layer * bl.layerBytes();
        long layerOffV = layerOffK + kvHeads * bl.keySliceBytes();
        float scale = (float) (1.0 / Math.sqrt(headDim));
        drv.launch(CudaDriver.K_DECODE, queryHeads, splits, 32 * DECODE_WARPS, DECODE_WARPS * headDim * Float.BYTES, stream,
                mem, bl.blockBytes(), layerOffK, layerOffV, bl.keySliceBytes(),
                devScratch + tableOff, blockFormat ? devScratch + stageOff : 0L, length,
                devScratch, devScratch + outOff, queryHeads, kvHeads, headDim, blockTokens, fmt, scaleFirst, scale,
                chunk, devScratch + partOff);
        if (splits > 1) {
            drv.launch(CudaDriver.K_DECODE_COMBINE, queryHeads, 1, THREADS, 0, stream,
                    devScratch + partOff, devScratch + outOff, splits, headDim);
        }
        download(outOff, qBytes);
        sync();
        MemoryUtil.memFloatBuffer(hostScratch + outOff, qn).get(0, out, 0, qn);
    }

    /**
     * Copies the encoded bytes of {@code block} ({@link CudaBlockLayout#blockBytes()} of them) into
     * {@code dst}. FP8 layers still in their residual window are not included (see
     * {@link #stagedSlices()}).
     *
     * @param block the block to read, in {@code [0, blocks())}
     * @param dst   receives the block's bytes in {@code [0, blockBytes)}; at least that long
     * @throws NullPointerException     if {@code dst} is null
     * @throws IllegalArgumentException if {@code block} is out of range or {@code dst} is shorter than
     *                                  {@link CudaBlockLayout#blockBytes()}
     * @throws IllegalStateException    if the store is closed
     * @throws CudaException            if a driver call fails
     */
    public synchronized void readBlock(int block, byte[] dst) {
        checkOpen();
        checkBlock("block", block);
        Objects.requireNonNull(dst, "dst");
        long n = bl.blockBytes();
        if (dst.length < n) {
            throw new IllegalArgumentException("dst.length " + dst.length + " is less than blockBytes " + n);
        }
        beginOp();
        ensureScratch(n);
        drv.memcpyDtoHAsync(hostScratch, mem + bl.blockOffset(block), n, stream);
        sync();
        MemoryUtil.memByteBuffer(hostScratch, (int) n).get(0, dst, 0, (int) n);
    }

    /**
     * Overwrites the encoded bytes of {@code block} with {@code src[0 .. blockBytes)}; FP8 staging rows of the block are dropped.
     *
     * @param block the block to overwrite, in {@code [0, blocks())}
     * @param src   the encoded bytes, as {@link #readBlock} produces them under the same layout; at
     *              least {@link CudaBlockLayout#blockBytes()} long, only that prefix is read
     * @throws NullPointerException     if {@code src} is null
     * @throws IllegalArgumentException if {@code block} is out of range or {@code src} is shorter than
     *                                  {@link CudaBlockLayout#blockBytes()}
     * @throws IllegalStateException    if the store is closed
     * @throws CudaException            if a driver call fails
     */
    public synchronized void writeBlock(int block, byte[] src) {
        checkOpen();
        checkBlock("block", block);
        Objects.requireNonNull(src, "src");
        long n = bl.blockBytes();
        if (src.length < n) {
            throw new IllegalArgumentException("src.length " + src.length + " is less than blockBytes " + n);
        }
        beginOp();
        ensureScratch(n);
        MemoryUtil.memByteBuffer(hostScratch, (int) n).put(0, src, 0, (int) n);
        drv.memcpyHtoDAsync(mem + bl.blockOffset(block), hostScratch, n, stream);
        sync();
        dropStaging(block);
    }

    /**
     * Copies the {@code layout().bytesPerBlock()} encoded bytes of {@code block} (one contiguous
     * device range, {@link CudaBlockLayout#blockOffset}) into {@code dst[0, bytesPerBlock)}: one
     * {@code cuMemcpyDtoHAsync} into the store's pinned scratch on its stream (ordered after pending
     * swaps), then a host copy into {@code dst}, which may be any writable segment (a tier's
     * off-heap slot, a heap array). Only a published block can leave: an FP8 block with a layer in
     * its residual window (staged rows not yet sealed) is refused with IllegalStateException naming
     * the block, as in the off-heap store.
     *
     * @throws IllegalArgumentException {@code block} out of range, {@code dst} smaller than a block
     *                                  or read-only (nothing is copied)
     * @throws IllegalStateException    the block is partially written, or the store is closed
     */
    @Override
    public synchronized void exportBlock(int block, MemorySegment dst) {
        checkOpen();
        checkBlock("block", block);
        long n = bl.blockBytes();
        checkTierSegment("dst", dst, n);
        if (dst.isReadOnly()) {
            throw new IllegalArgumentException("dst is read-only");
        }
        if (blockFormat) {
            for (int layer = 0; layer < layers; layer++) {
                if (stageOf[block * layers + layer] >= 0) {
                    throw new IllegalStateException("block " + block + " is partially written (layer " + layer
                            + " is staged in full precision); only a full block of " + layout.format().name()
                            + " can be exported");
                }
            }
        }
        beginOp();
        ensureScratch(n);
        drv.memcpyDtoHAsync(hostScratch, mem + bl.blockOffset(block), n, stream);
        sync();
        MemorySegment.copy(scratchSegment(n), 0, dst, 0, n);
    }

    /**
     * Overwrites {@code block} with {@code src[0, bytesPerBlock)}, bytes {@link #exportBlock}
     * produced under the same layout: a host copy into the pinned scratch, one
     * {@code cuMemcpyHtoDAsync} on the store's stream; the block's FP8 staging slots are dropped,
     * so it then reads exactly as the exported one did.
     *
     * @throws IllegalArgumentException {@code block} out of range or {@code src} smaller than a
     *                                  block (nothing is copied)
     * @throws IllegalStateException    the store is closed
     */
    @Override
    public synchronized void importBlock(int block, MemorySegment src) {
        checkOpen();
        checkBlock("block", block);
        long n = bl.blockBytes();
        checkTierSegment("src", src, n);
        beginOp();
        ensureScratch(n);
        MemorySegment.copy(src, 0, scratchSegment(n), 0, n);
        drv.memcpyHtoDAsync(mem + bl.blockOffset(block), hostScratch, n, stream);
        sync();
        dropStaging(block);
    }

    /** The first {@code n} bytes of the pinned scratch as a segment (no restricted method: through LWJGL's buffer view). */
    private MemorySegment scratchSegment(long n) {
        return MemorySegment.ofBuffer(MemoryUtil.memByteBuffer(hostScratch, (int) n));
    }

    private void checkTierSegment(String name, MemorySegment seg, long n) {
        Objects.requireNonNull(seg, name);
        if (seg.byteSize() < n) {
            throw new IllegalArgumentException(name + " holds " + seg.byteSize() + " bytes; a block of "
                    + layout + " is " + n + " bytes");
        }
    }

    /**
     * The manager freed {@code block}: its FP8 staging slots (a partially written layer's rows) go
     * back to the pool now instead of when the block is next filled. Nothing once closed.
     */
    @Override
    public synchronized void blockReleased(int block) {
        if (closed || block < 0 || block >= blocks) {
            return;
        }
        dropStaging(block);
    }

    private void dropStaging(int block) {
        if (blockFormat) {
            for (int layer = 0; layer < layers; layer++) {
                int s = stageOf[block * layers + layer];
                if (s >= 0) {
                    stageOf[block * layers + layer] = -1;
                    staging.release(s);
                }
            }
        }
    }

    @Override
    public void close() {
        List<CudaSwapSpace> spaces;
        synchronized (this) {
            if (closed) {
                return;
            }
            spaces = new ArrayList<>(swapSpaces);
        }
        for (CudaSwapSpace s : spaces) {
            s.close();
        }
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            release();
        }
    }

    @Override
    public String toString() {
        return "CudaKvStore[" + layout + ", blocks=" + blocks + ", " + drv.deviceName() + (closed ? ", closed]" : "]");
    }

    /** Frees everything held, ignoring errors (a broken context must not leak the rest). */
    private void release() {
        quietly(drv::makeCurrent);
        if (stream != 0) {
            quietly(() -> drv.streamSynchronize(stream));
        }
        if (swapStream != 0) {
            quietly(() -> drv.streamSynchronize(swapStream));
        }
        if (mem != 0) {
            quietly(() -> drv.memFree(mem));
            mem = 0;
        }
        staging.free();
        if (devScratch != 0) {
            quietly(() -> drv.memFree(devScratch));
            devScratch = 0;
        }
        if (hostScratch != 0) {
            quietly(() -> drv.hostFree(hostScratch));
            hostScratch = 0;
        }
        if (swapEvent != 0) {
            quietly(() -> drv.eventDestroy(swapEvent));
            swapEvent = 0;
        }
        if (mainEvent != 0) {
            quietly(() -> drv.eventDestroy(mainEvent));
            mainEvent = 0;
        }
        if (stream != 0) {
            quietly(() -> drv.streamDestroy(stream));
            stream = 0;
        }
        if (swapStream != 0) {
            quietly(() -> drv.streamDestroy(swapStream));
            swapStream = 0;
        }
    }

    /** Runs a release step; a failure (a broken context) must not stop the other steps. */
    static void quietly(Runnable r) {
        try {
            r.run();
        } catch (RuntimeException e) {
            // the memory is gone with the context anyway
        }
    }

    // ------------------------------------------------------------------ for CudaSwapSpace and benchmarks

    long devicePointer() {
        return mem;
    }

    long stream() {
        return stream;
    }

    CudaDriver driver() {
        return drv;
    }

    int[] stageOf() {
        return stageOf;
    }

    Staging staging() {
        return staging;
    }

    void register(CudaSwapSpace s) {
        swapSpaces.add(s);
    }

    void unregister(CudaSwapSpace s) {
        swapSpaces.remove(s);
    }

    /** Before a swap: makes the swap stream wait (on the device) for everything the main stream did. */
    long beginSwap() {
        checkOpen();
        drv.makeCurrent();
        drv.eventRecord(mainEvent, stream);
        drv.streamWaitEvent(swapStream, mainEvent);
        return swapStream;
    }

    /** After enqueuing swaps: the next main-stream operation waits for them. */
    void endSwap() {
        drv.eventRecord(swapEvent, swapStream);
        swapPending = true;
    }

    /** Makes the context current and orders the main stream after pending swaps. */
    void beginOp() {
        drv.makeCurrent();
        if (swapPending) {
            drv.streamWaitEvent(stream, swapEvent);
            swapPending = false;
        }
    }

    void sync() {
        drv.streamSynchronize(stream);
    }

    private void upload(long bytes) {
        drv.memcpyHtoDAsync(devScratch, hostScratch, bytes, stream);
    }

    private void download(long offset, long bytes) {
        drv.memcpyDtoHAsync(hostScratch + offset, devScratch + offset, bytes, stream);
    }

    /** Grows the pinned host and the device scratch buffers to at least {@code bytes}. Main stream idle. */
    private void ensureScratch(long bytes) {
        if (bytes <= hostScratchBytes && bytes <= devScratchBytes) {
            return;
        }
        long size = Math.max(4096, Long.highestOneBit(Math.max(1, bytes - 1)) << 1);
        if (hostScratch != 0) {
            drv.hostFree(hostScratch);
            hostScratch = 0;
            hostScratchBytes = 0;
        }
        hostScratch = drv.hostAlloc(size);
        hostScratchBytes = size;
        if (devScratch != 0) {
            drv.memFree(devScratch);
            devScratch = 0;
            devScratchBytes = 0;
        }
        devScratch = drv.memAlloc(size);
        devScratchBytes = size;
    }

    private static int ceilDiv(int a, int b) {
        return (int) ((a + (long) b - 1) / b);
    }

    // ------------------------------------------------------------------ checks

    void checkOpen() {
        if (closed) {
            throw new IllegalStateException("CudaKvStore is closed");
        }
    }

    private void checkLayer(int layer) {
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

    private static void checkArray(String name, float[] a, int need) {
        Objects.requireNonNull(a, name);
        if (a.length < need) {
            throw new IllegalArgumentException(name + ".length " + a.length + " is less than kvHeads*headDim = " + need);
        }
    }

    // ------------------------------------------------------------------ FP8 staging slots

    /**
     * Device staging slots for FP8's residual window, allocated in chunks (about 16 MiB, at most 256
     * slots) on demand and recycled through a free stack; only partially written (block, layer)
     * pairs hold one. Freed with the store.
     */
    static final class Staging {
        private final CudaDriver drv;
        private final long slotBytes;
        private final int slotsPerChunk;
        private long[] chunks = new long[4];
        private int chunkCount;
        private int[] free = new int[0];
        private int freeTop;
        private int inUse;

        Staging(CudaDriver drv, long slotBytes) {
            this.drv = drv;
            this.slotBytes = slotBytes;
            this.slotsPerChunk = (int) Math.max(1, Math.min(256, (16L << 20) / slotBytes));
        }

        int acquire() {
            if (freeTop == 0) {
                grow();
            }
            inUse++;
            return free[--freeTop];
        }

        void release(int slot) {
            free[freeTop++] = slot;
            inUse--;
        }

        long address(int slot) {
            return chunks[slot / slotsPerChunk] + (slot % slotsPerChunk) * slotBytes;
        }

        int inUse() {
            return inUse;
        }

        long allocatedBytes() {
            return chunkCount * slotsPerChunk * slotBytes;
        }

        private void grow() {
            long chunk = drv.memAlloc(slotsPerChunk * slotBytes);
            if (chunkCount == chunks.length) {
                chunks = Arrays.copyOf(chunks, chunkCount * 2);
            }
            chunks[chunkCount] = chunk;
            int first = chunkCount * slotsPerChunk;
            chunkCount++;
            int total = chunkCount * slotsPerChunk;
            if (free.length < total) {
                free = Arrays.copyOf(free, total);
            }
            for (int s = first + slotsPerChunk - 1; s >= first; s--) {
                free[freeTop++] = s;
            }
        }

        void free() {
            for (int i = 0; i < chunkCount; i++) {
                long c = chunks[i];
                quietly(() -> drv.memFree(c));
            }
            chunkCount = 0;
            freeTop = 0;
            inUse = 0;
        }
    }
}
