package dev.kvcache;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.locks.StampedLock;
import java.util.function.LongSupplier;

/**
 * The paged block manager: which physical block holds each sequence's tokens, which blocks are
 * shared, which hold reusable prefixes, and which may be reused next. A facade, in the manner of
 * vLLM v1's KV cache manager, over small package-private parts that each state their invariants:
 * {@link BlockPool} (reference counts, empty stack, eviction queue), {@link PrefixIndex} (what is
 * published and how a hit is proven), {@link Publisher} (when a block becomes hit-able),
 * {@link TenantAccounts} (who is charged), {@link Admission} (reservations and the watermark),
 * {@link AppendPlan} and {@link Appender} (one append, planned then applied), {@link Preemptor}
 * (victims, swap, records), {@link LeaseTracker} (idle leases) and {@link Notifications}
 * (listeners, told only once a change is complete).
 *
 * <h2>Model</h2>
 * KV memory is cut into {@code totalBlocks} blocks of {@code blockTokens} token slots. A sequence
 * owns a <em>block table</em>: logical block i holds its tokens {@code [i*B, (i+1)*B)} in physical
 * block {@code table[i]}. Blocks are reference counted; a fork shares every block of its parent,
 * and the first write into a shared, partly filled block copies it (copy-on-write) through the
 * {@link BlockCopier}. Blocks are <b>used</b> (held by a live sequence), <b>cached</b> (held by
 * none, published for prefix reuse) or <b>empty</b>; an empty block is always reused before a
 * cached one, and among cached blocks the {@link EvictionPolicy} decides (LRU by default, and
 * {@link #free} releases tail first, so a shared prefix outlives the suffixes behind it).
 *
 * <h2>The trust model</h2>
 * <em>A request is only ever served KV computed for its own prefix.</em> A prefix hit on block j
 * proves three things:
 * <ol>
 *   <li><b>same prefix</b>: the block's stored token ids equal the prompt's block j, its salt and
 *       scope (the tenant, unless the cache is {@linkplain Builder#shareAcrossTenants shared})
 *       equal the sequence's, and its recorded parent is exactly the physical block that the same
 *       lookup matched at j-1, at the generation it had when this block was published (a block's
 *       generation moves on whenever its publication ends). By induction from the root, the whole
 *       prefix is proven token by token; the 64-bit index hash (keyed by a per-manager random
 *       seed) only finds candidates, so a collision, forged or not, costs a miss;</li>
 *   <li><b>KV written</b>: blocks are published only once their KV exists ({@link Publisher}: at
 *       the sequence's next append, {@link #commit}, or {@link #free}; never after
 *       {@link #abort}, and never by a refused or failed call);</li>
 *   <li><b>not stale</b>: a cached block is unpublished before it is reused, and a preemption
 *       record resumes at most once ({@link Preemptor}).</li>
 * </ol>
 * Keys that leave the process (events, tiers) are 128-bit {@link PrefixKey}s (SHA-256), stable
 * across JVMs, computed only while someone listens.
 *
 * <h2>The engine protocol</h2>
 * {@code append} reserves slots; the engine writes K/V for the tokens it did not get as hits, then
 * decodes; the next {@code append} of that sequence publishes the blocks the previous one filled.
 * When a request ends, {@code free} publishes what is left; when it fails or is cancelled before
 * its KV was written, {@code abort} releases it without publishing anything pending. The plain
 * loop (append, write, decode, ..., free) is safe without further calls.
 *
 * <h2>All or nothing</h2>
 * A refused call (-1, null or an exception for bad input) changes nothing apart from refusal
 * counters. The one fallible step inside a change, a copy-on-write copy, runs before anything else
 * moves ({@link Appender}); tier calls (demotion, lookup, load) are caught and count as misses
 * ({@link Tiers}). Listeners and {@link KvStore#blockReleased} run after the change is
 * complete; one that throws is counted in {@link KvCacheLedger#callbackErrors()} and logged, and
 * cannot corrupt the accounting.
 *
 * <h2>Tenants</h2>
 * Each tenant's prefix cache is its own unless {@link Builder#shareAcrossTenants} says otherwise.
 * A tenant is charged once for every block any of its live sequences holds ({@link TenantAccounts}),
 * so no tenant can use up another's quota, and freeing returns exactly what was charged.
 *
 * <h2>Threads</h2>
 * Every method is safe from any thread: changes serialize on one {@link StampedLock} (built for a
 * single scheduler thread, where it is uncontended), {@link #stats()} reads optimistically, other
 * reads take the read lock, and {@link Sequence} reads are safe while other threads change or free
 * the sequence. Listeners run under the write lock and must not call back into the manager.
 *
 * <h2>What it does not own</h2>
 * A {@link KvStore} given to the builder is used for copy-on-write copies but not closed here.
 */
public final class KvCacheManager implements AutoCloseable {

    /** The {@code parentHash} of a sequence's first block in {@link KvCacheEvent.BlockStored}. */
    public static final long ROOT_HASH = 0x6b76636163686521L; // "kvcache!"

    private static final int MAX_WINDOWED_HINT = 1 << 24;

    private final KvLayout layout;
    private final int blockTokens;
    private final int totalBlocks;
    private final long totalSlots;
    private final boolean shareAcrossTenants;
    private final boolean window;
    private final StampedLock lock = new StampedLock();
    private final Counters counters = new Counters();
    private final Notifications notes;
    private final PrefixIndex index;
    private final TenantAccounts accounts;
    private final BlockPool pool;
    private final Publisher publisher;
    private final Admission admission;
    private final AppendPlan plan;
    private final Appender appender;
    private final Retention retention;
    private final Sequences sequences;
    private final Preemptor preemptor;
    private final LeaseTracker leases;
    private final Tiers tiers;
    private final int[] singleToken = new int[1];
    /** The caller's tokens or positions, copied under the lock (grown on demand, reused). */
    private int[] scratch = new int[64];
    private boolean closed;

