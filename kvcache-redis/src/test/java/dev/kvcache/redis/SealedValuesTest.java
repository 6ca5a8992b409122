package dev.kvcache.redis;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.TierEntry;
import dev.kvcache.offheap.OffHeapKvStore;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

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
 * {@link RedisTier.Builder#authenticationKey}: a fleet that shares a key shares blocks; a value
 * not sealed with the tier's key (another key, no seal, or a well-formed forgery by someone who
 * can write to the Redis) is a miss that moves no byte.
 */
class SealedValuesTest {

    private static final KvLayout LAYOUT = new KvLayout(2, 2, 32, 16, KvFormats.F16);
    private static final byte[] FLEET_KEY = "the fleet's 32-byte shared secret".getBytes(StandardCharsets.UTF_8);
    private static final byte[] OTHER_KEY = "another fleet's secret, 32 bytes".getBytes(StandardCharsets.UTF_8);
    private static RedisServers.Server server;
    private static RedisEndpoint endpoint;

    @BeforeAll
    static void start() throws IOException {
        server = RedisServers.Server.start();
        endpoint = RedisEndpoint.standalone(server.uri());
    }

    @AfterAll
    static void stop() {
        try {
            if (endpoint != null) {
                endpoint.close();
            }
        } finally {
            if (server != null) {
                server.close();
            }
        }
    }

    @BeforeEach
    void flush() throws IOException {
        server.command("FLUSHALL");
    }

    private static RedisTier tier(byte[] key) {
        RedisTier.Builder b = RedisTier.builder(endpoint, LAYOUT).model("sealed").lookupTimeout(Duration.ofSeconds(2));
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
            // the seal is an addition: a tier without a key still checks sealed values by their fields and checksums
            assertTrue(unkeyed.load(e[1], b, 3));
            assertArrayEquals(Kv.export(a, 1), Kv.export(b, 3));
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
            int h = BlockValue.headerLength(e[0]);
            int payload = (int) LAYOUT.bytesPerBlock();
            byte[] forged = new byte[h + payload + ValueSeal.TAG_BYTES];
            byte[] evil = Kv.export(a, 1);
            System.arraycopy(evil, 0, forged, h, payload);
            CRC32C crc = new CRC32C();
            crc.update(evil);
            BlockValue.writeHeader(forged, e[0], payload, (int) crc.getValue(), true);
            Arrays.fill(forged, h + payload, forged.length, (byte) 0x5A);
            RedisClient raw = RedisClient.create(server.uri());
            try (StatefulRedisConnection<byte[], byte[]> c = raw.connect(ByteArrayCodec.INSTANCE)) {
                c.sync().set(keyed.keys().block(e[0].salt(), e[0].key()), forged);
            } finally {
                raw.shutdown();
            }
            assertFalse(keyed.load(e[0], b, 2), "a forged tag");
            assertEquals(0, keyed.leadingHits(Kv.keys(e), 0, 1, 0), "a forged tag ends the lookup");
            assertFalse(keyed.load(e[0], b, 2), "a forged tag, after a lookup");
            assertEquals(5, keyed.redisStats().verificationMisses(), keyed.redisStats().toString());
            assertArrayEquals(before, Kv.export(b, 2), "no refused load moved a byte");
            // what the key adds: checksums and fields alone cannot tell this forgery from the real block
            assertTrue(unkeyed.load(e[0], b, 3));
            assertArrayEquals(evil, Kv.export(b, 3));
        }
    }

    @Test
    void aShortKeyIsRefusedNamingItsLength() {
        RedisTier.Builder b = RedisTier.builder(endpoint, LAYOUT);
        String m = assertThrows(IllegalArgumentException.class, () -> b.authenticationKey(new byte[15])).getMessage();
        assertTrue(m.contains("15") && m.contains("16"), m);
        assertThrows(NullPointerException.class, () -> b.authenticationKey(null));
    }
}
