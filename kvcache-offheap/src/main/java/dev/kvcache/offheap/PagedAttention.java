package dev.kvcache.offheap;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.Sequence;
import dev.kvcache.retention.AttentionMass;
import dev.kvcache.quant.Quantizers;
import dev.kvcache.quant.SliceKernels;
import dev.kvcache.quant.SoftmaxKernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.ForkJoinPool;

/**
 * One decode step of scaled dot-product attention over a paged KV cache (flash-decoding style).
 *
 * <h2>Algorithm</h2>
 * For query head {@code h} (KV head {@code g = h / (queryHeads / kvHeads)}, grouped-query
 * attention) and positions {@code 0..length-1} read through the block table:
 * {@code out_h = sum_t softmax_t(q_h . k_t / sqrt(headDim)) v_t}. The softmax is computed online,
 * one block at a time: with running maximum {@code m}, normaliser {@code l} and unnormalised
 * output {@code acc}, a block's scores {@code s} give {@code m' = max(m, max s)},
 * {@code acc = acc * e^(m-m') + sum_r e^(s_r-m') v_r}, {@code l = l * e^(m-m') + sum_r e^(s_r-m')};
 * at the end {@code out = acc / l}. No exponent ever sees a positive argument, so nothing
 * overflows whatever the score range, and nothing of size {@code length} is materialised. The
 * scores themselves stay finite because stores refuse KV, and {@code decode} refuses a query
 * element, beyond {@link KvStore#MAX_ABS_VALUE} (IllegalArgumentException naming it).
 *
 * <h2>Memory traffic</h2>
 * Blocks are visited in table order, in <em>chunks</em> of consecutive table entries spanning at
 * least {@link #CHUNK_TOKENS} positions (4 blocks of 16). In each chunk, for each KV head: one
 * {@link SliceKernels#dotRowsGroup} call per block scores its K slice against all query heads of
 * the group (the vector kernels load and dequantize each K chunk once and FMA it into every
 * head's accumulator), writing each head's scores into one run per chunk (the strided form, head
 * {@code j}'s run {@code chunkBlocks * blockTokens} floats after head {@code j-1}'s); the online
 * softmax runs once per head over the chunk's run; then one
 * {@link SliceKernels#accumulateRowsGroup} call per block reads its V slice once for all heads of
 * the group. The chunk is what makes paged decode as fast as one contiguous slice for the small
 * formats, whose steps are bound by arithmetic rather than memory: with one softmax update per
 * 16-token block (two lane reductions and three calls per query head), Q4_0 and Q5_0 took 1.12x
 * the time of the same kernels over one contiguous slice, and 1.00-1.02x with blocks of 64; with
 * chunks, 0.97-1.06x at blocks of 16 (PagedAttentionBenchmark at 32k tokens, 2026-12-03,
 * kvcache-quant/bench-results/paged-chunks-2026-12-03.txt, runs 1-4). Those kernels dequantize
 * inside the dot product / weighted sum, so quantized formats read their compressed bytes only and
 * no dequantized copy of the sequence exists.
 * Partially written blocks of block formats (FP8, KIVI) are read from the store's full-precision
 * staging slot with the F32 kernels.
 *
 * <p>Prefetch: blocks sit at unrelated addresses (the table's order, not memory order), so the
 * hardware prefetcher restarts at every slice and a single thread waits on DRAM for much of an
 * F32 step. While a chunk's KV head {@code g} is processed, {@link #touch} loads one byte per
 * cache line of the K and V slices of the <em>next</em> unit of work (the chunk's head
 * {@code g+1}, or the next chunk's head 0), so those misses overlap this unit's arithmetic. (Before
 * chunks, the next table entry's head {@code g}:) Measured at 32k tokens
 * (PagedAttentionBenchmark, 2026-11-25, 2-core AVX-512 VM): F32 step time 0.76x, F16 0.80x, Q8_0
 * unchanged (it is compute-bound); touching two entries ahead was no better, every other line worse
 * (bench-results/kernel-steps-2026-11-25.txt).
 *
 * <p>Table entries of -1 (blocks a sliding window released) are skipped: those positions take no
 * part in the softmax. When no position is readable (length 0, or everything released) the output
 * is zero.
 *
 * <h2>SIMD</h2>
 * The kernels come from kvcache-quant, which returns Vector API implementations when
 * {@code jdk.incubator.vector} is present and scalar ones otherwise: the slice kernels above and
 * the softmax arithmetic ({@link SoftmaxKernels}: per block and query head, the maximum, the
 * {@code blockTokens} exponentials with their sum, and the accumulator rescale when the maximum
 * moves). Vectorizing those, which were one scalar {@link Math#exp} per position and head,
 * took a 32k-token step to 0.91x (F32), 0.79x (F16) and 0.73x (Q8_0) of its time (2026-11-25).
 * This class itself uses plain loops only, so it runs without the incubator module.
 *
 * <h2>Allocation</h2>
 * Scratch (scores, running max/normaliser, accumulators) lives in a per-thread object that grows
 * on demand and is reused, so a steady-state {@code decode} allocates nothing.
 * {@link BatchDecoder} splits a batch of sequences across a {@link ForkJoinPool} with reusable
 * tasks and the same per-thread scratch, so its steady state allocates nothing either.
 *
 * <h2>Retention</h2>
 * {@link #decode(KvStore, int, float[], int, int[], int, float[], Sequence, AttentionMass)} also
 * skips the tokens a retention policy dropped ({@link Sequence#isDropped}: their scores become
 * -inf, so they take no part in the softmax) and adds each position's softmax probability, summed
 * over query heads, into an {@link AttentionMass} (the heavy-hitter policies' input). The mass
 * needs the final maximum and normaliser of each head, so the raw scores are kept in a scratch of
 * {@code queryHeads * length} floats and turned into probabilities at the end: one extra
 * exponential per position and head, paid only by callers that ask for the mass.
 *
 * <p>Stores other than {@link OffHeapKvStore} (e.g. a CUDA store) are served through
 * {@link KvStore#readKey}/{@link KvStore#readValue}, one token at a time: correct, not fast.
 */