    private KvCacheManager(Builder b, int blocks) {
        layout = b.layout;
        blockTokens = layout.blockTokens();
        totalBlocks = blocks;
        totalSlots = (long) blocks * blockTokens;
        shareAcrossTenants = b.shareAcrossTenants;
        window = b.windowTokens > 0;
        KvStore store = b.store;
        BlockCopier copier = b.copier != null ? b.copier : (store != null ? store::copyBlock : null);
        notes = new Notifications(store);
        index = new PrefixIndex(blocks, blockTokens, b.prefixCaching);
        accounts = new TenantAccounts(blocks, b.quotas);
        tiers = b.tiers.isEmpty() ? null : new Tiers(b.tiers, store, layout, blocks, accounts);
        pool = new BlockPool(blocks, b.policy, index, accounts, notes, tiers);
        publisher = new Publisher(index, pool, notes, counters, blockTokens, b.prefixCaching, tiers);
        admission = new Admission(blocks, b.watermark, b.requireMaxTokens, counters, notes);
        plan = new AppendPlan(pool, index, accounts, admission, blockTokens, b.prefixCaching, b.sinkTokens,
                b.windowTokens);
        retention = new Retention(pool, admission, counters, blockTokens);
        appender = new Appender(pool, retention, publisher, admission, plan, tiers, index, counters, copier,
                b.clock, blockTokens);
        leases = new LeaseTracker(b.clock, b.leaseNanos > 0 || b.clockSet, b.leaseNanos, layout.bytesPerBlock());
        sequences = new Sequences(this, lock, blockTokens, shareAcrossTenants, accounts, index, pool, admission,
                counters, leases);
        preemptor = new Preemptor(b.swapSpace, sequences, pool, admission, publisher, counters, notes,
                b.thrashLimit, blockTokens);
    }

    /**
     * A builder for a manager of {@code layout}.
     *
     * @param layout the layout of every block
     * @return a builder for a manager of {@code layout}
     */
    public static Builder builder(KvLayout layout) {
        return new Builder(layout);
    }

    /** Configures a {@link KvCacheManager}. */
    public static final class Builder {
        private final KvLayout layout;
        private int blocks = -1;
        private long budget = -1;
        private boolean prefixCaching = true;
        private EvictionPolicy policy = EvictionPolicy.lru();
        private KvStore store;
        private BlockCopier copier;
        private int sinkTokens;
        private int windowTokens;
        private LongSupplier clock = System::nanoTime;
        private boolean clockSet;
        private long leaseNanos;
        private double watermark;
        private boolean requireMaxTokens;
        private int thrashLimit = 3;
        private SwapSpace swapSpace;
        private final Map<String, Integer> quotas = new HashMap<>();
        private boolean shareAcrossTenants;
        private final List<KvTier> tiers = new ArrayList<>();

        private Builder(KvLayout layout) {
            this.layout = Objects.requireNonNull(layout, "layout");
        }

        /**
         * Pool size in blocks (1 to Integer.MAX_VALUE / blockTokens).
         *
         * @param n the number of blocks
         * @return this builder
         */
        public Builder blocks(int n) {
            if (n <= 0) {
                throw new IllegalArgumentException("blocks must be > 0, got " + n);
            }
            this.blocks = n;
            this.budget = -1;
            return this;
        }

        /**
         * Pool size as a memory budget: as many whole blocks as fit {@code bytes}.
         *
         * @param bytes the budget in bytes, at least one block
         * @return this builder
         */
        public Builder memoryBudget(long bytes) {
            if (bytes < layout.bytesPerBlock()) {
                throw new IllegalArgumentException("memoryBudget " + bytes
                        + " bytes is less than one block of " + layout.bytesPerBlock() + " bytes");
            }
            this.budget = bytes;
            this.blocks = -1;
            return this;
        }

        /**
         * Prefix caching on (the default) or off; off, no block is ever cached.
         *
         * @param on false to turn prefix caching off
         * @return this builder
         */
        public Builder prefixCaching(boolean on) {
            this.prefixCaching = on;
            return this;
        }

        /**
         * Which cached block is reused first; {@link EvictionPolicy#lru()} by default.
         *
         * @param p the policy
         * @return this builder
         */
        public Builder evictionPolicy(EvictionPolicy p) {
            this.policy = Objects.requireNonNull(p, "evictionPolicy");
            return this;
        }

        /**
         * The store holding the KV: copy-on-write copies happen in it, and its block count sizes the
         * pool unless {@link #blocks} or {@link #memoryBudget} says otherwise (then they must agree).
         *
         * @param s the store, of this builder's layout
         * @return this builder
         */
        public Builder store(KvStore s) {
            this.store = Objects.requireNonNull(s, "store");
            return this;
        }

        /**
         * Who copies blocks on copy-on-write when there is no store (default: the store, else queued for {@link #takePendingCopies()}).
         *
         * @param c the copier
         * @return this builder
         */
        public Builder blockCopier(BlockCopier c) {
            this.copier = Objects.requireNonNull(c, "blockCopier");
            return this;
        }

