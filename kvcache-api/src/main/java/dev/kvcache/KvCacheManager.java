package dev.kvcache;

import org.agrona.collections.Long2LongHashMap;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.StampedLock;
import java.util.function.LongSupplier;

/**
 * The paged block manager: which physical block holds each sequence's tokens, which blocks are
 * shared, which hold reusable prefixes, and which may be reused next.
 *
 * <h2>Model</h2>
 * KV memory is cut into {@code totalBlocks} blocks of {@code blockTokens} token slots. A sequence
 * owns a <em>block table</em>: logical block i holds its tokens {@code [i*B, (i+1)*B)} in physical
 * block {@code table[i]}. Blocks are reference counted; a fork shares every block of its parent,
 * and the first write into a shared, partly filled block copies it (copy-on-write) through the
 * {@link BlockCopier}. A sequence wastes at most {@code B-1} slots (its last block), and any free
 * block serves any sequence, so there is no external fragmentation.
 *
 * <h2>Three kinds of block</h2>
 * <ul>
 *   <li><b>used</b>: held by at least one live sequence ({@code refCount > 0});</li>
 *   <li><b>cached</b>: held by none, but full and published under a prefix hash, so a later
 *       sequence with the same prefix can take it instead of recomputing it;</li>
 *   <li><b>empty</b>: held by none, no reusable content.</li>
 * </ul>
 * Empty blocks sit on a stack ({@code int[]}), cached blocks in the {@link EvictionPolicy}'s queue
 * (intrusive lists in {@code int[]}s), published hashes in a primitive open-addressing map
 * (Agrona's {@link Long2LongHashMap}, sized so it never rehashes). No object exists per block and
 * a steady-state append allocates nothing: allocate, release and touch are O(1) array operations.
 *
 * <h2>Prefix caching</h2>
 * When a block fills, its hash is computed over (the previous block's hash, the sequence's cache
 * salt, the block's token ids) and the block is published. The hash is 64 bits; a hit is confirmed
 * against the block's stored token ids, parent hash and salt, so a hash collision can cost a miss
 * but never serves wrong KV. Lookups happen on a sequence's first append only (while it holds no
 * computed token) and never cover the call's last token, so the engine always computes at least one
 * token and gets logits. Hit blocks are taken before any block is allocated, so an append never
 * evicts the blocks it hits.
 *
 * <h2>Reuse order</h2>
 * An empty block is always reused before a cached one; among cached blocks the policy decides
 * (LRU by default: least recently released first). {@link #free} releases a sequence's blocks tail
 * first, so the tail of a released sequence is reused before its head and a shared prefix outlives
 * the suffixes behind it.
 *
 * <h2>All or nothing</h2>
 * {@code append} first works out how many blocks it needs (new blocks, minus prefix hits, plus one
 * for a copy-on-write, minus what a sliding window releases) against what it could get (empty plus
 * cached blocks not hit). If it cannot get them all it returns -1 and nothing has changed apart
 * from the allocation-failure counter; otherwise nothing after that point can fail.
 *
 * <h2>Threads</h2>
 * Every method is safe to call from any thread: mutations serialize on one {@link StampedLock}
 * (built for a single scheduler thread, where the lock is uncontended), {@link #stats()} reads
 * optimistically and retries under the read lock, and {@link #cachedPrefixLength} takes the read
 * lock, so routers and metrics threads never see a half-made change.
 *
 * <h2>When memory runs short</h2>
 * The levers an engine pulls, each counted in the {@link #ledger()}:
 * <ul>
 *   <li><b>admission</b>: a watermark keeps a share of blocks free for running decodes (a new
 *       sequence's first append is refused if it would dip into it), and a sequence opened with
 *       {@link SequenceOptions#maxTokens()} has blocks for its whole length set aside at admission,
 *       so it can never fail later (the no-evict mode, {@link Builder#requireMaxTokens}, demands
 *       this of every sequence);</li>
 *   <li><b>tenant quotas</b>: every used block is charged to exactly one tenant (the one whose
 *       sequence took it from the free pool); an append that would take a tenant over its quota is
 *       refused, and preemption picks tenants above their fair share first;</li>
 *   <li><b>preemption</b>: {@link #preemptionVictims} picks victims (tenants over fair share, then
 *       lowest priority, then newest; never a guaranteed sequence, never one preempted
 *       {@code thrashLimit} times already), {@link #preempt} frees them by recompute or swap, and
 *       {@link #resume} brings them back, all or nothing;</li>
 *   <li><b>idle release</b>: a sequence not touched within its lease is released by
 *       {@link #reapIdle()}, which an engine calls from its own thread;</li>
 *   <li><b>retention</b>: {@link #dropTokens} drops tokens a retention policy (sliding window,
 *       heavy hitters, SnapKV) chose; a block is released once all its tokens are dropped, and a
 *       partly dropped block stays, its dropped tokens masked ({@link Sequence#slot} = -1).</li>
 * </ul>
 * {@link #lastRefusal()} says why the last append returned -1.
 *
 * <h2>What it does not own</h2>
 * A {@link KvStore} given to the builder is used for copy-on-write copies but not closed here: the
 * engine that made it closes it.
 */
public final class KvCacheManager implements AutoCloseable {

    /** The parent hash of a sequence's first block. */
    public static final long ROOT_HASH = 0x6b76636163686521L; // "kvcache!"

    private static final int NIL = -1;

    private final KvLayout layout;
    private final int blockTokens;
    private final int totalBlocks;
    private final boolean prefixCaching;
    private final boolean window;
    private final int sinkTokens;
    private final int windowTokens;
    private final KvStore store;
    private final BlockCopier copier;
    private final LongSupplier clock;
    /** Whether every sequence's last touch is tracked (a default lease or an explicit clock). */
    private final boolean trackAll;
    private final long defaultLeaseNanos;
    private final int watermarkBlocks;
    private final boolean requireMaxTokens;
    private final int thrashLimit;
    private final SwapSpace swapSpace;

    // ---- per block, indexed by block id ----
    private final int[] refCount;
    /** Highest priority among the sequences that held the block since it was last free. */
    private final int[] blockPriority;
    /** Published blocks only: */
    private final boolean[] published;
    private final long[] blockHash;
    private final long[] parentHash;
    private final long[] blockSalt;
    /** Token ids of published blocks, B per block; confirms hits. Empty when prefix caching is off. */
    private final int[] blockTokenIds;
    /** Index of the tenant a used block is charged to. */
    private final int[] blockTenant;

    // ---- free structures ----
    private final int[] emptyStack;
    private int emptyTop;
    private final EvictionPolicy.Queue cached;
    private final Long2LongHashMap hashToBlock;

    // ---- sequences ----
    private final Map<String, PagedSequence> live = new HashMap<>();
    private long liveTokens;
    private int usedBlocks;
    private long admissions;
    /** Blocks set aside for guaranteed sequences and not yet taken by them. */
    private int reservedOutstanding;
    private final Map<String, Tenant> tenants = new HashMap<>();
    private Tenant[] tenantByIndex = new Tenant[4];
    private final Map<String, Integer> quotas;
    private final Map<String, Integer> preemptionCounts = new HashMap<>();
    private Refusal lastRefusal = Refusal.NONE;

