package dev.kvcache.cuda;

import java.util.Objects;

/**
 * Pinned host memory for preempted sequences of one {@link CudaKvStore}: moves device blocks out
 * to host blocks and back <em>asynchronously</em>, on the store's swap stream, with
 * {@code cuMemcpyDtoHAsync}/{@code cuMemcpyHtoDAsync} from page-locked memory (so the copies run
 * on the copy engines at PCIe/NVLink speed while kernels keep running). Same use as the off-heap
 * {@code HostSwapSpace}:
 * <pre>{@code
 *   int[] host = swap.swapOutAsync(seq.blockTable());  // null: not enough host blocks, nothing moved
 *   manager.free(seq);                                  // device blocks may be reused at once:
 *                                                       // later writes wait for the copy on the device
 *   ...
 *   swap.swapInAsync(host, again.blockTable());         // frees the host blocks
 *   swap.await();                                       // only needed before touching host memory
 * }</pre>
 *
 * <h2>Memory</h2>
 * One {@code cuMemHostAlloc} of {@code hostBlocks * swapBlockBytes}; a host block holds a device
 * block's bytes and, for FP8, the float32 staging rows of each layer that was still in its residual
 * window (recorded per layer), so a block comes back bit-identical. A {@code -1} entry (a block a
 * sliding window released) stays {@code -1} and moves nothing.
 *
 * <h2>Ordering</h2>
 * A swap waits on the device for everything the store did before it; the store's next operation
 * waits on the device for the swap (see {@link CudaKvStore}). Host blocks freed by
 * {@code swapInAsync} may be handed out again at once: all swaps share one stream, so a later
 * swap-out cannot overtake the swap-in still reading them. {@link #await()} blocks until every
 * enqueued swap is done. Methods synchronize on the store.
 */
public final class CudaSwapSpace implements AutoCloseable {

    private final CudaKvStore store;
    private final CudaDriver drv;
    private final CudaBlockLayout bl;
    private final int layers;
    private final int hostBlocks;
    private final long slotBytes;
    private long host;
    private final int[] freeStack;
    private final boolean[] inUse;
    private final boolean[] staged; // [hostBlock * layers + layer]: staging rows travel with the block
    private int freeTop;
    private long bytesOut;
    private long bytesIn;
    private boolean closed;

    private CudaSwapSpace(CudaKvStore store, int hostBlocks, long host) {
        this.store = store;
        this.drv = store.driver();
        this.bl = store.blockLayout();
        this.layers = bl.kvLayout().layers();
        this.hostBlocks = hostBlocks;
        this.slotBytes = bl.swapBlockBytes();
        this.host = host;
        this.freeStack = new int[hostBlocks];
        this.inUse = new boolean[hostBlocks];
        this.staged = new boolean[bl.blockFormat() ? hostBlocks * layers : 0];
        for (int i = 0; i < hostBlocks; i++) {
            freeStack[i] = hostBlocks - 1 - i;
        }
        this.freeTop = hostBlocks;
    }

    /**
     * Pinned swap space of {@code hostBlocks} blocks for {@code store}; closed with the store at the latest.
     *
     * @param store      the open store whose blocks this space swaps
     * @param hostBlocks the number of host blocks, {@code > 0}; each is
     *                   {@link CudaBlockLayout#swapBlockBytes()} of pinned memory
     * @return a new space with every host block free; the caller closes it (or the store does)
     * @throws NullPointerException     if {@code store} is null
     * @throws IllegalArgumentException if {@code hostBlocks <= 0}
     * @throws ArithmeticException      if the total byte size overflows a long
     * @throws IllegalStateException    if the store is closed
     * @throws CudaException            if the pinned allocation ({@code cuMemHostAlloc}) fails
     */
    public static CudaSwapSpace allocate(CudaKvStore store, int hostBlocks) {
        Objects.requireNonNull(store, "store");
        if (hostBlocks <= 0) {
            throw new IllegalArgumentException("hostBlocks must be > 0, got " + hostBlocks);
        }
        long bytes = Math.multiplyExact(store.blockLayout().swapBlockBytes(), (long) hostBlocks);
        synchronized (store) {
            store.checkOpen();
            CudaDriver drv = store.driver();
            drv.makeCurrent();
            long p = drv.hostAlloc(bytes);
            CudaSwapSpace s = new CudaSwapSpace(store, hostBlocks, p);
            store.register(s);
            return s;
        }
    }