        /**
         * Keeps the first {@code sinkTokens} tokens (attention sinks) and the last
         * {@code windowTokens} tokens of every sequence; blocks wholly outside both are released
         * at the start of each append. See {@link KvCacheManager#append}.
         *
         * @param sinkTokens leading tokens always kept (attention sinks)
         * @param windowTokens trailing tokens kept
         * @return this builder
         */
        public Builder slidingWindow(int sinkTokens, int windowTokens) {
            if (sinkTokens < 0) {
                throw new IllegalArgumentException("sinkTokens must be >= 0, got " + sinkTokens);
            }
            if (windowTokens <= 0) {
                throw new IllegalArgumentException("windowTokens must be > 0, got " + windowTokens);
            }
            this.sinkTokens = sinkTokens;
            this.windowTokens = windowTokens;
            return this;
        }

        /**
         * The time source for leases, in nanoseconds ({@link System#nanoTime()} by default; tests pass
         * a fake). Setting one also tracks every sequence's last touch for
         * {@link KvCacheManager#idleSequences}; otherwise only sequences with a lease are tracked,
         * so the decode path reads no clock.
         *
         * @param nanoTime a nanosecond clock
         * @return this builder
         */
        public Builder clock(LongSupplier nanoTime) {
            this.clock = Objects.requireNonNull(nanoTime, "clock");
            this.clockSet = true;
            return this;
        }

        /**
         * Default idle lease: {@link KvCacheManager#reapIdle()} releases sequences untouched for longer.
         *
         * @param lease the default lease, positive
         * @return this builder
         */
        public Builder idleLease(Duration lease) {
            if (lease.isNegative() || lease.isZero()) {
                throw new IllegalArgumentException("idleLease must be > 0, got " + lease);
            }
            this.leaseNanos = lease.toNanos();
            return this;
        }

        /**
         * Keeps {@code fraction} of the pool (0 to 1) free for running decodes: a new sequence's first
         * append is refused ({@link Refusal#WATERMARK}) if it would leave fewer free blocks.
         *
         * @param fraction the fraction of the pool to keep free, 0 to 1
         * @return this builder
         */
        public Builder admissionWatermark(double fraction) {
            if (!(fraction >= 0 && fraction < 1)) {
                throw new IllegalArgumentException("admissionWatermark must be in [0, 1), got " + fraction);
            }
            this.watermark = fraction;
            return this;
        }

        /**
         * No-evict mode: every sequence must be opened with {@link SequenceOptions#maxTokens()} and is
         * admitted only when blocks for all of it can be set aside, so running sequences never need
         * preemption.
         *
         * @param on true to admit only sequences whose maximum fits whole
         * @return this builder
         */
        public Builder requireMaxTokens(boolean on) {
            this.requireMaxTokens = on;
            return this;
        }

        /**
         * Caps the blocks charged to {@code tenant} at once.
         *
         * @param tenant the tenant's name
         * @param maxBlocks the most blocks charged to it at once
         * @return this builder
         */
        public Builder tenantQuota(String tenant, int maxBlocks) {
            Objects.requireNonNull(tenant, "tenant");
            if (maxBlocks < 0) {
                throw new IllegalArgumentException("quota of tenant '" + tenant + "' must be >= 0, got " + maxBlocks);
            }
            quotas.put(tenant, maxBlocks);
            return this;
        }

        /**
         * Lets sequences of different tenants hit each other's cached prefixes (same salt, same
         * tokens). Off by default: each tenant's prefix cache is its own, since a shared cache tells
         * one tenant, through its hit rate or time to first token, what another has sent.
         *
         * @param on true to share the prefix cache across tenants
         * @return this builder
         */
        public Builder shareAcrossTenants(boolean on) {
            this.shareAcrossTenants = on;
            return this;
        }

        /**
         * Adds a tier below the store (call again for the next one down): published blocks evicted
         * for reuse are copied to the first tier, and a prompt's blocks the store no longer holds
         * are looked for in the tiers, in this order, and loaded instead of recomputed. Needs a
         * {@link #store} that can {@linkplain KvStore#exportBlock export} its blocks, and prefix
         * caching. The manager does not close its tiers.
         *
         * @param t the tier, of this builder's layout
         * @return this builder
         */
        public Builder tier(KvTier t) {
            tiers.add(Objects.requireNonNull(t, "tier"));
            return this;
        }

        /**
         * A sequence preempted this many times is no longer chosen as a victim (default 3).
         *
         * @param preemptions preemptions after which a sequence is no longer a victim
         * @return this builder
         */
        public Builder thrashLimit(int preemptions) {
            if (preemptions <= 0) {
                throw new IllegalArgumentException("thrashLimit must be > 0, got " + preemptions);
            }
            this.thrashLimit = preemptions;
            return this;
        }

        /**
         * Where {@link PreemptionMode#SWAP} moves blocks.
         *
         * @param s the swap space, blocks of this builder's layout
         * @return this builder
         */
        public Builder swapSpace(SwapSpace s) {
            this.swapSpace = Objects.requireNonNull(s, "swapSpace");
            return this;
        }

        /**
         * The manager.
         *
         * @return a new manager of this builder's layout and settings
         * @throws IllegalArgumentException a setting contradicts another (the message names both)
         */
        public KvCacheManager build() {
            int n;
            if (blocks > 0) {
                n = blocks;
            } else if (budget > 0) {
                long fit = budget / layout.bytesPerBlock();
                n = (int) Math.min(fit, Integer.MAX_VALUE);
            } else if (store != null) {
                n = store.blocks();
            } else {
                throw new IllegalStateException("pool size unknown: call blocks(n), memoryBudget(bytes) or store(s)");
            }
            long slots = (long) n * layout.blockTokens();
            if (slots > Integer.MAX_VALUE) {
                throw new IllegalArgumentException(n + " blocks of " + layout.blockTokens()
                        + " tokens is " + slots + " slots; the limit is " + Integer.MAX_VALUE);
            }
            if (!tiers.isEmpty() && (store == null || !prefixCaching)) {
                throw new IllegalStateException("tiers " + tiers.stream().map(KvTier::name).toList()
                        + " need a store (Builder.store) and prefix caching: they hold a store's published blocks");
            }
            if (store != null) {
                if (!store.layout().equals(layout)) {
                    throw new IllegalArgumentException("store layout " + store.layout()
                            + " differs from manager layout " + layout);
                }
                if (store.blocks() < n) {
                    throw new IllegalArgumentException("pool of " + n + " blocks exceeds the store's "
                            + store.blocks() + " blocks");
                }
            }
            return new KvCacheManager(this, n);
        }
    }