public final class PagedAttention {

    private PagedAttention() {
    }

    /** Per-thread scratch, grown on demand. */
    static final class Scratch {
        /** One chunk's scores for every query head of a KV group, head j at j * chunkBlocks * blockTokens. */
        float[] scores = new float[16];
        float[] max = new float[8];
        float[] norm = new float[8];
        float[] acc = new float[1024];
        float[] k = new float[0];
        float[] v = new float[0];
        /** Raw scores [queryHeads][length], only for callers that want the attention mass. */
        float[] raw = new float[0];

        void ensure(int blockTokens, int queryHeads, int headDim) {
            // one chunk's scores per head of the group; group <= queryHeads: sized for the largest
            // group the caller can ask for
            int span = chunkBlocks(blockTokens) * blockTokens;
            if (scores.length < (long) span * queryHeads) {
                scores = new float[span * queryHeads];
            }
            if (max.length < queryHeads) {
                max = new float[queryHeads];
                norm = new float[queryHeads];
            }
            if (acc.length < queryHeads * headDim) {
                acc = new float[queryHeads * headDim];
            }
        }
    }

    /**
     * Positions a chunk spans at least: the online softmax runs once per chunk and query head, so
     * its fixed cost (two lane reductions, the calls) is paid per 64 positions, not per block.
     */
    static final int CHUNK_TOKENS = 64;

    /** Blocks per chunk: enough for {@link #CHUNK_TOKENS} positions, at least one. */
    static int chunkBlocks(int blockTokens) {
        return Math.max(1, CHUNK_TOKENS / blockTokens);
    }

    /** decodeGeneric scores one position at a time: no vector to fill, so the scalar arithmetic. */
    private static final SoftmaxKernels GENERIC_SOFTMAX = Quantizers.scalarSoftmaxKernels();

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /**
     * One decode step for one sequence; see the class comment.
     *
     * @param store      the KV memory
     * @param layer      layer to attend over
     * @param q          {@code queryHeads * headDim} query values (at least)
     * @param queryHeads number of query heads, a positive multiple of {@code kvHeads}
     * @param blockTable physical block of each logical block, -1 for released ones; at least
     *                   {@code ceil(length / blockTokens)} entries
     * @param length     positions to attend over, {@code >= 0}
     * @param out        receives {@code queryHeads * headDim} values; untouched if the call throws
     */
    public static void decode(KvStore store, int layer, float[] q, int queryHeads,
                      int[] blockTable, int length, float[] out) {
        Objects.requireNonNull(store, "store");
        KvLayout l = store.layout();
        check(store, layer, q, queryHeads, blockTable, length, out);
        decodeChecked(store, l, layer, q, queryHeads, blockTable, length, out, SCRATCH.get());
    }

