package dev.kvcache.jlama;

import com.github.tjake.jlama.model.AbstractModel;
import com.github.tjake.jlama.model.functions.EmbedInput;
import com.github.tjake.jlama.safetensors.Config;
import com.github.tjake.jlama.safetensors.DType;
import com.github.tjake.jlama.tensor.AbstractTensor;
import com.github.tjake.jlama.tensor.KvBufferCache;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.Sequence;
import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Jlama's {@code KvBufferCache}, served by kvcache's paged block manager, without forking Jlama.
 *
 * <h2>How it plugs in</h2>
 * Jlama's model keeps its cache in the protected, non-final field {@code AbstractModel.kvBufferCache}
 * and asks it for {@code KvBuffer}s ({@code getKvBuffer(UUID)} per session in {@code generate},
 * {@code getEphemeralKvBuffer()} for embeddings). This class extends {@code KvBufferCache}, overrides
 * both, and {@link #install()} swaps it into the field by reflection. Each buffer it returns is a
 * generated {@code KvBuffer} subclass ({@link KvBufferSubclass}) that forwards to a
 * {@link PagedSession}, which maps the session's positions to a kvcache {@link Sequence}. So Jlama
 * sessions appear in {@link KvCacheManager#stats()}, share prefix blocks (a second session with the
 * same prompt takes the first one's full blocks instead of new ones) and can fork.
 *
 * <h2>Two ways to hold K/V</h2>
 * <ul>
 *   <li>{@link #inPlace}: over a {@link JlamaBlockMemory} (F32). Jlama's attention reads and writes
 *       kvcache blocks directly: one block of one layer is one Jlama page.</li>
 *   <li>{@link #staged}: over any {@link KvStore}, e.g. an {@code OffHeapKvStore} in FP8 or Q8_0:
 *       one layer at a time is staged in F32 ({@link StagedPages}), written rows are quantized into
 *       the store.</li>
 * </ul>
 * In both, the manager must be built with the same layout, and with the store
 * ({@code builder.store(memory)}) so copy-on-write copies land in it.
 *
 * <h2>Sharing only written K/V</h2>
 * A session's full blocks serve other sessions once Jlama has written them (the manager publishes
 * at the sequence's next append, a commit or a free); a session whose forward pass failed part-way
 * is aborted when released, publishing nothing it may not have written ({@link PagedSession}).
 *
 * <h2>What it does not own</h2>
 * {@link #close()} releases every session's sequence; the manager and the memory belong to the
 * engine that made them.
 *
 * <h2>Limits</h2>
 * F32 working memory only (Jlama's attention writes rows of the working type); one node (no
 * distributed KV segments); no sliding window (Jlama's attention reads every position). Each is
 * checked when the cache is made.
 */
public final class PagedKvBufferCache extends KvBufferCache {
    private final AbstractModel model;
    private final KvCacheManager manager;
    private final KvPages pages;
    private final int kvDim;
    private final int pageBytes;
    private final Map<UUID, PagedSession> sessions = new ConcurrentHashMap<>();
    private final ThreadLocal<Recorded> recorded = new ThreadLocal<>();
    private volatile boolean closed;

    /** Token ids of the forward pass the model's embedding last saw on this thread. */
    private record Recorded(int start, int[] tokens) {}

    private PagedKvBufferCache(AbstractModel model, KvCacheManager manager, KvStore store, KvPages pages) {
        super(model);
        this.model = model;
        this.manager = manager;
        this.pages = pages;
        Config c = model.getConfig();
        this.kvDim = c.kvLength;
        checkCompatible(model, manager.layout(), store);
        // The bridged buffer's (unused) Jlama page table is sized from this; large enough for one page per layer group.
        long want = 2L * 4 * c.kvLength * c.numberOfLayers * (long) c.contextLength;
        this.pageBytes = (int) Math.max(2L * 4 * c.kvLength + 1, Math.min(Integer.MAX_VALUE, want));
    }

    /**
     * Longest page Jlama's attention is given by default, in tokens (the longest run
     * {@link JlamaBlockMemory} makes views of). Jlama pays a fixed cost per page and zeroes a score
     * buffer of (pages * page length) floats per head and step, so a few pages of hundreds of tokens
     * are best; its own cache uses pages of 8 MiB (512 tokens of a 4-layer, 512-wide model, 32 of a
     * 32-layer, 1024-wide one).
     */
    public static final int DEFAULT_MAX_PAGE_TOKENS = JlamaBlockMemory.MAX_RUN_TOKENS;

    /**
     * Serves {@code model} from {@code memory} in place (F32, zero copy), in pages of up to
     * {@link #DEFAULT_MAX_PAGE_TOKENS} tokens.
     *
     * @param model   the Jlama model, F32 working memory
     * @param manager the block manager, built with {@code memory}'s layout and with {@code memory} as its store
     * @param memory  the block memory Jlama's attention reads and writes directly
     * @return the cache (not yet installed: call {@link #install()})
     * @throws IllegalArgumentException if the layouts of {@code manager} and {@code memory} differ, the
     *         layout does not fit the model, the model's working type is not F32, or the model uses
     *         distributed KV segments
     */
    public static PagedKvBufferCache inPlace(AbstractModel model, KvCacheManager manager, JlamaBlockMemory memory) {
        return inPlace(model, manager, memory, DEFAULT_MAX_PAGE_TOKENS);
    }

    /**
     * As {@link #inPlace(AbstractModel, KvCacheManager, JlamaBlockMemory)}, with pages of at most
     * {@code maxPageTokens}: runs of consecutive blocks of a session's table are handed to Jlama as one
     * page (see {@link JlamaBlockMemory}); the block size, or any smaller value up to it, gives one page
     * per block.
     *
     * @param model         the Jlama model, F32 working memory
     * @param manager       the block manager, built with {@code memory} as its store
     * @param memory        the block memory
     * @param maxPageTokens longest page in tokens, rounded down to a power-of-two number of blocks
     *                      (values below one block count as one block)
     * @return the cache (not yet installed)
     * @throws IllegalArgumentException as {@link #inPlace(AbstractModel, KvCacheManager, JlamaBlockMemory)}
     */
    public static PagedKvBufferCache inPlace(AbstractModel model, KvCacheManager manager, JlamaBlockMemory memory,
                                             int maxPageTokens) {
        return new PagedKvBufferCache(model, manager, memory,
                new InPlacePages(memory, Math.max(maxPageTokens, memory.layout().blockTokens())));
    }

    /**
     * Serves {@code model} from any {@code store} (any format) through an F32 staging area, in pages
     * of up to {@link #DEFAULT_MAX_PAGE_TOKENS} tokens.
     *
     * @param model   the Jlama model, F32 working memory
     * @param manager the block manager, built with {@code store}'s layout and with {@code store} as its store
     * @param store   the KV store, any format; written rows are quantized into it
     * @return the cache (not yet installed: call {@link #install()})
     * @throws IllegalArgumentException if the layouts of {@code manager} and {@code store} differ, the
     *         layout does not fit the model, the model's working type is not F32, or the model uses
     *         distributed KV segments
     */
    public static PagedKvBufferCache staged(AbstractModel model, KvCacheManager manager, KvStore store) {
        return staged(model, manager, store, DEFAULT_MAX_PAGE_TOKENS);
    }

    /**
     * As {@link #staged(AbstractModel, KvCacheManager, KvStore)}; the staging area (logical order) is
     * handed to Jlama in pages of {@code maxPageTokens} rounded down to whole blocks (at least one).
     *
     * @param model         the Jlama model, F32 working memory
     * @param manager       the block manager, built with {@code store}
     * @param store         the KV store, any format
     * @param maxPageTokens longest page in tokens
     * @return the cache (not yet installed)
     * @throws IllegalArgumentException as {@link #staged(AbstractModel, KvCacheManager, KvStore)}
     */
    public static PagedKvBufferCache staged(AbstractModel model, KvCacheManager manager, KvStore store,
                                            int maxPageTokens) {
        return new PagedKvBufferCache(model, manager, store,
                new StagedPages(store, model.getConfig().contextLength, maxPageTokens));
    }

    /**
     * The layout a model needs: its layers, KV heads and head size, at {@code blockTokens} and
     * {@code format}. Build the manager and the store with it.
     *
     * @param model       the Jlama model whose configuration gives layers, KV heads and head size
     * @param blockTokens tokens per block
     * @param format      the element format the store keeps K/V in
     * @return the layout for {@code model}
     * @throws IllegalArgumentException if {@link KvLayout} refuses {@code blockTokens} or the model's dimensions
     */
    public static KvLayout layoutFor(AbstractModel model, int blockTokens, dev.kvcache.KvFormat format) {
        Config c = model.getConfig();
        return new KvLayout(c.numberOfLayers, c.numberOfKeyValueHeads, c.headSize, blockTokens, format);
    }

    private static void checkCompatible(AbstractModel model, KvLayout l, KvStore store) {
        Config c = model.getConfig();
        if (!store.layout().equals(l)) {
            throw new IllegalArgumentException("store layout " + store.layout() + " differs from the manager's " + l);
        }
        if (l.layers() != c.numberOfLayers || l.kvHeads() != c.numberOfKeyValueHeads || l.headDim() != c.headSize) {
            throw new IllegalArgumentException("layout " + l + " does not fit the model: layers " + c.numberOfLayers
                    + ", kv heads " + c.numberOfKeyValueHeads + ", head size " + c.headSize);
        }
        if (model.getWorkingDType() != DType.F32) {
            throw new IllegalArgumentException("working memory type " + model.getWorkingDType()
                    + " is not supported; load the model with DType.F32 working memory");
        }
        if (c.dctx().kvSegmentLength != c.kvLength || c.dctx().numberOfLayers != c.numberOfLayers) {
            throw new IllegalArgumentException("distributed KV segments (" + c.dctx().kvSegmentLength + " of " + c.kvLength
                    + " KV columns, " + c.dctx().numberOfLayers + " of " + c.numberOfLayers + " layers) are not supported");
        }
    }

    /**
     * Puts this cache into its model's {@code kvBufferCache} field (closing the one there) and wraps the
     * model's token embedding so forward passes record their token ids for {@link PagedSession}.
     * Installing again re-wraps the original embedding (never a wrapper of a wrapper).
     *
     * @return this cache
     * @throws IllegalStateException if the model has no input embedding, or Jlama's fields cannot be
     *         reached by reflection
     */
    public PagedKvBufferCache install() {
        try {
            Field cacheField = AbstractModel.class.getDeclaredField("kvBufferCache");
            Field embedField = AbstractModel.class.getDeclaredField("embedInput");
            cacheField.setAccessible(true);
            embedField.setAccessible(true);
            KvBufferCache old = (KvBufferCache) cacheField.get(model);
            EmbedInput embed = (EmbedInput) embedField.get(model);
            if (embed == null) {
                throw new IllegalStateException("model " + model.getClass().getName() + " has no input embedding to record tokens from");
            }
            if (embed instanceof Recorder r) embed = r.delegate;
            embedField.set(model, new Recorder(embed, this));
            cacheField.set(model, this);
            if (old != null && old != this) old.close();
            return this;
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot reach AbstractModel.kvBufferCache/embedInput of Jlama "
                    + model.getClass().getName(), e);
        }
    }

    /**
     * The model this cache serves.
     *
     * @return the Jlama model
     */
    public AbstractModel model() {
        return model;
    }

    /**
     * The block manager that holds the sessions' sequences.
     *
     * @return the manager (owned by the engine, not closed by {@link #close()})
     */
    public KvCacheManager manager() {
        return manager;
    }

    /**
     * The session for {@code id}, opened (empty, as a new manager sequence named {@code id.toString()})
     * on first use.
     *
     * @param id the Jlama session id
     * @return the live session for {@code id}
     * @throws IllegalStateException if this cache is closed
     * @throws IllegalArgumentException if the manager refuses to open the sequence (e.g. a sequence of
     *         that id is live in it already)
     */
    public PagedSession session(UUID id) {
        checkOpen();
        return sessions.computeIfAbsent(id, u -> new PagedSession(this, manager, pages, u, manager.open(u.toString()),
                false, kvDim, pageBytes));
    }

    /**
     * A new session {@code child} sharing every block of {@code parent} (copy-on-write, through
     * {@link KvCacheManager#fork}); nothing is copied until one of them writes into a shared block.
     *
     * @param parent the id of a live session whose last admission's K/V has been written
     * @param child  the new session's id, not a session of this cache yet
     * @return the new child session
     * @throws IllegalStateException if this cache is closed, or {@code parent}'s last forward pass has
     *         not written (or failed to write) the K/V of its last admission
     * @throws IllegalArgumentException if {@code parent} is not a live session or {@code child} exists
     */
    public PagedSession fork(UUID parent, UUID child) {
        checkOpen();
        PagedSession p = sessions.get(parent);
        if (p == null || !p.isLive()) {
            throw new IllegalArgumentException("no live session " + parent + " to fork");
        }
        if (sessions.containsKey(child)) {
            throw new IllegalArgumentException("session " + child + " already exists");
        }
        if (!p.admissionWritten()) {
            // the child would continue (and could publish) a prefix whose K/V is not all written
            throw new IllegalStateException("session " + parent + " has not written the K/V of its last admission"
                    + (p.isFailed() ? " (a forward pass failed)" : "") + "; fork it after its forward pass");
        }
        flushPending();
        PagedSession s = new PagedSession(this, manager, pages, child, manager.fork(p.sequence(), child.toString()), false,
                kvDim, pageBytes);
        sessions.put(child, s);
        return s;
    }

    /**
     * Frees session {@code id}'s sequence, its full blocks staying in the prefix cache; aborts it
     * instead (publishing nothing of its last admission) when its last forward pass failed or did not
     * write every row. Works on a closed cache too.
     *
     * @param id the session id
     * @return true if there was such a session, false when there is none
     */
    public boolean release(UUID id) {
        PagedSession s = sessions.get(id);
        if (s == null) return false;
        s.release();
        return true;
    }

    /**
     * The ids of the live sessions, ephemeral ones included.
     *
     * @return an immutable snapshot of the live session ids
     */
    public java.util.Set<UUID> sessionIds() {
        return java.util.Set.copyOf(sessions.keySet());
    }

    @Override
    public KvBuffer getKvBuffer(UUID id) {
        return session(id).kvBuffer();
    }

    @Override
    public KvBuffer getEphemeralKvBuffer() {
        checkOpen();
        UUID id = UUID.randomUUID();
        PagedSession s = new PagedSession(this, manager, pages, id, manager.open(id.toString()), true, kvDim, pageBytes);
        sessions.put(id, s);
        return s.kvBuffer();
    }

    /** Releases every session. The manager and the memory stay open (the engine owns them). Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        for (PagedSession s : new ArrayList<>(sessions.values())) s.release();
        recorded.remove();
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("PagedKvBufferCache is closed");
    }

    void forgetSession(PagedSession s) {
        sessions.remove(s.id(), s);
    }

    void flushPending() {
        pages.flush();
    }

    void enter(PagedSession s, int layer, int position) {
        pages.touch(s, layer, position);
    }

    /** Recorded token ids for positions from..through (through >= from), all of the recorded batch from {@code from}; null if none. */
    int[] takeRecorded(int from, int through) {
        Recorded r = recorded.get();
        if (r == null || r.start() > from || r.start() + r.tokens().length <= through) return null;
        recorded.remove();
        return Arrays.copyOfRange(r.tokens(), from - r.start(), r.tokens().length);
    }

    void record(int start, int[] tokens) {
        recorded.set(new Recorded(start, tokens.clone()));
    }

    /** Wraps the model's token embedding to note which ids each forward pass embeds, then embeds them unchanged. */
    private static final class Recorder implements EmbedInput {
        private final EmbedInput delegate;
        private final PagedKvBufferCache cache;

        Recorder(EmbedInput delegate, PagedKvBufferCache cache) {
            this.delegate = delegate;
            this.cache = cache;
        }

        @Override
        public AbstractTensor inputTokenToEmbedding(int inputToken, int position) {
            cache.record(position, new int[] {inputToken});
            return delegate.inputTokenToEmbedding(inputToken, position);
        }

        @Override
        public AbstractTensor batchInputsToEmbeddings(int[] inputTokens, int startPos) {
            cache.record(startPos, inputTokens);
            return delegate.batchInputsToEmbeddings(inputTokens, startPos);
        }
    }
}