    // ------------------------------------------------------------------ sequences

    /**
     * The layout this manager sizes blocks with.
     *
     * @return the layout this manager sizes blocks with
     */
    public KvLayout layout() {
        return layout;
    }

    /**
     * A new empty sequence with default options; IllegalArgumentException if {@code id} is live.
     *
     * @param id the new sequence's id, not live now
     * @return a new empty sequence with default options; IllegalArgumentException if {@code id} is live
     */
    public Sequence open(String id) {
        return open(id, SequenceOptions.DEFAULT);
    }

    /**
     * A new empty sequence; IllegalArgumentException if {@code id} is live, or if
     * {@code expectedTokens} exceeds the pool's token slots (no sequence could ever reach it; with a
     * sliding window, which lets a sequence outgrow the pool, the hint is capped at 2^24 tokens). A
     * {@code maxTokens} beyond what the pool can set aside is refused at the first append
     * ({@link Refusal#RESERVED}).
     *
     * @param id the new sequence's id, not live now
     * @param options priority, salt, tenant, expected and maximum tokens, lease
     * @return a new empty sequence; IllegalArgumentException if {@code id} is live, or if {@code expectedTokens} exceeds the pool's token slots (no sequence could ever reach it; with a sliding window, which lets a sequence outgrow the pool, the hint is capped at 2^24 tokens)
     */
    public Sequence open(String id, SequenceOptions options) {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(options, "options");
        long st = lock.writeLock();
        try {
            checkOpen();
            if (sequences.isLive(id)) {
                throw new IllegalArgumentException("sequence id '" + id + "' is already live");
            }
            if (!window && options.expectedTokens() > totalSlots) {
                throw new IllegalArgumentException("sequence '" + id + "': expectedTokens " + options.expectedTokens()
                        + " exceeds the pool's " + totalSlots + " token slots");
            }
            if (admission.requireMaxTokens() && options.maxTokens() == 0) {
                throw new IllegalArgumentException("sequence '" + id
                        + "' has maxTokens 0: this manager admits only sequences with a maximum length");
            }
            // a windowed sequence may outgrow the pool; its hint is capped (arrays double past it)
            int expected = window ? Math.min(options.expectedTokens(), MAX_WINDOWED_HINT) : options.expectedTokens();
            PagedSequence q = sequences.create(id, options, Math.max(expected, Math.min(options.maxTokens(), 1 << 16)));
            sequences.register(q);
            return q;
        } finally {
            unlock(st);
        }
    }