    /**
     * {@link #decode} that skips the tokens {@code dropped} says were dropped (null: none) and adds
     * every position's attention probability, summed over the query heads, to {@code mass}
     * (null: none). Only {@link OffHeapKvStore} supports it.
     *
     * @param store      the KV memory; open, and an {@link OffHeapKvStore} unless {@code dropped}
     *                   and {@code mass} are both null
     * @param layer      the layer to attend over, in {@code [0, layers)}
     * @param q          the query, {@code queryHeads * headDim} values at least, each finite with
     *                   {@code |x| <= KvStore.MAX_ABS_VALUE}
     * @param queryHeads the number of query heads, a positive multiple of {@code kvHeads}
     * @param blockTable the physical block of each logical block, -1 for released ones; at least
     *                   {@code ceil(length / blockTokens)} entries, each in {@code [-1, store.blocks())}
     * @param length     the positions to attend over, {@code >= 0}
     * @param out        receives {@code queryHeads * headDim} values; untouched if a check fails
     * @param dropped    the sequence whose dropped tokens are skipped, at least {@code length}
     *                   tokens long; null to attend over every position
     * @param mass       accumulates, for each of the {@code length} positions, its attention
     *                   probability summed over the query heads; null to skip that
     * @throws NullPointerException     if {@code store}, {@code q}, {@code blockTable} or {@code out} is null
     * @throws IllegalArgumentException if {@code dropped} or {@code mass} is given and the store is
     *                                  not an {@link OffHeapKvStore}, {@code dropped} is shorter than
     *                                  {@code length}, {@code queryHeads * length} exceeds one array
     *                                  (with {@code mass}), or a {@link #decode} check fails (layer,
     *                                  head count, length or table entry out of range, an array too
     *                                  short, a query value out of bounds)
     * @throws IllegalStateException    if the store is closed
     */
    public static void decode(KvStore store, int layer, float[] q, int queryHeads,
                              int[] blockTable, int length, float[] out, Sequence dropped, AttentionMass mass) {
        Objects.requireNonNull(store, "store");
        if (dropped == null && mass == null) {
            decode(store, layer, q, queryHeads, blockTable, length, out);
            return;
        }
        if (!(store instanceof OffHeapKvStore off)) {
            throw new IllegalArgumentException("masks and attention mass need an OffHeapKvStore, got "
                    + store.getClass().getName());
        }
        if (dropped != null && dropped.length() < length) {
            throw new IllegalArgumentException("sequence '" + dropped.id() + "' has " + dropped.length()
                    + " tokens; length is " + length);
        }
        KvLayout l = store.layout();
        check(store, layer, q, queryHeads, blockTable, length, out);
        Scratch s = SCRATCH.get();
        s.ensure(l.blockTokens(), queryHeads, l.headDim());
        float[] raw = null;
        if (mass != null) {
            long need = (long) queryHeads * length;
            if (need > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("attention mass over " + length + " positions x "
                        + queryHeads + " heads exceeds one array");
            }
            if (s.raw.length < need) {
                s.raw = new float[(int) need];
            }
            raw = s.raw;
        }
        reset(queryHeads, l.headDim(), s.max, s.norm, s.acc);
        partialOffHeap(off, l, layer, q, queryHeads, blockTable, length, 0, (int) l.blocksFor(length),
                s.scores, s.max, s.norm, s.acc, dropped, raw);
        finish(queryHeads, l.headDim(), s.norm, s.acc, out);
        if (mass != null) {
            float[] m = mass.array(length);
            for (int h = 0; h < queryHeads; h++) {
                float mx = s.max[h];
                float n = s.norm[h];
                if (mx == Float.NEGATIVE_INFINITY || !(n > 0f)) {
                    continue;
                }
                float inv = 1f / n;
                int base = h * length;
                for (int p = 0; p < length; p++) {
                    float r = raw[base + p];
                    if (r != Float.NEGATIVE_INFINITY) {
                        m[p] += (float) Math.exp(r - mx) * inv;
                    }
                }
            }
        }
    }

