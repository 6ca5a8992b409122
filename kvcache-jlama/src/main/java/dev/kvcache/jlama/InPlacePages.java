package dev.kvcache.jlama;

import com.github.tjake.jlama.tensor.AbstractTensor;

/**
 * Zero-copy strategy: Jlama writes each token's K and V straight into the kvcache block that the
 * block manager assigned to its slot, and attention reads the sequence's blocks in block-table order.
 * Each page is one (block, layer, K or V) [blockTokens, kvDim] view of {@link JlamaBlockMemory}.
 */
final class InPlacePages implements KvPages {
    private final JlamaBlockMemory memory;
    private final int blockTokens;

    InPlacePages(JlamaBlockMemory memory) {
        this.memory = memory;
        this.blockTokens = memory.layout().blockTokens();
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
        AbstractTensor[] out = new AbstractTensor[position / blockTokens + 1];
        for (int i = 0; i < out.length; i++) out[i] = memory.keyPage(layer, table[i]);
        return out;
    }

    @Override
    public AbstractTensor[] valuePages(PagedSession s, int layer, int position, int[] table) {
        AbstractTensor[] out = new AbstractTensor[position / blockTokens + 1];
        for (int i = 0; i < out.length; i++) out[i] = memory.valuePage(layer, table[i]);
        return out;
    }

    @Override
    public void flush() {}

    @Override
    public void forget(PagedSession s) {}
}
