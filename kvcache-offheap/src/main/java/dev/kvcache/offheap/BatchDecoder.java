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
 * after warm-up a call allocates nothing (the test suite measures this across all threads).
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

    /** A decoder using up to {@code pool.getParallelism()} threads of {@code pool}. */
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
                PagedAttention.Scratch s = PagedAttention.scratch();
                int i;
                while ((i = next.getAndIncrement()) < count) {
                    PagedAttention.decodeChecked(store, layout, layer, q[i], queryHeads, tables[i],
                            lengths[i], out[i], s);
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
