package dev.kvcache.jlama;

import com.github.tjake.jlama.tensor.AbstractTensor;
import com.github.tjake.jlama.tensor.FloatBufferTensor;
import com.github.tjake.jlama.tensor.TensorShape;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * kvcache blocks in one off-heap allocation, readable and writable both as a {@link KvStore} and as
 * Jlama tensors, so Jlama's attention reads and writes the paged cache in place (no copies).
 *
 * <h2>Memory layout</h2>
 * One {@link Arena#ofShared() shared arena} segment of float32, layer-major:
 * <pre>
 *   [layer][K=0 | V=1][block][token 0..blockTokens-1][kvDim]
 * </pre>
 * so one (block, layer, K or V) is a contiguous [blockTokens][kvDim] matrix: exactly the "page" shape
 * Jlama's attention iterates ({@code kvp[i].shape().first()} tokens per page, pages in logical order),
 * and a token's row is one {@code slice} of it. Because blocks are innermost but one, the same
 * (layer, K or V) of blocks {@code b, b+1, ..., b+n-1} is one contiguous [n * blockTokens][kvDim]
 * matrix too: {@code keyRun}/{@code valueRun} hand it to Jlama as one longer page, which is what
 * {@link PagedKvBufferCache} does when a sequence's block table has such runs (Jlama's attention
 * pays a fixed cost per page, see {@code InPlacePages}). Jlama needs every page of a call to have
 * the same length, the last included, and reads only the rows up to the current position; so a
 * run's view may extend past the last block of its plane, and the segment ends with slack of up to
 * {@code MAX_RUN_TOKENS} rows so that it stays inside it. {@link #copyBlock} (the block manager's
 * copy-on-write) is {@code 2 * layers} copies of one page each.
 *
 * <p>Views ({@link FloatBufferTensor} over a slice of the segment) are made on first use and kept
 * in {@link AtomicReferenceArray}s (one per run length 2^k), so any thread sees a fully built one.
 * After {@link #close()} the segment is freed; a view used afterwards fails with the JDK's
 * {@link IllegalStateException} (the buffers are bound to the arena's scope), never a crash.
 *
 * <p>Format: F32 only (Jlama's F32 working memory). Quantized KV goes through
 * {@link PagedKvBufferCache#staged} over any {@link KvStore}.
 */
public final class JlamaBlockMemory implements KvStore {
    /**
     * Longest run of blocks one view may cover, in tokens; the segment has that much slack (less one
     * block) after its last plane, e.g. 4 MiB for a 1024-wide KV row.
     */
    static final int MAX_RUN_TOKENS = 1024;

    private final KvLayout layout;
    private final int blocks;
    private final int kvDim;
    private final long pageFloats;    // blockTokens * kvDim
    private final long planeFloats;   // blocks * pageFloats: one (layer, K or V) of every block
    private final int maxRunLog2;
    private final Arena arena;
    private final MemorySegment memory;
    /** runs[k][(layer * 2 + kv) * blocks + first]: the view of 2^k blocks from {@code first}; runs[0] = single pages. */
    private final AtomicReferenceArray<AtomicReferenceArray<AbstractTensor>> runs;
    private volatile boolean closed;

    private JlamaBlockMemory(KvLayout layout, int blocks) {
        this.layout = layout;
        this.blocks = blocks;
        this.kvDim = layout.kvHeads() * layout.headDim();
        this.pageFloats = (long) layout.blockTokens() * kvDim;
        this.planeFloats = pageFloats * blocks;
        this.maxRunLog2 = maxRunLog2(layout.blockTokens(), pageFloats);
        // slack after the last plane, so a run from its last block is still inside the segment
        long slackFloats = ((1L << maxRunLog2) - 1) * pageFloats;
        long bytes = Math.multiplyExact(Math.addExact(Math.multiplyExact(planeFloats, (long) layout.layers() * 2),
                slackFloats), 4L);
        long pageCount = (long) blocks * layout.layers() * 2;
        if (pageCount > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(blocks + " blocks of " + layout.layers() + " layers make " + pageCount
                    + " pages, more than " + (Integer.MAX_VALUE - 8));
        }
        if (pageFloats * 4 > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("one page of " + pageFloats + " floats exceeds a ByteBuffer's 2 GiB limit");
        }
        this.arena = Arena.ofShared();
        this.memory = arena.allocate(bytes, 64);
        this.runs = new AtomicReferenceArray<>(32);
    }

    /**
     * Allocates {@code blocks} blocks of {@code layout}, which must be F32.
     *
     * @param layout the block layout; its format must be {@code KvFormats.F32}
     * @param blocks the number of blocks, {@code > 0}
     * @return the new block memory
     * @throws IllegalArgumentException if the format is not F32 or {@code blocks <= 0}
     */
    public static JlamaBlockMemory allocate(KvLayout layout, int blocks) {
        if (layout.format() != KvFormats.F32) {
            throw new IllegalArgumentException("format " + layout.format().name()
                    + " is not served in place; JlamaBlockMemory holds F32 (use StagedKvBuffers for other formats)");
        }
        if (blocks <= 0) {
            throw new IllegalArgumentException("blocks " + blocks + " must be > 0");
        }
        return new JlamaBlockMemory(layout, blocks);
    }

    @Override
    public KvLayout layout() {
        return layout;
    }

    @Override
    public int blocks() {
        return blocks;
    }

    /**
     * The [blockTokens, kvDim] key page of {@code block} at {@code layer}, a view of this memory.
     *
     * @param layer the transformer layer
     * @param block the block index
     * @return the key page, a view of this memory
     */
    public AbstractTensor keyPage(int layer, int block) {
        return page(layer, block, 0);
    }

    /**
     * The [blockTokens, kvDim] value page of {@code block} at {@code layer}, a view of this memory.
     *
     * @param layer the transformer layer
     * @param block the block index
     * @return the value page, a view of this memory
     */
    public AbstractTensor valuePage(int layer, int block) {
        return page(layer, block, 1);
    }

    private AbstractTensor page(int layer, int block, int kv) {
        checkOpen();
        checkLayer(layer);
        checkBlock(block);
        return run(layer, kv, block, 0);
    }

    /**
     * The [2^log2Blocks * blockTokens, kvDim] key view of blocks {@code first .. first + 2^log2Blocks - 1}
     * at {@code layer}: one page covering consecutive blocks (see the class comment), made once and kept.
     * The view may run past the last block of this (layer, K) plane, into the next plane or the slack
     * after the last one: the caller reads only rows of blocks it holds. IllegalArgumentException when
     * {@code log2Blocks} exceeds {@link #maxRunLog2()}.
     */
    AbstractTensor keyRun(int layer, int first, int log2Blocks) {
        return checkedRun(layer, 0, first, log2Blocks);
    }

    /** As {@link #keyRun}, for values. */
    AbstractTensor valueRun(int layer, int first, int log2Blocks) {
        return checkedRun(layer, 1, first, log2Blocks);
    }

    /** Largest k such that a run of 2^k blocks is at most {@link #MAX_RUN_TOKENS} (or one block) and fits a ByteBuffer. */
    int maxRunLog2() {
        return maxRunLog2;
    }

    private static int maxRunLog2(int blockTokens, long pageFloats) {
        int k = 0;
        while (k < 30 && (pageFloats << (k + 1)) * 4 <= Integer.MAX_VALUE
                && ((long) blockTokens << (k + 1)) <= MAX_RUN_TOKENS) k++;
        return k;
    }

    private AbstractTensor checkedRun(int layer, int kv, int first, int log2Blocks) {
        checkOpen();
        checkLayer(layer);
        checkBlock(first);
        if (log2Blocks < 0 || log2Blocks > maxRunLog2) {
            throw new IllegalArgumentException("a run of 2^" + log2Blocks + " blocks exceeds the longest view, 2^"
                    + maxRunLog2 + " blocks");
        }
        return run(layer, kv, first, log2Blocks);
    }

    private AbstractTensor view(int layer, int kv, int first, int count, boolean cacheSlices) {
        long floats = pageFloats * count;
        long offset = ((layer * 2L + kv) * planeFloats + first * pageFloats) * 4;
        var fb = memory.asSlice(offset, floats * 4).asByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        return new FloatBufferTensor(fb, TensorShape.of(layout.blockTokens() * count, kvDim), cacheSlices);
    }

    private AbstractTensor run(int layer, int kv, int first, int log2Blocks) {
        AtomicReferenceArray<AbstractTensor> level = runs.get(log2Blocks);
        if (level == null) {
            AtomicReferenceArray<AbstractTensor> made = new AtomicReferenceArray<>(layout.layers() * 2 * blocks);
            level = runs.compareAndExchange(log2Blocks, null, made);
            if (level == null) level = made;
        }
        int index = (layer * 2 + kv) * blocks + first;
        AbstractTensor t = level.get(index);
        if (t == null) {
            AbstractTensor made = view(layer, kv, first, 1 << log2Blocks, true);
            t = level.compareAndExchange(index, null, made);
            if (t == null) t = made;
        }
        return t;
    }

    @Override
    public void write(int layer, long slot, float[] k, float[] v) {
        checkRow(k, "k");
        checkRow(v, "v");
        long base = rowOffset(layer, slot);
        KvStore.checkValues(layer, slot, k, v, kvDim); // values that would overflow attention: refused, nothing written
        MemorySegment.copy(k, 0, memory, ValueLayout.JAVA_FLOAT_UNALIGNED, base, kvDim);
        MemorySegment.copy(v, 0, memory, ValueLayout.JAVA_FLOAT_UNALIGNED, base + planeFloats * 4, kvDim);
    }

    @Override
    public void readKey(int layer, long slot, float[] out) {
        checkRow(out, "out");
        MemorySegment.copy(memory, ValueLayout.JAVA_FLOAT_UNALIGNED, rowOffset(layer, slot), out, 0, kvDim);
    }

    @Override
    public void readValue(int layer, long slot, float[] out) {
        checkRow(out, "out");
        MemorySegment.copy(memory, ValueLayout.JAVA_FLOAT_UNALIGNED, rowOffset(layer, slot) + planeFloats * 4, out, 0, kvDim);
    }

    @Override
    public void copyBlock(int srcBlock, int dstBlock) {
        checkOpen();
        checkBlock(srcBlock);
        checkBlock(dstBlock);
        if (srcBlock == dstBlock) return;
        for (int plane = 0; plane < layout.layers() * 2; plane++) {
            long base = plane * planeFloats;
            MemorySegment.copy(memory, (base + srcBlock * pageFloats) * 4, memory, (base + dstBlock * pageFloats) * 4,
                    pageFloats * 4);
        }
    }

    /** Byte offset of the key row of {@code slot} at {@code layer}; the value row is one plane further. */
    private long rowOffset(int layer, long slot) {
        checkOpen();
        checkLayer(layer);
        long max = (long) blocks * layout.blockTokens();
        if (slot < 0 || slot >= max) {
            throw new IllegalArgumentException("slot " + slot + " is outside 0.." + (max - 1));
        }
        long block = slot / layout.blockTokens();
        long offset = slot % layout.blockTokens();
        return ((long) layer * 2 * planeFloats + block * pageFloats + offset * kvDim) * 4;
    }

    private void checkRow(float[] a, String name) {
        if (a.length != kvDim) {
            throw new IllegalArgumentException(name + " has " + a.length + " floats, expected kvHeads*headDim = " + kvDim);
        }
    }

    private void checkLayer(int layer) {
        if (layer < 0 || layer >= layout.layers()) {
            throw new IllegalArgumentException("layer " + layer + " is outside 0.." + (layout.layers() - 1));
        }
    }

    private void checkBlock(int block) {
        if (block < 0 || block >= blocks) {
            throw new IllegalArgumentException("block " + block + " is outside 0.." + (blocks - 1));
        }
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("JlamaBlockMemory is closed");
    }

    @Override
    public void close() {
        synchronized (this) {
            if (closed) return;
            closed = true;
        }
        arena.close();
    }
}
