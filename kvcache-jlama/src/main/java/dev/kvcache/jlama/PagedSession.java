package dev.kvcache.jlama;

import com.github.tjake.jlama.tensor.AbstractTensor;
import com.github.tjake.jlama.tensor.FloatBufferTensor;
import com.github.tjake.jlama.tensor.KvBufferCache;
import com.github.tjake.jlama.tensor.TensorShape;
import dev.kvcache.KvCacheManager;
import dev.kvcache.Sequence;
import java.util.Arrays;
import java.util.UUID;

/**
 * One Jlama session served by a kvcache {@link Sequence}: position p of the session is token p of
 * the sequence, and its K/V live in the block at {@code sequence.blockTable()[p / blockTokens]}.
 *
 * <h2>Token ids</h2>
 * The block manager needs token ids (prefix hashes). An engine that drives Jlama itself calls
 * {@link #admit} with the tokens before the forward pass and runs Jlama only from
 * {@code position + admit(...)}: tokens the prefix cache already holds are not computed at all.
 * When Jlama's own {@code generate} drives, {@link PagedKvBufferCache#install()} has wrapped the
 * model's token embedding, which records the ids of each forward pass; the first cache access at a
 * position past the sequence's end appends that whole batch (so a prompt's prefix lookup sees the
 * whole prompt).
 *
 * <h2>Protected positions</h2>
 * Positions served by the prefix cache ({@link Sequence#cachedTokens()}) and positions inherited
 * from a fork parent sit in blocks other sequences may read. If Jlama computes them anyway (its
 * {@code generate} always runs the whole prompt), their writes go to a private scratch row and are
 * discarded; attention still reads the cached blocks. Every other position is written in place.
 *
 * <h2>Publishing only written K/V</h2>
 * The block manager publishes a block for other sessions only once its K/V is written: at the
 * sequence's next append, {@link KvCacheManager#commit} or {@link KvCacheManager#free}. The session
 * counts the rows Jlama takes for the positions of its last admission (one key row per layer and
 * fresh position); the admission is <em>complete</em> once every one was handed out, and Jlama
 * writes each row before it asks for the next. So:
 * <ul>
 *   <li>the next {@link #admit} (which publishes the last one's full blocks) and {@link #release}
 *       check that the last admission is complete; {@link #close()} of a named session's buffer (the
 *       end of Jlama's {@code generate}) commits it when complete;</li>
 *   <li>when it is not (a forward pass threw part-way, in Jlama or here), the session is
 *       <em>failed</em>: {@code admit} and {@code commit} refuse, and {@code release} (or closing an
 *       ephemeral buffer) {@linkplain KvCacheManager#abort aborts} the sequence, publishing nothing
 *       pending;</li>
 *   <li>an engine that drives Jlama itself may call {@link #commit} after its forward pass (so
 *       concurrent sessions share the prompt at once) and {@link #abort} when it fails.</li>
 * </ul>
 * The one write this cannot see is the very last row of a pass: a pass that throws after taking it
 * and before copying its K/V in would go unnoticed (Jlama only copies and rotates there).
 *
 * <h2>Position</h2>
 * {@code getCurrentContextPosition} is the sequence's length, so a later {@code generate} on the
 * same session continues after everything already cached (Jlama's own buffer counts only generated
 * tokens). {@code incrementContextPosition} is therefore a no-op, and {@code setCurrentContextPosition}
 * accepts only the current length (kvcache sequences never shrink).
 *
 * <p>Not thread-safe, like Jlama's own buffers: one forward pass at a time per model.
 */
public final class PagedSession implements KvBufferBridge {
    private final PagedKvBufferCache cache;
    private final KvCacheManager manager;
    private final KvPages pages;
    private final UUID id;
    private final Sequence sequence;
    private final boolean ephemeral;
    private final int blockTokens;
    private final int inherited;
    private final KvBufferCache.KvBuffer buffer;
    private final AbstractTensor scratchKey;
    private final AbstractTensor scratchValue;
    private final int layers;
    private int[] table;
    private boolean released;
    // the last admission: positions [admitFrom, admitTo), key rows expected for its fresh positions and taken so far
    private int admitFrom;
    private int admitTo;
    private long rowsExpected;
    private long rowsTaken;
    private boolean failed;

