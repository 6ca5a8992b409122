package dev.kvcache;

import java.util.Arrays;
import java.util.concurrent.locks.StampedLock;

/**
 * A sequence's state in plain arrays: token ids, block table, the prefix chain it extends.
 *
 * <h2>Threads</h2>
 * Only the manager changes it, under its write lock. Reads ({@link Sequence}'s methods) are safe
 * from any thread while other threads change or free it: each reads optimistically under the
 * manager's {@link StampedLock} and, when a change raced it, again under the read lock. So a read
 * returns what was true at one moment, or throws IllegalStateException once the sequence is freed
 * (its arrays then go to the next sequence opened, so no stale read may escape).
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>{@code table[0, tableSize)} holds {@code ceil(length / B)} entries, -1 where a window or a
 *       retention policy released the block; {@code held} counts the others.</li>
 *   <li>Full blocks {@code [0, committedBlocks)} have been offered to the prefix index (published,
 *       or found published already); later full blocks are <em>pending</em>: their KV may not be
 *       written yet, so nobody can hit them until the engine commits (see {@link KvCacheManager}).</li>
 *   <li>{@code chainBlock} is the published block that the next committed block will name as its
 *       parent ({@link PrefixIndex#ROOT} before the first, {@link PrefixIndex#BROKEN} when the chain
 *       cannot be extended), valid only while its generation is still {@code chainGen}.</li>
 * </ul>
 */
final class PagedSequence implements Sequence {

    final Object owner;
    private final StampedLock lock;
    final int blockTokens;
    final String id;
    final SequenceOptions options;
    final TenantAccounts.Tenant tenant;
    final long salt;
    final int scope;
    final int priority;
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
    int[] tokens;
    int[] table;
    int length;
    int tableSize;
    int held;
    int cached;
    int windowReleasedTo;
    int preemptions;
    // ---- the prefix chain
    int committedBlocks;
    int chainBlock = PrefixIndex.ROOT;
    int chainGen;
    long chainHash;
    /** PrefixKeys of blocks [0, keyedBlocks) are known; keyHi/keyLo is the last (or the root when 0 and keyed). */
    int keyedBlocks = -1;
    long keyHi;
    long keyLo;
    boolean live = true;

    PagedSequence(Object owner, StampedLock lock, int blockTokens, String id, SequenceOptions options,
                  TenantAccounts.Tenant tenant, int scope, int[] tokens, int[] table, long rootHash) {
        this.owner = owner;
        this.lock = lock;
        this.blockTokens = blockTokens;
        this.id = id;
        this.options = options;
        this.tenant = tenant;
        this.scope = scope;
        this.salt = options.cacheSalt();
        this.priority = options.priority();
        this.tokens = tokens;
        this.table = table;
        this.chainHash = rootHash;
    }

    void ensureCapacity(int len, int blocks) {
        if (tokens.length < len) {
            tokens = Arrays.copyOf(tokens, Math.max(len, tokens.length * 2));
        }
        if (table.length < blocks) {
            table = Arrays.copyOf(table, Math.max(blocks, table.length * 2));
        }
    }

    /** Copies the chain state of {@code p} (a fork continues its parent's chain). */
    void copyChain(PagedSequence p) {
        committedBlocks = p.committedBlocks;
        chainBlock = p.chainBlock;
        chainGen = p.chainGen;
        chainHash = p.chainHash;
        keyedBlocks = p.keyedBlocks;
        keyHi = p.keyHi;
        keyLo = p.keyLo;
    }

    boolean isDroppedLocked(int position) {
        long[] d = dropped;
        return d != null && (position >>> 6) < d.length && (d[position >>> 6] & (1L << position)) != 0;
    }

    // ------------------------------------------------------------------ reads, safe from any thread

    @Override
    public String id() {
        return id;
    }

