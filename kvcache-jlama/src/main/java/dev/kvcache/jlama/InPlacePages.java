package dev.kvcache.jlama;

import com.github.tjake.jlama.tensor.AbstractTensor;

/**
 * Zero-copy strategy: Jlama writes each token's K and V straight into the kvcache block that the
 * block manager assigned to its slot, and attention reads the sequence's blocks in block-table order
 * as views of {@link JlamaBlockMemory}.
 *
 * <h2>Pages longer than a block</h2>
 * Jlama's attention ({@code CausalSelfAttention.forward}) runs, per query head, one
 * {@code batchDotProduct} and one {@code saxpy} per page, and each call builds a kernel object and
 * its tiling afresh: a fixed cost per page. With blocks of 16 a 1.5k-token context is 94 pages per
 * head, layer and token, where Jlama's own cache has a few pages of hundreds of tokens; that cost
 * made Jlama 9-21% slower on kvcache (issue #17; kvcache-jlama/bench-results). So the pages handed to Jlama span
 * {@code 2^k} blocks, k as large as allowed, where:
 * <ul>
 *   <li>every aligned group of {@code 2^k} logical blocks sits in consecutive physical blocks (the
 *       memory is layer-major, so those are one contiguous matrix: {@code JlamaBlockMemory.keyRun});</li>
 *   <li>{@code 2^k * blockTokens <= maxPageTokens} (a page that long costs Jlama a zeroed score
 *       buffer of that many floats per head) and {@code <= JlamaBlockMemory.MAX_RUN_TOKENS}.</li>
 * </ul>
 * Jlama requires every page of a call to have the same length, the last one included (it offsets
 * page {@code i} by {@code i * len} with {@code len} read from that page), and reads only
 * {@code position + 1 - offset} rows of the last one. So the last page is a whole run too, whose
 * rows past the session's last block belong to other blocks (or the memory's slack) and are never
 * read: Jlama attends only to rows of blocks the session holds. A table with a break at logical block {@code i} limits {@code 2^k} to the largest
 * power of two dividing {@code i}; a table of scattered blocks is served one block per page, as
 * before. A fresh
 * block pool hands out ascending ids, so a sequence that grows alone gets one run; prefix sharing,
 * forks and a churned pool give shorter runs.
 *
 * <p>The choice depends only on the block table, which changes only when the session admits
 * tokens; it is computed once per table (one pass over it) and reused for every layer and position.
 */
final class InPlacePages implements KvPages {
    private final JlamaBlockMemory memory;
    private final int blockTokens;
    private final int maxLog2;
    /** The last table seen and its run length; sessions alternate rarely, so one entry suffices. */
    private volatile Choice last = new Choice(new int[0], 0);

    private record Choice(int[] table, int log2) {}

    /** Pages of at most {@code maxPageTokens} (at least one block: {@code blockTokens} gives one page per block). */
    InPlacePages(JlamaBlockMemory memory, int maxPageTokens) {
        this.memory = memory;
        this.blockTokens = memory.layout().blockTokens();
        if (maxPageTokens < blockTokens) {
            throw new IllegalArgumentException("maxPageTokens " + maxPageTokens + " is below one block of " + blockTokens
                    + " tokens");
        }
        int k = 0;
        while (k < memory.maxRunLog2() && (long) blockTokens << (k + 1) <= maxPageTokens) k++;
        this.maxLog2 = k;
    }

    @Override
    public void touch(PagedSession s, int layer, int position) {
        // nothing is ever pending: rows are written in place
    }

    @Override
    public AbstractTensor keyRow(PagedSession s, int layer, int position, long slot) {
        return memory.keyPage(layer, (int) (slot / blockTokens)).slice(true, (int) (slot % blockTokens));
    }

    @Override
    public AbstractTensor valueRow(PagedSession s, int layer, int position, long slot) {
        return memory.valuePage(layer, (int) (slot / blockTokens)).slice(true, (int) (slot % blockTokens));
    }

    @Override
    public AbstractTensor[] keyPages(PagedSession s, int layer, int position, int[] table) {
        return pages(layer, 0, position, table);
    }

    @Override
    public AbstractTensor[] valuePages(PagedSession s, int layer, int position, int[] table) {
        return pages(layer, 1, position, table);
    }

    private AbstractTensor[] pages(int layer, int kv, int position, int[] table) {
        int log2 = log2For(table);
        AbstractTensor[] out = new AbstractTensor[position / (blockTokens << log2) + 1];
        for (int i = 0; i < out.length; i++) {
            out[i] = kv == 0 ? memory.keyRun(layer, table[i << log2], log2) : memory.valueRun(layer, table[i << log2], log2);
        }
        return out;
    }

    /** Blocks per page (log2) for {@code table}, computed once per table array. */
    int log2For(int[] table) {
        Choice c = last;
        if (c.table() == table) return c.log2();
        int log2 = runLog2(table, table.length, maxLog2);
        last = new Choice(table, log2);
        return log2;
    }

    /**
     * The largest {@code k <= maxLog2} such that each aligned group of {@code 2^k} of the first
     * {@code n} entries of {@code table} holds consecutive block ids; 0 when an entry is negative
     * (a released block, which the session refuses to serve anyway).
     */
    static int runLog2(int[] table, int n, int maxLog2) {
        int k = maxLog2;
        if (n > 0 && table[0] < 0) return 0;
        for (int i = 1; i < n && k > 0; i++) {
            if (table[i] < 0) return 0;
            // a break at i allows only groups whose length divides i
            if (table[i] != table[i - 1] + 1) k = Math.min(k, Integer.numberOfTrailingZeros(i));
        }
        return k;
    }

    @Override
    public void flush() {}

    @Override
    public void forget(PagedSession s) {}
}
