package dev.kvcache.jlama;

import com.github.tjake.jlama.tensor.AbstractTensor;

/**
 * Where a {@link PagedSession}'s rows and pages physically come from. Two strategies:
 * {@link InPlacePages} hands Jlama views of {@link JlamaBlockMemory} (zero copy, F32), and
 * {@link StagedPages} stages one layer at a time in F32 over any {@link dev.kvcache.KvStore}
 * (quantized formats included). Calls arrive in Jlama's order: for each position of a forward pass,
 * per layer, {@code key, value, keysUpTo, valuesUpTo}, then Jlama writes the row it got.
 */
interface KvPages {

    /** A call for ({@code layer}, {@code position}) of {@code s} begins: every earlier row write is complete. */
    void touch(PagedSession s, int layer, int position);

    /** Writable key row of a fresh position, at physical {@code slot}. */
    AbstractTensor keyRow(PagedSession s, int layer, int position, long slot);

    /** Writable value row of a fresh position, at physical {@code slot}. */
    AbstractTensor valueRow(PagedSession s, int layer, int position, long slot);

    /** Key pages covering positions 0..position, logical order; {@code table} is the block table. */
    AbstractTensor[] keyPages(PagedSession s, int layer, int position, int[] table);

    /** Value pages covering positions 0..position, logical order. */
    AbstractTensor[] valuePages(PagedSession s, int layer, int position, int[] table);

    /** Makes every completed row write visible in the backing store. */
    void flush();

    /** {@code s} is going away: flush its pending rows and drop anything held for it. */
    void forget(PagedSession s);
}