    /**
     * {@link #decode} for {@code count} sequences in one call, split across {@code pool}'s threads.
     * Sequence i uses {@code q[i]}, {@code blockTables[i]}, {@code lengths[i]}, {@code out[i]}.
     * Every sequence is checked before any output is written. This convenience creates a
     * {@link BatchDecoder} per call; keep one {@link BatchDecoder} for allocation-free batches.
     *
     * @param store       the KV memory; open
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
     * @param pool        the threads the sequences are split across
     * @throws NullPointerException     if {@code pool}, {@code store}, {@code q}, {@code blockTables},
     *                                  {@code lengths} or {@code out} is null
     * @throws IllegalArgumentException if {@code count} is out of range, or a sequence's arguments are
     *                                  bad (a null or short array, a layer, head count, length or
     *                                  table entry out of range, a query value out of bounds): the
     *                                  message names the sequence
     * @throws IllegalStateException    if the store is closed
     */
    public static void decodeBatch(KvStore store, int layer, float[][] q, int queryHeads,
                                   int[][] blockTables, int[] lengths, float[][] out, int count,
                                   ForkJoinPool pool) {
        Objects.requireNonNull(pool, "pool");
        new BatchDecoder(pool).decode(store, layer, q, queryHeads, blockTables, lengths, out, count);
    }

    /** Checks a whole batch; IllegalArgumentException names the sequence, the value and the limit. */
    static void checkBatch(KvStore store, int layer, float[][] q, int queryHeads,
                           int[][] blockTables, int[] lengths, float[][] out, int count) {
        Objects.requireNonNull(store, "store");
        Objects.requireNonNull(q, "q");
        Objects.requireNonNull(blockTables, "blockTables");
        Objects.requireNonNull(lengths, "lengths");
        Objects.requireNonNull(out, "out");
        if (count < 0 || count > q.length || count > blockTables.length || count > lengths.length
                || count > out.length) {
            throw new IllegalArgumentException("count " + count + " out of range [0, min(q.length "
                    + q.length + ", blockTables.length " + blockTables.length + ", lengths.length "
                    + lengths.length + ", out.length " + out.length + ")]");
        }
        store.blocks(); // IllegalStateException once closed, even for an empty batch
        for (int i = 0; i < count; i++) {
            try {
                check(store, layer, q[i], queryHeads, blockTables[i], lengths[i], out[i]);
            } catch (IllegalArgumentException | NullPointerException e) {
                throw new IllegalArgumentException("sequence " + i + ": " + e.getMessage(), e);
            }
        }
    }

    static Scratch scratch() {
        return SCRATCH.get();
    }

    /** One sequence, arguments already checked. */
    static void decodeChecked(KvStore store, KvLayout l, int layer, float[] q, int queryHeads,
                              int[] table, int length, float[] out, Scratch s) {
        if (store instanceof OffHeapKvStore off) {
            decodeOffHeap(off, l, layer, q, queryHeads, table, length, out, s);
        } else {
            decodeGeneric(store, l, layer, q, queryHeads, table, length, out, s);
        }
    }

