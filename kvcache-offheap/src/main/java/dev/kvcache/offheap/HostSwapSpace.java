package dev.kvcache.offheap;

import dev.kvcache.KvLayout;

import java.util.Objects;

/**
 * A host-memory tier for preempted sequences: moves blocks (by id) out of an
 * {@link OffHeapKvStore} into a pool of host blocks and back, and counts the bytes moved.
 *
 * <h2>Use (preemption)</h2>
 * <pre>{@code
 *   int[] host = swap.swapOut(store, seq.blockTable());   // null: not enough host blocks, nothing moved
 *   manager.free(seq);                                      // the device blocks go back to the pool
 *   ...                                                     // later, re-admit:
 *   Sequence again = manager.open(id); manager.append(again, tokens);   // fresh blocks, same length
 *   swap.swapIn(host, store, again.blockTable());           // copies back, frees the host blocks
 * }</pre>
 * A {@code -1} entry (a block a sliding window released) stays {@code -1} and moves nothing.
 *
 * <h2>Memory</h2>
 * The pool is itself an {@link OffHeapKvStore} of the same layout (one 64-byte-aligned native
 * allocation, {@link StoreLayout} order), so a block moves as one bulk copy of
 * {@code bytesPerBlock} bytes, plus the full-precision staging rows of any partially written layer
 * of a block format (FP8, KIVI): what comes back is bit-identical to what went out. Free host blocks
 * sit on a stack. For the CPU store this is a second pool (e.g. on a larger, slower or pageable
 * budget); for a CUDA store the same API would move device blocks to pinned host memory.
 *
 * <h2>Failures</h2>
 * Each call is all or nothing: {@link #swapOut} keeps no host block when a copy fails (a store
 * closed by another thread meanwhile gives IllegalStateException), and {@link #swapIn} frees no
 * host block unless every copy succeeded.
 *
 * <h2>Threads</h2>
 * Methods synchronize on this object; a swap must not run concurrently with writes or attention on
 * the blocks it moves (the engine preempts a sequence between steps).
 */
public final class HostSwapSpace implements AutoCloseable {

    private final OffHeapKvStore pool;
    private final int[] freeStack;
    private final boolean[] inUse;
    private int freeTop;
    private long bytesOut;
    private long bytesIn;
    private long blocksOut;
    private long blocksIn;

    private HostSwapSpace(KvLayout layout, int hostBlocks) {
        this.pool = OffHeapKvStore.allocate(layout, hostBlocks);
        this.freeStack = new int[hostBlocks];
        this.inUse = new boolean[hostBlocks];
        for (int i = 0; i < hostBlocks; i++) {
            freeStack[i] = hostBlocks - 1 - i;
        }
        this.freeTop = hostBlocks;
    }

    /**
     * A host pool of {@code hostBlocks} blocks of {@code layout}.
     *
     * @param layout     the layout of the stores this space swaps for (a store of another layout is refused); not null
     * @param hostBlocks the number of host blocks, {@code > 0}; each takes {@code layout.bytesPerBlock()}
     *                   native bytes (plus staging rows of a block format while it holds a partial block)
     * @return a new space with every host block free; the caller closes it
     * @throws NullPointerException     if {@code layout} is null
     * @throws IllegalArgumentException if {@code hostBlocks <= 0} or its token slots exceed
     *                                  {@code Integer.MAX_VALUE}
     * @throws OutOfMemoryError         if the OS refuses the memory
     */
    public static HostSwapSpace allocate(KvLayout layout, int hostBlocks) {
        Objects.requireNonNull(layout, "layout");
        if (hostBlocks <= 0) {
            throw new IllegalArgumentException("hostBlocks must be > 0, got " + hostBlocks);
        }
        return new HostSwapSpace(layout, hostBlocks);
    }

