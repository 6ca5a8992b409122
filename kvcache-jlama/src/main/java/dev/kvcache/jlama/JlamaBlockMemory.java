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
 * One {@link Arena#ofShared() shared arena} segment of float32:
 * <pre>
 *   [block][layer][K=0 | V=1][token 0..blockTokens-1][kvDim]
 * </pre>
 * so one (block, layer, K or V) is a contiguous [blockTokens][kvDim] matrix: exactly the "page" shape
 * Jlama's attention iterates ({@code kvp[i].shape().first()} tokens per page, pages in logical order),
 * and a token's row is one {@code slice} of it. All layers of a block are contiguous, so
 * {@link #copyBlock} (the block manager's copy-on-write) is one {@link MemorySegment#copy}.
 *
 * <p>Page tensors are views ({@link FloatBufferTensor} over a slice of the segment), made on first use
 * and kept in an {@link AtomicReferenceArray} so any thread sees a fully built one. After
 * {@link #close()} the segment is freed; a view used afterwards fails with the JDK's
 * {@link IllegalStateException} (the buffers are bound to the arena's scope), never a crash.
 *
 * <p>Format: F32 only (Jlama's F32 working memory). Quantized KV goes through
 * {@link PagedKvBufferCache#staged} over any {@link KvStore}.
 */
public final class JlamaBlockMemory implements KvStore {
    private final KvLayout layout;
    private final int blocks;
    private final int kvDim;
    private final long pageFloats;    // blockTokens * kvDim
    private final long blockFloats;   // layers * 2 * pageFloats
    private final Arena arena;
    private final MemorySegment memory;
    private final AtomicReferenceArray<AbstractTensor> pages; // [block][layer][kv]
    private volatile boolean closed;

    private JlamaBlockMemory(KvLayout layout, int blocks) {
        this.layout = layout;
        this.blocks = blocks;
        this.kvDim = layout.kvHeads() * layout.headDim();
        this.pageFloats = (long) layout.blockTokens() * kvDim;
        this.blockFloats = (long) layout.layers() * 2 * pageFloats;
        long bytes = Math.multiplyExact(Math.multiplyExact(blockFloats, (long) blocks), 4L);
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
        this.pages = new AtomicReferenceArray<>((int) pageCount);
    }

    /** Allocates {@code blocks} blocks of {@code layout}, which must be F32. */
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

    /** The [blockTokens, kvDim] key page of {@code block} at {@code layer}, a view of this memory. */
    public AbstractTensor keyPage(int layer, int block) {
        return page(layer, block, 0);
    }

    /** The [blockTokens, kvDim] value page of {@code block} at {@code layer}, a view of this memory. */
    public AbstractTensor valuePage(int layer, int block) {
        return page(layer, block, 1);
    }

    private AbstractTensor page(int layer, int block, int kv) {
        checkOpen();
        checkLayer(layer);
        checkBlock(block);
        int index = (block * layout.layers() + layer) * 2 + kv;
        AbstractTensor t = pages.get(index);
        if (t == null) {
            long offset = (block * blockFloats + (long) (layer * 2 + kv) * pageFloats) * 4;
            var fb = memory.asSlice(offset, pageFloats * 4).asByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
            AbstractTensor made = new FloatBufferTensor(fb, TensorShape.of(layout.blockTokens(), kvDim), true);
            t = pages.compareAndExchange(index, null, made);
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
        MemorySegment.copy(v, 0, memory, ValueLayout.JAVA_FLOAT_UNALIGNED, base + pageFloats * 4, kvDim);
    }

    @Override
    public void readKey(int layer, long slot, float[] out) {
        checkRow(out, "out");
        MemorySegment.copy(memory, ValueLayout.JAVA_FLOAT_UNALIGNED, rowOffset(layer, slot), out, 0, kvDim);
    }

    @Override
    public void readValue(int layer, long slot, float[] out) {
        checkRow(out, "out");
        MemorySegment.copy(memory, ValueLayout.JAVA_FLOAT_UNALIGNED, rowOffset(layer, slot) + pageFloats * 4, out, 0, kvDim);
    }

    @Override
    public void copyBlock(int srcBlock, int dstBlock) {
        checkOpen();
        checkBlock(srcBlock);
        checkBlock(dstBlock);
        if (srcBlock == dstBlock) return;
        MemorySegment.copy(memory, srcBlock * blockFloats * 4, memory, dstBlock * blockFloats * 4, blockFloats * 4);
    }

    /** Byte offset of the key row of {@code slot} at {@code layer}; the value row is one page further. */
    private long rowOffset(int layer, long slot) {
        checkOpen();
        checkLayer(layer);
        long max = (long) blocks * layout.blockTokens();
        if (slot < 0 || slot >= max) {
            throw new IllegalArgumentException("slot " + slot + " is outside 0.." + (max - 1));
        }
        long block = slot / layout.blockTokens();
        long offset = slot % layout.blockTokens();
        return (block * blockFloats + (long) layer * 2 * pageFloats + offset * kvDim) * 4;
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
