package dev.kvcache;

import java.util.HexFormat;
import java.util.Objects;

/**
 * The 128-bit key of a cached prefix block: what leaves the process (events, tiers, routers) to
 * name "the KV of exactly these tokens after exactly that prefix, for this scope and salt".
 *
 * <p>Keys are chained and content-derived, so they are equal across JVMs and machines for the same
 * tokens, salt and scope. Each is the first 16 bytes of a SHA-256 digest; {@link #hi()} is bytes
 * 0..7 and {@link #lo()} bytes 8..15, both big-endian. The byte encoding (all integers big-endian):
 * <pre>
 *   root  = SHA-256( "kvcache.prefix.v1" (17 ASCII bytes) || salt (8) || scopeLength (4) || scope (UTF-8) )
 *   block = SHA-256( parent.hi (8) || parent.lo (8) || tokenCount (4) || tokenId (4) x tokenCount )
 * </pre>
 * where {@code scope} is the tenant name, or a scope length of -1 (0xFFFFFFFF) and no bytes when
 * the manager shares its cache across tenants ({@link KvCacheManager.Builder#shareAcrossTenants}).
 * The first block's parent is the root key. A cryptographic digest is used because a key that
 * leaves the process is trusted by whoever finds it (a tier, another engine): finding two token
 * blocks with one 128-bit truncated SHA-256 key takes about 2^64 work, against about 2^33 for the
 * old 64-bit mix (vLLM moved to SHA-256 for the same reason, CVE-2025-25183).
 *
 * <p>Inside one manager, hits are verified structurally instead (see {@link KvCacheManager}), so
 * these keys are computed only when something outside needs them: a listener or a tier.
 *
 * @param hi bytes 0..7 of the digest
 * @param lo bytes 8..15 of the digest
 */
public record PrefixKey(long hi, long lo) {

    /**
     * The key every chain of {@code salt} in {@code scope} (null: shared across tenants) starts from.
     *
     * @param salt the cache salt
     * @param scope the tenant, or null when shared across tenants
     * @return the key every chain of {@code salt} in {@code scope} (null: shared across tenants) starts from
     */
    public static PrefixKey root(long salt, String scope) {
        PrefixKeyHasher h = new PrefixKeyHasher();
        h.root(salt, scope);
        return new PrefixKey(h.hi, h.lo);
    }

    /**
     * The key of the block holding {@code tokens[from, from+count)} after the block keyed {@code parent}.
     *
     * @param parent the key of the block before, or a root
     * @param tokens an array holding the block's token ids
     * @param from where the block's tokens start
     * @param count the block's tokens
     * @return the key of the block holding {@code tokens[from, from+count)} after the block keyed {@code parent}
     */
    public static PrefixKey chain(PrefixKey parent, int[] tokens, int from, int count) {
        Objects.requireNonNull(parent, "parent");
        Objects.checkFromIndexSize(from, count, tokens.length);
        PrefixKeyHasher h = new PrefixKeyHasher();
        h.block(parent.hi, parent.lo, tokens, from, count);
        return new PrefixKey(h.hi, h.lo);
    }

    /**
     * 32 lowercase hex digits, hi first.
     *
     * @return 32 lowercase hex digits, hi first
     */
    public String toHex() {
        return HexFormat.of().toHexDigits(hi) + HexFormat.of().toHexDigits(lo);
    }

    @Override
    public String toString() {
        return toHex();
    }
}