    /**
     * Copies blocks {@code deviceBlocks} of {@code store} into free host blocks and returns their
     * host ids in the same order ({@code -1} entries stay {@code -1}). Returns {@code null}, moving
     * nothing, when fewer host blocks are free than needed. The device blocks are left as they
     * were; the caller frees them.
     *
     * @param store        an open store of this space's layout
     * @param deviceBlocks the store's blocks to copy, each in {@code [0, store.blocks())} or -1 (moves nothing)
     * @return the host block holding each entry's copy, index for index ({@code -1} where the entry
     *         was -1), to pass to {@link #swapIn} or {@link #free}; null, with nothing moved, when
     *         fewer host blocks are free than non-(-1) entries
     * @throws NullPointerException     if {@code store} or {@code deviceBlocks} is null
     * @throws IllegalArgumentException if the store's layout differs from this space's, or an entry
     *                                  other than -1 is out of range (nothing moved)
     * @throws IllegalStateException    if this space is closed or the store is (also when it is closed
     *                                  during the copy: no host block is kept then)
     */
    public synchronized int[] swapOut(OffHeapKvStore store, int[] deviceBlocks) {
        checkStore(store);
        Objects.requireNonNull(deviceBlocks, "deviceBlocks");
        int need = 0;
        for (int i = 0; i < deviceBlocks.length; i++) {
            int b = deviceBlocks[i];
            if (b != -1) {
                checkIndexed(store, "deviceBlocks", i, b);
                need++;
            }
        }
        if (need > freeTop) {
            return null;
        }
        // All or nothing: copy into the top free host blocks first and pop them only once every
        // copy succeeded, so a failure (the store closed meanwhile, anything) keeps no host block.
        int[] host = new int[deviceBlocks.length];
        int taken = 0;
        long bytes = 0;
        try {
            for (int i = 0; i < deviceBlocks.length; i++) {
                int b = deviceBlocks[i];
                if (b == -1) {
                    host[i] = -1;
                    continue;
                }
                int h = freeStack[freeTop - 1 - taken];
                taken++;
                host[i] = h;
                bytes += moved(store, b);
                OffHeapKvStore.transfer(store, b, pool, h);
            }
        } catch (RuntimeException | Error e) {
            // a partial transfer may have taken staging slots for the host block: give them back
            for (int j = 0; j < taken; j++) {
                pool.blockReleased(freeStack[freeTop - 1 - j]);
            }
            if (e instanceof RuntimeException && store.isClosed()) {
                throw new IllegalStateException("OffHeapKvStore was closed during swapOut; no host block was kept", e);
            }
            throw e;
        }
        for (int j = 0; j < taken; j++) {
            inUse[freeStack[--freeTop]] = true;
        }
        bytesOut += bytes;
        blocksOut += taken;
        return host;
    }

    /**
     * Copies host blocks {@code hostBlocks} (from {@link #swapOut}) onto blocks {@code deviceBlocks}
     * of {@code store} and frees the host blocks. Entries that are {@code -1} in either array are
     * skipped (and must be {@code -1} in both). Everything is checked before anything moves.
     *
     * @param hostBlocks   the host blocks to copy back, as {@link #swapOut} returned them: each
     *                     holding a swapped-out block and listed once, or -1
     * @param store        an open store of this space's layout
     * @param deviceBlocks the store's blocks to overwrite, at least as many as {@code hostBlocks}
     *                     (entries past its length are ignored), each in {@code [0, store.blocks())},
     *                     -1 exactly where {@code hostBlocks} has -1
     * @throws NullPointerException     if an argument is null
     * @throws IllegalArgumentException if the store's layout differs, {@code deviceBlocks} is
     *                                  shorter, the -1 entries do not line up, an id is out of range,
     *                                  or a host block holds nothing or is listed twice
     * @throws IllegalStateException    if this space is closed or the store is
     */
    public synchronized void swapIn(int[] hostBlocks, OffHeapKvStore store, int[] deviceBlocks) {
        checkStore(store);
        Objects.requireNonNull(hostBlocks, "hostBlocks");
        Objects.requireNonNull(deviceBlocks, "deviceBlocks");
        if (deviceBlocks.length < hostBlocks.length) {
            throw new IllegalArgumentException("deviceBlocks has " + deviceBlocks.length
                    + " entries, fewer than hostBlocks' " + hostBlocks.length);
        }
        for (int i = 0; i < hostBlocks.length; i++) {
            int h = hostBlocks[i];
            int d = deviceBlocks[i];
            if ((h == -1) != (d == -1)) {
                throw new IllegalArgumentException("hostBlocks[" + i + "] = " + h + " but deviceBlocks["
                        + i + "] = " + d + ": -1 must line up");
            }
            if (h != -1) {
                checkHost(i, h);
                checkIndexed(store, "deviceBlocks", i, d);
            }
        }
        checkDistinct(hostBlocks);
        // copy everything, then free: a failed copy leaves every host block (and handle) in place
        long bytes = 0;
        int moved = 0;
        for (int i = 0; i < hostBlocks.length; i++) {
            int h = hostBlocks[i];
            if (h == -1) {
                continue;
            }
            bytes += moved(pool, h);
            OffHeapKvStore.transfer(pool, h, store, deviceBlocks[i]);
            moved++;
        }
        for (int h : hostBlocks) {
            if (h != -1) {
                release(h);
            }
        }
        bytesIn += bytes;
        blocksIn += moved;
    }