    static void check(KvStore store, int layer, float[] q, int queryHeads,
                      int[] blockTable, int length, float[] out) {
        Objects.requireNonNull(q, "q");
        Objects.requireNonNull(blockTable, "blockTable");
        Objects.requireNonNull(out, "out");
        KvLayout l = store.layout();
        int blocks = store.blocks(); // IllegalStateException once closed
        if (layer < 0 || layer >= l.layers()) {
            throw new IllegalArgumentException("layer " + layer + " out of range [0, " + l.layers() + ")");
        }
        if (queryHeads <= 0 || queryHeads % l.kvHeads() != 0) {
            throw new IllegalArgumentException("queryHeads " + queryHeads
                    + " must be a positive multiple of kvHeads " + l.kvHeads());
        }
        long need = (long) queryHeads * l.headDim();
        if (q.length < need) {
            throw new IllegalArgumentException("q.length " + q.length + " is less than queryHeads*headDim = " + need);
        }
        if (out.length < need) {
            throw new IllegalArgumentException("out.length " + out.length + " is less than queryHeads*headDim = " + need);
        }
        if (length < 0) {
            throw new IllegalArgumentException("length must be >= 0, got " + length);
        }
        int nBlocks = (int) l.blocksFor(length);
        if (blockTable.length < nBlocks) {
            throw new IllegalArgumentException("blockTable has " + blockTable.length + " entries; length "
                    + length + " needs " + nBlocks);
        }
        for (int i = 0; i < nBlocks; i++) {
            int b = blockTable[i];
            if (b < -1 || b >= blocks) {
                throw new IllegalArgumentException("blockTable[" + i + "] = " + b
                        + " out of range [-1, " + blocks + ")");
            }
        }
        // with q and the stored KV within MAX_ABS_VALUE no score or weighted sum overflows; the scan
        // is queryHeads*headDim floats, nothing against a pass over length positions
        KvStore.checkQuery(q, (int) need);
    }

    private static void decodeOffHeap(OffHeapKvStore store, KvLayout l, int layer, float[] q, int queryHeads,
                                      int[] table, int length, float[] out, Scratch s) {
        s.ensure(l.blockTokens(), queryHeads, l.headDim());
        reset(queryHeads, l.headDim(), s.max, s.norm, s.acc);
        partialOffHeap(store, l, layer, q, queryHeads, table, length, 0, (int) l.blocksFor(length),
                s.scores, s.max, s.norm, s.acc, null, null);
        finish(queryHeads, l.headDim(), s.norm, s.acc, out);
    }

    static void reset(int queryHeads, int dim, float[] max, float[] norm, float[] acc) {
        Arrays.fill(max, 0, queryHeads, Float.NEGATIVE_INFINITY);
        Arrays.fill(norm, 0, queryHeads, 0f);
        Arrays.fill(acc, 0, queryHeads * dim, 0f);
    }

