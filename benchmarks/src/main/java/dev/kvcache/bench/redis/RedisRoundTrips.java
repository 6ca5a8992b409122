package dev.kvcache.bench.redis;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.offheap.OffHeapKvStore;
import dev.kvcache.redis.RedisEndpoint;
import dev.kvcache.redis.RedisTier;

import java.time.Duration;

/**
 * Counts what a lookup costs on the wire, on a redis-server of its own: a 64-block prompt that
 * misses everywhere (store and Redis), then the same prompt once another engine published it.
 * Prints the tier's pipelined flushes and the server's own {@code INFO commandstats} (GETEX calls)
 * for each. Run: {@code java -cp benchmarks/target/benchmarks.jar dev.kvcache.bench.redis.RedisRoundTrips}.
 */
public final class RedisRoundTrips {

    private RedisRoundTrips() {
    }

    /** The server's count of {@code cmd} once it stops moving (a lookup returns before its batch is all processed). */
    private static long settled(LocalRedis server, String cmd) throws Exception {
        long last = -1;
        long now = server.calls(cmd);
        while (now != last) {
            Thread.sleep(100);
            last = now;
            now = server.calls(cmd);
        }
        return now;
    }

    /** Runs the count and prints it. */
    public static void main(String[] args) throws Exception {
        KvLayout layout = new KvLayout(2, 2, 64, 16, KvFormats.F16);
        int[] prompt = new int[64 * 16 + 1];
        for (int i = 0; i < prompt.length; i++) {
            prompt[i] = 7 + i;
        }
        try (LocalRedis server = LocalRedis.start(); RedisEndpoint ep = RedisEndpoint.standalone(server.uri());
             OffHeapKvStore sa = OffHeapKvStore.allocate(layout, 70); OffHeapKvStore sb = OffHeapKvStore.allocate(layout, 70);
             RedisTier ta = RedisTier.builder(ep, layout).lookupTimeout(Duration.ofSeconds(1)).build();
             RedisTier tb = RedisTier.builder(ep, layout).lookupTimeout(Duration.ofSeconds(1)).build();
             KvCacheManager a = KvCacheManager.builder(layout).store(sa).tier(ta).build();
             KvCacheManager b = KvCacheManager.builder(layout).store(sb).tier(tb).build()) {
            a.addListener(ta.writeOnPublish(sa));
            long g0 = server.calls("getex");
            Sequence s = a.open("a");
            int served = a.append(s, prompt);
            long g1 = settled(server, "getex");
            System.out.printf("64-block prompt, nothing cached anywhere: served %d tokens, %d pipelined flush(es) by the tier,"
                    + " %d GETEX on the server%n", served, ta.redisStats().roundTrips(), g1 - g0);
            float[] kv = new float[layout.kvDim()];
            for (int p = 0; p < prompt.length; p++) {
                for (int l = 0; l < layout.layers(); l++) {
                    sa.write(l, s.slot(p), kv, kv);
                }
            }
            a.free(s);
            ta.awaitWrites(Duration.ofSeconds(10));
            Sequence q = b.open("b");
            long g2 = server.calls("getex");
            int hit = b.append(q, prompt);
            long g3 = settled(server, "getex");
            System.out.printf("the same prompt on a second engine after the first published it: served %d tokens from Redis,"
                    + " %d pipelined flush(es), %d GETEX, %d further GETs for the loads%n", hit, tb.redisStats().roundTrips(),
                    g3 - g2, server.calls("get"));
            b.free(q);
        }
    }
}