    /**
     * This host pool as the block manager's {@link dev.kvcache.SwapSpace} for {@code store}: hand it
     * to {@link dev.kvcache.KvCacheManager.Builder#swapSpace} and
     * {@link dev.kvcache.KvCacheManager#preempt preempt(s, SWAP)} moves a sequence's blocks here and
     * {@link dev.kvcache.KvCacheManager#resume resume} brings them back. Handles are host block ids.
     *
     * @param store the open store whose blocks the manager swaps, of this space's layout
     * @return a view of this space bound to {@code store}; its {@code swapOut} returns -1 when no
     *         host block is free, and {@code swapIn} or {@code discard} of a handle it did not issue
     *         (or already used) throws IllegalArgumentException
     * @throws NullPointerException     if {@code store} is null
     * @throws IllegalArgumentException if the store's layout differs from this space's
     * @throws IllegalStateException    if this space is closed or the store is
     */
    public dev.kvcache.SwapSpace forStore(OffHeapKvStore store) {
        checkStore(store);
        HostSwapSpace host = this;
        long bytesPerBlock = store.layout().bytesPerBlock();
        return new dev.kvcache.SwapSpace() {
            @Override
            public long bytesPerBlock() {
                return bytesPerBlock;
            }

            @Override
            public int freeBlocks() {
                return host.freeBlocks();
            }

            @Override
            public long swapOut(int block) {
                int[] h = host.swapOut(store, new int[] {block});
                return h == null ? -1L : h[0];
            }

            @Override
            public void swapIn(long handle, int block) {
                synchronized (host) { // the handle check and the swap are one step
                    host.swapIn(new int[] {host.issued(handle)}, store, new int[] {block});
                }
            }

            @Override
            public void discard(long handle) {
                synchronized (host) {
                    host.free(new int[] {host.issued(handle)});
                }
            }
        };
    }

    /**
     * The host block behind a {@link dev.kvcache.SwapSpace} handle; IllegalArgumentException naming
     * the handle if this space never issued it (any long outside the host block ids) or it was
     * already swapped in or discarded.
     */
    private int issued(long handle) {
        pool.checkOpen();
        if (handle < 0 || handle >= inUse.length) {
            throw new IllegalArgumentException("swap handle " + handle + " was not issued by this swap space"
                    + " (its handles are host block ids in [0, " + inUse.length + "))");
        }
        int h = (int) handle;
        if (!inUse[h]) {
            throw new IllegalArgumentException("swap handle " + handle
                    + " holds no swapped-out block: already swapped in or discarded, or never issued");
        }
        return h;
    }

    /**
     * Gives host blocks back without copying them anywhere (a preempted sequence was aborted).
     *
     * @param hostBlocks the host blocks to free, as {@link #swapOut} returned them: each holding a
     *                   swapped-out block and listed once, or -1 (ignored)
     * @throws NullPointerException     if {@code hostBlocks} is null
     * @throws IllegalArgumentException if an id is out of range, holds nothing or is listed twice
     *                                  (nothing freed)
     * @throws IllegalStateException    if this space is closed
     */
    public synchronized void free(int[] hostBlocks) {
        pool.checkOpen();
        Objects.requireNonNull(hostBlocks, "hostBlocks");
        for (int i = 0; i < hostBlocks.length; i++) {
            if (hostBlocks[i] != -1) {
                checkHost(i, hostBlocks[i]);
            }
        }
        checkDistinct(hostBlocks);
        for (int h : hostBlocks) {
            if (h != -1) {
                release(h);
            }
        }
    }