    /**
     * The online-softmax state (running max, normaliser, unnormalised output per query head) over
     * logical blocks {@code [fromBlock, toBlock)}, folded into {@code max}/{@code norm}/{@code acc}.
     */
    static void partialOffHeap(OffHeapKvStore store, KvLayout l, int layer, float[] q, int queryHeads,
                               int[] table, int length, int fromBlock, int toBlock,
                               float[] scores, float[] max, float[] norm, float[] acc,
                               Sequence dropped, float[] raw) {
        store.checkOpen();
        final int dim = l.headDim();
        final int kvHeads = l.kvHeads();
        final int bt = l.blockTokens();
        final int group = queryHeads / kvHeads;
        final float scale = (float) (1.0 / Math.sqrt(dim));
        final StoreLayout bytes = store.storeLayout();
        final Codecs codecs = store.codecs();
        final SliceKernels keyK = codecs.keyKernels();
        final SliceKernels valK = codecs.valueKernels();
        final SliceKernels f32 = codecs.f32();
        final SoftmaxKernels sm = codecs.softmax();
        final MemorySegment memory = store.memory();
        final StagingPool staging = store.staging();

        final int chunk = chunkBlocks(bt);
        final int span = chunk * bt; // head j's scores of a chunk at j * span
        final boolean anyDropped = dropped != null && dropped.droppedTokens() > 0;
        int touch = 0;
        for (int c0 = fromBlock; c0 < toBlock; c0 += chunk) {
            int c1 = Math.min(c0 + chunk, toBlock);
            boolean masked = false;
            if (anyDropped) {
                for (int lb = c0; lb < c1 && !masked; lb++) {
                    if (table[lb] >= 0) {
                        for (int r = lb * bt, end = Math.min(r + bt, length); r < end && !masked; r++) {
                            masked = dropped.isDropped(r);
                        }
                    }
                }
            }
            for (int g = 0; g < kvHeads; g++) {
                // the next unit of work, touched ahead (see touch()): this chunk's next KV head, or
                // the next chunk's first
                if (g + 1 < kvHeads) {
                    touch ^= touchChunk(memory, bytes, table, layer, c0, c1, g + 1);
                } else {
                    touch ^= touchChunk(memory, bytes, table, layer, c1, Math.min(c1 + chunk, toBlock), 0);
                }
                // the group's query heads g*group .. g*group+group-1
                int h0 = g * group;
                int n = 0; // positions of the chunk scored so far: head j's at scores[j*span .. j*span+n)
                for (int lb = c0; lb < c1; lb++) {
                    int pb = table[lb];
                    if (pb < 0) {
                        continue; // released by a sliding window
                    }
                    int first = lb * bt;
                    int count = Math.min(bt, length - first);
                    int stage = store.stage(pb, layer);
                    if (stage < 0) {
                        keyK.dotRowsGroup(memory, bytes.keyOffset(pb, layer, g), bt, count, dim, q, h0 * dim, group,
                                scale, scores, n, span);
                    } else {
                        f32.dotRowsGroup(staging.segment(stage), staging.offset(stage) + bytes.stageKeyOffset(g), bt,
                                count, dim, q, h0 * dim, group, scale, scores, n, span);
                    }
                    if (masked) {
                        for (int r = 0; r < count; r++) {
                            if (dropped.isDropped(first + r)) {
                                for (int j = 0; j < group; j++) {
                                    scores[j * span + n + r] = Float.NEGATIVE_INFINITY;
                                }
                            }
                        }
                    }
                    if (raw != null) {
                        for (int j = 0; j < group; j++) {
                            System.arraycopy(scores, j * span + n, raw, (h0 + j) * length + first, count);
                        }
                    }
                    n += count;
                }
                if (n == 0) {
                    continue; // every block of the chunk released
                }
                for (int j = 0; j < group; j++) {
                    blockSoftmax(sm, scores, j * span, n, max, norm, acc, h0 + j, dim);
                }
                int p = 0;
                for (int lb = c0; lb < c1; lb++) {
                    int pb = table[lb];
                    if (pb < 0) {
                        continue;
                    }
                    int count = Math.min(bt, length - lb * bt);
                    int stage = store.stage(pb, layer);
                    if (stage < 0) {
                        valK.accumulateRowsGroup(memory, bytes.valueOffset(pb, layer, g), bt, count, dim, scores, p,
                                span, group, acc, h0 * dim);
                    } else {
                        f32.accumulateRowsGroup(staging.segment(stage), staging.offset(stage) + bytes.stageValueOffset(g),
                                bt, count, dim, scores, p, span, group, acc, h0 * dim);
                    }
                    p += count;
                }
            }
        }
        touchSink = touch; // keeps the touches observable, so the JIT cannot drop them
    }

    /** Written once per call with the touched bytes' xor; never read (see {@link #touch}). */
    @SuppressWarnings("unused")
    private static int touchSink;

    /**
     * Loads one byte per 64-byte cache line of {@code [off, off+len)}: a software prefetch, which
     * Java does not otherwise offer. The loads' values are folded into {@link #touchSink} only so
     * that they cannot be eliminated; out-of-order execution overlaps their misses with the
     * arithmetic on the current block.
     */
    private static int touch(MemorySegment m, long off, long len) {
        int x = 0;
        for (long o = off, end = off + len; o < end; o += 64) {
            x += m.get(ValueLayout.JAVA_BYTE, o);
        }
        return x;
    }

    /** {@link #touch}es the K and V slices of KV head {@code g} of logical blocks {@code [from, to)}. */
    private static int touchChunk(MemorySegment m, StoreLayout bytes, int[] table, int layer, int from, int to, int g) {
        int x = 0;
        for (int lb = from; lb < to; lb++) {
            int pb = table[lb];
            if (pb >= 0) {
                x += touch(m, bytes.keyOffset(pb, layer, g), bytes.keySliceBytes());
                x += touch(m, bytes.valueOffset(pb, layer, g), bytes.valueSliceBytes());
            }
        }
        return x;
    }