    PagedSession(PagedKvBufferCache cache, KvCacheManager manager, KvPages pages, UUID id, Sequence sequence,
                 boolean ephemeral, int kvDim, int pageBytes) {
        this.cache = cache;
        this.manager = manager;
        this.pages = pages;
        this.id = id;
        this.sequence = sequence;
        this.ephemeral = ephemeral;
        this.blockTokens = manager.layout().blockTokens();
        this.inherited = sequence.length();
        this.layers = manager.layout().layers();
        this.admitFrom = inherited;
        this.admitTo = inherited;
        this.table = sequence.blockTable();
        this.scratchKey = new FloatBufferTensor(TensorShape.of(1, kvDim));
        this.scratchValue = new FloatBufferTensor(TensorShape.of(1, kvDim));
        this.buffer = KvBufferSubclass.create(cache, id, ephemeral, this, pageBytes);
    }

    /**
     * The session id Jlama knows it by.
     *
     * @return the session id
     */
    public UUID id() {
        return id;
    }

    /**
     * The kvcache sequence (id = the UUID's string).
     *
     * @return the sequence
     */
    public Sequence sequence() {
        return sequence;
    }

    /**
     * The Jlama buffer to pass to {@code AbstractModel.forward/batchForward}.
     *
     * @return the Jlama KV buffer of this session
     */
    public KvBufferCache.KvBuffer kvBuffer() {
        return buffer;
    }

    /**
     * True for a buffer made by {@code getEphemeralKvBuffer}, freed when Jlama closes it.
     *
     * @return whether this session is ephemeral
     */
    public boolean isEphemeral() {
        return ephemeral;
    }

    /**
     * Appends {@code tokens} at the sequence's end and returns how many leading ones already have
     * their K/V in the cache: run Jlama on {@code tokens[hit..]} from position
     * {@code lengthBefore + hit}. IllegalStateException (and nothing changes) when the cache has no
     * room, naming the block counts.
     *
     * @param tokens the tokens to append, at least one
     * @return how many leading tokens already have their K/V in the cache
     * @throws IllegalArgumentException if {@code tokens} is empty
     * @throws IllegalStateException if the session was released or failed, or the cache has no room
     */
    public int admit(int... tokens) {
        checkLive();
        if (tokens.length == 0) {
            throw new IllegalArgumentException("no tokens to admit to session " + id);
        }
        checkWritten("admit");
        cache.flushPending();
        int from = sequence.length();
        int hit = manager.append(sequence, tokens); // publishes the last admission's full blocks: written
        if (hit < 0) {
            throw new IllegalStateException("kvcache has no room for " + tokens.length + " more tokens of session " + id
                    + " (length " + sequence.length() + "): " + manager.stats() + "; refusal: " + manager.lastRefusal());
        }
        table = sequence.blockTable();
        admitFrom = from;
        admitTo = sequence.length();
        int fresh = Math.max(from, Math.max(inherited, sequence.cachedTokens()));
        rowsExpected = (long) Math.max(0, admitTo - fresh) * layers;
        rowsTaken = 0;
        return hit;
    }

    /**
     * Says that Jlama has written the K/V of every admitted position (its forward pass returned):
     * the full blocks of the last admission serve other sessions from now on, not only after the next
     * admission. IllegalStateException for a failed session.
     */
    public void commit() {
        checkLive();
        if (failed) {
            throw new IllegalStateException("session " + id + " failed during a forward pass; abort() it");
        }
        cache.flushPending();
        manager.commit(sequence);
        rowsTaken = Math.max(rowsTaken, rowsExpected);
    }

    /**
     * Releases the sequence without publishing the blocks of its last admission (their K/V may be
     * unwritten: the forward pass failed or was cancelled). Idempotent.
     */
    public void abort() {
        release(true);
    }

    /**
     * Frees the sequence; its full blocks stay in the prefix cache. When the last admission's K/V
     * is not known to be written (a failed session), aborts instead. Idempotent.
     */
    public void release() {
        release(failed || rowsTaken < rowsExpected);
    }

    private void release(boolean abort) {
        if (released) return;
        pages.forget(this);
        released = true;
        if (abort) {
            manager.abort(sequence);
        } else {
            manager.free(sequence);
        }
        cache.forgetSession(this);
    }

    /**
     * True when a forward pass over this session failed part-way: it can only be released (aborted).
     *
     * @return whether this session failed
     */
    public boolean isFailed() {
        return failed;
    }

    /** True when Jlama has taken every row of the last admission's fresh positions (so written them, but the last). */
    boolean admissionWritten() {
        return !failed && rowsTaken >= rowsExpected;
    }

