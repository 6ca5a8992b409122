package dev.kvcache.redis;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.TierEntry;
import dev.kvcache.offheap.OffHeapKvStore;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link RedisTier.Builder#authenticationKey}: a fleet that shares a key shares blocks, and the
 * KV in Redis is ciphertext; a value not sealed with the tier's key (another key, no seal, a
 * well-formed forgery by someone who can write to the Redis, a sealed value with any byte
 * changed) is a miss that moves no byte, and a tier without the key reads no sealed value.
 */
class SealedValuesTest {

    private static final KvLayout LAYOUT = new KvLayout(2, 2, 32, 16, KvFormats.F16);
    private static final byte[] FLEET_KEY = "the fleet's 32-byte shared secret".getBytes(StandardCharsets.UTF_8);
    private static final byte[] OTHER_KEY = "another fleet's secret, 32 bytes".getBytes(StandardCharsets.UTF_8);
    @RegisterExtension
    static final LocalRedis redis = new LocalRedis();

    private static RedisTier tier(byte[] key) {
        RedisTier.Builder b = RedisTier.builder(redis.endpoint(), LAYOUT).model("sealed").lookupTimeout(Duration.ofSeconds(2));
        return (key == null ? b : b.authenticationKey(key)).build();
    }

    @Test
    void engineSharingTheKeyIsServedByteForByteAndOtherKeysMiss() {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16 * 3, 70), 5, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 4); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 4);
             RedisTier writer = tier(FLEET_KEY); RedisTier reader = tier(FLEET_KEY);
             RedisTier stranger = tier(OTHER_KEY); RedisTier unkeyed = tier(null)) {
            for (int i = 0; i < 3; i++) {
                Kv.fillBlock(a, i, 300 + i);
                assertTrue(writer.put(e[i], a, i));
            }
            assertTrue(writer.awaitWrites(Duration.ofSeconds(5)));
            byte[] before = Kv.export(b, 3);
            assertEquals(0, stranger.leadingHits(Kv.keys(e), 0, 3, 5), "another key's tier finds nothing");
            assertFalse(stranger.load(e[0], b, 3), "another key's tier loads nothing");
            assertEquals(2, stranger.redisStats().verificationMisses(), stranger.redisStats().toString());
            assertArrayEquals(before, Kv.export(b, 3), "a refused load moved no byte");

            assertEquals(3, reader.leadingHits(Kv.keys(e), 0, 3, 5));
            for (int i = 0; i < 3; i++) {
                assertTrue(reader.load(e[i], b, i), "block " + i);
                assertArrayEquals(Kv.export(a, i), Kv.export(b, i), "block " + i);
            }
            assertEquals(0, reader.redisStats().verificationMisses());
            // the KV is encrypted: a tier without the key reads nothing, and neither does anyone reading the Redis
            byte[] free = Kv.export(b, 3);
            assertFalse(unkeyed.load(e[1], b, 3), "a tier without the key cannot read a sealed value");
            assertArrayEquals(free, Kv.export(b, 3), "a refused load moved no byte");
            byte[] stored = raw(writer.keys().block(e[1].salt(), e[1].key()));
            int h = BlockValue.headerLength(e[1]);
            int payload = (int) LAYOUT.bytesPerBlock();
            assertEquals(h + payload + ValueSeal.TAG_BYTES, stored.length);
            byte[] inRedis = Arrays.copyOfRange(stored, h, h + payload);
            byte[] plain = Kv.export(a, 1);
            int same = 0;
            for (int i = 0; i < payload; i++) {
                same += inRedis[i] == plain[i] ? 1 : 0;
            }
            assertTrue(same < payload / 64, same + " of " + payload + " payload bytes in Redis equal the block's KV");
        }
    }

    /** A sealed value with one byte changed anywhere: header, ciphertext, tag or salt. */
    @Test
    void aSealedValueWithAnyByteChangedIsAMissThatMovesNoByte() throws IOException {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16, 40), 3, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 2); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 2);
             RedisTier keyed = tier(FLEET_KEY)) {
            byte[] redisKey = keyed.keys().block(e[0].salt(), e[0].key());
            byte[] sealed = written(keyed, a, e[0], 77);
            int h = BlockValue.headerLength(e[0]);
            int payload = (int) LAYOUT.bytesPerBlock();
            int[] at = {64, h - 5, h - 1, h, h + payload / 2, h + payload - 1, h + payload, h + payload + 15,
                    h + payload + 16, sealed.length - 1};
            String[] what = {"a token id", "the payload checksum", "the header checksum", "the first ciphertext byte", "a ciphertext byte",
                    "the last ciphertext byte", "the tag's first byte", "the tag's last byte", "the salt's first byte",
                    "the salt's last byte"};
            byte[] free = Kv.export(b, 1);
            long misses = 0;
            for (int i = 0; i < at.length; i++) {
                byte[] bad = sealed.clone();
                bad[at[i]] ^= 0x01;
                setRaw(redisKey, bad);
                assertFalse(keyed.load(e[0], b, 1), what[i]);
                assertEquals(0, keyed.leadingHits(Kv.keys(e), 0, 1, 3), what[i] + " ends the lookup");
                misses += 2;
                assertEquals(misses, keyed.redisStats().verificationMisses(), what[i] + ": " + keyed.redisStats());
                assertArrayEquals(free, Kv.export(b, 1), what[i] + ": no byte moved");
            }
            setRaw(redisKey, sealed);
            assertTrue(keyed.load(e[0], b, 1), "the value as sealed");
            assertArrayEquals(Kv.export(a, 0), Kv.export(b, 1));
        }
    }

    /** Fresh random damage (flips, truncation, extension) to a sealed value: always a miss, never a throw. */
    @Test
    void randomDamageToASealedValueIsAlwaysAMissNeverAThrow() throws IOException {
        long seed = System.nanoTime();
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16, 61), 2, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 2); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 2);
             RedisTier keyed = tier(FLEET_KEY)) {
            byte[] redisKey = keyed.keys().block(e[0].salt(), e[0].key());
            byte[] sealed = written(keyed, a, e[0], 5);
            byte[] free = Kv.export(b, 1);
            for (int round = 0; round < 60; round++) {
                byte[] bad;
                switch (rnd.nextInt(3)) {
                    case 0 -> {
                        bad = sealed.clone();
                        for (int f = 1 + rnd.nextInt(8); f > 0; f--) {
                            bad[rnd.nextInt(bad.length)] ^= (byte) (1 + rnd.nextInt(255));
                        }
                    }
                    case 1 -> bad = Arrays.copyOf(sealed, rnd.nextInt(sealed.length));
                    default -> {
                        bad = Arrays.copyOf(sealed, sealed.length + 1 + rnd.nextInt(64));
                        for (int i = sealed.length; i < bad.length; i++) {
                            bad[i] = (byte) rnd.nextInt(256);
                        }
                    }
                }
                setRaw(redisKey, bad);
                String what = "seed " + seed + ", round " + round + ", " + bad.length + " bytes";
                assertEquals(0, keyed.leadingHits(Kv.keys(e), 0, 1, 2), what);
                assertFalse(keyed.load(e[0], b, 1), what);
                assertArrayEquals(free, Kv.export(b, 1), what + ": no byte moved");
            }
            setRaw(redisKey, sealed);
            assertTrue(keyed.load(e[0], b, 1), "the value as sealed");
        }
    }

    /**
     * A sealed value copied to another key by someone with write access to the Redis: another
     * model's namespace for the same tokens, salt and layout (its header names the same block, so
     * only the seal's binding to the key it was written under refuses it), and another salt's key.
     */
    @Test
    void aSealedValueCopiedToAnotherModelsOrSaltsKeyIsAMiss() throws IOException {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16, 55), 0, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 2); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 2);
             RedisTier modelA = RedisTier.builder(redis.endpoint(), LAYOUT).model("model-a").authenticationKey(FLEET_KEY).build();
             RedisTier modelB = RedisTier.builder(redis.endpoint(), LAYOUT).model("model-b").authenticationKey(FLEET_KEY).build()) {
            Kv.fillBlock(a, 0, 21);
            assertTrue(modelA.put(e[0], a, 0));
            assertTrue(modelA.awaitWrites(Duration.ofSeconds(5)));
            byte[] sealed = raw(modelA.keys().block(0, e[0].key()));
            setRaw(modelB.keys().block(0, e[0].key()), sealed);
            byte[] free = Kv.export(b, 1);
            assertEquals(0, modelB.leadingHits(Kv.keys(e), 0, 1, 0), "model B's lookup does not take model A's value");
            assertFalse(modelB.load(e[0], b, 1), "model B does not load model A's KV");
            assertArrayEquals(free, Kv.export(b, 1), "no byte moved");
            assertEquals(2, modelB.redisStats().verificationMisses(), modelB.redisStats().toString());
            setRaw(modelA.keys().block(7, e[0].key()), sealed);
            assertEquals(0, modelA.leadingHits(Kv.keys(e), 0, 1, 7), "salt 7's lookup does not take salt 0's value");
            assertEquals(1, modelA.redisStats().verificationMisses(), modelA.redisStats().toString());
            assertTrue(modelA.load(e[0], b, 1), "where it was written it is served");
            assertArrayEquals(Kv.export(a, 0), Kv.export(b, 1));
        }
    }

    /**
     * The value an attacker with write access builds for {@code e} with {@code kv} as its payload:
     * every field and both checksums right; {@code sealed}: the flag set and a tag it cannot make.
     */
    private static byte[] forgery(TierEntry e, byte[] kv, boolean sealed) {
        int h = BlockValue.headerLength(e);
        byte[] v = new byte[h + kv.length + (sealed ? ValueSeal.TAG_BYTES : 0)];
        System.arraycopy(kv, 0, v, h, kv.length);
        CRC32C crc = new CRC32C();
        crc.update(kv);
        BlockValue.writeHeader(v, e, kv.length, (int) crc.getValue(), sealed);
        Arrays.fill(v, h + kv.length, v.length, (byte) 0x5A);
        return v;
    }

    /** Fills block 0 of {@code a} from {@code seed}, puts it as {@code e} and returns the value Redis holds. */
    private static byte[] written(RedisTier tier, OffHeapKvStore a, TierEntry e, int seed) {
        Kv.fillBlock(a, 0, seed);
        assertTrue(tier.put(e, a, 0));
        assertTrue(tier.awaitWrites(Duration.ofSeconds(5)));
        return raw(tier.keys().block(e.salt(), e.key()));
    }

    private static byte[] raw(byte[] key) {
        RedisClient raw = RedisClient.create(redis.server().uri());
        try (StatefulRedisConnection<byte[], byte[]> c = raw.connect(ByteArrayCodec.INSTANCE)) {
            return c.sync().get(key);
        } finally {
            raw.shutdown();
        }
    }

    private static void setRaw(byte[] key, byte[] value) {
        RedisClient raw = RedisClient.create(redis.server().uri());
        try (StatefulRedisConnection<byte[], byte[]> c = raw.connect(ByteArrayCodec.INSTANCE)) {
            c.sync().set(key, value);
        } finally {
            raw.shutdown();
        }
    }

    @Test
    void aKeyedTierServesNoValueItsKeyDidNotSeal() throws IOException {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16 * 2, 90), 0, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 4); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 4);
             RedisTier keyed = tier(FLEET_KEY); RedisTier unkeyed = tier(null)) {
            Kv.fillBlock(a, 0, 11);
            Kv.fillBlock(a, 1, 12);   // the KV an attacker would like a victim to attend to
            assertTrue(unkeyed.put(e[0], a, 0));
            assertTrue(unkeyed.awaitWrites(Duration.ofSeconds(5)));
            byte[] before = Kv.export(b, 2);
            assertFalse(keyed.load(e[0], b, 2), "an unsealed value (a tier without the key wrote it)");
            assertEquals(0, keyed.leadingHits(Kv.keys(e), 0, 1, 0));

            // a forgery someone with write access to the Redis builds for the victim's prompt: every
            // field and both checksums right, the sealed flag set, block 1's KV, and a tag it cannot make
            byte[] evil = Kv.export(a, 1);
            byte[] redisKey = keyed.keys().block(e[0].salt(), e[0].key());
            setRaw(redisKey, forgery(e[0], evil, true));
            assertFalse(keyed.load(e[0], b, 2), "a forged tag");
            assertEquals(0, keyed.leadingHits(Kv.keys(e), 0, 1, 0), "a forged tag ends the lookup");
            assertFalse(keyed.load(e[0], b, 2), "a forged tag, after a lookup");
            // the same over all-zero KV: what a failed decryption leaves in place when the JDK clears
            // its output, so only the tag check refuses it
            setRaw(redisKey, forgery(e[0], new byte[evil.length], true));
            assertFalse(keyed.load(e[0], b, 2), "a forged tag over zero KV");
            assertEquals(0, keyed.leadingHits(Kv.keys(e), 0, 1, 0), "a forged tag over zero KV ends the lookup");
            // and as a plain unsealed value
            setRaw(redisKey, forgery(e[0], evil, false));
            assertFalse(keyed.load(e[0], b, 2), "an unsealed forgery");
            assertEquals(8, keyed.redisStats().verificationMisses(), keyed.redisStats().toString());
            assertArrayEquals(before, Kv.export(b, 2), "no refused load moved a byte");
            // what the key adds: checksums and fields alone cannot tell the unsealed forgery from the real block
            assertTrue(unkeyed.load(e[0], b, 3));
            assertArrayEquals(evil, Kv.export(b, 3));
            // and a tier without the key refuses a sealed value outright: its payload is ciphertext
            setRaw(redisKey, forgery(e[0], evil, true));
            assertFalse(unkeyed.load(e[0], b, 3), "a sealed value, to a tier without the key");
        }
    }

    @Test
    void aShortKeyIsRefusedNamingItsLength() {
        RedisTier.Builder b = RedisTier.builder(redis.endpoint(), LAYOUT);
        String m = assertThrows(IllegalArgumentException.class, () -> b.authenticationKey(new byte[15])).getMessage();
        assertTrue(m.contains("15") && m.contains("16"), m);
        assertThrows(NullPointerException.class, () -> b.authenticationKey(null));
    }
}