    // ---- counters (the ledger) ----
    private long prefixQueryTokens;
    private long prefixHitTokens;
    private long allocationFailures;
    private long evictedBlocks;
    private long forks;
    private long copyOnWrites;
    private long windowReleasedBlocks;
    private long appendedTokens;
    private long publishedBlocks;
    private int peakUsedBlocks;
    private long watermarkRefusals;
    private long quotaRefusals;
    private long reservationRefusals;
    private long preemptions;
    private long recomputedTokens;
    private long swappedOutBytes;
    private long swappedInBytes;
    private long idleReleasedSequences;
    private long idleReleasedBlocks;
    private long droppedTokens;
    private long retentionReleasedBlocks;

    // ---- scratch for append, grown on demand, reused ----
    private long[] scratchHashes = new long[16];
    private int[] scratchHits = new int[16];
    private int[] pendingCopies = new int[0];
    private int pendingCopyCount;

    // ---- arrays of freed sequences, reused by the next ones: opening and freeing in steady state allocates no token storage
    private static final int SPARE_ARRAYS = 32;
    private static final int[] NO_INTS = new int[0];
    private final java.util.ArrayDeque<int[]> spareTokens = new java.util.ArrayDeque<>();
    private final java.util.ArrayDeque<int[]> spareTables = new java.util.ArrayDeque<>();

    private final StampedLock lock = new StampedLock();
    private final List<KvCacheListener> listeners = new CopyOnWriteArrayList<>();
    private boolean closed;

    private KvCacheManager(Builder b, int blocks) {
        this.layout = b.layout;
        this.blockTokens = layout.blockTokens();
        this.totalBlocks = blocks;
        this.prefixCaching = b.prefixCaching;
        this.window = b.windowTokens > 0;
        this.sinkTokens = b.sinkTokens;
        this.windowTokens = b.windowTokens;
        this.store = b.store;
        this.copier = b.copier != null ? b.copier : (store != null ? store::copyBlock : null);
        this.clock = b.clock;
        this.trackAll = b.leaseNanos > 0 || b.clockSet;
        this.defaultLeaseNanos = b.leaseNanos;
        this.watermarkBlocks = (int) Math.ceil(b.watermark * blocks);
        this.requireMaxTokens = b.requireMaxTokens;
        this.thrashLimit = b.thrashLimit;
        this.swapSpace = b.swapSpace;
        this.quotas = new HashMap<>(b.quotas);
        this.blockTenant = new int[blocks];

        refCount = new int[blocks];
        blockPriority = new int[blocks];
        published = new boolean[blocks];
        blockHash = new long[blocks];
        parentHash = new long[blocks];
        blockSalt = new long[blocks];
        blockTokenIds = prefixCaching ? new int[Math.multiplyExact(blocks, blockTokens)] : new int[0];
        emptyStack = new int[blocks];
        // lowest ids on top: a fresh pool hands out 0, 1, 2, ...
        for (int i = 0; i < blocks; i++) {
            emptyStack[i] = blocks - 1 - i;
        }
        emptyTop = blocks;
        cached = Objects.requireNonNull(b.policy.newQueue(blocks), "policy.newQueue");
        // load factor 0.5 and room for every block: never rehashes
        hashToBlock = new Long2LongHashMap(Math.max(8, blocks * 2), 0.5f, NIL);
    }

    /** A builder for a manager of {@code layout}. */
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

        private Builder(KvLayout layout) {
            this.layout = Objects.requireNonNull(layout, "layout");
        }

        /** Pool size in blocks (1 to Integer.MAX_VALUE / blockTokens). */
        public Builder blocks(int n) {
            if (n <= 0) {
                throw new IllegalArgumentException("blocks must be > 0, got " + n);
            }
            this.blocks = n;
            this.budget = -1;
            return this;
        }

        /** Pool size as a memory budget: as many whole blocks as fit {@code bytes}. */
        public Builder memoryBudget(long bytes) {
            if (bytes < layout.bytesPerBlock()) {
                throw new IllegalArgumentException("memoryBudget " + bytes
                        + " bytes is less than one block of " + layout.bytesPerBlock() + " bytes");
            }
            this.budget = bytes;
            this.blocks = -1;
            return this;
        }

        /** Prefix caching on (the default) or off; off, no block is ever cached. */
        public Builder prefixCaching(boolean on) {
            this.prefixCaching = on;
            return this;
        }

        /** Which cached block is reused first; {@link EvictionPolicy#lru()} by default. */
        public Builder evictionPolicy(EvictionPolicy p) {
            this.policy = Objects.requireNonNull(p, "evictionPolicy");
            return this;
        }

        /**
         * The store holding the KV: copy-on-write copies happen in it, and its block count sizes the
         * pool unless {@link #blocks} or {@link #memoryBudget} says otherwise (then they must agree).
         */
        public Builder store(KvStore s) {
            this.store = Objects.requireNonNull(s, "store");
            return this;
        }

        /** Who copies blocks on copy-on-write when there is no store (default: the store, else queued for {@link #takePendingCopies()}). */
        public Builder blockCopier(BlockCopier c) {
            this.copier = Objects.requireNonNull(c, "blockCopier");
            return this;
        }

        /**
         * Keeps the first {@code sinkTokens} tokens (attention sinks) and the last
         * {@code windowTokens} tokens of every sequence; blocks wholly outside both are released
         * at the start of each append. See {@link KvCacheManager#append}.
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
         */
        public Builder clock(LongSupplier nanoTime) {
            this.clock = Objects.requireNonNull(nanoTime, "clock");
            this.clockSet = true;
            return this;
        }

        /** Default idle lease: {@link KvCacheManager#reapIdle()} releases sequences untouched for longer. */
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
         */
        public Builder requireMaxTokens(boolean on) {
            this.requireMaxTokens = on;
            return this;
        }

        /** Caps the blocks charged to {@code tenant} at once. */
        public Builder tenantQuota(String tenant, int maxBlocks) {
            Objects.requireNonNull(tenant, "tenant");
            if (maxBlocks < 0) {
                throw new IllegalArgumentException("quota of tenant '" + tenant + "' must be >= 0, got " + maxBlocks);
            }
            quotas.put(tenant, maxBlocks);
            return this;
        }

        /** A sequence preempted this many times is no longer chosen as a victim (default 3). */
        public Builder thrashLimit(int preemptions) {
            if (preemptions <= 0) {
                throw new IllegalArgumentException("thrashLimit must be > 0, got " + preemptions);
            }
            this.thrashLimit = preemptions;
            return this;
        }

        /** Where {@link PreemptionMode#SWAP} moves blocks. */
        public Builder swapSpace(SwapSpace s) {
            this.swapSpace = Objects.requireNonNull(s, "swapSpace");
            return this;
        }

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

    /** The layout this manager sizes blocks with. */
    public KvLayout layout() {
        return layout;
    }

    /** A new empty sequence with default options; IllegalArgumentException if {@code id} is live. */
    public Sequence open(String id) {
        return open(id, SequenceOptions.DEFAULT);
    }

    /** A new empty sequence; IllegalArgumentException if {@code id} is live. */
    public Sequence open(String id, SequenceOptions options) {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(options, "options");
        long st = lock.writeLock();
        try {
            checkOpen();
            if (live.containsKey(id)) {
                throw new IllegalArgumentException("sequence id '" + id + "' is already live");
            }
            if (requireMaxTokens && options.maxTokens() == 0) {
                throw new IllegalArgumentException("sequence '" + id
                        + "' has maxTokens 0: this manager admits only sequences with a maximum length");
            }
            return register(new PagedSequence(this, id, options, tenant(options.tenant()),
                    Math.max(options.expectedTokens(), Math.min(options.maxTokens(), 1 << 16))));
        } finally {
            lock.unlockWrite(st);
        }
    }

