package dev.kvcache.cli;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;

import java.lang.foreign.MemorySegment;

/**
 * The store of the simulator's rows with a host tier: the layout and block count of the pool and
 * no KV. Block copies (copy-on-write, export to a tier, import from it) do nothing, since the
 * simulator computes no KV; reading or writing KV is a bug and throws.
 */
final class BytelessStore implements KvStore {
    private final KvLayout layout;
    private final int blocks;

    BytelessStore(KvLayout layout, int blocks) {
        this.layout = layout;
        this.blocks = blocks;
    }

    @Override
    public KvLayout layout() {
        return layout;
    }

    @Override
    public int blocks() {
        return blocks;
    }

    @Override
    public void write(int layer, long slot, float[] k, float[] v) {
        throw new UnsupportedOperationException("the simulator's store holds no KV");
    }

    @Override
    public void readKey(int layer, long slot, float[] out) {
        throw new UnsupportedOperationException("the simulator's store holds no KV");
    }

    @Override
    public void readValue(int layer, long slot, float[] out) {
        throw new UnsupportedOperationException("the simulator's store holds no KV");
    }

    @Override
    public void copyBlock(int srcBlock, int dstBlock) {
        // no bytes to copy
    }

    @Override
    public void exportBlock(int block, MemorySegment dst) {
        // no bytes to export
    }

    @Override
    public void importBlock(int block, MemorySegment src) {
        // no bytes to import
    }

    @Override
    public void close() {
    }
}
