package dev.kvcache.redis;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;
import dev.kvcache.TierEntry;
import dev.kvcache.offheap.OffHeapKvStore;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.io.IOException;
import java.time.Duration;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link RedisTier} against one real redis-server: round trips, verification, round-trip counts, expiry. */
class RedisTierTest {

    static final KvLayout LAYOUT = new KvLayout(2, 2, 32, 16, KvFormats.F16);
    @RegisterExtension
    static final LocalRedis redis = new LocalRedis();

    private static RedisTier tier() {
        return RedisTier.builder(redis.endpoint(), LAYOUT).model("test-model").lookupTimeout(Duration.ofSeconds(2)).build();
    }

    @Test
    void aBlockPutFromOneStoreLoadsByteIdenticalIntoAnotherInOneRoundTrip() {
        int[] prompt = Kv.tokens(48, 5);
        TierEntry[] e = Kv.entries(LAYOUT, prompt, 11, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 4); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 4);
             RedisTier t = tier()) {
            Kv.fillBlock(a, 0, 1);
            Kv.fillBlock(a, 1, 2);
            assertTrue(t.put(e[0], a, 0));
            assertTrue(t.put(e[1], a, 1));
            assertTrue(t.awaitWrites(Duration.ofSeconds(5)));
            assertEquals(2, t.redisStats().writesDone());
            long trips = t.redisStats().roundTrips();
            assertEquals(2, t.leadingHits(Kv.keys(e), 0, 3, 11), "two of three keys held, leading");
            assertEquals(0, t.leadingHits(Kv.keys(e), 0, 3, 12), "under another salt: nothing");
            trips += 1;
            assertEquals(trips + 1, t.redisStats().roundTrips(), "one pipelined round trip for the lookup");
            assertTrue(t.load(e[0], b, 2));
            assertTrue(t.load(e[1], b, 3));
            assertEquals(trips + 1, t.redisStats().roundTrips(), "the loads use the values the lookup fetched");
            assertEquals(2, t.redisStats().prefetchedLoads());
            assertArrayEquals(Kv.export(a, 0), Kv.export(b, 2));
            assertArrayEquals(Kv.export(a, 1), Kv.export(b, 3));
            assertFalse(t.load(e[2], b, 0), "a key never put is a miss");
            assertEquals(0, t.leadingHits(Kv.keys(e), 2, 1, 11));
        }
    }

    @Test
    void oneLookupKeepsNoMoreThanThePrefetchBudget() {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16 * 8, 77), 0, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 8); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 8);
             RedisTier t = RedisTier.builder(redis.endpoint(), LAYOUT).lookupTimeout(Duration.ofSeconds(2))
                     .prefetchBytes(3 * (LAYOUT.bytesPerBlock() + 256)).build()) {
            for (int i = 0; i < 8; i++) {
                Kv.fillBlock(a, i, i);
                t.put(e[i], a, i);
            }
            assertTrue(t.awaitWrites(Duration.ofSeconds(5)));
            assertEquals(3, t.leadingHits(Kv.keys(e), 0, 8), "the budget holds three values");
            for (int i = 0; i < 3; i++) {
                assertTrue(t.load(e[i], b, i));
                assertArrayEquals(Kv.export(a, i), Kv.export(b, i));
            }
            assertEquals(3, t.redisStats().prefetchedLoads());
        }
    }

    @Test
    void reusedValueBuffersNeverServeOneBlockTheBytesOfAnother() {
        // a prefetch budget of 3 values over 8 blocks: every lookup evicts values the last one kept,
        // loads, removes and misses give buffers back, and the next values are decoded into them
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16 * 8, 501), 0, null);
        java.util.SplittableRandom r = new java.util.SplittableRandom(System.nanoTime());
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 8); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 8);
             RedisTier t = RedisTier.builder(redis.endpoint(), LAYOUT).lookupTimeout(Duration.ofSeconds(2))
                     .prefetchBytes(3 * (LAYOUT.bytesPerBlock() + 256)).build()) {
            for (int i = 0; i < 8; i++) {
                Kv.fillBlock(a, i, 100 + i);
                assertTrue(t.put(e[i], a, i));
            }
            assertTrue(t.awaitWrites(Duration.ofSeconds(5)));
            PrefixKey[] keys = Kv.keys(e);
            for (int round = 0; round < 60; round++) {
                int from = r.nextInt(8);
                int hits = t.leadingHits(keys, from, 8 - from);
                assertTrue(hits >= 1 && hits <= 3, "round " + round + ": " + hits + " hits from " + from);
                int i = from + r.nextInt(8 - from); // prefetched or not: either way its own bytes
                int dst = r.nextInt(8);
                assertTrue(t.load(e[i], b, dst), "round " + round + " block " + i);
                assertArrayEquals(Kv.export(a, i), Kv.export(b, dst), "round " + round + ": block " + i + " got other bytes");
                TierEntry o = e[(i + 1) % 8];
                TierEntry forged = new TierEntry(new PrefixKey(round, 7), o.parentKey(), o.salt(), o.scope(), o.tokens(),
                        o.layoutFingerprint());
                assertFalse(t.load(forged, b, dst), "an entry no one put is a miss");
                assertArrayEquals(Kv.export(a, i), Kv.export(b, dst), "a miss moved no byte");
            }
            assertTrue(t.redisStats().prefetchedLoads() > 0, "some loads used prefetched values");
        }
    }

    @Test
    void theAnswersAfterALookupsFirstMissGoBackToThePool() {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16 * 6, 321), 0, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 6); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 6);
             RedisTier t = tier()) {
            for (int i = 0; i < 6; i++) {
                Kv.fillBlock(a, i, 200 + i);
                if (i != 2) {
                    assertTrue(t.put(e[i], a, i));                     // block 2 missing: a hole in the chain
                }
            }
            assertTrue(t.awaitWrites(Duration.ofSeconds(5)));
            ValueBuffers vb = t.valueBuffers();
            long out = vb.outstanding();
            long decoded = vb.decoded();
            assertEquals(2, t.leadingHits(Kv.keys(e), 0, 6));
            // blocks 3, 4 and 5 arrive after the miss at 2; each one's buffer goes back as it
            // arrives, so the next may reuse it: what counts is that only the kept two stay out
            long end = System.nanoTime() + Duration.ofSeconds(5).toNanos();
            while ((vb.decoded() < decoded + 5 || vb.outstanding() != out + 2) && System.nanoTime() < end) {
                RedisTimeouts.sleep(1);
            }
            assertEquals(decoded + 5, vb.decoded(), "the five values 0, 1, 3, 4 and 5 arrived");
            assertEquals(out + 2, vb.outstanding(), "only the kept blocks 0 and 1 hold buffers: 3, 4 and 5 went back to the pool");
            for (int i = 0; i < 2; i++) {                               // the kept two still load intact
                assertTrue(t.load(e[i], b, i));
                assertArrayEquals(Kv.export(a, i), Kv.export(b, i));
            }
            assertEquals(out, vb.outstanding(), "the loads gave the kept two back");
        }
    }

    @Test
    void aLoadNotPrefetchedFetchesItsValue() {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16, 9), 3, "tenant-a");
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 2); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 2);
             RedisTier t = tier()) {
            Kv.fillBlock(a, 1, 4);
            assertTrue(t.put(e[0], a, 1));
            assertTrue(t.awaitWrites(Duration.ofSeconds(5)));
            assertTrue(t.load(e[0], b, 0));
            assertArrayEquals(Kv.export(a, 1), Kv.export(b, 0));
            assertEquals(0, t.redisStats().prefetchedLoads());
        }
    }

    @Test
    void everyMismatchOrCorruptionIsACountedMissThatWritesNothing() throws Exception {
        int[] prompt = Kv.tokens(32, 100);
        TierEntry[] e = Kv.entries(LAYOUT, prompt, 7, "t1");
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 2); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 2);
             RedisTier t = tier()) {
            Kv.fillBlock(a, 0, 1);
            Kv.fillBlock(a, 1, 2);
            Kv.fillBlock(b, 0, 99);
            byte[] before = Kv.export(b, 0);
            t.put(e[0], a, 0);
            t.put(e[1], a, 1);
            assertTrue(t.awaitWrites(Duration.ofSeconds(5)));
            int[] otherTokens = e[1].tokens().clone();
            otherTokens[3]++;
            TierEntry[] wrong = {
                    new TierEntry(e[1].key(), e[1].parentKey(), e[1].salt(), e[1].scope(), otherTokens, e[1].layoutFingerprint()),
                    new TierEntry(e[1].key(), new PrefixKey(1, 2), e[1].salt(), e[1].scope(), e[1].tokens(), e[1].layoutFingerprint()),
                    new TierEntry(e[1].key(), null, e[1].salt(), e[1].scope(), e[1].tokens(), e[1].layoutFingerprint()),
                    new TierEntry(e[1].key(), e[1].parentKey(), e[1].salt() + 1, e[1].scope(), e[1].tokens(), e[1].layoutFingerprint()),
                    new TierEntry(e[1].key(), e[1].parentKey(), e[1].salt(), "t2", e[1].tokens(), e[1].layoutFingerprint()),
                    new TierEntry(e[1].key(), e[1].parentKey(), e[1].salt(), null, e[1].tokens(), e[1].layoutFingerprint()),
            };
            long misses = 0;
            for (TierEntry w : wrong) {
                assertFalse(t.load(w, b, 0), "served for " + w);
                if (w.salt() == e[1].salt()) {
                    assertEquals(++misses, t.redisStats().verificationMisses());
                } else {
                    assertEquals(misses, t.redisStats().verificationMisses(), "another salt's key: not found at all");
                }
            }
            // the value itself damaged in Redis: a flipped payload byte, a flipped header byte, truncated, swapped
            RedisClient raw = RedisClient.create(redis.server().uri());
            try (StatefulRedisConnection<byte[], byte[]> c = raw.connect(ByteArrayCodec.INSTANCE)) {
                byte[] k0 = t.keys().block(e[0].salt(), e[0].key());
                byte[] k1 = t.keys().block(e[1].salt(), e[1].key());
                byte[] good = c.sync().get(k1);
                byte[] v0 = c.sync().get(k0);
                byte[][] damaged = {
                        flip(good, good.length - 10), flip(good, 20), flip(good, 70), Arrays.copyOf(good, good.length - 1),
                        Arrays.copyOf(good, good.length + 1), v0, new byte[0], "garbage".getBytes()
                };
                for (byte[] d : damaged) {
                    c.sync().set(k1, d);
                    assertFalse(t.load(e[1], b, 0), "served a damaged value");
                    assertEquals(++misses, t.redisStats().verificationMisses());
                    // a lookup checks each value as it arrives: the damaged one ends the hits
                    assertEquals(1, t.leadingHits(Kv.keys(e), 0, 2, 7));
                    assertEquals(++misses, t.redisStats().verificationMisses(), "the lookup counted it");
                    assertFalse(t.load(e[1], b, 0), "served a damaged value after a lookup");
                    assertEquals(++misses, t.redisStats().verificationMisses());
                }
                c.sync().set(k1, good);
                assertTrue(t.load(e[1], b, 1), "the intact value loads");
            } finally {
                raw.shutdown();
            }
            assertArrayEquals(before, Kv.export(b, 0), "no refused load wrote a byte");
            assertArrayEquals(Kv.export(a, 1), Kv.export(b, 1));
        }
    }

    @Test
    void aBlockGoneFromRedisOrReplacedThereIsWrittenAgainByTheNextPut() {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16, 610), 0, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 2); OffHeapKvStore b = OffHeapKvStore.allocate(LAYOUT, 2);
             RedisTier t = tier()) {
            Kv.fillBlock(a, 0, 61);
            assertTrue(t.put(e[0], a, 0));
            assertTrue(t.awaitWrites(Duration.ofSeconds(5)));
            assertTrue(t.put(e[0], a, 0));
            assertEquals(1, t.redisStats().writesDeduplicated(), "written a moment ago: not again");
            RedisClient raw = RedisClient.create(redis.server().uri());
            try (StatefulRedisConnection<byte[], byte[]> c = raw.connect(ByteArrayCodec.INSTANCE)) {
                byte[] k = t.keys().block(e[0].salt(), e[0].key());
                // evicted by Redis (maxmemory) or deleted, then found missing by a load or a lookup;
                // then overwritten with something else
                for (Runnable lose : new Runnable[] {() -> c.sync().del(k), () -> c.sync().set(k, "not a block".getBytes())}) {
                    for (boolean byLookup : new boolean[] {false, true}) {
                        lose.run();
                        long written = t.redisStats().writesDone();
                        if (byLookup) {
                            assertEquals(0, t.leadingHits(Kv.keys(e), 0, 1));
                        } else {
                            assertFalse(t.load(e[0], b, 0));
                        }
                        assertTrue(t.put(e[0], a, 0));
                        assertTrue(t.awaitWrites(Duration.ofSeconds(5)));
                        assertEquals(written + 1, t.redisStats().writesDone(),
                                "the next put wrote it again (found missing by " + (byLookup ? "a lookup" : "a load") + "): " + t.redisStats());
                        assertTrue(t.load(e[0], b, 1));
                        assertArrayEquals(Kv.export(a, 0), Kv.export(b, 1));
                    }
                }
            } finally {
                raw.shutdown();
            }
            assertEquals(1, t.redisStats().writesDeduplicated());
        }
    }

    private static byte[] flip(byte[] v, int at) {
        byte[] c = v.clone();
        c[at] ^= 0x40;
        return c;
    }

    @Test
    void aPromptThatMissesEverywhereCostsOneRoundTrip() throws IOException {
        int[] prompt = Kv.tokens(64 * 16, 3);
        try (OffHeapKvStore s = OffHeapKvStore.allocate(LAYOUT, 80); RedisTier t = tier();
             KvCacheManager m = KvCacheManager.builder(LAYOUT).store(s).tier(t).build()) {
            Sequence q = m.open("q");
            assertEquals(0, m.append(q, prompt), "nothing cached anywhere");
            assertEquals(1, t.redisStats().roundTrips(), "the 64-block miss cost one round trip");
            assertEquals(1, t.redisStats().lookups());
            // the lookup returns at the first miss; the rest of its batch still reaches the server
            long end = System.nanoTime() + 5_000_000_000L;
            while (redis.server().commandCalls("getex") < 32 && System.nanoTime() < end) {
                RedisServers.sleep(5);
            }
            RedisServers.sleep(50);
            assertEquals(32, redis.server().commandCalls("getex"), "the server saw one batch of 32 GETEX, no more");
            assertEquals(0, redis.server().commandCalls("get"));
            m.free(q);
        }
    }

    @Test
    void blocksExpireAfterTheTtlOrNeverWithZero() throws IOException {
        TierEntry[] e = Kv.entries(LAYOUT, Kv.tokens(16, 1), 0, null);
        try (OffHeapKvStore a = OffHeapKvStore.allocate(LAYOUT, 1);
             RedisTier t = RedisTier.builder(redis.endpoint(), LAYOUT).ttl(Duration.ofMinutes(5)).build();
             RedisTier forever = RedisTier.builder(redis.endpoint(), LAYOUT).model("other").ttl(Duration.ZERO).build()) {
            Kv.fillBlock(a, 0, 1);
            t.put(e[0], a, 0);
            forever.put(e[0], a, 0);
            assertTrue(t.awaitWrites(Duration.ofSeconds(5)) && forever.awaitWrites(Duration.ofSeconds(5)));
            long ttl = redis.server().integer("PTTL", t.keys().blockString(e[0].key()));
            assertTrue(ttl > 0 && ttl <= 300_000, "PTTL " + ttl);
            assertEquals(-1, redis.server().integer("PTTL", forever.keys().blockString(e[0].key())));
            assertNotEquals(t.keys().namespace(), forever.keys().namespace(), "models never share keys");
        }
    }

    @Test
    void keysCarryNoHashTagAndNamespacesSeparateModelsAndLayouts() {
        RedisKeys k = RedisKeys.of("m", LAYOUT);
        String key = k.blockString(new PrefixKey(-1, 42));
        assertFalse(key.contains("{") || key.contains("}"), key);
        assertEquals("kvc:" + k.namespace() + ":0000000000000000:ffffffffffffffff000000000000002a", key);
        assertEquals("kvc:" + k.namespace() + ":fffffffffffffffe:ffffffffffffffff000000000000002a",
                k.blockString(-2, new PrefixKey(-1, 42)), "the tenant's salt is spelled out");
        assertTrue(k.blockString(-2, new PrefixKey(-1, 42)).matches(k.saltPattern(-2).replace("?", ".")));
        assertFalse(k.blockString(3, new PrefixKey(-1, 42)).matches(k.saltPattern(-2).replace("?", ".")));
        assertTrue(k.blockString(3, new PrefixKey(-1, 42)).matches(k.blockPattern().replace("?", ".")));
        assertNotEquals(k.namespace(), RedisKeys.of("m2", LAYOUT).namespace());
        assertNotEquals(k.namespace(), RedisKeys.of("m", new KvLayout(2, 2, 32, 16, KvFormats.Q8_0)).namespace());
        assertEquals(k.namespace(), RedisKeys.of("m", new KvLayout(2, 2, 32, 16, KvFormats.F16)).namespace());
        IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> RedisKeys.of("", LAYOUT));
        assertTrue(ex.getMessage().contains("1 to 256"), ex.getMessage());
        ex = assertThrows(IllegalArgumentException.class, () -> k.stream("a b"));
        assertTrue(ex.getMessage().contains("'a b'"), ex.getMessage());
    }

    @Test
    void badSettingsNameTheValueAndTheLimit() {
        RedisTier.Builder b = RedisTier.builder(redis.endpoint(), LAYOUT);
        assertTrue(assertThrows(IllegalArgumentException.class, () -> b.batchKeys(0)).getMessage().contains("batchKeys 0"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> b.queueBlocks(0)).getMessage().contains("queueBlocks 0"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> b.ttl(Duration.ofMillis(-1))).getMessage().contains("ttl"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> b.lookupTimeout(Duration.ZERO)).getMessage().contains("lookupTimeout"));
        assertThrows(IllegalArgumentException.class, () -> RedisEndpoint.cluster());
        KvLayout other = new KvLayout(2, 2, 32, 16, KvFormats.F32);
        try (RedisTier t = tier(); OffHeapKvStore s = OffHeapKvStore.allocate(other, 1)) {
            TierEntry e = Kv.entries(other, Kv.tokens(16, 0), 0, null)[0];
            assertThrows(IllegalArgumentException.class, () -> t.put(e, s, 0));
            t.close();
            assertThrows(IllegalStateException.class, () -> t.leadingHits(new PrefixKey[1], 0, 1));
        }
    }
}