    /**
     * The live sequence with this id, or null.
     *
     * @param id a sequence id
     * @return the live sequence with this id, or null
     */
    public Sequence sequence(String id) {
        long st = lock.readLock();
        try {
            return sequences.get(id);
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Appends one token; see {@link #append(Sequence, int[], int, int)}.
     *
     * @param s a live sequence of this manager
     * @param tokenId the token id, >= 0
     * @return -1 when refused (nothing changed), else the leading tokens served from the cache (0 for a single token)
     */
    public int append(Sequence s, int tokenId) {
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            if (tokenId < 0) {
                throw new IllegalArgumentException("token id must be >= 0, got " + tokenId + " at index 0");
            }
            singleToken[0] = tokenId;
            return appendLocked(q, singleToken, 0, 1);
        } finally {
            unlock(st);
        }
    }

    /**
     * Appends {@code tokenIds}; see {@link #append(Sequence, int[], int, int)}.
     *
     * @param s a live sequence of this manager
     * @param tokenIds the token ids, each >= 0
     * @return -1 when refused (nothing changed), else how many leading tokens of this call already have their KV in the cache
     */
    public int append(Sequence s, int... tokenIds) {
        Objects.requireNonNull(tokenIds, "tokenIds");
        return append(s, tokenIds, 0, tokenIds.length);
    }

    /**
     * Reserves slots for {@code length} tokens of {@code tokenIds} starting at {@code offset} and
     * records their ids. First publishes the blocks the previous append of {@code s} filled (the
     * engine has written their KV by now). With a sliding window, releases every block whose tokens
     * all lie outside the first {@code sinkTokens} and the last {@code windowTokens} tokens of the
     * length before this call. Copies a shared, partly filled last block (copy-on-write) before
     * writing into it; if that copy throws, the exception propagates and nothing has changed.
     *
     * @param s a live sequence of this manager
     * @param tokenIds an array holding the token ids (each >= 0)
     * @param offset where the tokens start in {@code tokenIds}
     * @param length how many tokens to append
     * @return -1 when the append is refused ({@link #lastRefusal()} says why; nothing has changed);
     * otherwise how many leading tokens of this call already have their KV in the cache (prefix
     * hits), so the engine computes KV only for the rest
     */
    public int append(Sequence s, int[] tokenIds, int offset, int length) {
        Objects.requireNonNull(tokenIds, "tokenIds");
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            Objects.checkFromIndexSize(offset, length, tokenIds.length);
            // one read of the caller's array: what is checked, hashed and recorded cannot differ
            // even if another thread changes the array meanwhile
            int[] tokens = copyChecked(tokenIds, offset, length);
            return appendLocked(q, tokens, 0, length);
        } finally {
            unlock(st);
        }
    }

    private int appendLocked(PagedSequence q, int[] tokens, int off, int n) {
        if (n == 0) {
            return 0;
        }
        Refusal why = plan.plan(q, tokens, off, n);
        return why == Refusal.NONE ? appender.apply(q, tokens, off, n) : admission.refuse(q, n, why, pool.free());
    }

    /**
     * What {@link #append(Sequence, int...) append(s, tokenIds)} would do now, without doing it.
     * Counters, events and {@link #lastRefusal()} are untouched. The same checks as append.
     *
     * @param s a live sequence of this manager
     * @param tokenIds the token ids, each >= 0
     * @return what {@link #append(Sequence, int...) append(s, tokenIds)} would do now, without doing it
     */
    public AppendEstimate estimateAppend(Sequence s, int... tokenIds) {
        Objects.requireNonNull(tokenIds, "tokenIds");
        long st = lock.writeLock(); // the plan is one reused object
        try {
            PagedSequence q = checkLive(s);
            int n = tokenIds.length;
            int[] tokens = copyChecked(tokenIds, 0, n);
            if (n == 0) {
                return new AppendEstimate(Refusal.NONE, 0, 0, 0, 0, pool.free());
            }
            Refusal why = plan.plan(q, tokens, 0, n);
            return new AppendEstimate(why, plan.demand, plan.hitsFromCache, plan.hits * blockTokens, plan.winFreed,
                    plan.supply);
        } finally {
            unlock(st);
        }
    }

    /**
     * Says that the KV of every token appended to {@code s} so far is written: the full blocks its
     * last append filled become hit-able now rather than at its next append or {@link #free}.
     *
     * @param s a live sequence of this manager
     */
    public void commit(Sequence s) {
        long st = lock.writeLock();
        try {
            publisher.commit(checkLive(s));
        } finally {
            unlock(st);
        }
    }

    /**
     * A new sequence sharing every block of {@code parent} (reference counts go up; nothing is
     * copied until one of them writes into the shared partial block). It continues the parent's
     * prefix chain, pending blocks included: whichever of them commits first publishes them.
     *
     * @param parent the live sequence whose blocks the child shares
     * @param childId the child's id, not live now
     * @return a new sequence sharing every block of {@code parent} (reference counts go up; nothing is copied until one of them writes into the shared partial block)
     */
    public Sequence fork(Sequence parent, String childId) {
        Objects.requireNonNull(childId, "childId");
        long st = lock.writeLock();
        try {
            PagedSequence p = checkLive(parent);
            if (sequences.isLive(childId)) {
                throw new IllegalArgumentException("sequence id '" + childId + "' is already live");
            }
            PagedSequence c = sequences.create(childId, p.options, p.tenant, p.length);
            c.forked = true;
            c.ensureCapacity(p.length, p.tableSize);
            System.arraycopy(p.tokens, 0, c.tokens, 0, p.length);
            System.arraycopy(p.table, 0, c.table, 0, p.tableSize);
            c.length = p.length;
            c.tableSize = p.tableSize;
            c.held = p.held;
            c.windowReleasedTo = p.windowReleasedTo;
            c.cached = p.cached;
            c.copyChain(p);
            c.admission = ++counters.admissions;
            if (p.dropped != null) {
                c.dropped = p.dropped.clone();
                c.droppedCount = p.droppedCount;
            }
            for (int i = 0; i < p.tableSize; i++) {
                if (p.table[i] >= 0) {
                    pool.acquire(p.table[i], c);
                }
            }
            sequences.register(c);
            counters.liveTokens += c.length;
            c.tenant.liveTokens += c.length;
            counters.forks++;
            return c;
        } finally {
            unlock(st);
        }
    }

    /**
     * Publishes what {@code s}'s last append filled (its KV is written: the request ran to its
     * end), then releases every block, tail first. IllegalStateException if already freed.
     *
     * @param s a live sequence of this manager
     */
    public void free(Sequence s) {
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            publisher.commit(q);
            sequences.release(q);
        } finally {
            unlock(st);
        }
    }