    /**
     * Enqueues copies of {@code deviceBlocks} into free host blocks and returns their ids (-1 for
     * -1 entries), or null, with nothing moved, when fewer host blocks are free than needed.
     * Returns before the copies finish.
     *
     * @param deviceBlocks the store's blocks to copy out, each in {@code [0, store.blocks())} or -1
     *                     (a released block, nothing moved)
     * @return the host block holding each entry's copy, index for index ({@code -1} where the entry
     *         was -1), to pass to {@link #swapInAsync} or {@link #free}; null, with nothing moved or
     *         reserved, when fewer host blocks are free than non-(-1) entries
     * @throws NullPointerException     if {@code deviceBlocks} is null
     * @throws IllegalArgumentException if an entry other than -1 is out of range (nothing moved)
     * @throws IllegalStateException    if this space or the store is closed
     * @throws CudaException            if enqueuing a copy fails
     */
    public int[] swapOutAsync(int[] deviceBlocks) {
        Objects.requireNonNull(deviceBlocks, "deviceBlocks");
        synchronized (store) {
            checkOpen();
            int need = 0;
            for (int i = 0; i < deviceBlocks.length; i++) {
                int b = deviceBlocks[i];
                if (b != -1) {
                    store.checkBlock("deviceBlocks[" + i + "]", b);
                    need++;
                }
            }
            if (need > freeTop) {
                return null;
            }
            long swapStream = store.beginSwap();
            int[] out = new int[deviceBlocks.length];
            int[] stageOf = store.stageOf();
            CudaKvStore.Staging staging = store.staging();
            long dev = store.devicePointer();
            for (int i = 0; i < deviceBlocks.length; i++) {
                int b = deviceBlocks[i];
                if (b == -1) {
                    out[i] = -1;
                    continue;
                }
                int h = freeStack[--freeTop];
                inUse[h] = true;
                out[i] = h;
                long at = host + h * slotBytes;
                drv.memcpyDtoHAsync(at, dev + bl.blockOffset(b), bl.blockBytes(), swapStream);
                bytesOut += bl.blockBytes();
                if (bl.blockFormat()) {
                    for (int l = 0; l < layers; l++) {
                        int st = stageOf[b * layers + l];
                        staged[h * layers + l] = st >= 0;
                        if (st >= 0) {
                            drv.memcpyDtoHAsync(at + bl.blockBytes() + l * bl.stageBytes(),
                                    staging.address(st), bl.stageBytes(), swapStream);
                            bytesOut += bl.stageBytes();
                        }
                    }
                }
            }
            store.endSwap();
            return out;
        }
    }

    /**
     * Enqueues copies of host blocks {@code hostBlocks[i]} onto device blocks {@code deviceBlocks[i]}
     * (-1 pairs with -1) and frees the host blocks. IllegalArgumentException, with nothing moved,
     * for unequal lengths, a -1 paired with a block, an id out of range or a host block not in use.
     *
     * @param hostBlockIds the host blocks to copy back, as {@link #swapOutAsync} returned them: each
     *                     in use and listed once, or -1
     * @param deviceBlocks the store's blocks to overwrite, as many as {@code hostBlockIds}, each in
     *                     {@code [0, store.blocks())}, -1 exactly where {@code hostBlockIds} has -1
     * @throws NullPointerException     if either array is null
     * @throws IllegalArgumentException if the lengths differ, -1 is paired with a block, an id is out
     *                                  of range, or a host block is not in use or appears twice
     * @throws IllegalStateException    if this space or the store is closed
     * @throws CudaException            if enqueuing a copy fails
     */
    public void swapInAsync(int[] hostBlockIds, int[] deviceBlocks) {
        Objects.requireNonNull(hostBlockIds, "hostBlocks");
        Objects.requireNonNull(deviceBlocks, "deviceBlocks");
        synchronized (store) {
            checkOpen();
            if (hostBlockIds.length != deviceBlocks.length) {
                throw new IllegalArgumentException("hostBlocks.length " + hostBlockIds.length
                        + " != deviceBlocks.length " + deviceBlocks.length);
            }
            boolean[] seen = new boolean[hostBlocks];
            for (int i = 0; i < hostBlockIds.length; i++) {
                int h = hostBlockIds[i];
                int d = deviceBlocks[i];
                if ((h == -1) != (d == -1)) {
                    throw new IllegalArgumentException("hostBlocks[" + i + "] = " + h + " but deviceBlocks["
                            + i + "] = " + d + "; -1 pairs only with -1");
                }
                if (h == -1) {
                    continue;
                }
                checkHost("hostBlocks[" + i + "]", h);
                if (seen[h]) {
                    throw new IllegalArgumentException("hostBlocks[" + i + "] = " + h + " appears twice");
                }
                seen[h] = true;
                store.checkBlock("deviceBlocks[" + i + "]", d);
            }
            long swapStream = store.beginSwap();
            int[] stageOf = store.stageOf();
            CudaKvStore.Staging staging = store.staging();
            long dev = store.devicePointer();
            for (int i = 0; i < hostBlockIds.length; i++) {
                int h = hostBlockIds[i];
                if (h == -1) {
                    continue;
                }
                int d = deviceBlocks[i];
                long at = host + h * slotBytes;
                drv.memcpyHtoDAsync(dev + bl.blockOffset(d), at, bl.blockBytes(), swapStream);
                bytesIn += bl.blockBytes();
                if (bl.blockFormat()) {
                    for (int l = 0; l < layers; l++) {
                        int di = d * layers + l;
                        int st = stageOf[di];
                        if (staged[h * layers + l]) {
                            if (st < 0) {
                                st = staging.acquire();
                                stageOf[di] = st;
                            }
                            drv.memcpyHtoDAsync(staging.address(st),
                                    at + bl.blockBytes() + l * bl.stageBytes(), bl.stageBytes(), swapStream);
                            bytesIn += bl.stageBytes();
                        } else if (st >= 0) {
                            stageOf[di] = -1;
                            staging.release(st);
                        }
                    }
                }
                inUse[h] = false;
                freeStack[freeTop++] = h;
            }
            store.endSwap();
        }
    }

