package dev.kvcache;

import java.util.Arrays;

/**
 * Publication: when a sequence's full blocks become hit-able, and the keys that describe them.
 *
 * <h2>Publish after write</h2>
 * An append only reserves slots; the engine writes their KV afterwards. So a block the append
 * filled is <em>pending</em> until the engine shows its KV exists: its sequence's next append (an
 * engine appends the next token only after computing the previous ones), an explicit
 * {@link KvCacheManager#commit}, or {@link KvCacheManager#free}. {@link KvCacheManager#abort} frees
 * without committing, so a failed or cancelled request never publishes KV it did not write.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>A block is published only by {@link #commit} of a sequence that holds it, under the chain
 *       that sequence proved: its parent is the block published (or found published) for the
 *       sequence's previous block.</li>
 *   <li>When identical content with the same proven parent is already published, that block stays
 *       the one found by lookups and the committing sequence continues its chain from it.</li>
 *   <li>An index entry that does not confirm (its parent's publication ended, or a hash collision)
 *       is replaced, so stale entries never block fresh content.</li>
 *   <li>A sequence's chain ends for good (it publishes nothing more) when the block it would name
 *       as parent lost its publication (evicted, replaced or reset), when the block to publish is
 *       no longer held (released by a window or a retention policy), or when it dropped tokens
 *       (later KV saw a pruned context). Ending early costs cache hits, never correctness.</li>
 *   <li>{@link PrefixKey}s are computed only while someone listens (or a tier needs them), from the
 *       sequence's own tokens, once per block.</li>
 * </ul>
 */
final class Publisher {

    private final PrefixIndex index;
    private final BlockPool pool;
    private final Notifications notes;
    private final Counters counters;
    private final int blockTokens;
    private final boolean enabled;
    private final Tiers tiers;
    private PrefixKeyHasher hasher;

    Publisher(PrefixIndex index, BlockPool pool, Notifications notes, Counters counters, int blockTokens,
              boolean enabled, Tiers tiers) {
        this.index = index;
        this.pool = pool;
        this.notes = notes;
        this.counters = counters;
        this.blockTokens = blockTokens;
        this.enabled = enabled;
        this.tiers = tiers;
    }

    boolean enabled() {
        return enabled;
    }

    /** Offers every pending full block of {@code q} to the index, in order. */
    void commit(PagedSequence q) {
        if (!enabled || q.length - q.committedBlocks * blockTokens < blockTokens) {
            return; // no full block since the last commit (the common decode step: no division)
        }
        commit(q, q.length / blockTokens);
    }

    /** Offers {@code q}'s pending full blocks below {@code full} to the index, in order. */
    void commit(PagedSequence q, int full) {
        if (q.committedBlocks >= full) {
            return;
        }
        if (enabled) {
            for (int i = q.committedBlocks; i < full; i++) {
                commitBlock(q, i);
            }
        }
        q.committedBlocks = full;
    }

    /** Pending blocks of {@code q} that an abort will never publish (none without prefix caching). */
    int pending(PagedSequence q) {
        return enabled ? Math.max(0, q.length / blockTokens - q.committedBlocks) : 0;
    }

    /** Continues {@code q}'s chain through a prefix hit on block {@code b} at logical position {@code i}. */
    void hit(PagedSequence q, int b, long h, int i) {
        advance(q, b, h);
        if (index.hasKey(b) && q.keyedBlocks == i) {
            q.keyHi = index.keyHi(b);
            q.keyLo = index.keyLo(b);
            q.keyedBlocks = i + 1;
        }
        q.committedBlocks = i + 1;
    }

    private void commitBlock(PagedSequence q, int i) {
        int parent = q.chainBlock;
        if (parent == PrefixIndex.BROKEN) {
            return;
        }
        int b = q.table[i];
        if (b < 0 || (parent >= 0 && index.generation(parent) != q.chainGen)) {
            q.chainBlock = PrefixIndex.BROKEN;
            return;
        }
        int from = i * blockTokens;
        long h = index.hash(q.chainHash, q.salt, q.scope, q.tokens, from);
        int found = index.find(h);
        if (found >= 0 && index.confirms(found, parent, q.chainGen, q.salt, q.scope, q.tokens, from)) {
            hit(q, found, h, i);
            return;
        }
        if (index.isPublished(b) && found != b) {
            q.chainBlock = PrefixIndex.BROKEN; // published under another key: leave it alone
            return;
        }
        if (found >= 0) {
            // a stale entry (its parent's publication ended, or a collision), possibly b itself
            // published after a parent that is gone: b holds this chain's KV, so it takes the key
            replace(found);
        }
        index.publish(b, h, parent, q.chainGen, q.salt, q.scope, q.tokens, from);
        counters.publishedBlocks++;
        if (notes.listening() || tiers != null) {
            boolean first = i == 0;
            long parentHi = 0;
            long parentLo = 0;
            if (!first) {
                keyUpTo(q, i);
                parentHi = q.keyHi;
                parentLo = q.keyLo;
            }
            keyUpTo(q, i + 1);
            index.setKey(b, q.keyHi, q.keyLo);
            PrefixKey key = new PrefixKey(q.keyHi, q.keyLo);
            PrefixKey parentKey = first ? null : new PrefixKey(parentHi, parentLo);
            if (tiers != null) {
                tiers.published(b, q, i, key, parentKey);
            }
            if (notes.listening()) {
                notes.event(new KvCacheEvent.BlockStored(b, key.hi(),
                        first ? KvCacheManager.ROOT_HASH : parentKey.hi(), q.salt,
                        Arrays.copyOfRange(q.tokens, from, from + blockTokens), key, parentKey, scopeName(q)));
            }
        }
        advance(q, b, h);
    }

    /** Ends the publication of an entry that no longer confirms, so fresh content can take its hash. */
    private void replace(int stale) {
        if (pool.refCount(stale) == 0) {
            pool.dropCached(stale);
        } else {
            PrefixKey key = notes.listening() ? index.key(stale) : null;
            index.unpublish(stale);
            if (notes.listening()) {
                notes.event(new KvCacheEvent.BlockRemoved(stale, key == null ? 0L : key.hi(), key));
            }
        }
    }

    private void advance(PagedSequence q, int b, long h) {
        q.chainBlock = b;
        q.chainGen = index.generation(b);
        q.chainHash = h;
    }

    /** Leaves in q.keyHi/keyLo the key of q's block n-1 (the root key for n == 0). */
    private void keyUpTo(PagedSequence q, int n) {
        if (q.keyedBlocks == n) {
            return;
        }
        if (hasher == null) {
            hasher = new PrefixKeyHasher();
        }
        if (q.keyedBlocks < 0 || q.keyedBlocks > n) {
            hasher.root(q.salt, scopeName(q));
            q.keyHi = hasher.hi;
            q.keyLo = hasher.lo;
            q.keyedBlocks = 0;
        }
        for (int j = q.keyedBlocks; j < n; j++) {
            hasher.block(q.keyHi, q.keyLo, q.tokens, j * blockTokens, blockTokens);
            q.keyHi = hasher.hi;
            q.keyLo = hasher.lo;
        }
        q.keyedBlocks = n;
    }

    private static String scopeName(PagedSequence q) {
        return q.scope == PrefixIndex.SHARED_SCOPE ? null : q.tenant.name;
    }
}
