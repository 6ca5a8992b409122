package dev.kvcache;

import java.nio.charset.StandardCharsets;
import java.security.DigestException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * Computes {@link PrefixKey}s without allocating: one reusable digest, input buffer and output
 * buffer; the result is left in {@link #hi} and {@link #lo}. Not thread-safe: the manager owns one
 * and uses it under its lock.
 */
final class PrefixKeyHasher {

    private static final byte[] ROOT_TAG = "kvcache.prefix.v1".getBytes(StandardCharsets.US_ASCII);

    private final MessageDigest sha;
    private byte[] in = new byte[256];
    private final byte[] out = new byte[32];
    long hi;
    long lo;

    PrefixKeyHasher() {
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is required of every Java platform", e);
        }
    }

    void root(long salt, String scope) {
        byte[] s = scope == null ? new byte[0] : scope.getBytes(StandardCharsets.UTF_8);
        int n = ROOT_TAG.length + 8 + 4 + s.length;
        ensure(n);
        System.arraycopy(ROOT_TAG, 0, in, 0, ROOT_TAG.length);
        int p = putLong(in, ROOT_TAG.length, salt);
        p = putInt(in, p, scope == null ? -1 : s.length);
        System.arraycopy(s, 0, in, p, s.length);
        digest(n);
    }

    void block(long parentHi, long parentLo, int[] tokens, int from, int count) {
        int n = 20 + 4 * count;
        ensure(n);
        int p = putLong(in, 0, parentHi);
        p = putLong(in, p, parentLo);
        p = putInt(in, p, count);
        for (int i = 0; i < count; i++) {
            p = putInt(in, p, tokens[from + i]);
        }
        digest(n);
    }

    private void digest(int n) {
        sha.update(in, 0, n);
        try {
            sha.digest(out, 0, 32);
        } catch (DigestException e) {
            throw new IllegalStateException(e);
        }
        hi = getLong(out, 0);
        lo = getLong(out, 8);
    }

    private void ensure(int n) {
        if (in.length < n) {
            in = new byte[Math.max(n, in.length * 2)];
        }
    }

    private static int putLong(byte[] a, int p, long v) {
        for (int i = 7; i >= 0; i--) {
            a[p++] = (byte) (v >>> (8 * i));
        }
        return p;
    }

    private static int putInt(byte[] a, int p, int v) {
        a[p] = (byte) (v >>> 24);
        a[p + 1] = (byte) (v >>> 16);
        a[p + 2] = (byte) (v >>> 8);
        a[p + 3] = (byte) v;
        return p + 4;
    }

    private static long getLong(byte[] a, int p) {
        long v = 0;
        for (int i = 0; i < 8; i++) {
            v = (v << 8) | (a[p + i] & 0xFF);
        }
        return v;
    }
}