    /**
     * Merges {@code parts} partial states (from {@link #partialOffHeap} over disjoint block ranges)
     * into {@code out}: with {@code M = max_p m_p}, {@code out = sum_p e^(m_p-M) acc_p / sum_p e^(m_p-M) l_p}.
     */
    static void merge(int parts, float[][] max, float[][] norm, float[][] acc, int queryHeads, int dim,
                      float[] out) {
        for (int h = 0; h < queryHeads; h++) {
            float m = Float.NEGATIVE_INFINITY;
            for (int p = 0; p < parts; p++) {
                m = Math.max(m, max[p][h]);
            }
            int base = h * dim;
            if (m == Float.NEGATIVE_INFINITY) {
                Arrays.fill(out, base, base + dim, 0f); // nothing readable
                continue;
            }
            float n = 0f;
            Arrays.fill(out, base, base + dim, 0f);
            for (int p = 0; p < parts; p++) {
                if (max[p][h] == Float.NEGATIVE_INFINITY) {
                    continue; // this part saw no readable position
                }
                float f = (float) Math.exp(max[p][h] - m);
                n += norm[p][h] * f;
                float[] a = acc[p];
                for (int i = 0; i < dim; i++) {
                    out[base + i] += f * a[base + i];
                }
            }
            float inv = 1f / n;
            for (int i = 0; i < dim; i++) {
                out[base + i] *= inv;
            }
        }
    }

    /**
     * Online-softmax update of query head {@code h} with one block's {@code count} scores at
     * {@code scores[so ..)}: turns them into weights relative to the new running maximum and rescales the running
     * normaliser and accumulator.
     */
    private static void blockSoftmax(SoftmaxKernels sm, float[] scores, int so, int count, float[] max,
                                     float[] norm, float[] acc, int h, int dim) {
        float m = max[h];
        float nm = Math.max(m, sm.max(scores, so, count));
        if (nm == Float.NEGATIVE_INFINITY) {
            // every position so far is masked: weights 0, state unchanged
            Arrays.fill(scores, so, so + count, 0f);
            return;
        }
        float sum = sm.expSum(scores, so, count, nm);
        if (m != nm) {
            // m == -inf on the first block: exp(-inf) = 0 zeroes an accumulator that is zero anyway
            float c = (float) Math.exp(m - nm);
            sm.scale(acc, h * dim, dim, c);
            norm[h] = norm[h] * c + sum;
        } else {
            norm[h] += sum;
        }
        max[h] = nm;
    }

    private static void finish(int queryHeads, int dim, float[] norm, float[] acc, float[] out) {
        for (int h = 0; h < queryHeads; h++) {
            float n = norm[h];
            float inv = n > 0f ? 1f / n : 0f;
            int base = h * dim;
            for (int i = 0; i < dim; i++) {
                out[base + i] = acc[base + i] * inv;
            }
        }
    }

    /** Any KvStore, through readKey/readValue; the same online softmax, one token per "block". */
    private static void decodeGeneric(KvStore store, KvLayout l, int layer, float[] q, int queryHeads,
                                      int[] table, int length, float[] out, Scratch s) {
        final int dim = l.headDim();
        final int kvDim = l.kvDim();
        final int bt = l.blockTokens();
        final int group = queryHeads / l.kvHeads();
        final float scale = (float) (1.0 / Math.sqrt(dim));
        s.ensure(bt, queryHeads, dim);
        if (s.k.length < kvDim) {
            s.k = new float[kvDim];
            s.v = new float[kvDim];
        }
        float[] k = s.k;
        float[] v = s.v;
        Arrays.fill(s.max, 0, queryHeads, Float.NEGATIVE_INFINITY);
        Arrays.fill(s.norm, 0, queryHeads, 0f);
        Arrays.fill(s.acc, 0, queryHeads * dim, 0f);
        for (int p = 0; p < length; p++) {
            int pb = table[p / bt];
            if (pb < 0) {
                continue;
            }
            long slot = (long) pb * bt + p % bt;
            store.readKey(layer, slot, k);
            store.readValue(layer, slot, v);
            for (int h = 0; h < queryHeads; h++) {
                int kv = (h / group) * dim;
                float dot = 0f;
                for (int i = 0; i < dim; i++) {
                    dot += q[h * dim + i] * k[kv + i];
                }
                s.scores[0] = dot * scale;
                blockSoftmax(GENERIC_SOFTMAX, s.scores, 0, 1, s.max, s.norm, s.acc, h, dim);
                float w = s.scores[0];
                for (int i = 0; i < dim; i++) {
                    s.acc[h * dim + i] += w * v[kv + i];
                }
            }
        }
        finish(queryHeads, dim, s.norm, s.acc, out);
    }
}
