package dev.kvcache.redis;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.Sequence;
import io.lettuce.core.RedisClient;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.api.StatefulRedisConnection;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What lands in an instance's stream, field by field, and that the stream stays bounded. */
class KvEventPublisherTest {

    private static final KvLayout LAYOUT = new KvLayout(1, 1, 8, 16, KvFormats.F16);

    @Test
    void theStreamHoldsVllmStyleEntriesCoalescedAndBounded() throws Exception {
        try (RedisServers.Server server = RedisServers.Server.start(); RedisEndpoint ep = RedisEndpoint.standalone(server.uri())) {
            RedisKeys keys = RedisKeys.of("pub", LAYOUT);
            List<PrefixKey> published = new ArrayList<>();
            try (KvEventPublisher pub = KvEventPublisher.builder(ep, keys, "node-1", 16).maxLength(100).build();
                 KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(8).build()) {
                m.addListener(pub);
                m.addListener(e -> {
                    if (e instanceof KvCacheEvent.BlockStored s) {
                        published.add(s.key());
                    }
                });
                int[] prompt = Kv.tokens(3 * 16 + 4, 7);
                Sequence s = m.open("a");
                m.append(s, prompt);
                m.free(s);
                assertTrue(pub.flush(Duration.ofSeconds(5)));
                List<PrefixKey> first = List.copyOf(published);
                Sequence big = m.open("big");
                m.append(big, Kv.tokens(7 * 16, 30_000));                 // evicts the cached blocks
                m.free(big);
                m.resetPrefixCache();
                assertTrue(pub.flush(Duration.ofSeconds(5)));

                RedisClient c = RedisClient.create(server.uri());
                try (StatefulRedisConnection<String, String> conn = c.connect()) {
                    List<StreamMessage<String, String>> entries = conn.sync().xrange(keys.stream("node-1"),
                            io.lettuce.core.Range.create("-", "+"));
                    List<KvWireEvent> ev = entries.stream().map(x -> KvWireEvent.fromFields(x.getBody())).toList();
                    assertEquals(KvWireEvent.Type.AllBlocksCleared, ev.get(0).type());
                    assertEquals("ALL", ev.get(0).medium(), "an epoch starts with a clear of everything");
                    KvWireEvent stored = ev.get(1);
                    assertEquals(KvWireEvent.Type.BlockStored, stored.type());
                    assertEquals(first, stored.blockHashes(), "the three blocks of the chain in one entry");
                    assertEquals(null, stored.parentHash());
                    assertArrayEquals(Arrays.copyOf(prompt, 48), stored.tokenIds());
                    assertEquals(16, stored.blockSize());
                    assertEquals("GPU", stored.medium());
                    assertEquals(KvWireEvent.Type.BlockRemoved, ev.get(2).type(), "the eviction unpublished blocks");
                    assertTrue(first.containsAll(ev.get(2).blockHashes()) && !ev.get(2).blockHashes().isEmpty());
                    assertEquals(KvWireEvent.Type.AllBlocksCleared, ev.getLast().type());
                    assertEquals("GPU", ev.getLast().medium(), "resetPrefixCache clears the store");
                    for (int i = 0; i < ev.size(); i++) {
                        assertEquals(i, ev.get(i).seq());
                        assertEquals(pub.epoch(), ev.get(i).epoch());
                    }
                    Map<String, String> raw = entries.get(1).getBody();
                    assertEquals(first.get(0).toHex() + " " + first.get(1).toHex() + " " + first.get(2).toHex(),
                            raw.get("block_hashes"));

                    for (int i = 0; i < 600; i++) {                          // far past the bound
                        Sequence q = m.open("b" + i);
                        m.append(q, Kv.tokens(16, 50_000 + i * 16));
                        m.free(q);
                        m.resetPrefixCache();
                        if (i % 100 == 0) {
                            assertTrue(pub.flush(Duration.ofSeconds(5)));
                        }
                    }
                    assertTrue(pub.flush(Duration.ofSeconds(5)));
                    long len = conn.sync().xlen(keys.stream("node-1"));
                    assertTrue(len <= 300, "MAXLEN ~ 100 keeps the stream bounded: " + len);
                    assertTrue(pub.entriesWritten() > 600);
                    assertEquals(0, pub.droppedEvents());
                } finally {
                    c.shutdown();
                }
            }
        }
    }
}