    private void release(int h) {
        inUse[h] = false;
        freeStack[freeTop++] = h;
        pool.blockReleased(h); // a host block's staging slots are not needed any more
    }

    /** Bytes a transfer of block {@code b} of {@code s} moves: the block plus staged layers. */
    private static long moved(OffHeapKvStore s, int b) {
        long n = s.storeLayout().blockBytes();
        if (!s.rowFormat()) {
            for (int layer = 0; layer < s.layout().layers(); layer++) {
                if (s.stage(b, layer) >= 0) {
                    n += s.storeLayout().stageBytes();
                }
            }
        }
        return n;
    }

    /**
     * Host blocks not holding a swapped-out block.
     *
     * @return the free host blocks now, in {@code [0, totalBlocks()]}
     * @throws IllegalStateException if this space is closed
     */
    public synchronized int freeBlocks() {
        pool.checkOpen();
        return freeTop;
    }

    /**
     * All host blocks.
     *
     * @return the {@code hostBlocks} this space was allocated with
     * @throws IllegalStateException if this space is closed
     */
    public int totalBlocks() {
        return pool.blocks();
    }

    /**
     * Bytes copied store to host so far.
     *
     * @return the bytes of every successful swap-out since allocation: blocks plus staged rows
     */
    public synchronized long bytesSwappedOut() {
        return bytesOut;
    }

    /**
     * Bytes copied host to store so far.
     *
     * @return the bytes of every successful swap-in since allocation: blocks plus staged rows
     */
    public synchronized long bytesSwappedIn() {
        return bytesIn;
    }

    /**
     * Blocks copied store to host so far.
     *
     * @return the blocks moved by every successful swap-out since allocation (-1 entries not counted)
     */
    public synchronized long blocksSwappedOut() {
        return blocksOut;
    }

    /**
     * Blocks copied host to store so far.
     *
     * @return the blocks moved by every successful swap-in since allocation (-1 entries not counted)
     */
    public synchronized long blocksSwappedIn() {
        return blocksIn;
    }

    /**
     * Native bytes of the host pool (blocks plus staging chunks).
     *
     * @return {@code totalBlocks() * bytesPerBlock} plus the staging chunks allocated so far
     * @throws IllegalStateException if this space is closed
     */
    public long allocatedBytes() {
        return pool.allocatedBytes();
    }

    /** Frees the host pool; idempotent. */
    @Override
    public synchronized void close() {
        pool.close();
    }

    private void checkStore(OffHeapKvStore store) {
        pool.checkOpen();
        Objects.requireNonNull(store, "store");
        store.checkOpen();
        if (!store.layout().equals(pool.layout())) {
            throw new IllegalArgumentException("store layout " + store.layout()
                    + " differs from the swap space's " + pool.layout());
        }
    }

    private void checkHost(int i, int h) {
        if (h < 0 || h >= inUse.length) {
            throw new IllegalArgumentException("hostBlocks[" + i + "] = " + h + " out of range [0, "
                    + inUse.length + ")");
        }
        if (!inUse[h]) {
            throw new IllegalArgumentException("hostBlocks[" + i + "] = " + h + " holds no swapped-out block");
        }
    }

    /** A host block listed twice would be freed twice; refuse before anything changes. */
    private void checkDistinct(int[] hostBlocks) {
        int i = 0;
        try {
            for (; i < hostBlocks.length; i++) {
                int h = hostBlocks[i];
                if (h == -1) {
                    continue;
                }
                if (!inUse[h]) {
                    throw new IllegalArgumentException("hostBlocks[" + i + "] = " + h + " is listed twice");
                }
                inUse[h] = false;
            }
        } finally {
            for (int j = 0; j < i; j++) {
                if (hostBlocks[j] != -1) {
                    inUse[hostBlocks[j]] = true;
                }
            }
        }
    }

    private static void checkIndexed(OffHeapKvStore store, String name, int i, int b) {
        if (b < 0 || b >= store.blockCount()) {
            throw new IllegalArgumentException(name + "[" + i + "] = " + b + " out of range [0, "
                    + store.blockCount() + ")");
        }
    }
}
