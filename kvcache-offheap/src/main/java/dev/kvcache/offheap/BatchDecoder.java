package dev.kvcache.offheap;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;

import java.util.Objects;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.RecursiveAction;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Decode attention for a batch of sequences in one call, split across a {@link ForkJoinPool}, with
 * no allocation in steady state.
 *
 * <h2>How</h2>
 * The decoder owns one reusable task per pool thread. A call checks every sequence (nothing is
 * written if any is bad), stores its arguments in fields, resets a shared counter and invokes the
 * first task, which forks the others; every task then claims sequences one at a time from the
 * counter ({@code getAndIncrement}), so long and short sequences balance themselves without any
 * up-front partitioning. Each worker thread uses {@link PagedAttention}'s per-thread scratch. The
 * tasks are {@link java.util.concurrent.ForkJoinTask#reinitialize() reinitialized} and reused, so
 * after warm-up the decoder allocates nothing per sequence (the test suite bounds allocation
 * across all threads at one 16-byte object per sequence per batch). JMH's {@code -prof gc} still
 * sees about 40 B per {@code decodeSplit} call (2026-11-25), not traced; the pool's external
 * {@code invoke} and join are the likely source.
 *
 * <h2>One long sequence</h2>
 * {@link #decodeSplit} spreads one sequence's blocks over the workers instead (flash-decoding's
 * split along the sequence): worker w folds blocks {@code [w*n/P, (w+1)*n/P)} into its own
 * online-softmax state (max, normaliser, unnormalised output per query head, reused arrays), and
 * the states are merged with {@code out = sum_w e^(m_w-M) acc_w / sum_w e^(m_w-M) l_w},
 * {@code M = max_w m_w}. The result equals {@link PagedAttention#decode} up to float rounding.
 *
 * <h2>Threads</h2>
 * One call at a time per decoder (the calls are serialized on this object); use one decoder per
 * engine thread that issues batches. The pool is not owned: closing it is the caller's business.
 */
public final class BatchDecoder {

    private final ForkJoinPool pool;
    private final Worker[] workers;
    private final AtomicInteger next = new AtomicInteger();

    // arguments of the call in progress; written before invoke, read by the workers after fork
    private KvStore store;
    private KvLayout layout;
    private int layer;
    private float[][] q;
    private int queryHeads;
    private int[][] tables;
    private int[] lengths;
    private float[][] out;
    private int count;
    private int active;
    // decodeSplit: one sequence, block ranges per worker, one partial state per worker
    private boolean split;
    private float[] splitQ;
    private int[] splitTable;
    private int splitLength;
    private int splitBlocks;
    private float[][] partMax = new float[0][];
    private float[][] partNorm = new float[0][];
    private float[][] partAcc = new float[0][];

    /**
     * A decoder using up to {@code pool.getParallelism()} threads of {@code pool}.
     *
     * @param pool the pool whose threads run the sequences (or a sequence's block ranges); not
     *             owned: the decoder never shuts it down. Its parallelism when this is called fixes
     *             the number of reusable tasks (at least 1)
     * @throws NullPointerException if {@code pool} is null
     */
    public BatchDecoder(ForkJoinPool pool) {
        this.pool = Objects.requireNonNull(pool, "pool");
        this.workers = new Worker[Math.max(1, pool.getParallelism())];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = new Worker(i);
        }
    }

    /**
     * {@link PagedAttention#decode} for sequences {@code 0..count-1}: sequence i uses {@code q[i]},
     * {@code blockTables[i]}, {@code lengths[i]} and writes {@code out[i]}. Every sequence is
     * checked before any output is written.
     *
     * @param store       the KV memory every sequence reads; open
     * @param layer       the layer to attend over, in {@code [0, layers)}
     * @param q           per sequence, its query: {@code queryHeads * headDim} values at least, each
     *                    finite with {@code |x| <= KvStore.MAX_ABS_VALUE}
     * @param queryHeads  the number of query heads, a positive multiple of {@code kvHeads}, the same
     *                    for every sequence
     * @param blockTables per sequence, the physical block of each logical block, -1 for released
     *                    ones; at least {@code ceil(lengths[i] / blockTokens)} entries, each in
     *                    {@code [-1, store.blocks())}
     * @param lengths     per sequence, the positions to attend over, {@code >= 0}
     * @param out         per sequence, receives {@code queryHeads * headDim} values; none is
     *                    written if a check fails
     * @param count       the number of sequences, in {@code [0, min(q.length, blockTables.length,
     *                    lengths.length, out.length)]}; 0 does nothing (after the store check)
     * @throws NullPointerException     if {@code store}, {@code q}, {@code blockTables},
     *                                  {@code lengths} or {@code out} is null
     * @throws IllegalArgumentException if {@code count} is out of range, or a sequence's arguments are
     *                                  bad (a null or short array, a layer, head count, length or
     *                                  table entry out of range, a query value out of bounds): the
     *                                  message names the sequence
     * @throws IllegalStateException    if the store is closed
     */
    public synchronized void decode(KvStore store, int layer, float[][] q, int queryHeads,
                                    int[][] blockTables, int[] lengths, float[][] out, int count) {
        PagedAttention.checkBatch(store, layer, q, queryHeads, blockTables, lengths, out, count);
        if (count == 0) {
            return;
        }
        this.store = store;
        this.layout = store.layout();
        this.layer = layer;
        this.q = q;
        this.queryHeads = queryHeads;
        this.tables = blockTables;
        this.lengths = lengths;
        this.out = out;
        this.count = count;
        this.active = Math.min(workers.length, count);
        this.split = false;
        next.set(0);
        for (int i = 0; i < active; i++) {
            workers[i].reinitialize();
        }
        try {
            pool.invoke(workers[0]);
        } finally {
            // drop references to the caller's arrays between calls
            this.store = null;
            this.q = null;
            this.tables = null;
            this.lengths = null;
            this.out = null;
        }
    }

    /**
     * {@link PagedAttention#decode} for one sequence, its blocks split across the pool's threads
     * (see the class comment). Stores other than {@link OffHeapKvStore} and sequences of one block
     * run on the calling thread.
     *
     * @param store      the KV memory; open
     * @param layer      the layer to attend over, in {@code [0, layers)}
     * @param q          the query, {@code queryHeads * headDim} values at least, each finite with
     *                   {@code |x| <= KvStore.MAX_ABS_VALUE}
     * @param queryHeads the number of query heads, a positive multiple of {@code kvHeads}
     * @param blockTable the physical block of each logical block, -1 for released ones; at least
     *                   {@code ceil(length / blockTokens)} entries, each in {@code [-1, store.blocks())}
     * @param length     the positions to attend over, {@code >= 0}
     * @param out        receives {@code queryHeads * headDim} values; untouched if a check fails
     * @throws NullPointerException     if {@code store}, {@code q}, {@code blockTable} or {@code out} is null
     * @throws IllegalArgumentException if the layer, head count, length or a table entry is out of
     *                                  range, an array is too short, or a query value is out of bounds
     * @throws IllegalStateException    if the store is closed
     */
    public synchronized void decodeSplit(KvStore store, int layer, float[] q, int queryHeads,
                                         int[] blockTable, int length, float[] out) {
        Objects.requireNonNull(store, "store");
        PagedAttention.check(store, layer, q, queryHeads, blockTable, length, out);
        KvLayout l = store.layout();
        int nBlocks = (int) l.blocksFor(length);
        int parts = Math.min(workers.length, nBlocks);
        if (!(store instanceof OffHeapKvStore) || parts <= 1) {
            PagedAttention.decodeChecked(store, l, layer, q, queryHeads, blockTable, length, out,
                    PagedAttention.scratch());
            return;
        }
        int dim = l.headDim();
        if (partMax.length < parts || partMax[0].length < queryHeads || partAcc[0].length < queryHeads * dim) {
            int n = Math.max(parts, partMax.length);
            partMax = new float[n][queryHeads];
            partNorm = new float[n][queryHeads];
            partAcc = new float[n][queryHeads * dim];
        }
        this.store = store;
        this.layout = l;
        this.layer = layer;
        this.queryHeads = queryHeads;
        this.split = true;
        this.splitQ = q;
        this.splitTable = blockTable;
        this.splitLength = length;
        this.splitBlocks = nBlocks;
        this.active = parts;
        for (int i = 0; i < active; i++) {
            workers[i].reinitialize();
        }
        try {
            pool.invoke(workers[0]);
            PagedAttention.merge(parts, partMax, partNorm, partAcc, queryHeads, dim, out);
        } finally {
            this.store = null;
            this.splitQ = null;
            this.splitTable = null;
        }
    }

    private void runSplitPart(int index) {
        int from = (int) ((long) index * splitBlocks / active);
        int to = (int) ((long) (index + 1) * splitBlocks / active);
        int dim = layout.headDim();
        PagedAttention.Scratch s = PagedAttention.scratch();
        s.ensure(layout.blockTokens(), queryHeads, dim);
        PagedAttention.reset(queryHeads, dim, partMax[index], partNorm[index], partAcc[index]);
        PagedAttention.partialOffHeap((OffHeapKvStore) store, layout, layer, splitQ, queryHeads, splitTable,
                splitLength, from, to, s.scores, partMax[index], partNorm[index], partAcc[index], null, null);
    }

    private final class Worker extends RecursiveAction {
        private final int index;

        Worker(int index) {
            this.index = index;
        }

        @Override
        protected void compute() {
            if (index == 0) {
                for (int i = 1; i < active; i++) {
                    workers[i].fork();
                }
            }
            Throwable failure = null;
            try {
                if (split) {
                    runSplitPart(index);
                } else {
                    PagedAttention.Scratch s = PagedAttention.scratch();
                    int i;
                    while ((i = next.getAndIncrement()) < count) {
                        PagedAttention.decodeChecked(store, layout, layer, q[i], queryHeads, tables[i],
                                lengths[i], out[i], s);
                    }
                }
            } catch (RuntimeException | Error e) {
                failure = e;
                next.set(Integer.MAX_VALUE / 2); // the others stop claiming
            }
            if (index == 0) {
                // wait for every worker, even after a failure, so none runs past this call
                for (int w = active - 1; w >= 1; w--) {
                    workers[w].quietlyJoin();
                    if (failure == null && workers[w].isCompletedAbnormally()) {
                        failure = workers[w].getException();
                    }
                }
            }
            if (failure instanceof RuntimeException re) {
                throw re;
            }
            if (failure instanceof Error err) {
                throw err;
            }
        }
    }
}
