package dev.kvcache.redis;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;

/**
 * The fleet's seal on the values a {@link RedisTier} writes: an HMAC-SHA256 tag, keyed with a
 * secret the fleet's engines share, over every byte of the value before it (header and payload),
 * appended as the value's last {@value #TAG_BYTES} bytes and announced by the header's
 * {@code sealed} flag ({@link BlockValue}).
 *
 * <p><b>Why.</b> The checksums of a value catch damage and a value of another block, but not a
 * writer: anyone who can write to the Redis and knows a prompt can build a well-formed value
 * for it (the key follows from the tokens, CRC32C is no secret) with any KV in it. A tier built
 * with {@link RedisTier.Builder#authenticationKey} serves only values that carry a tag made with
 * its key, so without the key no one can put KV into a request's attention. An unsealed or
 * wrongly sealed value is a miss, counted as a verification miss like any other.
 *
 * <p>One instance holds one {@link Mac}, which is not thread-safe: the tier keeps one for its
 * lookups (used under its lookup lock) and one for its writer thread.
 */
final class ValueSeal {

    /** Bytes of the tag: HMAC-SHA256's output. */
    static final int TAG_BYTES = 32;
    /** The shortest key accepted: 128 bits. */
    static final int MIN_KEY_BYTES = 16;
    private static final String ALGORITHM = "HmacSHA256";

    private final Mac mac;

    /** @param key the shared secret, at least {@link #MIN_KEY_BYTES} bytes (copied) */
    ValueSeal(byte[] key) {
        if (key.length < MIN_KEY_BYTES) {
            throw new IllegalArgumentException("authentication key of " + key.length + " bytes: at least "
                    + MIN_KEY_BYTES + " are needed");
        }
        try {
            this.mac = Mac.getInstance(ALGORITHM);
            mac.init(new SecretKeySpec(key.clone(), ALGORITHM));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(ALGORITHM + " is unavailable in this JDK", e);
        }
    }

    /** Writes the tag of {@code value[0, length - TAG_BYTES)} into its last {@link #TAG_BYTES} bytes. */
    void seal(byte[] value) {
        mac.update(value, 0, value.length - TAG_BYTES);
        try {
            mac.doFinal(value, value.length - TAG_BYTES);
        } catch (javax.crypto.ShortBufferException e) {
            throw new IllegalArgumentException("a value of " + value.length + " bytes has no room for its tag", e);
        }
    }

    /**
     * Whether {@code v} (its bytes from position to limit; the position is not moved) is sealed and
     * its last {@link #TAG_BYTES} bytes are the tag of the bytes before them, compared in constant time.
     */
    boolean authentic(ByteBuffer v) {
        ByteBuffer b = v.slice();
        int n = b.remaining();
        if (!BlockValue.sealed(b) || n < TAG_BYTES) {
            return false;
        }
        mac.update(b.slice(0, n - TAG_BYTES));
        byte[] tag = mac.doFinal();
        byte[] got = new byte[TAG_BYTES];
        b.get(n - TAG_BYTES, got);
        return MessageDigest.isEqual(tag, got);
    }
}