    /**
     * Releases {@code s} like {@link #free} but publishes nothing it had not committed: for a
     * request that failed or was cancelled before its last append's KV was written.
     *
     * @param s a live sequence of this manager
     */
    public void abort(Sequence s) {
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            counters.abortedBlocks += publisher.pending(q);
            sequences.release(q);
        } finally {
            unlock(st);
        }
    }

    // ------------------------------------------------------------------ lifecycle levers

    /**
     * Why the last append or resume on this manager was refused ({@link Refusal#NONE} after a success).
     *
     * @return why the last append or resume on this manager was refused ({@link Refusal#NONE} after a success)
     */
    public Refusal lastRefusal() {
        long st = lock.readLock();
        try {
            return counters.lastRefusal;
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Marks {@code s} as active now (appends do this themselves): its idle lease starts again.
     *
     * @param s a live sequence of this manager
     */
    public void touch(Sequence s) {
        long st = lock.writeLock();
        try {
            leases.touch(checkLive(s));
        } finally {
            unlock(st);
        }
    }

    /**
     * Releases every live sequence untouched for longer than its lease; see {@link #reapIdle(boolean)}.
     *
     * @return what each released sequence held
     */
    public List<IdleRelease> reapIdle() {
        return reapIdle(false);
    }

    /**
     * Releases every live sequence that has not been touched for longer than its lease and says
     * what each held (an idle sequence's KV was written long ago, so its blocks are published
     * first). With {@code offload}, each whose blocks fit the {@link Builder#swapSpace swap space}
     * is copied there first and comes back through {@link #resume} ({@link IdleRelease#offloaded()});
     * a swap space that refuses or throws leaves that sequence released without offload.
     *
     * @param offload true to keep each released sequence's blocks in the swap space (a record {@link #resume} takes) instead of dropping them
     * @return what each released sequence held (with its offloaded record when {@code offload})
     */
    public List<IdleRelease> reapIdle(boolean offload) {
        long st = lock.writeLock();
        try {
            checkOpen();
            List<IdleRelease> out = leases.idle(sequences.all(), true, 0L);
            for (int i = 0; i < out.size(); i++) {
                IdleRelease r = out.get(i);
                PagedSequence q = sequences.get(r.id());
                publisher.commit(q);
                PreemptedSequence record = offload ? preemptor.offload(q) : null;
                if (record != null) {
                    r = r.withOffloaded(record);
                    out.set(i, r);
                }
                q.tenant.idleReleases++;
                counters.idleReleasedSequences++;
                counters.idleReleasedBlocks += r.blocks();
                sequences.release(q);
                if (notes.listening()) {
                    notes.event(new KvCacheEvent.IdleReleased(r));
                }
            }
            return out;
        } finally {
            unlock(st);
        }
    }

    /**
     * The live sequences untouched for longer than {@code minIdle}, without releasing them.
     *
     * @param minIdle the least idle time to report
     * @return the live sequences untouched for longer than {@code minIdle}, without releasing them
     */
    public List<IdleRelease> idleSequences(Duration minIdle) {
        long st = lock.readLock();
        try {
            return leases.idle(sequences.all(), false, minIdle.toNanos());
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Sequences to preempt so that at least {@code blocksNeeded} blocks come free, in the order to
     * preempt them: sequences of tenants above their fair share first, then lowest priority, then
     * newest admitted. Never {@code requester}, never a guaranteed sequence, never one already
     * preempted {@code thrashLimit} times. May return fewer than needed.
     *
     * @param blocksNeeded blocks the requester needs
     * @param requester the sequence that needs them (never chosen), or null
     * @return sequences to preempt so that at least {@code blocksNeeded} blocks come free, in the order to preempt them: sequences of tenants above their fair share first, then lowest priority, then newest admitted
     */
    public List<Sequence> preemptionVictims(int blocksNeeded, Sequence requester) {
        if (blocksNeeded < 0) {
            throw new IllegalArgumentException("blocksNeeded must be >= 0, got " + blocksNeeded);
        }
        long st = lock.readLock();
        try {
            checkOpen();
            int active = accounts.activeTenants();
            return preemptor.victims(blocksNeeded, requester, active == 0 ? totalBlocks : totalBlocks / active);
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * How many times sequence id {@code id} has been preempted: the count of its live sequence or
     * of its outstanding records (the thrash guard's count). 0 once it was freed for good.
     *
     * @param id a sequence id, live or preempted
     * @return how many times sequence id {@code id} has been preempted
     */
    public int preemptionCount(String id) {
        long st = lock.readLock();
        try {
            return preemptor.count(id);
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Takes {@code s} out of the cache and returns every block it held. RECOMPUTE frees the blocks
     * (committed full ones stay in the prefix cache until reused); SWAP first copies each held block
     * to the {@link Builder#swapSpace swap space}, all or nothing (IllegalStateException, nothing
     * changed, if there is no swap space or it lacks room). Blocks its last append filled are not
     * published: a scheduler may preempt before the engine wrote them.
     *
     * @param s a live sequence of this manager
     * @param mode RECOMPUTE (drop the KV) or SWAP (move it to the swap space)
     * @return the record that {@link #resume} takes to bring the sequence back
     */
    public PreemptedSequence preempt(Sequence s, PreemptionMode mode) {
        Objects.requireNonNull(mode, "mode");
        long st = lock.writeLock();
        try {
            return preemptor.preempt(checkLive(s), mode);
        } finally {
            unlock(st);
        }
    }

    /**
     * Brings a preempted sequence back under its id, all or nothing: null (and nothing changed but
     * the refusal counters) when its blocks do not fit now; the record then stays resumable. After
     * RECOMPUTE the engine recomputes KV for positions {@code cachedTokens()} to {@code length()-1};
     * after SWAP nothing. A record resumes at most once: IllegalStateException for one already
     * resumed or discarded, or not issued by this manager; IllegalArgumentException if the id is live.
     *
     * @param p a record this manager issued and that was not resumed or discarded
     * @return the live sequence again, or null when its blocks do not fit now (nothing changed)
     */
    public Sequence resume(PreemptedSequence p) {
        Objects.requireNonNull(p, "preempted");
        long st = lock.writeLock();
        try {
            checkOpen();
            return preemptor.resume(p, this::appendLocked);
        } finally {
            unlock(st);
        }
    }

    /**
     * Gives up an outstanding preemption record: its swapped blocks are freed and it can no longer resume.
     *
     * @param p a record this manager issued
     */
    public void discard(PreemptedSequence p) {
        Objects.requireNonNull(p, "preempted");
        long st = lock.writeLock();
        try {
            preemptor.discard(p);
        } finally {
            unlock(st);
        }
    }

    /**
     * Drops the tokens at {@code positions} of {@code s} (a retention policy's choice: heavy
     * hitters, SnapKV); see {@link Retention}. Dropped tokens read as {@code slot(p) == -1}; a full
     * block whose tokens are all dropped is released at once. Positions already dropped are ignored.
     * IllegalArgumentException naming a position outside 0..length-1, with nothing dropped.
     *
     * @param s a live sequence of this manager
     * @param positions an array holding the positions to drop
     * @param offset where the positions start in {@code positions}
     * @param count how many positions
     * @return blocks released by this call
     */
    public int dropTokens(Sequence s, int[] positions, int offset, int count) {
        Objects.requireNonNull(positions, "positions");
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            Objects.checkFromIndexSize(offset, count, positions.length);
            int[] copy = scratch(count);
            for (int i = 0; i < count; i++) {
                int p = positions[offset + i]; // read once: checked and dropped are the same value
                if (p < 0 || p >= q.length) {
                    throw new IllegalArgumentException("position " + p + " outside 0.." + (q.length - 1)
                            + " of sequence '" + q.id + "'");
                }
                copy[i] = p;
            }
            int released = retention.drop(q, copy, 0, count);
            if (notes.listening()) {
                notes.event(new KvCacheEvent.TokensDropped(q.id, count, released));
            }
            return released;
        } finally {
            unlock(st);
        }
    }

    /**
     * Per-tenant shares and counters, by tenant name.
     *
     * @return per-tenant shares and counters, by tenant name
     */
    public List<TenantStats> tenantStats() {
        long st = lock.readLock();
        try {
            return accounts.stats();
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * One tenant's share, or null if no sequence of it was ever opened.
     *
     * @param tenant the tenant's name
     * @return one tenant's share, or null if no sequence of it was ever opened
     */
    public TenantStats tenantStats(String tenant) {
        long st = lock.readLock();
        try {
            TenantAccounts.Tenant t = accounts.find(tenant);
            return t == null ? null : t.stats();
        } finally {
            lock.unlockRead(st);
        }
    }

    // ------------------------------------------------------------------ prefix cache

    /**
     * Leading tokens of {@code tokenIds} whose KV is cached now (in full blocks, cache salt 0, the
     * default tenant), whether held by live sequences or only cached. Read-only; safe from any
     * thread. Unlike {@code append} it does not hold back the last token.
     *
     * @param tokenIds the token ids, each >= 0
     * @return leading tokens of {@code tokenIds} whose KV is cached now (in full blocks, cache salt 0, the default tenant), whether held by live sequences or only cached
     */
    public int cachedPrefixLength(int... tokenIds) {
        return cachedPrefixLength(SequenceOptions.DEFAULT_TENANT, 0L, tokenIds);
    }

    /**
     * {@link #cachedPrefixLength(int...)} for sequences of the default tenant opened with {@code cacheSalt}.
     *
     * @param cacheSalt the cache salt the sequences were opened with
     * @param tokenIds the token ids, each >= 0
     * @return {@link #cachedPrefixLength(int...)} for sequences of the default tenant opened with {@code cacheSalt}
     */
    public int cachedPrefixLength(long cacheSalt, int... tokenIds) {
        return cachedPrefixLength(SequenceOptions.DEFAULT_TENANT, cacheSalt, tokenIds);
    }

    /**
     * {@link #cachedPrefixLength(int...)} for sequences of {@code tenant} opened with {@code cacheSalt}.
     *
     * @param tenant the tenant whose prefix cache to look in
     * @param cacheSalt the cache salt the sequences were opened with
     * @param tokenIds the token ids, each >= 0
     * @return {@link #cachedPrefixLength(int...)} for sequences of {@code tenant} opened with {@code cacheSalt}
     */
    public int cachedPrefixLength(String tenant, long cacheSalt, int... tokenIds) {
        Objects.requireNonNull(tenant, "tenant");
        Objects.requireNonNull(tokenIds, "tokenIds");
        long st = lock.readLock();
        try {
            if (!publisher.enabled() || closed) {
                return 0;
            }
            int scope = PrefixIndex.SHARED_SCOPE;
            if (!shareAcrossTenants) {
                TenantAccounts.Tenant t = accounts.find(tenant);
                if (t == null) {
                    return 0;
                }
                scope = t.index;
            }
            return index.match(cacheSalt, scope, tokenIds, 0, tokenIds.length / blockTokens, null, null) * blockTokens;
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Drops every cached block's content (they become empty) and every published hash.
     *
     * @return false, and nothing changes, while any block is in use
     */
    public boolean resetPrefixCache() {
        long st = lock.writeLock();
        try {
            checkOpen();
            if (pool.used() > 0) {
                return false;
            }
            pool.clearCached();
            if (notes.listening()) {
                notes.event(new KvCacheEvent.AllBlocksCleared());
            }
            return true;
        } finally {
            unlock(st);
        }
    }

    // ------------------------------------------------------------------ observation

    /**
     * A consistent snapshot; safe from any thread.
     *
     * @return a consistent snapshot of the block counts and counters
     */
    public KvCacheStats stats() {
        long st = lock.tryOptimisticRead();
        KvCacheStats s = snapshot();
        if (!lock.validate(st)) {
            st = lock.readLock();
            try {
                s = snapshot();
            } finally {
                lock.unlockRead(st);
            }
        }
        return s;
    }

    private KvCacheStats snapshot() {
        Counters c = counters;
        return new KvCacheStats(totalBlocks, pool.used(), pool.cached(), pool.empty(), sequences.size(),
                c.liveTokens, c.prefixQueryTokens, c.prefixHitTokens, c.allocationFailures, pool.evicted());
    }

    /**
     * The stats plus the costs and reliefs of each mechanism, with bytes; safe from any thread.
     *
     * @return the ledger: the stats plus the costs and reliefs of each mechanism
     */
    public KvCacheLedger ledger() {
        long st = lock.readLock();
        try {
            Counters c = counters;
            return new KvCacheLedger(snapshot(), layout.bytesPerBlock(), blockTokens, c.forks,
                    c.copyOnWrites, c.windowReleasedBlocks, c.appendedTokens, c.publishedBlocks, pool.peakUsed(),
                    admission.outstanding(), c.watermarkRefusals, c.reservationRefusals, c.quotaRefusals,
                    c.preemptions, c.recomputedTokens, c.swappedOutBytes, c.swappedInBytes,
                    c.idleReleasedSequences, c.idleReleasedBlocks, leases.idleHeldBlocks(sequences.all()),
                    c.droppedTokens, c.retentionReleasedBlocks, c.abortedBlocks, c.copyFailures, c.swapFailures,
                    notes.errors(), preemptor.outstandingRecords(),
                    tiers == null ? 0 : tiers.demoted(), tiers == null ? 0 : tiers.promoted(), c.tierHitTokens,
                    tiers == null ? 0 : tiers.loadMisses(), tiers == null ? 0 : tiers.errors(),
                    tiers == null ? List.of() : tiers.stats());
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Registers a listener for {@link KvCacheEvent}s; it runs under the manager's lock and must not call back into it.
     *
     * @param l the listener; called under the lock, it must not call back into the manager
     */
    public void addListener(KvCacheListener l) {
        notes.addListener(Objects.requireNonNull(l, "listener"));
    }

    /**
     * Unregisters a listener; false if it was not registered.
     *
     * @param l a registered listener
     * @return false if it was not registered
     */
    public boolean removeListener(KvCacheListener l) {
        return notes.removeListener(l);
    }

    /**
     * Copy-on-write copies not yet done, when there is neither a store nor a {@link BlockCopier}:
     * pairs {@code [src0, dst0, src1, dst1, ...]} in the order they must happen. Clears them.
     *
     * @return copy-on-write copies not yet done, when there is neither a store nor a {@link BlockCopier}: pairs {@code [src0, dst0, src1, dst1, ...]} in the order they must happen
     */
    public int[] takePendingCopies() {
        long st = lock.writeLock();
        try {
            return appender.takePendingCopies();
        } finally {
            unlock(st);
        }
    }

    /**
     * The ids of the live sequences, in no particular order.
     *
     * @return the ids of the live sequences, in no particular order
     */
    public List<String> liveSequenceIds() {
        long st = lock.readLock();
        try {
            return sequences.ids();
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Reference count of block {@code block} (for tests and diagnostics).
     *
     * @param block a block id, 0 to {@code totalBlocks - 1}
     * @return reference count of block {@code block} (for tests and diagnostics)
     */
    public int refCount(int block) {
        Objects.checkIndex(block, totalBlocks);
        long st = lock.readLock();
        try {
            return pool.refCount(block);
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * True when block {@code block} holds published (hit-able) content.
     *
     * @param block a block id, 0 to {@code totalBlocks - 1}
     * @return true when block {@code block} holds published (hit-able) content
     */
    public boolean isPublished(int block) {
        Objects.checkIndex(block, totalBlocks);
        long st = lock.readLock();
        try {
            return index.isPublished(block);
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * The {@link PrefixKey} block {@code block} is published under; null when unpublished or published while nobody listened.
     *
     * @param block a block id, 0 to {@code totalBlocks - 1}
     * @return the {@link PrefixKey} block {@code block} is published under; null when unpublished or published while nobody listened
     */
    public PrefixKey prefixKey(int block) {
        Objects.checkIndex(block, totalBlocks);
        long st = lock.readLock();
        try {
            return index.key(block);
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Frees every live sequence (publishing nothing pending) and closes the manager. Throws
     * IllegalStateException naming the sequences that were still live (they are released all the
     * same), so a leak is never silent. Idempotent once closed cleanly. Does not close the store.
     */
    @Override
    public void close() {
        long st = lock.writeLock();
        List<String> leaked;
        int leakedBlocks;
        try {
            if (closed) {
                return;
            }
            leaked = sequences.ids();
            leakedBlocks = pool.used();
            for (PagedSequence q : new ArrayList<>(sequences.all())) {
                sequences.release(q);
            }
            closed = true;
        } finally {
            unlock(st);
        }
        if (!leaked.isEmpty()) {
            throw new IllegalStateException("KvCacheManager closed with " + leaked.size()
                    + " live sequence(s) holding " + leakedBlocks + " block(s): " + leaked);
        }
    }

    // ------------------------------------------------------------------ helpers

    /** Ends a change: tells listeners and the store what it did, then unlocks. */
    private void unlock(long stamp) {
        try {
            notes.flush();
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /** {@code tokens[offset, offset+length)} read once into the reusable scratch, each checked. */
    private int[] copyChecked(int[] tokens, int offset, int length) {
        int[] out = scratch(length);
        for (int i = 0; i < length; i++) {
            int t = tokens[offset + i];
            if (t < 0) {
                throw new IllegalArgumentException("token id must be >= 0, got " + t + " at index " + (offset + i));
            }
            out[i] = t;
        }
        return out;
    }

    private int[] scratch(int n) {
        if (scratch.length < n) {
            scratch = new int[Math.max(n, scratch.length * 2)];
        }
        return scratch;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("KvCacheManager is closed");
        }
    }

    private PagedSequence checkLive(Sequence s) {
        Objects.requireNonNull(s, "sequence");
        checkOpen();
        if (!(s instanceof PagedSequence q) || q.owner != this) {
            throw new IllegalArgumentException("sequence '" + s.id() + "' does not belong to this manager");
        }
        if (!q.live) {
            throw new IllegalStateException("sequence '" + q.id + "' was already freed");
        }
        return q;
    }
}
