package dev.kvcache;

import org.agrona.collections.Long2LongHashMap;

import java.security.SecureRandom;
import java.util.Arrays;

/**
 * Which blocks hold published prefix content, and how a hit is proven.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>A block is published at most once at a time, under one index hash; the map points each
 *       hash at at most one published block.</li>
 *   <li>A published block records the exact physical block it was published after
 *       ({@link #parentBlock}, {@link #ROOT} for the first block of a chain) and that block's
 *       {@link #generation} at the time. A block's generation grows by one whenever its
 *       publication ends ({@link #unpublish}, {@link #clear}), so a record naming an old
 *       generation can never be confirmed again.</li>
 *   <li>{@link #confirms} holds only for a published block whose stored tokens, salt and scope
 *       equal the query and whose recorded parent is the block the lookup matched one position
 *       earlier, at that block's current generation. By induction from {@link #ROOT}, a chain of
 *       confirmed hits proves the whole prefix token by token: the index hash only finds
 *       candidates, so a hash collision (forged or not) costs a miss, never wrong KV.</li>
 * </ul>
 * The index hash is a 64-bit mix keyed by a per-manager random seed, so collisions cannot be
 * computed offline either; keys that leave the process are {@link PrefixKey}s.
 *
 * <p>Flat arrays indexed by block id; Agrona's {@link Long2LongHashMap} sized so it never rehashes.
 * No allocation after construction. Driven under the manager's lock.
 */
final class PrefixIndex {

    /** The parent of a chain's first block. */
    static final int ROOT = -1;
    /** A sequence whose chain cannot be extended (its parent's publication ended, or tokens were dropped). */
    static final int BROKEN = -2;
    /** The scope of a manager that shares its cache across tenants. */
    static final int SHARED_SCOPE = -1;

    private static final int NIL = -1;

    private final int blockTokens;
    private final long seed;
    private final boolean[] published;
    private final long[] indexHash;
    private final int[] parentBlock;
    private final int[] parentGen;
    private final int[] generation;
    private final long[] salt;
    private final int[] scope;
    private final int[] tokenIds;
    private final boolean[] hasKey;
    private final long[] keyHi;
    private final long[] keyLo;
    private final Long2LongHashMap byHash;

    PrefixIndex(int blocks, int blockTokens, boolean enabled) {
        this.blockTokens = blockTokens;
        this.seed = new SecureRandom().nextLong();
        int n = enabled ? blocks : 0;
        published = new boolean[blocks];
        generation = new int[blocks];
        indexHash = new long[n];
        parentBlock = new int[n];
        parentGen = new int[n];
        salt = new long[n];
        scope = new int[n];
        tokenIds = new int[Math.multiplyExact(n, blockTokens)];
        hasKey = new boolean[n];
        keyHi = new long[n];
        keyLo = new long[n];
        // load factor 0.5 and room for every block: never rehashes
        byHash = new Long2LongHashMap(Math.max(8, n * 2), 0.5f, NIL);
    }

    boolean isPublished(int b) {
        return published[b];
    }

    int generation(int b) {
        return generation[b];
    }

    /** The seeded index hash of a block of tokens after a block whose index hash is {@code parentHash}. */
    long hash(long parentHash, long salt, int scope, int[] tokens, int from) {
        long h = mix(parentHash ^ seed) ^ mix(salt + 0xC2B2AE3D27D4EB4FL) ^ mix(scope + 0x165667B19E3779F9L);
        for (int i = 0; i < blockTokens; i++) {
            h = mix(h ^ (tokens[from + i] & 0xFFFFFFFFL) * 0xFF51AFD7ED558CCDL) + i;
        }
        return mix(h ^ blockTokens);
    }

    /** The root of every chain's index hashes (what the first block is hashed after). */
    long rootHash() {
        return mix(seed + 0x9E3779B97F4A7C15L);
    }

    /**
     * The longest proven prefix: matches {@code tokens[off, off + maxBlocks*B)} block by block from
     * the root, each hit confirmed against the block matched before it. Fills {@code blocks} and
     * {@code hashes} (when not null) and returns how many blocks matched.
     */
    int match(long salt, int scope, int[] tokens, int off, int maxBlocks, int[] blocks, long[] hashes) {
        long h = rootHash();
        int parent = ROOT;
        int parentGen = 0;
        for (int j = 0; j < maxBlocks; j++) {
            int from = off + j * blockTokens;
            h = hash(h, salt, scope, tokens, from);
            int b = find(h);
            if (b < 0 || !confirms(b, parent, parentGen, salt, scope, tokens, from)) {
                return j;
            }
            if (blocks != null) {
                blocks[j] = b;
                hashes[j] = h;
            }
            parent = b;
            parentGen = generation[b];
        }
        return maxBlocks;
    }

    /** The published block under {@code h}, or -1. */
    int find(long h) {
        return (int) byHash.get(h);
    }

    boolean confirms(int b, int parent, int parentGeneration, long salt, int scope, int[] tokens, int from) {
        if (!published[b] || parentBlock[b] != parent || this.salt[b] != salt || this.scope[b] != scope) {
            return false;
        }
        if (parent != ROOT && (parentGen[b] != parentGeneration || generation[parent] != parentGeneration)) {
            return false;
        }
        return Arrays.equals(tokenIds, b * blockTokens, (b + 1) * blockTokens, tokens, from, from + blockTokens);
    }

    /** Publishes {@code b}; the caller has unpublished whatever held {@code h} before. */
    void publish(int b, long h, int parent, int parentGeneration, long salt, int scope, int[] tokens, int from) {
        published[b] = true;
        indexHash[b] = h;
        parentBlock[b] = parent;
        parentGen[b] = parentGeneration;
        this.salt[b] = salt;
        this.scope[b] = scope;
        hasKey[b] = false;
        System.arraycopy(tokens, from, tokenIds, b * blockTokens, blockTokens);
        byHash.put(h, b);
    }

    void setKey(int b, long hi, long lo) {
        hasKey[b] = true;
        keyHi[b] = hi;
        keyLo[b] = lo;
    }

    boolean hasKey(int b) {
        return published[b] && hasKey[b];
    }

    long keyHi(int b) {
        return keyHi[b];
    }

    long keyLo(int b) {
        return keyLo[b];
    }

    long salt(int b) {
        return salt[b];
    }

    /** Ends {@code b}'s publication: its hash no longer finds it and its generation moves on. */
    void unpublish(int b) {
        if (!published[b]) {
            return;
        }
        long h = indexHash[b];
        if (byHash.get(h) == b) {
            byHash.remove(h);
        }
        published[b] = false;
        hasKey[b] = false;
        generation[b]++;
    }

    /** The key of the published block {@code b}, or null when none was computed. */
    PrefixKey key(int b) {
        return hasKey(b) ? new PrefixKey(keyHi[b], keyLo[b]) : null;
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 33)) * 0xFF51AFD7ED558CCDL;
        z = (z ^ (z >>> 33)) * 0xC4CEB9FE1A85EC53L;
        return z ^ (z >>> 33);
    }
}
