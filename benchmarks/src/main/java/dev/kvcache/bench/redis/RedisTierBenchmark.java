package dev.kvcache.bench.redis;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.offheap.OffHeapKvStore;
import dev.kvcache.redis.RedisEndpoint;
import dev.kvcache.redis.RedisTier;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisFuture;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Blackhole;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * The Redis tier against raw Lettuce on a local redis-server the benchmark starts itself (issue
 * #14's targets; quote only ratios within one run):
 * <ul>
 *   <li>{@code tierFetch32}: a 32-block prefix through the tier: {@code leadingHits} (one pipelined
 *       batch of GETEX) and 32 {@code load}s, each verified (header fields, two CRC32C) and
 *       imported into an off-heap store. Baseline {@code rawGets32}: 32 pipelined Lettuce GETs of
 *       the same keys and values on a connection of the same kind, values only consumed. Target:
 *       tierFetch32 at least 0.7x rawGets32's throughput, i.e. at most 1.43x its time.</li>
 *   <li>{@code missLookup64}: {@code leadingHits} of a 64-block prompt that no one holds (the tier
 *       asks the first batch of 32 and stops). Baseline {@code rawGet1}: one GET of a missing key,
 *       one round trip of one command, and {@code rawMissGets32}: the same 32 missing keys the tier asks,
 *       pipelined, one round trip of 32 commands. "Adds at most one round trip" reads as
 *       missLookup64 close to rawMissGets32 (the exact count of flushes and server-side commands is
 *       {@link RedisRoundTrips}'s).</li>
 * </ul>
 * Layout: 8 layers, 8 KV heads, head size 128, 16-token blocks, F16: 512 KiB a block, 16 MiB a
 * 32-block fetch. The tier runs with a 1 s lookup deadline at an assumed 200 MB/s so that a slow
 * fetch on a busy machine is measured, not cut short; a fetch that does not return all 32 blocks
 * throws.
 *
 * <p>{@code -p sealed=true} runs the tier with a fleet key ({@code RedisTier.Builder.authenticationKey}):
 * each value written is sealed (AES-256-GCM) and each value read is opened and checked, so
 * {@code tierFetch32} at {@code sealed=true} over {@code sealed=false} is the seal's cost on reads
 * (the raw baselines do not change with it).
 *
 * <p>Run: {@code java -jar benchmarks/target/benchmarks.jar RedisTierBenchmark} (needs redis-server).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
public class RedisTierBenchmark {

    static final KvLayout LAYOUT = new KvLayout(8, 8, 128, 16, KvFormats.F16);
    static final int BLOCKS = 32;

    /** A server holding one 32-block prompt written through the tier, a tier and a raw connection. */
    @State(Scope.Benchmark)
    public static class Fleet {
        /** Whether the tier seals and checks values with a fleet key. */
        @Param({"false"})
        public boolean sealed;
        LocalRedis server;
        RedisEndpoint endpoint;
        RedisTier tier;
        OffHeapKvStore source;
        OffHeapKvStore target;
        TierEntry[] entries;
        PrefixKey[] keys;
        PrefixKey[] missing;
        byte[][] rawKeys;
        byte[] missingKey;
        byte[][] missingKeys;
        RedisClient rawClient;
        StatefulRedisConnection<byte[], byte[]> raw;

        @Setup(Level.Trial)
        public void setup() throws Exception {
            server = LocalRedis.start();
            endpoint = RedisEndpoint.standalone(server.uri());
            RedisTier.Builder tb = RedisTier.builder(endpoint, LAYOUT).model("bench").lookupTimeout(Duration.ofSeconds(1))
                    .assumedBandwidth(2e8);
            if (sealed) {
                tb.authenticationKey("a 32-byte fleet key for the bench".getBytes(java.nio.charset.StandardCharsets.UTF_8));
            }
            tier = tb.build();
            source = OffHeapKvStore.allocate(LAYOUT, BLOCKS);
            target = OffHeapKvStore.allocate(LAYOUT, BLOCKS);
            int[] tokens = new int[BLOCKS * 16];
            for (int i = 0; i < tokens.length; i++) {
                tokens[i] = 1 + i;
            }
            entries = new TierEntry[BLOCKS];
            keys = new PrefixKey[BLOCKS];
            rawKeys = new byte[BLOCKS][];
            float[] kv = new float[LAYOUT.kvDim()];
            java.util.SplittableRandom r = new java.util.SplittableRandom(1);
            PrefixKey parent = PrefixKey.root(0, null);
            for (int b = 0; b < BLOCKS; b++) {
                for (int t = 0; t < 16; t++) {
                    for (int l = 0; l < LAYOUT.layers(); l++) {
                        for (int i = 0; i < kv.length; i++) {
                            kv[i] = (float) (r.nextDouble() * 2 - 1);
                        }
                        source.write(l, (long) b * 16 + t, kv, kv);
                    }
                }
                PrefixKey k = PrefixKey.chain(parent, tokens, b * 16, 16);
                entries[b] = new TierEntry(k, b == 0 ? null : parent, 0, null,
                        java.util.Arrays.copyOfRange(tokens, b * 16, b * 16 + 16), TierEntry.fingerprint(LAYOUT));
                keys[b] = k;
                rawKeys[b] = tier.keys().block(k);
                parent = k;
                if (!tier.put(entries[b], source, b)) {
                    throw new IllegalStateException("put refused");
                }
            }
            if (!tier.awaitWrites(Duration.ofSeconds(30)) || tier.redisStats().writesDone() != BLOCKS) {
                throw new IllegalStateException("setup writes did not complete: " + tier.redisStats());
            }
            missing = new PrefixKey[64];
            for (int i = 0; i < 64; i++) {
                missing[i] = new PrefixKey(0x5eed, i);
            }
            missingKey = tier.keys().block(missing[0]);
            missingKeys = new byte[BLOCKS][];
            for (int i = 0; i < BLOCKS; i++) {
                missingKeys[i] = tier.keys().block(missing[i]);
            }
            rawClient = RedisClient.create(server.uri());
            raw = rawClient.connect(ByteArrayCodec.INSTANCE);
            raw.setAutoFlushCommands(false);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            try {
                raw.close();
                rawClient.shutdown();
                tier.close();
                endpoint.close();
                source.close();
                target.close();
            } finally {
                server.close();
            }
        }
    }

    @Benchmark
    public int tierFetch32(Fleet f) {
        int n = f.tier.leadingHits(f.keys, 0, BLOCKS);
        if (n != BLOCKS) {
            throw new IllegalStateException("the tier found " + n + " of " + BLOCKS + ": " + f.tier.redisStats());
        }
        for (int b = 0; b < BLOCKS; b++) {
            if (!f.tier.load(f.entries[b], f.target, b)) {
                throw new IllegalStateException("load " + b + " missed: " + f.tier.redisStats());
            }
        }
        return n;
    }

    @Benchmark
    @SuppressWarnings("unchecked")
    public void rawGets32(Fleet f, Blackhole bh) throws Exception {
        RedisFuture<byte[]>[] fs = new RedisFuture[BLOCKS];
        for (int b = 0; b < BLOCKS; b++) {
            fs[b] = f.raw.async().get(f.rawKeys[b]);
        }
        f.raw.flushCommands();
        for (RedisFuture<byte[]> x : fs) {
            bh.consume(x.get(1, TimeUnit.SECONDS));
        }
    }

    @Benchmark
    public int missLookup64(Fleet f) {
        int n = f.tier.leadingHits(f.missing, 0, 64);
        if (n != 0) {
            throw new IllegalStateException("found " + n);
        }
        return n;
    }

    @Benchmark
    @SuppressWarnings("unchecked")
    public void rawMissGets32(Fleet f, Blackhole bh) throws Exception {
        RedisFuture<byte[]>[] fs = new RedisFuture[BLOCKS];
        for (int b = 0; b < BLOCKS; b++) {
            fs[b] = f.raw.async().get(f.missingKeys[b]);
        }
        f.raw.flushCommands();
        for (RedisFuture<byte[]> x : fs) {
            bh.consume(x.get(1, TimeUnit.SECONDS));
        }
    }

    @Benchmark
    public byte[] rawGet1(Fleet f) throws Exception {
        RedisFuture<byte[]> x = f.raw.async().get(f.missingKey);
        f.raw.flushCommands();
        return x.get(1, TimeUnit.SECONDS);
    }
}
