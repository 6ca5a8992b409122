package dev.kvcache.testkit;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;

/**
 * A plain F32 {@link KvStore} on the heap, for the testkit's own tests of {@link StoreUnderTest}
 * (kvcache-offheap's tests run the model over the real off-heap store). {@code brokenCopies}
 * makes {@link #copyBlock} copy layer 0 only: the bug the model must find.
 */
final class HeapKvStore implements KvStore {

    private final KvLayout layout;
    private final int blocks;
    private final int dim;
    private final boolean brokenCopies;
    /** [layer][K=0|V=1][slot * dim + d] */
    private final float[][][] kv;
    private boolean closed;
    int closes;

    HeapKvStore(KvLayout layout, int blocks, boolean brokenCopies) {
        this.layout = layout;
        this.blocks = blocks;
        this.dim = layout.kvDim();
        this.brokenCopies = brokenCopies;
        this.kv = new float[layout.layers()][2][blocks * layout.blockTokens() * dim];
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
        open();
        System.arraycopy(k, 0, kv[layer][0], (int) slot * dim, dim);
        System.arraycopy(v, 0, kv[layer][1], (int) slot * dim, dim);
    }

    @Override
    public void readKey(int layer, long slot, float[] out) {
        open();
        System.arraycopy(kv[layer][0], (int) slot * dim, out, 0, dim);
    }

    @Override
    public void readValue(int layer, long slot, float[] out) {
        open();
        System.arraycopy(kv[layer][1], (int) slot * dim, out, 0, dim);
    }

    @Override
    public void copyBlock(int srcBlock, int dstBlock) {
        open();
        int n = layout.blockTokens() * dim;
        for (int layer = 0; layer < (brokenCopies ? 1 : layout.layers()); layer++) {
            for (int x = 0; x < 2; x++) {
                System.arraycopy(kv[layer][x], srcBlock * n, kv[layer][x], dstBlock * n, n);
            }
        }
    }

    private void open() {
        if (closed) {
            throw new IllegalStateException("closed");
        }
    }

    @Override
    public void close() {
        closed = true;
        closes++;
    }
}
