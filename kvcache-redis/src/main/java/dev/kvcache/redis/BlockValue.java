package dev.kvcache.redis;

import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;

/**
 * The value a {@link RedisTier} keeps under a block's key (format version 1, integers
 * big-endian):
 * <pre>
 *   offset        size  field
 *   0             4     magic 0x4B565231 ("KVR1")
 *   4             2     format version, 1
 *   6             2     flags: bit 0 = has a parent key, bit 1 = has a scope, bit 2 = sealed
 *   8             8     layout fingerprint (TierEntry.fingerprint)
 *   16            16    key (hi, lo)
 *   32            16    parent key (hi, lo; zeros when none)
 *   48            8     salt
 *   56            4     S, scope length in bytes (0 when none)
 *   60            S     scope, UTF-8
 *   60+S          4     T, token count
 *   64+S          4*T   token ids
 *   64+S+4T       8     P, payload length (= layout.bytesPerBlock())
 *   72+S+4T       4     CRC32C of the payload
 *   76+S+4T       4     CRC32C of bytes [0, 76+S+4T): the header
 *   80+S+4T       P     payload: the store's block exactly as exportBlock wrote it
 *   80+S+4T+P     32    only when sealed: GCM tag (16) and salt (16); the payload is then
 *                       AES-GCM ciphertext, the Redis key and bytes [0, 80+S+4T) its
 *                       authenticated data (ValueSeal)
 * </pre>
 * The header comes first so that a reader checks it before touching the payload; the payload's
 * checksum is the one {@link dev.kvcache.KvStore#exportBlockCrc32c} takes while copying (of the
 * plaintext, for a sealed value: a reader opens the seal first).
 */
final class BlockValue {

    static final int MAGIC = 0x4B565231;
    static final short VERSION = 1;
    static final int MAX_HEADER = 65_536;
    private static final int FIXED = 80;
    private static final int FLAG_PARENT = 1;
    private static final int FLAG_SCOPE = 2;
    private static final int FLAG_SEALED = 4;

    private BlockValue() {
    }

    /** Header length of {@code e}'s value, or -1 if it would exceed {@link #MAX_HEADER}. */
    static int headerLength(TierEntry e) {
        long h = FIXED + (e.scope() == null ? 0 : e.scope().getBytes(StandardCharsets.UTF_8).length)
                + 4L * e.tokens().length;
        return h > MAX_HEADER ? -1 : (int) h;
    }

    /**
     * Writes {@code e}'s header into {@code dst[0, headerLength)} with the payload's checksum;
     * {@code sealed}: the value ends in a {@link ValueSeal} tag after the payload.
     */
    static void writeHeader(byte[] dst, TierEntry e, long payloadBytes, int payloadCrc, boolean sealed) {
        byte[] scope = e.scope() == null ? new byte[0] : e.scope().getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.wrap(dst);
        b.putInt(MAGIC).putShort(VERSION);
        b.putShort((short) ((e.parentKey() != null ? FLAG_PARENT : 0) | (e.scope() != null ? FLAG_SCOPE : 0)
                | (sealed ? FLAG_SEALED : 0)));
        b.putLong(e.layoutFingerprint()).putLong(e.key().hi()).putLong(e.key().lo());
        b.putLong(e.parentKey() == null ? 0 : e.parentKey().hi()).putLong(e.parentKey() == null ? 0 : e.parentKey().lo());
        b.putLong(e.salt()).putInt(scope.length).put(scope).putInt(e.tokens().length);
        for (int t : e.tokens()) {
            b.putInt(t);
        }
        b.putLong(payloadBytes).putInt(payloadCrc);
        CRC32C crc = new CRC32C();
        crc.update(dst, 0, b.position());
        b.putInt((int) crc.getValue());
    }

    /**
     * The offset of the payload in {@code v} if {@code v} is a well-formed value for
     * {@code expected} (every header field equal, header and payload checksums right, exact
     * length), else -1. Never throws on garbage.
     */
    static int verify(ByteBuffer v, TierEntry expected, long payloadBytes) {
        int h = intact(v, expected.key(), expected.layoutFingerprint(), payloadBytes);
        return h >= 0 && matches(v, expected) ? h : -1;
    }

