package dev.kvcache.jlama;

import com.github.tjake.jlama.tensor.AbstractTensor;
import com.github.tjake.jlama.tensor.FloatBufferTensor;
import com.github.tjake.jlama.tensor.TensorShape;
import dev.kvcache.KvStore;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Serves Jlama from any {@link KvStore}, quantized formats included, through one F32 staging area.
 *
 * <h2>Algorithm</h2>
 * Jlama's attention needs F32 pages it can read and a F32 row it can write (it copies K/V in, then
 * rotates K in place). The staging area holds ceil(contextLength / pageTokens) pages of
 * [pageTokens, kvDim] floats for K and for V (pageTokens: whole blocks, up to the cache's longest
 * page, since Jlama pays a fixed cost per page): the rows of <em>one</em> (session, layer) at a time,
 * because a Jlama model runs one forward pass at a time and visits layers in order.
 * <ul>
 *   <li>{@code keyRow/valueRow} hand out the staging row of the position being computed and remember
 *       it as <em>pending</em> (layer, position, slot).</li>
 *   <li>The next call for any other (session, layer, position) means Jlama finished that row:
 *       {@link #flush()} encodes it into the store ({@link KvStore#write}, quantizing) and reads it back
 *       dequantized into the staging row, so later positions attend to exactly what the store holds.</li>
 *   <li>{@code keyPages/valuePages} first fill staging rows not yet loaded for this (session, layer)
 *       from the store ({@link KvStore#readKey}/{@link KvStore#readValue}, dequantizing), through the
 *       block table; switching session or layer restarts the fill at row 0.</li>
 * </ul>
 * The one difference from attention over the store itself: a token attends to its own K/V before
 * they are quantized (they are quantized right after, before any later token reads them).
 * Reloading the history costs one dequantized read per earlier token per layer, the same order as
 * the attention that follows. At F32 the round trip is exact, so results equal Jlama's own cache.
 */
final class StagedPages implements KvPages {
    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final KvStore store;
    private final int blockTokens;
    private final int pageTokens;
    private final int kvDim;
    private final AbstractTensor[] stageKey;
    private final AbstractTensor[] stageValue;
    private final float[] k;
    private final float[] v;

    private PagedSession owner;      // whose rows the staging area holds
    private int stagedLayer = -1;    // of which layer
    private int stagedRows;          // rows [0, stagedRows) are loaded or flushed

    private PagedSession pendingSession;
    private int pendingLayer;
    private int pendingPosition;
    private long pendingSlot = -1;   // -1: nothing pending

    StagedPages(KvStore store, int contextLength, int maxPageTokens) {
        this.store = store;
        this.blockTokens = store.layout().blockTokens();
        this.kvDim = store.layout().kvHeads() * store.layout().headDim();
        // whole blocks, at least one, at most the context (rounded up to a block) and a ByteBuffer's 2 GiB
        int contextBlocks = (contextLength + blockTokens - 1) / blockTokens;
        long maxBlocks = Math.max(1, Math.min((long) Integer.MAX_VALUE / 4 / kvDim / blockTokens, contextBlocks));
        this.pageTokens = (int) (blockTokens * Math.max(1, Math.min(maxPageTokens / blockTokens, maxBlocks)));
        int pages = (contextLength + pageTokens - 1) / pageTokens;
        this.stageKey = new AbstractTensor[pages];
        this.stageValue = new AbstractTensor[pages];
        this.k = new float[kvDim];
        this.v = new float[kvDim];
    }

    @Override
    public void touch(PagedSession s, int layer, int position) {
        if (pendingSlot >= 0 && !isPending(s, layer, position)) flush();
        if (owner != s || stagedLayer != layer) {
            owner = s;
            stagedLayer = layer;
            stagedRows = 0;
        }
    }

    private boolean isPending(PagedSession s, int layer, int position) {
        return pendingSlot >= 0 && pendingSession == s && pendingLayer == layer && pendingPosition == position;
    }

    @Override
    public AbstractTensor keyRow(PagedSession s, int layer, int position, long slot) {
        markPending(s, layer, position, slot);
        return row(stageKey, position);
    }

    @Override
    public AbstractTensor valueRow(PagedSession s, int layer, int position, long slot) {
        markPending(s, layer, position, slot);
        return row(stageValue, position);
    }

    private void markPending(PagedSession s, int layer, int position, long slot) {
        pendingSession = s;
        pendingLayer = layer;
        pendingPosition = position;
        pendingSlot = slot;
    }

    @Override
    public AbstractTensor[] keyPages(PagedSession s, int layer, int position, int[] table) {
        load(s, layer, position, table);
        return pages(stageKey, position);
    }

    @Override
    public AbstractTensor[] valuePages(PagedSession s, int layer, int position, int[] table) {
        load(s, layer, position, table);
        return pages(stageValue, position);
    }

    /** Loads rows [stagedRows, end) from the store; end excludes the row Jlama is about to write. */
    private void load(PagedSession s, int layer, int position, int[] table) {
        int end = isPending(s, layer, position) ? position : position + 1;
        for (int r = stagedRows; r < end; r++) {
            long slot = (long) table[r / blockTokens] * blockTokens + r % blockTokens;
            store.readKey(layer, slot, k);
            store.readValue(layer, slot, v);
            put(row(stageKey, r), k);
            put(row(stageValue, r), v);
        }
        stagedRows = Math.max(stagedRows, end);
    }

    @Override
    public void flush() {
        if (pendingSlot < 0) return;
        get(row(stageKey, pendingPosition), k);
        get(row(stageValue, pendingPosition), v);
        long slot = pendingSlot;
        pendingSlot = -1;
        store.write(pendingLayer, slot, k, v);
        if (owner == pendingSession && stagedLayer == pendingLayer) {
            // later positions of this layer must see what the store holds, not the unquantized row
            store.readKey(pendingLayer, slot, k);
            store.readValue(pendingLayer, slot, v);
            put(row(stageKey, pendingPosition), k);
            put(row(stageValue, pendingPosition), v);
            if (stagedRows == pendingPosition) stagedRows++;
        }
    }

    @Override
    public void forget(PagedSession s) {
        if (pendingSlot >= 0 && pendingSession == s) flush();
        if (pendingSession == s) pendingSession = null;
        if (owner == s) {
            owner = null;
            stagedLayer = -1;
            stagedRows = 0;
        }
    }

    private AbstractTensor row(AbstractTensor[] stage, int position) {
        return page(stage, position / pageTokens).slice(true, position % pageTokens);
    }

    private AbstractTensor[] pages(AbstractTensor[] stage, int position) {
        AbstractTensor[] out = new AbstractTensor[position / pageTokens + 1];
        for (int i = 0; i < out.length; i++) out[i] = page(stage, i);
        return out;
    }

    private AbstractTensor page(AbstractTensor[] stage, int i) {
        if (i >= stage.length) {
            throw new IllegalArgumentException("position page " + i + " is beyond the model's context of "
                    + stage.length * pageTokens + " tokens");
        }
        AbstractTensor t = stage[i];
        if (t == null) stage[i] = t = new FloatBufferTensor(TensorShape.of(pageTokens, kvDim));
        return t;
    }

    private void put(AbstractTensor row, float[] src) {
        MemorySegment.copy(src, 0, row.getMemorySegment(), F32_LE, 0, kvDim);
    }

    private void get(AbstractTensor row, float[] dst) {
        MemorySegment.copy(row.getMemorySegment(), F32_LE, 0, dst, 0, kvDim);
    }
}