    private void checkWritten(String what) {
        if (!failed && rowsTaken < rowsExpected) {
            failed = true;
        }
        if (failed) {
            throw new IllegalStateException("cannot " + what + " on session " + id + ": the forward pass over positions "
                    + admitFrom + ".." + (admitTo - 1) + " did not write their K/V (" + rowsTaken + " of " + rowsExpected
                    + " rows); abort() or release() it");
        }
    }

    /**
     * False once {@link #release()}d.
     *
     * @return whether this session is still live
     */
    public boolean isLive() {
        return !released;
    }

    private void checkLive() {
        if (released) throw new IllegalStateException("session " + id + " was released");
    }

    /** Makes sure positions 0..position have token ids, appending the recorded forward batch if needed. */
    private void ensureTokens(int position) {
        checkLive();
        int length = sequence.length();
        if (position < length) return;
        int[] recorded = cache.takeRecorded(length, position);
        if (recorded == null) {
            throw new IllegalStateException("position " + position + " of session " + id + " is past its " + length
                    + " admitted tokens and no token ids were recorded for it: call admit(tokens) before the forward"
                    + " pass, or install() the cache so the model's embedding records them");
        }
        admit(recorded);
    }

    private long slotOf(int position) {
        long slot = sequence.slot(position);
        if (slot < 0) {
            throw new IllegalStateException("position " + position + " of session " + id
                    + " was released by a sliding window or retention policy; Jlama's attention cannot skip it");
        }
        return slot;
    }

    private boolean writable(int position) {
        return position >= inherited && position >= sequence.cachedTokens();
    }

    private void enter(int layer, int position) {
        ensureTokens(position);
        cache.enter(this, layer, position);
    }

    @Override
    public AbstractTensor key(int layer, int position) {
        try {
            enter(layer, position);
            long slot = slotOf(position);
            if (!writable(position)) return scratchKey;
            AbstractTensor row = pages.keyRow(this, layer, position, slot);
            if (position >= admitFrom && position < admitTo) rowsTaken++;
            return row;
        } catch (RuntimeException | Error e) {
            markFailed();
            throw e;
        }
    }

    @Override
    public AbstractTensor value(int layer, int position) {
        try {
            enter(layer, position);
            long slot = slotOf(position);
            return writable(position) ? pages.valueRow(this, layer, position, slot) : scratchValue;
        } catch (RuntimeException | Error e) {
            markFailed();
            throw e;
        }
    }

    @Override
    public AbstractTensor[] keysUpTo(int layer, int position) {
        try {
            enter(layer, position);
            checkTable(position);
            return pages.keyPages(this, layer, position, table);
        } catch (RuntimeException | Error e) {
            markFailed();
            throw e;
        }
    }

    @Override
    public AbstractTensor[] valuesUpTo(int layer, int position) {
        try {
            enter(layer, position);
            checkTable(position);
            return pages.valuePages(this, layer, position, table);
        } catch (RuntimeException | Error e) {
            markFailed();
            throw e;
        }
    }

    /** A forward pass over this session is failing: its last admission's K/V may be unwritten. */
    private void markFailed() {
        if (!released) failed = true;
    }

    private void checkTable(int position) {
        for (int i = 0, n = position / blockTokens; i <= n; i++) {
            if (table[i] < 0) {
                throw new IllegalStateException("block " + i + " of session " + id + " (table " + Arrays.toString(table)
                        + ") was released by a sliding window; Jlama's attention reads every position");
            }
        }
    }

    @Override
    public int position() {
        return sequence.length();
    }

    @Override
    public void setPosition(int position) {
        if (position != sequence.length()) {
            throw new IllegalArgumentException("position " + position + ": a kvcache sequence only grows; session " + id
                    + " holds " + sequence.length() + " tokens");
        }
    }

    @Override
    public void incrementPosition() {
        // the position is the sequence length, which admit() already advanced
    }

    /**
     * Jlama closes a session's buffer at the end of every {@code generate}, also when it failed; a
     * named session keeps its K/V for the next turn (release it with
     * {@link PagedKvBufferCache#release}) and is committed when its last admission was written
     * (failed otherwise), an ephemeral one is released (aborted when not written).
     */
    @Override
    public void close() {
        if (ephemeral) {
            release();
        } else if (!released) {
            cache.flushPending();
            if (admissionWritten()) {
                manager.commit(sequence);
            } else {
                failed = true;
            }
        }
    }

    @Override
    public String toString() {
        return "PagedSession[" + id + ", length " + (released ? "released" : sequence.length()) + "]";
    }
}