    /**
     * The offset of the payload if {@code v} is a whole, undamaged value of block {@code key}
     * under layout {@code fingerprint}: magic, version, fingerprint and key, a header length that
     * its own scope and token counts give, exact total length, payload length, and both CRC32C
     * right; else -1. Checks nothing about the entry a caller expects (see {@link #matches}).
     * Never throws on garbage. {@code v}'s bytes are those from its position to its limit (the
     * offset returned is relative to its position); its position is not moved.
     */
    static int intact(ByteBuffer v, PrefixKey key, long fingerprint, long payloadBytes) {
        if (!claims(v, key, fingerprint)) {
            return -1;
        }
        ByteBuffer b = v.slice();
        int length = b.remaining();
        int s = b.getInt(56);
        if (s < 0 || s > MAX_HEADER || 64L + s > length) {
            return -1;
        }
        int t = b.getInt(60 + s);
        long h = FIXED + (long) s + 4L * t;
        if (t < 0 || h > MAX_HEADER || h + payloadBytes + (sealed(b) ? ValueSeal.TAG_BYTES : 0) != length) {
            return -1;
        }
        int at = (int) h - 16;
        if (b.getLong(at) != payloadBytes) {
            return -1;
        }
        int payloadCrc = b.getInt(at + 8);
        CRC32C crc = new CRC32C();
        crc.update(b.slice(0, at + 12));
        if (b.getInt(at + 12) != (int) crc.getValue()) {
            return -1;
        }
        crc.reset();
        crc.update(b.slice((int) h, (int) payloadBytes));
        return (int) crc.getValue() == payloadCrc ? (int) h : -1;
    }

    /**
     * Whether the header of {@code v}, an {@link #intact} value, names exactly {@code expected}:
     * flags, layout fingerprint, key, parent key, salt, scope and token ids.
     */
    static boolean matches(ByteBuffer v, TierEntry expected) {
        int h = headerLength(expected);
        if (h < 0 || v.remaining() < h) {
            return false;
        }
        ByteBuffer b = v.slice();
        b.position(6);
        int flags = b.getShort() & ~FLAG_SEALED; // the seal is checked apart (ValueSeal), not a field of the entry
        PrefixKey p = expected.parentKey();
        String s = expected.scope();
        if (flags != ((p != null ? FLAG_PARENT : 0) | (s != null ? FLAG_SCOPE : 0))
                || b.getLong() != expected.layoutFingerprint()
                || b.getLong() != expected.key().hi() || b.getLong() != expected.key().lo()
                || b.getLong() != (p == null ? 0 : p.hi()) || b.getLong() != (p == null ? 0 : p.lo())
                || b.getLong() != expected.salt()) {
            return false;
        }
        byte[] scope = s == null ? new byte[0] : s.getBytes(StandardCharsets.UTF_8);
        if (b.getInt() != scope.length) {
            return false;
        }
        for (byte c : scope) {
            if (b.get() != c) {
                return false;
            }
        }
        int[] tokens = expected.tokens();
        if (b.getInt() != tokens.length) {
            return false;
        }
        for (int t : tokens) {
            if (b.getInt() != t) {
                return false;
            }
        }
        return true;
    }

    /** Whether {@code v} (at least the fixed header) says it ends in a {@link ValueSeal} tag. */
    static boolean sealed(ByteBuffer v) {
        return v.remaining() >= FIXED && (v.getShort(v.position() + 6) & FLAG_SEALED) != 0;
    }

    /** Whether {@code v} looks like a value of {@code key} (magic, version, key): a cheap lookup filter. */
    static boolean claims(ByteBuffer v, PrefixKey key, long fingerprint) {
        if (v == null || v.remaining() < FIXED) {
            return false;
        }
        ByteBuffer b = v.slice();
        return b.getInt(0) == MAGIC && b.getShort(4) == VERSION && b.getLong(8) == fingerprint
                && b.getLong(16) == key.hi() && b.getLong(24) == key.lo();
    }
}