    /** The live sequence with this id, or null. */
    public Sequence sequence(String id) {
        long st = lock.readLock();
        try {
            return live.get(id);
        } finally {
            lock.unlockRead(st);
        }
    }

    /** Appends one token; see {@link #append(Sequence, int[], int, int)}. */
    public int append(Sequence s, int tokenId) {
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            if (tokenId < 0) {
                throw new IllegalArgumentException("token id must be >= 0, got " + tokenId + " at index 0");
            }
            int[] one = singleToken;
            one[0] = tokenId;
            return appendLocked(q, one, 0, 1);
        } finally {
            lock.unlockWrite(st);
        }
    }

    private final int[] singleToken = new int[1];

    /** Appends {@code tokenIds}; see {@link #append(Sequence, int[], int, int)}. */
    public int append(Sequence s, int... tokenIds) {
        Objects.requireNonNull(tokenIds, "tokenIds");
        return append(s, tokenIds, 0, tokenIds.length);
    }

    /**
     * Reserves slots for {@code length} tokens of {@code tokenIds} starting at {@code offset} and
     * records their ids.
     *
     * <p>With a sliding window, first releases every block whose tokens all lie outside the first
     * {@code sinkTokens} tokens and the last {@code windowTokens} tokens of the length before this
     * call. Copies a shared, partly filled last block (copy-on-write) before writing into it.
     *
     * @return -1 when there are not enough blocks (and then nothing has changed); otherwise how
     * many leading tokens of this call already have their KV in the cache (prefix hits), so the
     * engine computes KV only for the rest
     */
    public int append(Sequence s, int[] tokenIds, int offset, int length) {
        Objects.requireNonNull(tokenIds, "tokenIds");
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            Objects.checkFromIndexSize(offset, length, tokenIds.length);
            for (int i = 0; i < length; i++) {
                if (tokenIds[offset + i] < 0) {
                    throw new IllegalArgumentException("token id must be >= 0, got "
                            + tokenIds[offset + i] + " at index " + (offset + i));
                }
            }
            return appendLocked(q, tokenIds, offset, length);
        } finally {
            lock.unlockWrite(st);
        }
    }

    // ---- the plan of an append, written by plan() and read by appendLocked() / estimateAppend()
    private int planWinFrom;
    private int planWinTo;
    private int planWinFreed;
    private int planHits;
    private int planHitsFromCache;
    private boolean planLookup;
    private boolean planCow;
    private int planDemand;
    private int planSupply;
    private int planReserve;

    /**
     * Plans appending {@code n} tokens to {@code q} without changing anything (except the prefix
     * lookup scratch): what a sliding window releases, which leading blocks are prefix hits, how
     * many blocks must be taken and whether the pool, the tenant's quota, the reservations and the
     * admission watermark allow it. Leaves the plan in the plan* fields; returns why it would be
     * refused, or NONE.
     */
    private Refusal plan(PagedSequence q, int[] tokens, int off, int n) {
        final int B = blockTokens;
        final int oldLen = q.length;
        long newLenL = (long) oldLen + n;
        if (newLenL > Integer.MAX_VALUE - B) {
            throw new IllegalArgumentException("sequence '" + q.id + "' would reach " + newLenL
                    + " tokens; the limit is " + (Integer.MAX_VALUE - B));
        }
        final int newLen = (int) newLenL;

        // --- plan: what a sliding window releases
        int winFrom = 0;
        int winTo = 0;
        int winFreed = 0;
        int winReleased = 0;
        int winTenantRelief = 0;
        if (window && oldLen > windowTokens) {
            winFrom = Math.max(q.windowReleasedTo, ceilDiv(sinkTokens, B));
            winTo = (oldLen - windowTokens) / B; // blocks [winFrom, winTo) lie wholly outside
            for (int i = winFrom; i < winTo; i++) {
                int b = q.table[i];
                if (b >= 0) {
                    winReleased++;
                    if (refCount[b] == 1) {
                        winFreed++;
                        if (blockTenant[b] == q.tenant.index) {
                            winTenantRelief++;
                        }
                    }
                }
            }
        }

        // --- plan: prefix hits (first append only, never the call's last token)
        int hits = 0;
        int hitsFromCache = 0;
        boolean lookup = prefixCaching && oldLen == 0;
        if (lookup) {
            int maxHits = (n - 1) / B;
            ensureScratch(maxHits);
            long parent = ROOT_HASH;
            for (int j = 0; j < maxHits; j++) {
                long h = blockHash(parent, q.salt, tokens, off + j * B, B);
                int b = (int) hashToBlock.get(h);
                if (b == NIL || !confirms(b, h, parent, q.salt, tokens, off + j * B)) {
                    break;
                }
                scratchHashes[j] = h;
                scratchHits[j] = b;
                hits++;
                if (refCount[b] == 0) {
                    hitsFromCache++;
                }
                parent = h;
            }
        }

        // --- plan: blocks needed against blocks available
        int oldBlocks = q.tableSize;
        int newBlocks = ceilDiv(newLen, B);
        int lastOld = oldBlocks - 1;
        boolean cow = oldLen % B != 0 && refCount[q.table[lastOld]] > 1;
        int fresh = newBlocks - oldBlocks - hits;
        int demand = fresh + (cow ? 1 : 0);
        int supply = emptyTop + cached.size() - hitsFromCache + winFreed;
        Tenant t = q.tenant;
        planWinFrom = winFrom;
        planWinTo = winTo;
        planWinFreed = winFreed;
        planHits = hits;
        planHitsFromCache = hitsFromCache;
        planLookup = lookup;
        planCow = cow;
        planDemand = demand;
        planSupply = supply;
        planReserve = q.reserve;
        if ((long) t.used + demand + hitsFromCache - winTenantRelief > t.quota) {
            return Refusal.TENANT_QUOTA;
        }
        if (demand > supply) {
            return Refusal.NO_BLOCKS;
        }
        // guaranteed sequences: blocks set aside for the others must stay free after this append
        int reserve = q.reserve;
        if (oldLen == 0 && q.options.maxTokens() > 0 && !q.forked) {
            reserve = ceilDiv(q.options.maxTokens(), B);
        }
        int heldAfter = q.held - winReleased + hits + fresh;
        int outAfter = Math.max(0, reserve - heldAfter);
        int others = reservedOutstanding - q.outstanding;
        int slack = supply - demand - others - outAfter;
        planReserve = reserve;
        if (slack < 0) {
            return Refusal.RESERVED;
        }
        if (oldLen == 0 && !q.forked && slack < watermarkBlocks) {
            return Refusal.WATERMARK;
        }
        return Refusal.NONE;
    }

    private int appendLocked(PagedSequence q, int[] tokens, int off, int n) {
        if (n == 0) {
            return 0;
        }
        Refusal why = plan(q, tokens, off, n);
        if (why != Refusal.NONE) {
            switch (why) {
                case TENANT_QUOTA -> {
                    q.tenant.refusals++;
                    quotaRefusals++;
                }
                case RESERVED -> reservationRefusals++;
                case WATERMARK -> watermarkRefusals++;
                default -> {
                }
            }
            return refuse(q, n, why);
        }
        final int B = blockTokens;
        final int oldLen = q.length;
        final int newLen = oldLen + n;
        final int winFrom = planWinFrom;
        final int winTo = planWinTo;
        final int hits = planHits;
        final boolean lookup = planLookup;
        final boolean cow = planCow;
        final int reserve = planReserve;
        final int oldBlocks = q.tableSize;
        final int newBlocks = ceilDiv(newLen, B);
        final int lastOld = oldBlocks - 1;
        final Tenant t = q.tenant;
        lastRefusal = Refusal.NONE;

        // --- commit: nothing below can fail
        q.ensureCapacity(newLen, newBlocks);
        for (int i = winFrom; i < winTo; i++) {
            int b = q.table[i];
            if (b >= 0) {
                q.table[i] = NIL;
                q.held--;
                windowReleasedBlocks++;
                release(b);
            }
        }
        if (winTo > q.windowReleasedTo) {
            q.windowReleasedTo = winTo;
        }
        if (lookup) {
            prefixQueryTokens += n;
            prefixHitTokens += (long) hits * B;
        }
        if (oldLen == 0 && !q.forked) {
            q.admission = ++admissions;
        }
        for (int j = 0; j < hits; j++) {
            int b = scratchHits[j];
            acquire(b, q);
            q.table[j] = b;
            q.chainHash = scratchHashes[j];
        }
        q.held += hits;
        if (lookup) {
            q.cached = hits * B;
        }
        if (cow) {
            int src = q.table[lastOld];
            int dst = allocate(q);
            refCount[src]--; // stays > 0: another sequence still holds it
            q.table[lastOld] = dst;
            copyOnWrites++;
            copy(src, dst);
        }
        System.arraycopy(tokens, off, q.tokens, oldLen, n);
        for (int i = oldBlocks + hits; i < newBlocks; i++) {
            q.table[i] = allocate(q);
            q.held++;
        }
        q.tableSize = newBlocks;
        q.length = newLen;
        if (q.tracksIdle) {
            q.lastTouch = clock.getAsLong();
        }
        liveTokens += n;
        t.liveTokens += n;
        appendedTokens += n;
        q.reserve = reserve;
        updateReservation(q);

        // publish every block this call filled (hit blocks are published already); without
        // prefix caching no hash is ever read, so none is computed
        if (prefixCaching) {
            int firstFull = Math.max(oldLen / B, hits);
            int fullAfter = newLen / B;
            for (int i = firstFull; i < fullAfter; i++) {
                long parent = q.chainHash;
                long h = blockHash(parent, q.salt, q.tokens, i * B, B);
                q.chainHash = h;
                publish(q.table[i], h, parent, q.salt, q.tokens, i * B);
            }
        }
        if (usedBlocks > peakUsedBlocks) {
            peakUsedBlocks = usedBlocks;
        }
        return hits * B;
    }

    /**
     * What {@link #append(Sequence, int...) append(s, tokenIds)} would do now, without doing it:
     * whether it would be refused and why, how many blocks it would take (prefix hits on live
     * blocks take none, hits on cached blocks revive them, a shared partial last block costs a
     * copy), and what a sliding window would free. Counters, events and {@link #lastRefusal()} are
     * untouched. The same checks as append (a bad id or token throws).
     */
    public AppendEstimate estimateAppend(Sequence s, int... tokenIds) {
        Objects.requireNonNull(tokenIds, "tokenIds");
        long st = lock.writeLock(); // the plan uses the manager's lookup scratch
        try {
            PagedSequence q = checkLive(s);
            for (int i = 0; i < tokenIds.length; i++) {
                if (tokenIds[i] < 0) {
                    throw new IllegalArgumentException("token id must be >= 0, got " + tokenIds[i] + " at index " + i);
                }
            }
            if (tokenIds.length == 0) {
                return new AppendEstimate(Refusal.NONE, 0, 0, 0, 0, emptyTop + cached.size());
            }
            Refusal why = plan(q, tokenIds, 0, tokenIds.length);
            return new AppendEstimate(why, planDemand, planHitsFromCache, planHits * blockTokens, planWinFreed,
                    planSupply);
        } finally {
            lock.unlockWrite(st);
        }
    }

    /**
     * A new sequence sharing every block of {@code parent} (reference counts go up; nothing is
     * copied until one of them writes into the shared partial block).
     */
    public Sequence fork(Sequence parent, String childId) {
        Objects.requireNonNull(childId, "childId");
        long st = lock.writeLock();
        try {
            PagedSequence p = checkLive(parent);
            if (live.containsKey(childId)) {
                throw new IllegalArgumentException("sequence id '" + childId + "' is already live");
            }
            PagedSequence c = new PagedSequence(this, childId, p.options, p.tenant, p.length);
            c.forked = true;
            c.ensureCapacity(p.length, p.tableSize);
            System.arraycopy(p.tokens, 0, c.tokens, 0, p.length);
            System.arraycopy(p.table, 0, c.table, 0, p.tableSize);
            c.length = p.length;
            c.tableSize = p.tableSize;
            c.held = p.held;
            c.chainHash = p.chainHash;
            c.windowReleasedTo = p.windowReleasedTo;
            c.cached = p.cached;
            c.admission = ++admissions;
            if (p.dropped != null) {
                c.dropped = p.dropped.clone();
                c.droppedCount = p.droppedCount;
            }
            for (int i = 0; i < p.tableSize; i++) {
                int b = p.table[i];
                if (b >= 0) {
                    refCount[b]++;
                    blockPriority[b] = Math.max(blockPriority[b], c.priority);
                }
            }
            register(c);
            liveTokens += c.length;
            c.tenant.liveTokens += c.length;
            forks++;
            return c;
        } finally {
            lock.unlockWrite(st);
        }
    }

    /** Releases every block of {@code s}, tail first; IllegalStateException if already freed. */
    public void free(Sequence s) {
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            freeLocked(q);
        } finally {
            lock.unlockWrite(st);
        }
    }

    private void freeLocked(PagedSequence q) {
        for (int i = q.tableSize - 1; i >= 0; i--) {
            int b = q.table[i];
            if (b >= 0) {
                q.table[i] = NIL;
                release(b);
            }
        }
        q.held = 0;
        q.live = false;
        live.remove(q.id);
        liveTokens -= q.length;
        q.tenant.liveTokens -= q.length;
        q.tenant.liveSequences--;
        q.reserve = 0;
        updateReservation(q);
        recycle(spareTokens, q.tokens);
        recycle(spareTables, q.table);
        q.tokens = NO_INTS;
        q.table = NO_INTS;
    }

    private static void recycle(java.util.ArrayDeque<int[]> spares, int[] a) {
        if (a.length > 0 && spares.size() < SPARE_ARRAYS) {
            spares.push(a);
        }
    }

    /** A spare array of at least {@code n} ints (stale contents), else a new one. */
    private int[] takeArray(java.util.ArrayDeque<int[]> spares, int n) {
        for (java.util.Iterator<int[]> it = spares.iterator(); it.hasNext(); ) {
            int[] a = it.next();
            if (a.length >= n) {
                it.remove();
                return a;
            }
        }
        return new int[n];
    }

    private PagedSequence register(PagedSequence q) {
        live.put(q.id, q);
        q.tenant.liveSequences++;
        q.tracksIdle = trackAll || q.options.leaseNanos() > 0;
        if (q.tracksIdle) {
            q.lastTouch = clock.getAsLong();
        }
        return q;
    }

    private int refuse(PagedSequence q, int tokens, Refusal why) {
        allocationFailures++;
        lastRefusal = why;
        if (!listeners.isEmpty()) {
            fire(new KvCacheEvent.AppendRefused(q.id, q.tenant.name, why, tokens, emptyTop + cached.size()));
        }
        return -1;
    }

    /** Keeps {@link #reservedOutstanding} equal to the sum of the live sequences' outstanding reservations. */
    private void updateReservation(PagedSequence q) {
        int out = q.live ? Math.max(0, q.reserve - q.held) : 0;
        reservedOutstanding += out - q.outstanding;
        q.outstanding = out;
    }

    private Tenant tenant(String name) {
        Tenant t = tenants.get(name);
        if (t == null) {
            t = new Tenant(name, tenants.size(), quotas.getOrDefault(name, Integer.MAX_VALUE));
            tenants.put(name, t);
            if (t.index == tenantByIndex.length) {
                tenantByIndex = Arrays.copyOf(tenantByIndex, t.index * 2);
            }
            tenantByIndex[t.index] = t;
        }
        return t;
    }

    // ------------------------------------------------------------------ lifecycle levers

    /** Why the last append on this manager returned -1 ({@link Refusal#NONE} after a success). */
    public Refusal lastRefusal() {
        long st = lock.readLock();
        try {
            return lastRefusal;
        } finally {
            lock.unlockRead(st);
        }
    }

    /** Marks {@code s} as active now (appends do this themselves): its idle lease starts again. */
    public void touch(Sequence s) {
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            if (q.tracksIdle) {
                q.lastTouch = clock.getAsLong();
            }
        } finally {
            lock.unlockWrite(st);
        }
    }

    /**
     * Releases every live sequence that has not been touched for longer than its lease and says
     * what each held. Sequences without a lease (none in their options and no
     * {@link Builder#idleLease default}) are never released. Safe to call from a reaper thread.
     */
    public List<IdleRelease> reapIdle() {
        return reapIdle(false);
    }

    /**
     * {@link #reapIdle()}, and with {@code offload} each idle sequence whose blocks fit the
     * {@link Builder#swapSpace swap space} is moved there first, so a client that reconnects gets
     * its KV back through {@link #resume} ({@link IdleRelease#offloaded()}) instead of a re-prefill;
     * the others are released as without it. The blocks return to the pool either way.
     */
    public List<IdleRelease> reapIdle(boolean offload) {
        long st = lock.writeLock();
        try {
            checkOpen();
            List<IdleRelease> out = idleLocked(true, 0L);
            for (int i = 0; i < out.size(); i++) {
                IdleRelease r = out.get(i);
                PagedSequence q = live.get(r.id());
                if (offload && swapSpace != null && swapSpace.freeBlocks() >= q.held) {
                    long[] handles = swapOutLocked(q);
                    if (handles != null) {
                        r = r.withOffloaded(new PreemptedSequence(q.id, q.options,
                                Arrays.copyOf(q.tokens, q.length), PreemptionMode.SWAP, handles, q.held));
                        out.set(i, r);
                    }
                }
                q.tenant.idleReleases++;
                idleReleasedSequences++;
                idleReleasedBlocks += r.blocks();
                freeLocked(q);
                if (!listeners.isEmpty()) {
                    fire(new KvCacheEvent.IdleReleased(r));
                }
            }
            return out;
        } finally {
            lock.unlockWrite(st);
        }
    }

    /** Copies every held block of {@code q} to the swap space; null (nothing kept there) if it refuses one. */
    private long[] swapOutLocked(PagedSequence q) {
        long[] handles = new long[q.tableSize];
        for (int i = 0; i < q.tableSize; i++) {
            int b = q.table[i];
            handles[i] = b < 0 ? -1L : swapSpace.swapOut(b);
            if (b >= 0 && handles[i] < 0) {
                for (int j = 0; j < i; j++) {
                    if (handles[j] >= 0) {
                        swapSpace.discard(handles[j]);
                    }
                }
                return null;
            }
        }
        swappedOutBytes += (long) q.held * swapSpace.bytesPerBlock();
        return handles;
    }

    /**
     * The live sequences untouched for longer than {@code minIdle}, without releasing them (what
     * idle streams hold). Sees sequences whose last touch is tracked: all of them when the manager
     * has a default lease or an explicit {@link Builder#clock clock}, else those with a lease.
     */
    public List<IdleRelease> idleSequences(Duration minIdle) {
        long st = lock.readLock();
        try {
            return idleLocked(false, minIdle.toNanos());
        } finally {
            lock.unlockRead(st);
        }
    }

    private List<IdleRelease> idleLocked(boolean byLease, long minIdle) {
        long now = clock.getAsLong();
        List<IdleRelease> out = new ArrayList<>();
        for (PagedSequence q : live.values()) {
            if (!q.tracksIdle) {
                continue;
            }
            long idle = now - q.lastTouch;
            long limit = byLease ? (q.options.leaseNanos() > 0 ? q.options.leaseNanos() : defaultLeaseNanos) : minIdle;
            if ((!byLease || limit > 0) && idle > limit) {
                out.add(new IdleRelease(q.id, q.tenant.name, idle, q.length, q.held,
                        q.held * layout.bytesPerBlock()));
            }
        }
        out.sort(Comparator.comparing(IdleRelease::id));
        return out;
    }

    /** Blocks held by sequences idle past their lease (0 for sequences without one). */
    private int idleHeldBlocks() {
        long now = clock.getAsLong();
        int held = 0;
        for (PagedSequence q : live.values()) {
            long lease = q.options.leaseNanos() > 0 ? q.options.leaseNanos() : defaultLeaseNanos;
            if (q.tracksIdle && lease > 0 && now - q.lastTouch > lease) {
                held += q.held;
            }
        }
        return held;
    }

    /**
     * Sequences to preempt so that at least {@code blocksNeeded} blocks come free, in the order to
     * preempt them: sequences of tenants above their fair share first, then lowest priority, then
     * newest admitted. Never {@code requester}, never a guaranteed sequence
     * ({@link SequenceOptions#maxTokens()}), never one already preempted {@code thrashLimit} times.
     * Only blocks a victim holds alone count, since shared ones stay. May return fewer than needed
     * (then preempting them all still would not be enough).
     */
    public List<Sequence> preemptionVictims(int blocksNeeded, Sequence requester) {
        if (blocksNeeded < 0) {
            throw new IllegalArgumentException("blocksNeeded must be >= 0, got " + blocksNeeded);
        }
        long st = lock.readLock();
        try {
            checkOpen();
            int activeTenants = 0;
            for (Tenant t : tenants.values()) {
                if (t.liveSequences > 0) {
                    activeTenants++;
                }
            }
            int fairShare = activeTenants == 0 ? totalBlocks : totalBlocks / activeTenants;
            List<PagedSequence> candidates = new ArrayList<>();
            for (PagedSequence q : live.values()) {
                if (q != requester && q.reserve == 0
                        && preemptionCounts.getOrDefault(q.id, 0) < thrashLimit) {
                    candidates.add(q);
                }
            }
            candidates.sort(Comparator
                    .comparing((PagedSequence q) -> q.tenant.used <= fairShare)
                    .thenComparingInt(q -> q.priority)
                    .thenComparing(Comparator.comparingLong((PagedSequence q) -> q.admission).reversed()));
            List<Sequence> out = new ArrayList<>();
            int freed = 0;
            for (PagedSequence q : candidates) {
                if (freed >= blocksNeeded) {
                    break;
                }
                out.add(q);
                for (int i = 0; i < q.tableSize; i++) {
                    int b = q.table[i];
                    if (b >= 0 && refCount[b] == 1) {
                        freed++;
                    }
                }
            }
            return out;
        } finally {
            lock.unlockRead(st);
        }
    }

    /** How many times sequence id {@code id} has been preempted (the thrash guard's count). */
    public int preemptionCount(String id) {
        long st = lock.readLock();
        try {
            return preemptionCounts.getOrDefault(id, 0);
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Takes {@code s} out of the cache and returns every block it held. RECOMPUTE frees the blocks
     * (full ones stay in the prefix cache until reused, so a prompt often comes back cheaply); SWAP
     * first copies each held block to the {@link Builder#swapSpace swap space}, all or nothing
     * (IllegalStateException, nothing changed, if there is no swap space or it lacks room).
     */
    public PreemptedSequence preempt(Sequence s, PreemptionMode mode) {
        Objects.requireNonNull(mode, "mode");
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            long[] handles = null;
            if (mode == PreemptionMode.SWAP) {
                if (swapSpace == null) {
                    throw new IllegalStateException("SWAP preemption of '" + q.id + "' needs a swap space (Builder.swapSpace)");
                }
                if (swapSpace.freeBlocks() < q.held) {
                    throw new IllegalStateException("swap space has " + swapSpace.freeBlocks()
                            + " free blocks; sequence '" + q.id + "' holds " + q.held);
                }
                handles = swapOutLocked(q);
                if (handles == null) {
                    throw new IllegalStateException("swap space refused a block of '" + q.id + "'");
                }
            }
            int released = q.held;
            PreemptedSequence p = new PreemptedSequence(q.id, q.options, Arrays.copyOf(q.tokens, q.length),
                    mode, handles, released);
            preemptions++;
            q.tenant.preemptions++;
            preemptionCounts.merge(q.id, 1, Integer::sum);
            freeLocked(q);
            if (!listeners.isEmpty()) {
                fire(new KvCacheEvent.SequencePreempted(q.id, q.tenant.name, mode, q.length, released));
            }
            return p;
        } finally {
            lock.unlockWrite(st);
        }
    }

    /**
     * Brings a preempted sequence back under its id, all or nothing: null (and nothing changed but
     * the refusal counters) when its blocks do not fit now. After RECOMPUTE the engine recomputes KV
     * for positions {@code cachedTokens()} to {@code length()-1}; after SWAP nothing (the blocks were
     * copied back). IllegalArgumentException if the id is live again.
     */
    public Sequence resume(PreemptedSequence p) {
        Objects.requireNonNull(p, "preempted");
        long st = lock.writeLock();
        try {
            checkOpen();
            if (live.containsKey(p.id())) {
                throw new IllegalArgumentException("sequence id '" + p.id() + "' is already live");
            }
            PagedSequence q = new PagedSequence(this, p.id(), p.options(), tenant(p.options().tenant()), p.length());
            if (p.mode() == PreemptionMode.RECOMPUTE) {
                register(q);
                int hits = p.length() == 0 ? 0 : appendLocked(q, p.tokens(), 0, p.length());
                if (hits < 0) {
                    live.remove(q.id);
                    q.tenant.liveSequences--;
                    q.live = false;
                    return null;
                }
                recomputedTokens += p.length() - hits;
                return q;
            }
            return resumeSwapped(q, p);
        } finally {
            lock.unlockWrite(st);
        }
    }

    private Sequence resumeSwapped(PagedSequence q, PreemptedSequence p) {
        long[] handles = p.swapHandles();
        int need = 0;
        for (long h : handles) {
            if (h >= 0) {
                need++;
            }
        }
        Tenant t = q.tenant;
        if ((long) t.used + need > t.quota) {
            t.refusals++;
            quotaRefusals++;
            refuse(q, p.length(), Refusal.TENANT_QUOTA);
            return null;
        }
        if (need > emptyTop + cached.size() - reservedOutstanding) {
            refuse(q, p.length(), need > emptyTop + cached.size() ? Refusal.NO_BLOCKS : Refusal.RESERVED);
            return null;
        }
        int B = blockTokens;
        q.ensureCapacity(p.length(), handles.length);
        System.arraycopy(p.tokens(), 0, q.tokens, 0, p.length());
        q.length = p.length();
        q.tableSize = handles.length;
        q.admission = ++admissions;
        for (int i = 0; i < handles.length; i++) {
            if (handles[i] < 0) {
                q.table[i] = NIL;
                if ((i + 1) * B <= q.length) {
                    q.windowReleasedTo = Math.max(q.windowReleasedTo, i + 1);
                }
                continue;
            }
            int b = allocate(q);
            swapSpace.swapIn(handles[i], b);
            q.table[i] = b;
            q.held++;
        }
        swappedInBytes += (long) need * swapSpace.bytesPerBlock();
        long parent = ROOT_HASH;
        for (int i = 0; i < q.length / B; i++) {
            long h = blockHash(parent, q.salt, q.tokens, i * B, B);
            if (prefixCaching && q.table[i] >= 0) {
                publish(q.table[i], h, parent, q.salt, q.tokens, i * B);
            }
            parent = h;
        }
        q.chainHash = parent;
        register(q);
        liveTokens += q.length;
        t.liveTokens += q.length;
        lastRefusal = Refusal.NONE;
        return q;
    }

    /**
     * Drops the tokens at {@code positions} of {@code s} (a retention policy's choice: heavy
     * hitters, SnapKV). Dropped tokens read as {@code slot(p) == -1} and attention skips them. A
     * full block whose tokens are all dropped is released at once; a partly dropped block stays
     * (the memory is block-granular) and is released when its last kept token is dropped. Positions
     * already dropped are ignored. IllegalArgumentException naming a position outside 0..length-1,
     * with nothing dropped.
     *
     * @return blocks released by this call
     */
    public int dropTokens(Sequence s, int[] positions, int offset, int count) {
        Objects.requireNonNull(positions, "positions");
        long st = lock.writeLock();
        try {
            PagedSequence q = checkLive(s);
            Objects.checkFromIndexSize(offset, count, positions.length);
            for (int i = offset; i < offset + count; i++) {
                int p = positions[i];
                if (p < 0 || p >= q.length) {
                    throw new IllegalArgumentException("position " + p + " outside 0.." + (q.length - 1)
                            + " of sequence '" + q.id + "'");
                }
            }
            if (q.dropped == null || q.dropped.length < ((q.length + 63) >>> 6)) {
                q.dropped = q.dropped == null ? new long[(q.length + 63) >>> 6]
                        : Arrays.copyOf(q.dropped, Math.max((q.length + 63) >>> 6, q.dropped.length * 2));
            }
            int B = blockTokens;
            int released = 0;
            for (int i = offset; i < offset + count; i++) {
                int p = positions[i];
                long bit = 1L << p;
                if ((q.dropped[p >>> 6] & bit) != 0) {
                    continue;
                }
                q.dropped[p >>> 6] |= bit;
                q.droppedCount++;
                droppedTokens++;
                int blk = p / B;
                if ((blk + 1) * B <= q.length && q.table[blk] >= 0 && allDropped(q, blk * B, B)) {
                    int b = q.table[blk];
                    q.table[blk] = NIL;
                    q.held--;
                    retentionReleasedBlocks++;
                    released++;
                    release(b);
                }
            }
            updateReservation(q);
            if (!listeners.isEmpty()) {
                fire(new KvCacheEvent.TokensDropped(q.id, count, released));
            }
            return released;
        } finally {
            lock.unlockWrite(st);
        }
    }

    private static boolean allDropped(PagedSequence q, int from, int count) {
        for (int p = from; p < from + count; p++) {
            if ((q.dropped[p >>> 6] & (1L << p)) == 0) {
                return false;
            }
        }
        return true;
    }

    /** Per-tenant shares and counters, by tenant name. */
    public List<TenantStats> tenantStats() {
        long st = lock.readLock();
        try {
            List<TenantStats> out = new ArrayList<>();
            for (Tenant t : tenants.values()) {
                out.add(t.stats());
            }
            out.sort(Comparator.comparing(TenantStats::tenant));
            return out;
        } finally {
            lock.unlockRead(st);
        }
    }

    /** One tenant's share, or null if no sequence of it was ever opened. */
    public TenantStats tenantStats(String tenant) {
        long st = lock.readLock();
        try {
            Tenant t = tenants.get(tenant);
            return t == null ? null : t.stats();
        } finally {
            lock.unlockRead(st);
        }
    }

    /** A tenant's running totals; blocks are charged to the tenant that took them from the free pool. */
    private static final class Tenant {
        final String name;
        final int index;
        final int quota;
        int used;
        int liveSequences;
        long liveTokens;
        long refusals;
        long preemptions;
        long idleReleases;

        Tenant(String name, int index, int quota) {
            this.name = name;
            this.index = index;
            this.quota = quota;
        }

        TenantStats stats() {
            return new TenantStats(name, quota, used, liveSequences, liveTokens, refusals, preemptions, idleReleases);
        }
    }

    // ------------------------------------------------------------------ prefix cache

    /**
     * Leading tokens of {@code tokenIds} whose KV is cached now (in full blocks, with cache salt 0),
     * whether the blocks are held by live sequences or only cached. Read-only; safe from any thread.
     * Unlike {@code append} it does not hold back the last token.
     */
    public int cachedPrefixLength(int... tokenIds) {
        return cachedPrefixLength(0L, tokenIds);
    }

    /** {@link #cachedPrefixLength(int...)} for sequences opened with {@code cacheSalt}. */
    public int cachedPrefixLength(long cacheSalt, int... tokenIds) {
        Objects.requireNonNull(tokenIds, "tokenIds");
        long st = lock.readLock();
        try {
            if (!prefixCaching || closed) {
                return 0;
            }
            int B = blockTokens;
            long parent = ROOT_HASH;
            int blocks = 0;
            for (int j = 0; (j + 1) * B <= tokenIds.length; j++) {
                long h = blockHash(parent, cacheSalt, tokenIds, j * B, B);
                int b = (int) hashToBlock.get(h);
                if (b == NIL || !confirms(b, h, parent, cacheSalt, tokenIds, j * B)) {
                    break;
                }
                blocks++;
                parent = h;
            }
            return blocks * B;
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
            if (usedBlocks > 0) {
                return false;
            }
            for (int b = cached.poll(); b != NIL; b = cached.poll()) {
                published[b] = false;
                emptyStack[emptyTop++] = b;
            }
            hashToBlock.clear();
            fire(new KvCacheEvent.AllBlocksCleared());
            return true;
        } finally {
            lock.unlockWrite(st);
        }
    }

    // ------------------------------------------------------------------ observation

    /** A consistent snapshot; safe from any thread. */
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
        int used = usedBlocks;
        int cachedNow = cached.size();
        int empty = emptyTop;
        return new KvCacheStats(totalBlocks, used, cachedNow, empty, live.size(), liveTokens,
                prefixQueryTokens, prefixHitTokens, allocationFailures, evictedBlocks);
    }

    /** The stats plus the costs and reliefs of each mechanism, with bytes; safe from any thread. */
    public KvCacheLedger ledger() {
        long st = lock.readLock();
        try {
            return new KvCacheLedger(snapshot(), layout.bytesPerBlock(), blockTokens, forks,
                    copyOnWrites, windowReleasedBlocks, appendedTokens, publishedBlocks, peakUsedBlocks,
                    reservedOutstanding, watermarkRefusals, reservationRefusals, quotaRefusals,
                    preemptions, recomputedTokens, swappedOutBytes, swappedInBytes,
                    idleReleasedSequences, idleReleasedBlocks, idleHeldBlocks(), droppedTokens,
                    retentionReleasedBlocks);
        } finally {
            lock.unlockRead(st);
        }
    }

    /** Registers a listener for {@link KvCacheEvent}s. */
    public void addListener(KvCacheListener l) {
        listeners.add(Objects.requireNonNull(l, "listener"));
    }

    /** Unregisters a listener; false if it was not registered. */
    public boolean removeListener(KvCacheListener l) {
        return listeners.remove(l);
    }

    /**
     * Copy-on-write copies not yet done, when there is neither a store nor a {@link BlockCopier}:
     * pairs {@code [src0, dst0, src1, dst1, ...]} in the order they must happen. Clears them.
     */
    public int[] takePendingCopies() {
        long st = lock.writeLock();
        try {
            int[] out = Arrays.copyOf(pendingCopies, pendingCopyCount * 2);
            pendingCopyCount = 0;
            return out;
        } finally {
            lock.unlockWrite(st);
        }
    }

    /** The ids of the live sequences, in no particular order. */
    public List<String> liveSequenceIds() {
        long st = lock.readLock();
        try {
            return new ArrayList<>(live.keySet());
        } finally {
            lock.unlockRead(st);
        }
    }

    /** Reference count of block {@code block} (for tests and diagnostics). */
    public int refCount(int block) {
        Objects.checkIndex(block, totalBlocks);
        long st = lock.readLock();
        try {
            return refCount[block];
        } finally {
            lock.unlockRead(st);
        }
    }

    /** True when block {@code block} holds published (reusable) content. */
    public boolean isPublished(int block) {
        Objects.checkIndex(block, totalBlocks);
        long st = lock.readLock();
        try {
            return published[block];
        } finally {
            lock.unlockRead(st);
        }
    }

    /**
     * Frees every live sequence and closes the manager. Throws IllegalStateException naming the
     * sequences that were still live (they are released all the same), so a leak is never silent.
     * Idempotent once closed cleanly. Does not close the store.
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
            leaked = new ArrayList<>(live.keySet());
            leakedBlocks = usedBlocks;
            for (PagedSequence q : new ArrayList<>(live.values())) {
                freeLocked(q);
            }
            closed = true;
        } finally {
            lock.unlockWrite(st);
        }
        if (!leaked.isEmpty()) {
            throw new IllegalStateException("KvCacheManager closed with " + leaked.size()
                    + " live sequence(s) holding " + leakedBlocks + " block(s): " + leaked);
        }
    }

    // ------------------------------------------------------------------ block operations

    /** Takes a block for exclusive use: an empty one if any, else the policy's victim. */
    private int allocate(PagedSequence q) {
        int b;
        if (emptyTop > 0) {
            b = emptyStack[--emptyTop];
        } else {
            b = cached.poll();
            if (b == NIL) {
                throw new AssertionError("allocate without supply; planning is broken");
            }
            evict(b);
        }
        refCount[b] = 1;
        blockPriority[b] = q.priority;
        blockTenant[b] = q.tenant.index;
        q.tenant.used++;
        usedBlocks++;
        return b;
    }

    /** A hit: takes a reference on a published block, reviving it from the cache if needed. */
    private void acquire(int b, PagedSequence q) {
        if (refCount[b] == 0) {
            cached.remove(b);
            usedBlocks++;
            blockPriority[b] = q.priority;
            blockTenant[b] = q.tenant.index;
            q.tenant.used++;
        } else {
            blockPriority[b] = Math.max(blockPriority[b], q.priority);
        }
        refCount[b]++;
    }

    /** Drops one reference; at zero the block becomes cached (published) or empty. */
    private void release(int b) {
        if (--refCount[b] == 0) {
            usedBlocks--;
            tenantByIndex[blockTenant[b]].used--;
            if (published[b]) {
                cached.add(b, blockPriority[b]);
            } else {
                emptyStack[emptyTop++] = b;
                if (store != null) {
                    store.blockReleased(b);
                }
            }
        }
    }

    private void evict(int b) {
        long h = blockHash[b];
        hashToBlock.remove(h);
        published[b] = false;
        evictedBlocks++;
        if (!listeners.isEmpty()) {
            fire(new KvCacheEvent.BlockRemoved(b, h));
        }
    }

    private void publish(int b, long h, long parent, long salt, int[] tokens, int from) {
        if (published[b] || hashToBlock.containsKey(h)) {
            return; // identical content already published by another block: keep that one
        }
        published[b] = true;
        blockHash[b] = h;
        parentHash[b] = parent;
        blockSalt[b] = salt;
        System.arraycopy(tokens, from, blockTokenIds, b * blockTokens, blockTokens);
        hashToBlock.put(h, b);
        publishedBlocks++;
        if (!listeners.isEmpty()) {
            fire(new KvCacheEvent.BlockStored(b, h, parent, salt,
                    Arrays.copyOfRange(tokens, from, from + blockTokens)));
        }
    }

    private boolean confirms(int b, long h, long parent, long salt, int[] tokens, int from) {
        if (!published[b] || blockHash[b] != h || parentHash[b] != parent || blockSalt[b] != salt) {
            return false;
        }
        return Arrays.equals(blockTokenIds, b * blockTokens, (b + 1) * blockTokens,
                tokens, from, from + blockTokens);
    }

    private void copy(int src, int dst) {
        if (copier != null) {
            copier.copy(src, dst);
        } else {
            if (pendingCopies.length < (pendingCopyCount + 1) * 2) {
                pendingCopies = Arrays.copyOf(pendingCopies, Math.max(8, pendingCopies.length * 2));
            }
            pendingCopies[pendingCopyCount * 2] = src;
            pendingCopies[pendingCopyCount * 2 + 1] = dst;
            pendingCopyCount++;
        }
    }

    private void fire(KvCacheEvent e) {
        for (KvCacheListener l : listeners) {
            l.onEvent(e);
        }
    }

    private void ensureScratch(int n) {
        if (scratchHits.length < n) {
            int cap = Math.max(n, scratchHits.length * 2);
            scratchHits = new int[cap];
            scratchHashes = new long[cap];
        }
    }

    /**
     * The chained prefix hash of one block: a 64-bit mix of the parent hash, the salt and the
     * token ids (murmur3's finalizer after each step). Collisions are caught by
     * {@link #confirms}, so this needs speed and spread, not cryptographic strength.
     */
    static long blockHash(long parent, long salt, int[] tokens, int from, int count) {
        long h = mix(parent ^ 0x9E3779B97F4A7C15L) ^ mix(salt + 0xC2B2AE3D27D4EB4FL);
        for (int i = 0; i < count; i++) {
            h = mix(h ^ (tokens[from + i] & 0xFFFFFFFFL) * 0xFF51AFD7ED558CCDL) + i;
        }
        return mix(h ^ count);
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 33)) * 0xFF51AFD7ED558CCDL;
        z = (z ^ (z >>> 33)) * 0xC4CEB9FE1A85EC53L;
        return z ^ (z >>> 33);
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
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

    // ------------------------------------------------------------------ the sequence

    /**
     * A sequence's state in plain arrays: token ids, block table, chain hash. Arrays grow by
     * doubling, so a long run of single-token appends allocates O(log n) times in all, and a freed
     * sequence hands its arrays to the next one opened (so after free only id, length and options
     * may be read).
     */
    private static final class PagedSequence implements Sequence {
        final KvCacheManager owner;
        final String id;
        final SequenceOptions options;
        final Tenant tenant;
        boolean forked;
        long admission;
        long lastTouch;
        boolean tracksIdle;
        /** Blocks set aside for this sequence (maxTokens), and how many of them it has not taken yet. */
        int reserve;
        int outstanding;
        /** Bit per position: dropped by a retention policy; null until the first drop. */
        long[] dropped;
        int droppedCount;
        final long salt;
        final int priority;
        int[] tokens;
        int[] table;
        int length;
        int tableSize;
        int held;
        int cached;
        long chainHash = ROOT_HASH;
        int windowReleasedTo;
        volatile boolean live = true;

        PagedSequence(KvCacheManager owner, String id, SequenceOptions options, Tenant tenant,
                      int expectedTokens) {
            this.owner = owner;
            this.id = id;
            this.options = options;
            this.tenant = tenant;
            this.salt = options.cacheSalt();
            this.priority = options.priority();
            int cap = Math.max(expectedTokens, owner.blockTokens);
            this.tokens = owner.takeArray(owner.spareTokens, cap);
            this.table = owner.takeArray(owner.spareTables, ceilDiv(cap, owner.blockTokens));
        }

        void ensureCapacity(int len, int blocks) {
            if (tokens.length < len) {
                tokens = Arrays.copyOf(tokens, Math.max(len, tokens.length * 2));
            }
            if (table.length < blocks) {
                table = Arrays.copyOf(table, Math.max(blocks, table.length * 2));
            }
        }

        @Override
        public String id() {
            return id;
        }

        @Override
        public int length() {
            return length;
        }

        @Override
        public int blockCount() {
            return tableSize;
        }

        @Override
        public int[] blockTable() {
            checkReadable();
            return Arrays.copyOf(table, tableSize);
        }

        @Override
        public int blockTable(int[] dst) {
            checkReadable();
            if (dst.length < tableSize) {
                throw new IllegalArgumentException("dst has " + dst.length + " entries; sequence '" + id
                        + "' has " + tableSize + " blocks");
            }
            System.arraycopy(table, 0, dst, 0, tableSize);
            return tableSize;
        }

        @Override
        public long slot(int position) {
            checkReadable();
            if (position < 0 || position >= length) {
                throw new IllegalArgumentException("position " + position + " outside 0.."
                        + (length - 1) + " of sequence '" + id + "'");
            }
            int B = owner.blockTokens;
            int b = table[position / B];
            return b < 0 || isDropped(position) ? -1L : (long) b * B + position % B;
        }

        @Override
        public int heldBlocks() {
            return held;
        }

        @Override
        public int cachedTokens() {
            return cached;
        }

        @Override
        public int token(int position) {
            checkReadable();
            if (position < 0 || position >= length) {
                throw new IllegalArgumentException("position " + position + " outside 0.."
                        + (length - 1) + " of sequence '" + id + "'");
            }
            return tokens[position];
        }

        @Override
        public boolean isLive() {
            return live;
        }

        @Override
        public boolean isDropped(int position) {
            long[] d = dropped;
            return d != null && (position >>> 6) < d.length && (d[position >>> 6] & (1L << position)) != 0;
        }

        @Override
        public int droppedTokens() {
            return droppedCount;
        }

        @Override
        public String tenant() {
            return tenant.name;
        }

        @Override
        public SequenceOptions options() {
            return options;
        }

        private void checkReadable() {
            if (!live) {
                throw new IllegalStateException("sequence '" + id + "' was freed");
            }
        }

        @Override
        public String toString() {
            return "Sequence[" + id + ", length=" + length + ", blocks=" + tableSize + ", held=" + held + "]";
        }
    }
}
