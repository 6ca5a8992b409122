package dev.kvcache;

import java.util.Arrays;
import java.util.Objects;

/**
 * What a tier's copy of a block must match before it is loaded: the block's {@link PrefixKey}, the
 * key of the block before it (null for a first block), the cache salt, the scope (tenant, or null
 * when the cache is shared across tenants), the token ids and the layout's
 * {@link #fingerprint(KvLayout) fingerprint}. The key alone would do if SHA-256 were all that
 * stood between a tier and a wrong block; the entry makes a tier's bookkeeping error, a truncated
 * file or a key reused across models a miss as well.
 *
 * @param key               the block's prefix key
 * @param parentKey         the key of the block before it, or null for a first block
 * @param salt              the cache salt
 * @param scope             the tenant whose prefix cache holds it, or null when shared
 * @param tokens            the block's token ids
 * @param layoutFingerprint {@link #fingerprint(KvLayout)} of the layout its bytes are in
 */
public record TierEntry(PrefixKey key, PrefixKey parentKey, long salt, String scope, int[] tokens,
                        long layoutFingerprint) {

    /** Checks that the key and the tokens are present. */
    public TierEntry {
        Objects.requireNonNull(key, "key");
        Objects.requireNonNull(tokens, "tokens");
    }

    /**
     * Whether {@code other} describes the same block.
     *
     * @param other another entry, or null
     * @return true when every field is equal (token ids by content)
     */
    public boolean matches(TierEntry other) {
        return other != null && key.equals(other.key) && Objects.equals(parentKey, other.parentKey)
                && salt == other.salt && Objects.equals(scope, other.scope) && Arrays.equals(tokens, other.tokens)
                && layoutFingerprint == other.layoutFingerprint;
    }

    /**
     * A stable 64-bit fingerprint of a layout (layers, KV heads, head size, block tokens, format
     * name): bytes kept under one layout are never loaded under another.
     *
     * @param l a layout
     * @return its fingerprint (FNV-1a over the fields and the format's name)
     */
    public static long fingerprint(KvLayout l) {
        long h = 0xcbf29ce484222325L;
        h = fnv(h, l.layers());
        h = fnv(h, l.kvHeads());
        h = fnv(h, l.headDim());
        h = fnv(h, l.blockTokens());
        for (char c : l.format().name().toCharArray()) {
            h = fnv(h, c);
        }
        return h;
    }

    private static long fnv(long h, int v) {
        for (int i = 0; i < 4; i++) {
            h = (h ^ ((v >>> (8 * i)) & 0xFF)) * 0x100000001b3L;
        }
        return h;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TierEntry e && matches(e);
    }

    @Override
    public int hashCode() {
        return key.hashCode();
    }

    @Override
    public String toString() {
        return "TierEntry[key=" + key + ", parent=" + parentKey + ", salt=" + salt + ", scope=" + scope
                + ", tokens=" + tokens.length + ", layout=" + Long.toHexString(layoutFingerprint) + "]";
    }
}