    /**
     * Frees host blocks without copying them back (the sequence was dropped); -1 entries are ignored.
     *
     * @param hostBlockIds the host blocks to free, as {@link #swapOutAsync} returned them: each in use
     *                     and listed once, or -1
     * @throws NullPointerException     if {@code hostBlockIds} is null
     * @throws IllegalArgumentException if an id is out of range, not in use or listed twice (nothing freed)
     * @throws IllegalStateException    if this space or the store is closed
     */
    public void free(int[] hostBlockIds) {
        Objects.requireNonNull(hostBlockIds, "hostBlocks");
        synchronized (store) {
            checkOpen();
            boolean[] seen = new boolean[hostBlocks];
            for (int i = 0; i < hostBlockIds.length; i++) {
                int h = hostBlockIds[i];
                if (h == -1) {
                    continue;
                }
                checkHost("hostBlocks[" + i + "]", h);
                if (seen[h]) {
                    throw new IllegalArgumentException("hostBlocks[" + i + "] = " + h + " appears twice");
                }
                seen[h] = true;
            }
            for (int h : hostBlockIds) {
                if (h != -1) {
                    inUse[h] = false;
                    freeStack[freeTop++] = h;
                }
            }
        }
    }

    /** Blocks until every swap enqueued so far has finished. */
    public void await() {
        synchronized (store) {
            checkOpen();
            drv.streamSynchronize(store.beginSwap());
        }
    }

    /**
     * Free host blocks.
     *
     * @return the number of host blocks not holding a swapped-out block now, in {@code [0, totalBlocks()]}
     */
    public int freeBlocks() {
        synchronized (store) {
            return freeTop;
        }
    }

    /**
     * Host blocks in all.
     *
     * @return the {@code hostBlocks} this space was allocated with
     */
    public int totalBlocks() {
        return hostBlocks;
    }

    /**
     * Bytes enqueued device to host so far.
     *
     * @return the bytes of every swap-out copy enqueued since allocation (blocks plus FP8 staging
     *         rows), counted when enqueued, not when finished
     */
    public long bytesSwappedOut() {
        synchronized (store) {
            return bytesOut;
        }
    }

    /**
     * Bytes enqueued host to device so far.
     *
     * @return the bytes of every swap-in copy enqueued since allocation (blocks plus FP8 staging
     *         rows), counted when enqueued, not when finished
     */
    public long bytesSwappedIn() {
        synchronized (store) {
            return bytesIn;
        }
    }

    /**
     * Pinned bytes held.
     *
     * @return {@code totalBlocks() * CudaBlockLayout.swapBlockBytes()}, the size of the pinned
     *         allocation (reported also after {@link #close()})
     */
    public long hostBytes() {
        return hostBlocks * slotBytes;
    }

    /** Waits for pending swaps and frees the pinned memory. Idempotent. */
    @Override
    public void close() {
        synchronized (store) {
            if (closed) {
                return;
            }
            closed = true;
            store.unregister(this);
            CudaKvStore.quietly(drv::makeCurrent);
            if (!store.isClosed()) {
                CudaKvStore.quietly(() -> drv.streamSynchronize(store.beginSwap()));
            }
            CudaKvStore.quietly(() -> drv.hostFree(host));
            host = 0;
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("CudaSwapSpace is closed");
        }
        store.checkOpen();
    }

    private void checkHost(String name, int h) {
        if (h < 0 || h >= hostBlocks) {
            throw new IllegalArgumentException(name + " " + h + " out of range [0, " + hostBlocks + ")");
        }
        if (!inUse[h]) {
            throw new IllegalArgumentException(name + " " + h + " is not in use");
        }
    }

    @Override
    public String toString() {
        return "CudaSwapSpace[" + hostBlocks + " blocks, free " + freeTop + ", out " + bytesOut + " B, in " + bytesIn + " B]";
    }
}