    @Override
    public int length() {
        long st = lock.tryOptimisticRead();
        int n = length;
        if (lock.validate(st)) {
            return n;
        }
        st = lock.readLock();
        try {
            return length;
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public int blockCount() {
        long st = lock.tryOptimisticRead();
        int n = tableSize;
        if (lock.validate(st)) {
            return n;
        }
        st = lock.readLock();
        try {
            return tableSize;
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public int[] blockTable() {
        long st = lock.readLock();
        try {
            checkReadable();
            return Arrays.copyOf(table, tableSize);
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public int blockTable(int[] dst) {
        long st = lock.tryOptimisticRead();
        if (st != 0) {
            boolean ok = live;
            int n = tableSize;
            int[] t = table;
            if (ok && n <= dst.length && n <= t.length) {
                System.arraycopy(t, 0, dst, 0, n);
                if (lock.validate(st)) {
                    return n;
                }
            }
        }
        st = lock.readLock();
        try {
            checkReadable();
            if (dst.length < tableSize) {
                throw new IllegalArgumentException("dst has " + dst.length + " entries; sequence '" + id
                        + "' has " + tableSize + " blocks");
            }
            System.arraycopy(table, 0, dst, 0, tableSize);
            return tableSize;
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public long slot(int position) {
        long st = lock.tryOptimisticRead();
        if (st != 0) {
            boolean ok = live;
            int len = length;
            int[] t = table;
            int i = position / blockTokens;
            if (ok && position >= 0 && position < len && i < t.length) {
                int b = t[i];
                long s = b < 0 || isDroppedLocked(position) ? -1L : (long) b * blockTokens + position % blockTokens;
                if (lock.validate(st)) {
                    return s;
                }
            }
        }
        st = lock.readLock();
        try {
            checkReadable();
            checkPosition(position);
            int b = table[position / blockTokens];
            return b < 0 || isDroppedLocked(position) ? -1L : (long) b * blockTokens + position % blockTokens;
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public int heldBlocks() {
        long st = lock.tryOptimisticRead();
        int v = held;
        if (lock.validate(st)) {
            return v;
        }
        st = lock.readLock();
        try {
            return held;
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public int cachedTokens() {
        long st = lock.tryOptimisticRead();
        int v = cached;
        if (lock.validate(st)) {
            return v;
        }
        st = lock.readLock();
        try {
            return cached;
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public int token(int position) {
        long st = lock.tryOptimisticRead();
        if (st != 0) {
            boolean ok = live;
            int len = length;
            int[] t = tokens;
            if (ok && position >= 0 && position < len && position < t.length) {
                int v = t[position];
                if (lock.validate(st)) {
                    return v;
                }
            }
        }
        st = lock.readLock();
        try {
            checkReadable();
            checkPosition(position);
            return tokens[position];
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public boolean isLive() {
        long st = lock.tryOptimisticRead();
        boolean v = live;
        if (lock.validate(st)) {
            return v;
        }
        st = lock.readLock();
        try {
            return live;
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public boolean isDropped(int position) {
        long st = lock.tryOptimisticRead();
        boolean v = isDroppedLocked(position);
        if (lock.validate(st)) {
            return v;
        }
        st = lock.readLock();
        try {
            return isDroppedLocked(position);
        } finally {
            lock.unlockRead(st);
        }
    }

    @Override
    public int droppedTokens() {
        long st = lock.tryOptimisticRead();
        int v = droppedCount;
        if (lock.validate(st)) {
            return v;
        }
        st = lock.readLock();
        try {
            return droppedCount;
        } finally {
            lock.unlockRead(st);
        }
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

    private void checkPosition(int position) {
        if (position < 0 || position >= length) {
            throw new IllegalArgumentException("position " + position + " outside 0.."
                    + (length - 1) + " of sequence '" + id + "'");
        }
    }

    @Override
    public String toString() {
        return "Sequence[" + id + ", length=" + length + ", blocks=" + tableSize + ", held=" + held + "]";
    }
}
