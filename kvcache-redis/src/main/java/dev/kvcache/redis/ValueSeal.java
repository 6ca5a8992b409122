package dev.kvcache.redis;

import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;

/**
 * The fleet's seal on the values a {@link RedisTier} writes: the payload (the block's KV) is
 * encrypted and the whole value authenticated with AES-256-GCM, the Redis key it is written
 * under and the header being the additional authenticated data, under a key of its own for
 * every value, derived from the secret the fleet's engines share. Announced by the header's
 * {@code sealed} flag ({@link BlockValue}); the value ends in the payload's ciphertext, the GCM
 * tag and the salt:
 * <pre>
 *   header (plaintext, authenticated) | ciphertext (P bytes) | GCM tag (16) | salt (16)
 *   authenticated data: length of the Redis key (4, big-endian) | the Redis key | the header
 * </pre>
 *
 * <p><b>Why a seal.</b> The checksums of a value catch damage and a value of another block, but
 * not a writer: anyone who can write to the Redis and knows a prompt can build a well-formed
 * value for it (the key follows from the tokens, CRC32C is no secret) with any KV in it. A tier
 * built with {@link RedisTier.Builder#authenticationKey} serves only values whose tag its key
 * verifies, so without the key no one can put KV into a request's attention; and since the KV
 * is encrypted, reading the Redis does not read the fleet's prompts' KV either. The Redis key
 * is authenticated because the header does not name everything the key does (the model's
 * namespace): a sealed value copied under another model's key for the same tokens would
 * otherwise still verify.
 *
 * <p><b>Why GCM and a key per value.</b> A GCM pass costs less per byte than HMAC-SHA256, the
 * first seal (kvcache-redis/bench-results/redis-seal-2026-12-04.txt), and also buys
 * confidentiality. GCM must never see one (key, nonce) twice; a fleet writes far more than the
 * 2^32 values a single key allows with random nonces, so each value has its own AES key,
 * {@code HMAC-SHA256(fleet key, "kvcache value seal v2" || salt)} with a random 128-bit salt,
 * and a fixed nonce: keys repeat only when salts collide (after about 2^64 values).
 *
 * <p>The payload's CRC32C in the header is that of the plaintext: a reader decrypts in place,
 * then checks the value as an unsealed one. A tier without the key refuses a sealed value (a
 * miss): its payload is ciphertext.
 *
 * <p>One instance holds one {@link Mac} and one {@link Cipher}, neither thread-safe: the tier
 * keeps one for its lookups (used under its lookup lock) and one for its writer thread.
 */
final class ValueSeal {

    /** Bytes the seal adds after the payload: the GCM tag and the salt. */
    static final int TAG_BYTES = 32;
    /** The shortest fleet key accepted: 128 bits. */
    static final int MIN_KEY_BYTES = 16;
    private static final int GCM_TAG = 16;
    private static final int SALT = 16;
    private static final byte[] CONTEXT = "kvcache value seal v2".getBytes(StandardCharsets.US_ASCII);
    /** Each value key encrypts one value, so one fixed nonce is safe. */
    private static final GCMParameterSpec NONCE = new GCMParameterSpec(GCM_TAG * 8, new byte[12]);

    private final Mac derive;
    private final Cipher gcm;
    private final long payloadBytes;
    private final SecureRandom random = new SecureRandom();
    /** The salt of the value being sealed or opened (an instance serves one thread). */
    private final byte[] salt = new byte[SALT];

    /**
     * @param key          the fleet's shared secret, at least {@link #MIN_KEY_BYTES} bytes (copied)
     * @param payloadBytes the payload length of every value (the layout's block size in bytes)
     */
    ValueSeal(byte[] key, long payloadBytes) {
        if (key.length < MIN_KEY_BYTES) {
            throw new IllegalArgumentException("authentication key of " + key.length + " bytes: at least "
                    + MIN_KEY_BYTES + " are needed");
        }
        this.payloadBytes = payloadBytes;
        try {
            this.derive = Mac.getInstance("HmacSHA256");
            derive.init(new SecretKeySpec(key.clone(), "HmacSHA256"));
            this.gcm = Cipher.getInstance("AES/GCM/NoPadding");
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 or AES/GCM is unavailable in this JDK", e);
        }
    }

    /** The additional authenticated data before the header: the Redis key, length first. */
    private void keyAad(byte[] redisKey) {
        gcm.updateAAD(new byte[]{(byte) (redisKey.length >>> 24), (byte) (redisKey.length >>> 16),
                (byte) (redisKey.length >>> 8), (byte) redisKey.length});
        gcm.updateAAD(redisKey);
    }

    private SecretKeySpec valueKey(byte[] salt) {
        derive.update(CONTEXT);
        derive.update(salt);
        return new SecretKeySpec(derive.doFinal(), "AES");
    }

    /**
     * Seals {@code value} for {@code redisKey}: its payload, the {@code payloadBytes} before its
     * last {@link #TAG_BYTES} bytes, is encrypted in place and the tag and salt fill those last
     * bytes; the key and the bytes before the payload (the header) are authenticated as they are.
     */
    void seal(byte[] redisKey, byte[] value) {
        int ct = (int) (value.length - TAG_BYTES - payloadBytes);
        if (ct < 0) {
            throw new IllegalArgumentException("a value of " + value.length + " bytes has no room for a payload of "
                    + payloadBytes + " bytes and its seal");
        }
        random.nextBytes(salt);
        try {
            gcm.init(Cipher.ENCRYPT_MODE, valueKey(salt), NONCE);
            keyAad(redisKey);
            gcm.updateAAD(value, 0, ct);
            gcm.doFinal(value, ct, (int) payloadBytes, value, ct); // ciphertext, then the tag
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("AES/GCM refused to seal a value of " + value.length + " bytes", e);
        }
        System.arraycopy(salt, 0, value, value.length - SALT, SALT);
    }

    /**
     * Opens {@code v} (its bytes from position to limit; the position is not moved), read from
     * {@code redisKey}: if it is sealed, for that key, and its tag verifies under the key its salt
     * gives, its payload is decrypted in place and this returns true. Otherwise false, and the payload may be left in any state: the caller
     * discards the value. Never throws on garbage.
     */
    boolean open(byte[] redisKey, ByteBuffer v) {
        ByteBuffer b = v.slice();
        long ct = b.remaining() - TAG_BYTES - payloadBytes;
        if (!BlockValue.sealed(b) || ct < 0) {
            return false;
        }
        b.get(b.remaining() - SALT, salt);
        try {
            gcm.init(Cipher.DECRYPT_MODE, valueKey(salt), NONCE);
            keyAad(redisKey);
            gcm.updateAAD(b.slice(0, (int) ct));
            ByteBuffer in = b.slice((int) ct, (int) payloadBytes + GCM_TAG);
            ByteBuffer out = b.slice((int) ct, (int) payloadBytes);
            return gcm.doFinal(in, out) == payloadBytes;
        } catch (AEADBadTagException e) {
            return false;
        } catch (GeneralSecurityException | RuntimeException e) {
            return false; // whatever the provider makes of garbage, it is a miss (counted by the tier)
        }
    }
}
