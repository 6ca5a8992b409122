package dev.kvcache.redis;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.SequenceOptions;
import dev.kvcache.offheap.OffHeapKvStore;
import dev.kvcache.offheap.PagedAttention;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Two engines (two managers, each with its own off-heap store and its own {@link RedisTier}) share
 * one Redis: B is served the prompt A computed, byte for byte, and attends exactly as A did;
 * another salt or another tenant gets nothing.
 */
class SharedTierTest {

    private static final int QUERY_HEADS = 4;
    private static RedisServers.Server server;
    private static RedisEndpoint endpointA;
    private static RedisEndpoint endpointB;

    @BeforeAll
    static void start() throws IOException {
        server = RedisServers.Server.start();
        endpointA = RedisEndpoint.standalone(server.uri());
        endpointB = RedisEndpoint.standalone(server.uri());
    }

    @AfterAll
    static void stop() {
        try {
            endpointA.close();
            endpointB.close();
        } finally {
            server.close();
        }
    }

    @BeforeEach
    void flush() throws IOException {
        server.command("FLUSHALL");
    }

    static List<KvFormat> formats() {
        return List.of(KvFormats.F32, KvFormats.F16, KvFormats.Q8_0, KvFormats.Q4_0, KvFormats.KIVI_2);
    }

    private static float[][] attend(OffHeapKvStore s, Sequence q, KvLayout l) {
        float[][] out = new float[l.layers()][QUERY_HEADS * l.headDim()];
        for (int layer = 0; layer < l.layers(); layer++) {
            float[] query = Kv.vector(77, 0, layer, 2, QUERY_HEADS * l.headDim());
            PagedAttention.decode(s, layer, query, QUERY_HEADS, q.blockTable(), q.length(), out[layer]);
        }
        return out;
    }

    @ParameterizedTest
    @MethodSource("formats")
    void engineBIsServedWhatEngineAComputedByteForByte(KvFormat f) {
        KvLayout l = new KvLayout(2, 2, 32, 16, f);
        int[] prompt = Kv.tokens(16 * 5 + 7, 40);                  // 5 full blocks and 7 tokens
        try (OffHeapKvStore sa = OffHeapKvStore.allocate(l, 8); OffHeapKvStore sb = OffHeapKvStore.allocate(l, 8);
             RedisTier ta = RedisTier.builder(endpointA, l).model("shared").lookupTimeout(Duration.ofSeconds(2)).build();
             RedisTier tb = RedisTier.builder(endpointB, l).model("shared").lookupTimeout(Duration.ofSeconds(2)).build();
             KvCacheManager a = KvCacheManager.builder(l).store(sa).tier(ta).build();
             KvCacheManager b = KvCacheManager.builder(l).store(sb).tier(tb).build()) {
            a.addListener(ta.writeOnPublish(sa));
            b.addListener(tb.writeOnPublish(sb));

            Sequence qa = a.open("a");
            assertEquals(0, a.append(qa, prompt));
            Kv.write(sa, qa, 5, 0, prompt.length);
            float[][] attendA = attend(sa, qa, l);
            int[] tableA = qa.blockTable().clone();
            a.commit(qa);                                          // the KV exists: publish, write behind
            assertTrue(ta.awaitWrites(Duration.ofSeconds(5)));
            assertEquals(5, ta.redisStats().writesDone(), "A's 5 full blocks reached Redis once their KV existed");

            Sequence qb = b.open("b");
            int served = b.append(qb, prompt);
            assertEquals(80, served, "B is served A's 5 full blocks from Redis");
            assertEquals(80, b.ledger().tierHitTokens());
            for (int j = 0; j < 5; j++) {
                assertArrayEquals(Kv.export(sa, tableA[j]), Kv.export(sb, qb.blockTable()[j]), f + " block " + j);
            }
            Kv.write(sb, qb, 5, served, prompt.length);             // B computes only the last 7 tokens
            assertArrayEquals(attendA, attend(sb, qb, l), f + ": B attends exactly as A");
            assertEquals(5, tb.redisStats().loads());
            b.free(qb);

            // another salt and another tenant: their keys chain from other roots, nothing to find
            Sequence salted = b.open("salted", SequenceOptions.DEFAULT.withCacheSalt(12345));
            assertEquals(0, b.append(salted, prompt), "another salt gets nothing");
            b.free(salted);
            Sequence tenant = b.open("tenant", SequenceOptions.DEFAULT.withTenant("acme"));
            assertEquals(0, b.append(tenant, prompt), "another tenant gets nothing");
            b.free(tenant);
            assertEquals(5, tb.redisStats().loads(), "no load for the other salt or tenant");
            a.free(qa);
        }
    }

    @Test
    void aSaltedTenantsBlocksLiveUnderItsSaltAndOnlyThatSaltIsServedThem() throws IOException {
        KvLayout l = new KvLayout(2, 2, 32, 16, KvFormats.F16);
        int[] prompt = Kv.tokens(16 * 3 + 5, 70);            // 3 full blocks and 5 tokens
        long salt = -0x1234_5678_9abcL;
        try (OffHeapKvStore sa = OffHeapKvStore.allocate(l, 8); OffHeapKvStore sb = OffHeapKvStore.allocate(l, 8);
             RedisTier ta = RedisTier.builder(endpointA, l).model("salted").lookupTimeout(Duration.ofSeconds(2)).build();
             RedisTier tb = RedisTier.builder(endpointB, l).model("salted").lookupTimeout(Duration.ofSeconds(2)).build();
             KvCacheManager a = KvCacheManager.builder(l).store(sa).tier(ta).build();
             KvCacheManager b = KvCacheManager.builder(l).store(sb).tier(tb).build()) {
            a.addListener(ta.writeOnPublish(sa));
            Sequence qa = a.open("a", SequenceOptions.DEFAULT.withCacheSalt(salt));
            assertEquals(0, a.append(qa, prompt));
            Kv.write(sa, qa, 9, 0, prompt.length);
            a.commit(qa);
            assertTrue(ta.awaitWrites(Duration.ofSeconds(5)));
            assertEquals(3, ta.redisStats().writesDone());
            String pattern = ta.keys().saltPattern(salt);
            assertTrue(pattern.contains(":ffffedcba9876544:"), pattern);
            assertEquals(3L, server.integer("EVAL", "return #redis.call('keys', ARGV[1])", "0", pattern),
                    "the tenant's three blocks under its salt");
            assertEquals(0L, server.integer("EVAL", "return #redis.call('keys', ARGV[1])", "0", ta.keys().saltPattern(0)));

            Sequence plain = b.open("plain");
            assertEquals(0, b.append(plain, prompt), "salt 0 gets nothing");
            b.free(plain);
            Sequence qb = b.open("b", SequenceOptions.DEFAULT.withCacheSalt(salt));
            assertEquals(48, b.append(qb, prompt), "the same salt on another engine is served all three blocks");
            for (int j = 0; j < 3; j++) {
                assertArrayEquals(Kv.export(sa, qa.blockTable()[j]), Kv.export(sb, qb.blockTable()[j]), "block " + j);
            }
            b.free(qb);
            a.free(qa);
        }
    }
}
