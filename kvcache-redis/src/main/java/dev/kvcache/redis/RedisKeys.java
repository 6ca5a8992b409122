package dev.kvcache.redis;

import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;

import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import java.util.Objects;

/**
 * The key space of one model and layout in a shared Redis:
 * <pre>
 *   block value   kvc:&lt;namespace&gt;:&lt;salt&gt;:&lt;prefix key&gt;      (16 + 16 + 32 hex digits)
 *   event stream  kvcev:&lt;namespace&gt;:&lt;instance&gt;
 * </pre>
 * {@code namespace} is 16 hex digits of a 64-bit FNV-1a hash of the model id (UTF-8), the layout
 * fingerprint ({@link TierEntry#fingerprint}: layers, KV heads, head size, block tokens, format)
 * and the value format version, so two models or two layouts never read each other's blocks
 * (and a value that still got there fails verification). {@code salt} is the tenant's cache salt
 * (16 hex digits, two's complement), spelled out so that an operator can find or drop one
 * tenant's blocks ({@link #saltPattern}); the manager passes it to lookups
 * ({@link dev.kvcache.KvTier#leadingHits(PrefixKey[], int, int, long)}). {@code prefix key} is the
 * block's {@link PrefixKey}, whose chain starts from a root made of the same salt and the scope,
 * so a key is per tenant even before the salt is prepended; the value records salt and scope as
 * well, and a load checks them. No
 * key holds a {@code {...}} hash tag: Redis Cluster hashes the whole key, so blocks spread over
 * all 16384 slots and every master.
 */
public final class RedisKeys {

    private static final HexFormat HEX = HexFormat.of();
    private static final int MAX_MODEL = 256;

    private final String namespace;
    private final byte[] blockPrefix;

    private RedisKeys(String namespace) {
        this.namespace = namespace;
        this.blockPrefix = ("kvc:" + namespace + ":").getBytes(StandardCharsets.US_ASCII);
    }

    /**
     * The key space of {@code model} (any id the fleet agrees on, e.g. "Qwen2.5-32B-Instruct@rev")
     * under {@code layout}.
     *
     * @param model  the model id shared by every engine of the fleet, 1 to 256 characters
     * @param layout the block layout; its fingerprint is part of the namespace
     * @return the key space of that model and layout
     * @throws IllegalArgumentException an empty model id or one over 256 characters
     */
    public static RedisKeys of(String model, KvLayout layout) {
        Objects.requireNonNull(model, "model");
        Objects.requireNonNull(layout, "layout");
        if (model.isEmpty() || model.length() > MAX_MODEL) {
            throw new IllegalArgumentException("model id '" + model + "' has " + model.length()
                    + " characters; it needs 1 to " + MAX_MODEL);
        }
        long h = 0xcbf29ce484222325L;
        for (byte b : model.getBytes(StandardCharsets.UTF_8)) {
            h = (h ^ (b & 0xFF)) * 0x100000001b3L;
        }
        long fp = TierEntry.fingerprint(layout);
        for (int i = 0; i < 8; i++) {
            h = (h ^ ((fp >>> (8 * i)) & 0xFF)) * 0x100000001b3L;
        }
        h = (h ^ BlockValue.VERSION) * 0x100000001b3L;
        return new RedisKeys(HEX.toHexDigits(h));
    }

    /**
     * The 16 hex digits that name this model and layout.
     *
     * @return the namespace, 16 lower-case hex digits
     */
    public String namespace() {
        return namespace;
    }

    /**
     * The key of the block {@code key} of a sequence whose cache salt is {@code salt}, as bytes.
     *
     * @param salt the tenant's cache salt ({@link TierEntry#salt()})
     * @param key  the block's prefix key
     * @return a fresh array holding {@code kvc:<namespace>:<salt, 16 hex digits>:<key, 32 hex digits>} in US-ASCII
     */
    public byte[] block(long salt, PrefixKey key) {
        Objects.requireNonNull(key, "key");
        byte[] out = new byte[blockPrefix.length + 16 + 1 + 32];
        System.arraycopy(blockPrefix, 0, out, 0, blockPrefix.length);
        int at = hex(salt, out, blockPrefix.length);
        out[at++] = ':';
        at = hex(key.hi(), out, at);
        hex(key.lo(), out, at);
        return out;
    }

    /**
     * {@link #block(long, PrefixKey)} under salt 0, the salt of an engine that sets none.
     *
     * @param key the block's prefix key
     * @return a fresh array holding {@code kvc:<namespace>:0000000000000000:<32 hex digits>} in US-ASCII
     */
    public byte[] block(PrefixKey key) {
        return block(0, key);
    }

    /**
     * The same key as text.
     *
     * @param salt the tenant's cache salt
     * @param key  the block's prefix key
     * @return {@code kvc:<namespace>:<16 hex digits>:<32 hex digits>}
     */
    public String blockString(long salt, PrefixKey key) {
        return new String(block(salt, key), StandardCharsets.US_ASCII);
    }

    /**
     * {@link #blockString(long, PrefixKey)} under salt 0.
     *
     * @param key the block's prefix key
     * @return {@code kvc:<namespace>:0000000000000000:<32 hex digits>}
     */
    public String blockString(PrefixKey key) {
        return blockString(0, key);
    }

    /**
     * The glob that matches every block key of this namespace, any salt (for SCAN).
     *
     * @return {@code kvc:<namespace>:} followed by 16 {@code ?}, {@code :} and 32 {@code ?}
     */
    public String blockPattern() {
        return "kvc:" + namespace + ":" + "?".repeat(16) + ":" + "?".repeat(32);
    }

    /**
     * The glob that matches every block key of one tenant's salt, e.g. to drop that tenant's blocks
     * with {@code SCAN MATCH} and {@code UNLINK}.
     *
     * @param salt the tenant's cache salt
     * @return {@code kvc:<namespace>:<16 hex digits>:} followed by 32 {@code ?}
     */
    public String saltPattern(long salt) {
        byte[] h = new byte[16];
        hex(salt, h, 0);
        return "kvc:" + namespace + ":" + new String(h, StandardCharsets.US_ASCII) + ":" + "?".repeat(32);
    }

    /**
     * The event stream of instance {@code instance}.
     *
     * @param instance the engine instance id, 1 to 64 characters of [A-Za-z0-9._-]
     * @return the stream key {@code kvcev:<namespace>:<instance>}
     * @throws IllegalArgumentException an id that is empty, over 64 characters or not [A-Za-z0-9._-]
     */
    public String stream(String instance) {
        checkInstance(instance);
        return "kvcev:" + namespace + ":" + instance;
    }

    static String checkInstance(String instance) {
        Objects.requireNonNull(instance, "instance");
        if (instance.isEmpty() || instance.length() > 64 || !instance.matches("[A-Za-z0-9._-]+")) {
            throw new IllegalArgumentException("instance id '" + instance
                    + "' must be 1 to 64 characters of [A-Za-z0-9._-]");
        }
        return instance;
    }

    private static int hex(long v, byte[] out, int at) {
        for (int i = 15; i >= 0; i--) {
            int d = (int) (v >>> (4 * i)) & 0xF;
            out[at++] = (byte) (d < 10 ? '0' + d : 'a' + d - 10);
        }
        return at;
    }
}
