package dev.kvcache.llama2;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.Sequence;
import dev.kvcache.offheap.OffHeapKvStore;
import dev.kvcache.offheap.PagedAttention;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * A llama2.c engine whose KV cache is kvcache: a {@link KvCacheManager} decides where each token's
 * keys and values live, an {@link OffHeapKvStore} holds them in the chosen {@link KvFormat}, and
 * {@link PagedAttention#decode} attends over them through the sequence's block table.
 *
 * <h2>One token</h2>
 * The manager has already reserved the token's slot (an {@code append}). For each layer the
 * shared forward pass ({@code Llama2Forward}, run.c's algorithm) computes q, k, v and RoPE; the
 * engine writes k and v at {@code sequence.slot(pos)} with {@link KvStore#write} (quantized on
 * write) and calls {@code PagedAttention.decode(store, layer, q, heads, blockTable, pos + 1, out)}.
 * The block table is read once per token, after the append that may have added or copied a block.
 *
 * <h2>Prompts and prefix hits</h2>
 * {@link #prefill} appends a whole prompt in one call; the manager answers how many leading tokens
 * already have their KV in the store (full blocks published by another sequence with the same
 * prefix), and only the rest is computed. Positions are absolute, so a hit block's RoPE'd keys are
 * exactly what this sequence would have computed.
 *
 * <h2>Publishing</h2>
 * The manager publishes a block for reuse only once its KV is written. Once {@link #prefill} has
 * written the prompt's KV it {@linkplain KvCacheManager#commit commits} the sequence, so sequences
 * running beside it share the prompt's full blocks at once; blocks that {@link #step} fills are
 * published by the sequence's next append or its {@link #free}. If computing the KV throws (the
 * store or attention fails) after the append, the engine {@linkplain KvCacheManager#abort aborts}
 * the sequence before rethrowing: blocks whose KV may be missing are never published, and the
 * sequence is no longer live.
 *
 * <h2>Sizing</h2>
 * {@code blocks} blocks of {@code blockTokens} tokens; the KV bytes are
 * {@code blocks * layout.bytesPerBlock()}, reported by {@link #ledger()}.
 *
 * <p>Not thread-safe: one thread drives the engine (sequences are interleaved, not parallel).
 */
public final class Llama2Engine implements AutoCloseable {

    private final Llama2Model model;
    private final Llama2Model.Config c;
    private final KvLayout layout;
    private final OffHeapKvStore store;
    private final KvCacheManager manager;
    private final Llama2Forward fwd;
    private final Llama2Forward.Attention attention = this::attend;
    private long currentSlot;
    private int[] currentTable;
    /** Tests only: runs before each KV write (per layer and token); may throw to fake a failing store. */
    Runnable beforeWrite;
    private long computedTokens;
    private boolean closed;

    private Llama2Engine(Llama2Model model, KvLayout layout, int blocks, boolean prefixCaching) {
        this.model = model;
        this.c = model.config();
        this.layout = layout;
        this.store = OffHeapKvStore.allocate(layout, blocks);
        try {
            this.manager = KvCacheManager.builder(layout).blocks(blocks).store(store)
                    .prefixCaching(prefixCaching).build();
        } catch (RuntimeException | Error e) {
            store.close();
            throw e;
        }
        this.fwd = new Llama2Forward(model);
    }

    /**
     * An engine for {@code model} storing KV in {@code format}.
     *
     * @param model         the checkpoint whose forward pass the engine runs; not null
     * @param format        the KV storage format of the off-heap store (F32 is exact; others
     *                      quantize on write); not null
     * @param blockTokens   tokens per block (16 is usual), {@code > 0}
     * @param blocks        blocks in the pool, {@code > 0} ({@link #blocksFor} sizes it for full-length sequences)
     * @param prefixCaching whether full blocks are published for reuse by later sequences
     * @return a new open engine owning its store and manager; the caller closes it
     * @throws NullPointerException     if {@code model} or {@code format} is null
     * @throws IllegalArgumentException when the format cannot store this model's heads (e.g. Q8_0
     *                                  needs a head size that is a multiple of 32) or a size is bad
     */
    public static Llama2Engine create(Llama2Model model, KvFormat format, int blockTokens, int blocks,
                                      boolean prefixCaching) {
        Objects.requireNonNull(model, "model");
        Objects.requireNonNull(format, "format");
        Llama2Model.Config c = model.config();
        KvLayout layout;
        try {
            layout = new KvLayout(c.layers(), c.kvHeads(), c.headSize(), blockTokens, format);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("KV format " + format.name() + " cannot hold this model's KV ("
                    + c.kvHeads() + " KV heads of " + c.headSize() + " values): " + e.getMessage(), e);
        }
        return new Llama2Engine(model, layout, blocks, prefixCaching);
    }

    /**
     * Blocks for {@code sequences} sequences of the model's full seq_len at {@code blockTokens}.
     *
     * @param model       the checkpoint whose {@code seq_len} each sequence may reach
     * @param blockTokens tokens per block, {@code > 0}
     * @param sequences   sequences that may be at full length at once, {@code > 0}
     * @return {@code sequences * ceil(seqLen / blockTokens)}, the pool size at which no append of
     *         that many sequences is refused for lack of blocks
     * @throws IllegalArgumentException if {@code blockTokens} or {@code sequences} is not positive,
     *                                  or the pool's token slots would exceed {@code Integer.MAX_VALUE}
     */
    public static int blocksFor(Llama2Model model, int blockTokens, int sequences) {
        if (blockTokens <= 0) {
            throw new IllegalArgumentException("blockTokens must be > 0, got " + blockTokens);
        }
        if (sequences <= 0) {
            throw new IllegalArgumentException("sequences must be > 0, got " + sequences);
        }
        long per = (model.config().seqLen() + blockTokens - 1L) / blockTokens;
        long n = per * sequences;
        if (n > Integer.MAX_VALUE / blockTokens) {
            throw new IllegalArgumentException(sequences + " sequences need " + n + " blocks; the limit is "
                    + Integer.MAX_VALUE / blockTokens);
        }
        return (int) n;
    }

    /**
     * The model this engine runs.
     *
     * @return the checkpoint given to {@link #create}
     */
    public Llama2Model model() {
        return model;
    }

    /**
     * The KV layout of the store: the model's layers, KV heads and head size, the block size and the format.
     *
     * @return the layout the store and the manager were built with
     */
    public KvLayout layout() {
        return layout;
    }

    /**
     * The manager that decides where each token's KV lives. Owned by this engine: it is closed
     * with it, and sequences opened on it directly are freed by {@link #close()} too.
     *
     * @return this engine's manager
     */
    public KvCacheManager manager() {
        return manager;
    }

    /**
     * The off-heap store holding the KV. Owned by this engine: it is released by {@link #close()}.
     *
     * @return this engine's store
     */
    public KvStore store() {
        return store;
    }

    /**
     * The manager's ledger: blocks and bytes used, cached, hit.
     *
     * @return a snapshot of {@link KvCacheManager#ledger()} taken now
     */
    public KvCacheLedger ledger() {
        return manager.ledger();
    }

    /**
     * Tokens whose KV this engine computed (prefix hits excluded).
     *
     * @return the positions run through the forward pass since the engine was created, over all sequences
     */
    public long computedTokens() {
        return computedTokens;
    }

    /**
     * A new empty sequence.
     *
     * @param id the sequence's id; not null and not the id of a sequence that is live now
     * @return a new live sequence of length 0 in this engine's manager
     * @throws NullPointerException     if {@code id} is null
     * @throws IllegalArgumentException if a sequence named {@code id} is live
     * @throws IllegalStateException    if the engine is closed
     */
    public Sequence open(String id) {
        checkOpen();
        return manager.open(id);
    }

    /**
     * Frees a sequence's blocks (full ones stay cached for later prefix hits).
     *
     * @param s a live sequence of this engine
     * @throws IllegalStateException if the engine is closed or {@code s} was already freed or aborted
     */
    public void free(Sequence s) {
        checkOpen();
        manager.free(s);
    }

    /**
     * The result of appending a prompt.
     *
     * @param hits   leading tokens served from the prefix cache (not computed)
     * @param logits logits after the last prompt token (a copy)
     */
    public record Prefill(int hits, float[] logits) {
    }

    /**
     * Appends {@code tokens} to {@code s} in one call (prefix lookup on a sequence's first append),
     * computes the KV of every token that was not a prefix hit, and returns the last token's logits.
     *
     * Once the prompt's KV is written the sequence is committed: its full blocks serve other
     * sequences' prompts from then on. When computing the KV throws, the sequence is aborted (see
     * the class comment) and the exception propagates.
     *
     * @param s      a live sequence of this engine; the tokens go at its positions
     *               {@code s.length() ..}
     * @param tokens the prompt's token ids, at least one, each in {@code [0, vocabSize)}
     * @return how many leading tokens were prefix hits, and the logits after the last token
     * @throws NullPointerException     if {@code s} or {@code tokens} is null
     * @throws IllegalStateException    when the pool has too few free blocks (nothing changes then),
     *                                  or the engine is closed
     * @throws IllegalArgumentException for an empty call, a token outside the vocabulary or a
     *                                  sequence that would pass seq_len
     */
    public Prefill prefill(Sequence s, int... tokens) {
        checkOpen();
        Objects.requireNonNull(s, "sequence");
        Objects.requireNonNull(tokens, "tokens");
        if (tokens.length == 0) {
            throw new IllegalArgumentException("prefill needs at least one token");
        }
        for (int i = 0; i < tokens.length; i++) {
            if (tokens[i] < 0 || tokens[i] >= c.vocabSize()) {
                throw new IllegalArgumentException("token " + tokens[i] + " at index " + i
                        + " outside 0.." + (c.vocabSize() - 1));
            }
        }
        int start = s.length();
        if ((long) start + tokens.length > c.seqLen()) {
            throw new IllegalArgumentException("sequence '" + s.id() + "' at length " + start + " plus "
                    + tokens.length + " tokens passes the model's seq_len " + c.seqLen());
        }
        int hits = manager.append(s, tokens);
        if (hits < 0) {
            throw new IllegalStateException("KV pool full: " + tokens.length + " more tokens for sequence '"
                    + s.id() + "' do not fit; " + manager.stats());
        }
        float[] logits = null;
        try {
            loadTable(s);
            for (int i = hits; i < tokens.length; i++) {
                int pos = start + i;
                currentSlot = s.slot(pos);
                logits = fwd.forward(tokens[i], pos, attention);
                computedTokens++;
            }
        } catch (RuntimeException | Error e) {
            abortAfter(s, e);
            throw e;
        }
        // the prompt's KV is written: concurrent sequences with the same prefix may hit it now
        manager.commit(s);
        // the manager never serves the call's last token from the cache, so logits is set
        return new Prefill(hits, logits.clone());
    }

    /** The KV of {@code s}'s last append may be unwritten: release it without publishing that append's blocks. */
    private void abortAfter(Sequence s, Throwable cause) {
        try {
            manager.abort(s);
        } catch (RuntimeException | Error e) {
            cause.addSuppressed(e);
        }
    }

    /** Reads the sequence's block table into the reused {@link #currentTable} (no allocation per token). */
    private void loadTable(Sequence s) {
        if (currentTable == null || currentTable.length < s.blockCount()) {
            currentTable = new int[Math.max(s.blockCount(), currentTable == null ? 16 : currentTable.length * 2)];
        }
        s.blockTable(currentTable);
    }

    /**
     * Appends one token and returns the logits after it (this engine's buffer, valid until the next
     * call). When computing its KV throws, the sequence is aborted and the exception propagates.
     *
     * @param s     a live sequence of this engine, shorter than the model's seq_len
     * @param token the token id at position {@code s.length()}, in {@code [0, vocabSize)}
     * @return the {@code vocabSize} logits after {@code token}: this engine's buffer, overwritten by
     *         the next prefill or step (clone it to keep it)
     * @throws NullPointerException     if {@code s} is null
     * @throws IllegalArgumentException if {@code token} is outside the vocabulary or {@code s} is at seq_len
     * @throws IllegalStateException    when the pool has no block for the token (nothing changes
     *                                  then), or the engine is closed
     */
    public float[] step(Sequence s, int token) {
        checkOpen();
        Objects.requireNonNull(s, "sequence");
        if (token < 0 || token >= c.vocabSize()) {
            throw new IllegalArgumentException("token " + token + " outside 0.." + (c.vocabSize() - 1));
        }
        int pos = s.length();
        if (pos >= c.seqLen()) {
            throw new IllegalArgumentException("sequence '" + s.id() + "' is at the model's seq_len " + c.seqLen());
        }
        int hits = manager.append(s, token);
        if (hits < 0) {
            throw new IllegalStateException("KV pool full: no block for token " + pos + " of sequence '"
                    + s.id() + "'; " + manager.stats());
        }
        float[] logits;
        try {
            loadTable(s);
            currentSlot = s.slot(pos);
            logits = fwd.forward(token, pos, attention);
        } catch (RuntimeException | Error e) {
            abortAfter(s, e);
            throw e;
        }
        computedTokens++;
        return logits;
    }

    private void attend(int layer, int pos, float[] q, float[] k, float[] v, float[] out) {
        Runnable hook = beforeWrite;
        if (hook != null) {
            hook.run();
        }
        store.write(layer, currentSlot, k, v);
        PagedAttention.decode(store, layer, q, c.heads(), currentTable, pos + 1, out);
    }

    /**
     * run.c's greedy loop on a new sequence {@code id}: the prompt in one append, then one token at a
     * time, at most {@code steps} positions in all (0 or more than seq_len: seq_len), stopping when
     * BOS comes out. The sequence stays open (the caller frees it).
     *
     * @param s      a live, empty sequence of this engine
     * @param prompt the prompt's token ids (normally {@code {BOS}}): at least one, at most
     *               {@code steps} after clamping, each in {@code [0, vocabSize)}
     * @param steps  positions to run in all, prompt included, {@code >= 0}; 0 or more than seq_len
     *               means seq_len
     * @return the generated ids, prompt and stopping BOS excluded
     * @throws NullPointerException     if {@code prompt} is null
     * @throws IllegalArgumentException if {@code steps < 0}, the prompt is empty, longer than the
     *                                  clamped steps or seq_len, or holds a token outside the vocabulary
     * @throws IllegalStateException    when the pool runs out of blocks, or the engine is closed
     */
    public int[] generate(Sequence s, int[] prompt, int steps) {
        Greedy.checkPrompt(c, prompt);
        int max = Greedy.clampSteps(c, steps);
        if (prompt.length > max) {
            throw new IllegalArgumentException("prompt of " + prompt.length + " tokens exceeds steps " + max);
        }
        Decoder d = new Decoder(s, prompt, max);
        while (d.advance()) {
            // one token per call
        }
        return d.output();
    }

    /** One sequence's greedy decoding, advanced a token at a time so that sequences can interleave. */
    private final class Decoder {
        final Sequence seq;
        final int[] prompt;
        final int max;
        int[] out;
        int n;
        int next = -1;
        boolean done;
        int hits;

        Decoder(Sequence seq, int[] prompt, int max) {
            this.seq = seq;
            this.prompt = prompt;
            this.max = max;
            this.out = new int[Math.max(0, max - prompt.length + 1)];
        }

        /** Computes one more position (the whole prompt on the first call); false once finished. */
        boolean advance() {
            if (done) {
                return false;
            }
            float[] logits;
            if (next < 0) {
                Prefill p = prefill(seq, prompt);
                hits = p.hits();
                logits = p.logits();
            } else {
                logits = step(seq, next);
            }
            next = Llama2Forward.argmax(logits);
            // positions computed so far: seq.length(); run.c stops at `steps` positions or at BOS
            if (next == Llama2Reference.BOS) {
                done = true;
                return false;
            }
            out[n++] = next;
            if (seq.length() >= max) {
                done = true;
                return false;
            }
            return true;
        }

        int[] output() {
            return Arrays.copyOf(out, n);
        }
    }

    /**
     * One sequence of {@link #generateConcurrently}.
     *
     * @param id     sequence id
     * @param prompt its prompt
     * @param hits   prompt tokens served from the prefix cache
     * @param ids    generated ids
     */
    public record Generation(String id, int[] prompt, int hits, int[] ids) {
    }

    /**
     * Greedy decoding of several sequences at once, interleaved one token at a time (round robin)
     * in the same pool, as a server would batch them. Sequence i is named {@code prefix + i}; each
     * prompt goes in with one append, so prompts sharing full leading blocks with an earlier
     * sequence get prefix hits (each prompt is committed once its KV is written, so the later
     * sequences hit the earlier ones' blocks while those still run). Sequences are freed when done;
     * when one fails, it is aborted and the others are freed.
     *
     * @param idPrefix the prefix of the sequence ids: sequence i is {@code idPrefix + i}; none of
     *                 them may be live
     * @param prompts  one prompt per sequence, each as {@link #generate} takes it
     * @param steps    positions to run per sequence, prompt included, {@code >= 0}; 0 or more than
     *                 seq_len means seq_len
     * @return one generation per prompt, in the order of {@code prompts}
     * @throws NullPointerException     if {@code prompts} or one of its prompts is null
     * @throws IllegalArgumentException if {@code steps < 0}, a prompt is empty, longer than the
     *                                  clamped steps or seq_len, or holds a token outside the
     *                                  vocabulary (checked before any sequence opens), or a sequence
     *                                  id is already live
     * @throws IllegalStateException    when the pool runs out of blocks, or the engine is closed
     */
    public List<Generation> generateConcurrently(String idPrefix, int[][] prompts, int steps) {
        checkOpen();
        Objects.requireNonNull(prompts, "prompts");
        int max = Greedy.clampSteps(c, steps);
        List<Decoder> ds = new ArrayList<>();
        try {
            for (int i = 0; i < prompts.length; i++) {
                Greedy.checkPrompt(c, prompts[i]);
                if (prompts[i].length > max) {
                    throw new IllegalArgumentException("prompt " + i + " of " + prompts[i].length
                            + " tokens exceeds steps " + max);
                }
            }
            for (int i = 0; i < prompts.length; i++) {
                ds.add(new Decoder(open(idPrefix + i), prompts[i], max));
            }
            boolean any = true;
            while (any) {
                any = false;
                for (Decoder d : ds) {
                    any |= d.advance();
                }
            }
            List<Generation> out = new ArrayList<>();
            for (Decoder d : ds) {
                out.add(new Generation(d.seq.id(), d.prompt.clone(), d.hits, d.output()));
            }
            return out;
        } finally {
            for (Decoder d : ds) {
                if (d.seq.isLive()) {
                    manager.free(d.seq);
                }
            }
        }
    }

    /**
     * Prompts for {@code k} sequences that share a prefix: {@code base} extended with this engine's
     * greedy continuation to {@code prefixTokens} tokens, then each prompt adds one more token, the
     * j-th most likely after the prefix (j = 0 is the greedy choice), so the continuations differ.
     * The prefix is computed once on a probe sequence that is then freed: its full blocks stay in
     * the prefix cache, so the returned prompts hit them.
     *
     * @param base         the prompt the prefix starts with (normally {@code {BOS}}): at least one
     *                     token, each in {@code [0, vocabSize)}
     * @param prefixTokens the shared prefix's length, in {@code [base.length, seqLen)}
     * @param k            the number of prompts, in {@code [1, vocabSize]}
     * @return {@code k} prompts of {@code prefixTokens + 1} tokens each, the j-th ending in the
     *         j-th likeliest token after the prefix
     * @throws NullPointerException     if {@code base} is null
     * @throws IllegalArgumentException if {@code base} is empty, too long or holds a token outside
     *                                  the vocabulary, or {@code prefixTokens} or {@code k} is out of range
     * @throws IllegalStateException    when the pool has too few blocks for the prefix, or the engine is closed
     */
    public int[][] branchingPrompts(int[] base, int prefixTokens, int k) {
        checkOpen();
        Greedy.checkPrompt(c, base);
        if (prefixTokens < base.length || prefixTokens >= c.seqLen()) {
            throw new IllegalArgumentException("prefixTokens must be in " + base.length + ".."
                    + (c.seqLen() - 1) + ", got " + prefixTokens);
        }
        if (k <= 0 || k > c.vocabSize()) {
            throw new IllegalArgumentException("k must be in 1.." + c.vocabSize() + ", got " + k);
        }
        int[] prefix = Arrays.copyOf(base, prefixTokens);
        Sequence probe = open("branching-probe-" + System.identityHashCode(prefix));
        try {
            float[] logits = prefill(probe, base).logits();
            for (int pos = base.length; pos < prefixTokens; pos++) {
                prefix[pos] = Llama2Forward.argmax(logits);
                logits = step(probe, prefix[pos]).clone();
            }
            int[] ranked = topK(logits, k);
            int[][] prompts = new int[k][];
            for (int j = 0; j < k; j++) {
                prompts[j] = Arrays.copyOf(prefix, prefixTokens + 1);
                prompts[j][prefixTokens] = ranked[j];
            }
            return prompts;
        } finally {
            if (probe.isLive()) { // not when a failed prefill or step aborted it
                manager.free(probe);
            }
        }
    }

    /** Indices of the k largest values, largest first; ties go to the lower index (like argmax). */
    static int[] topK(float[] x, int k) {
        int[] best = new int[k];
        boolean[] taken = new boolean[x.length];
        for (int j = 0; j < k; j++) {
            int b = -1;
            for (int i = 0; i < x.length; i++) {
                if (!taken[i] && (b < 0 || x[i] > x[b])) {
                    b = i;
                }
            }
            taken[b] = true;
            best[j] = b;
        }
        return best;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("engine closed");
        }
    }

    /**
     * Frees every sequence still open (the engine owns them: they are useless without it), closes
     * the manager and releases the store's memory. Idempotent.
     */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            try {
                for (String id : manager.liveSequenceIds()) {
                    Sequence s = manager.sequence(id);
                    if (s != null) {
                        manager.free(s);
                    }
                }
                manager.close();
            } finally {
                store.close();
            }
        }
    }
}
