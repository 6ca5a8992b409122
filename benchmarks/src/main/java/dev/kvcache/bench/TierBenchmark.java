package dev.kvcache.bench;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.offheap.HostTier;
import dev.kvcache.offheap.OffHeapKvStore;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * What a host tier costs and returns, against in-run copies of the same bytes (issue #13's targets):
 * <ul>
 *   <li>{@code promote16}: a prompt whose 16 full blocks are only in the {@link HostTier} is
 *       appended (the manager looks the keys up, loads and verifies 16 blocks), then freed and the
 *       store's prefix cache reset, so every call promotes again. Baseline {@code copy16}:
 *       {@code MemorySegment.copy} of the same bytes from host memory into the store's. Target:
 *       promote16 at least 0.8x copy16's bandwidth, i.e. at most 1.25x its time.</li>
 *   <li>{@code evictingAppendWithTier}: open, append one block of new tokens, free, on a pool
 *       whose every other block is cached: each call evicts one published block, which the tier
 *       takes (one export fused with its checksum). {@code evictingAppendNoTier} is the same without a tier, and
 *       {@code copyOneBlock} one block's {@code MemorySegment.copy} ({@code copyOneColdBlock} from a
 *       rotating one of 16, as an eviction reads; {@code crcOneBlock} the checksum the tier takes).
 *       Target: with a tier at most 1.1x (without + one copy). {@code evictingAppendWithAsyncTier}
 *       is the same with a {@link HostTier.Checksum#ASYNC} tier: the put copies and returns, the
 *       tier's own thread takes the checksum.</li>
 * </ul>
 * The layout (8 layers, 8 KV heads, head size 128, 16-token blocks, F16) makes a block 512 KiB,
 * so a call moves megabytes and the manager's own bookkeeping is in the noise.
 *
 * <p>Run: {@code java -jar benchmarks/target/benchmarks.jar TierBenchmark}; quote only ratios
 * within one run.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
        "-Xmx2g"})
public class TierBenchmark {

    static final KvLayout LAYOUT = new KvLayout(8, 8, 128, 16, KvFormats.F16);
    static final int PROMPT_BLOCKS = 16;

    /** A store of 24 blocks, a host tier holding a 16-block prompt the store does not. */
    @State(Scope.Thread)
    public static class Promote {
        OffHeapKvStore store;
        HostTier tier;
        KvCacheManager m;
        final int[] prompt = new int[PROMPT_BLOCKS * 16 + 1];

        @Setup(Level.Trial)
        public void setup() {
            store = OffHeapKvStore.allocate(LAYOUT, 24);
            tier = HostTier.allocate(LAYOUT, 20 * LAYOUT.bytesPerBlock());
            m = KvCacheManager.builder(LAYOUT).store(store).tier(tier).build();
            for (int i = 0; i < prompt.length; i++) {
                prompt[i] = i + 1;
            }
            Sequence s = m.open("prompt");
            m.append(s, prompt);
            float[] kv = new float[LAYOUT.kvDim()];
            for (int p = 0; p < prompt.length; p++) {
                for (int l = 0; l < LAYOUT.layers(); l++) {
                    java.util.Arrays.fill(kv, p * 0.001f + l);
                    store.write(l, s.slot(p), kv, kv);
                }
            }
            m.free(s);
            // push the prompt's blocks down: fill the store with other content
            Sequence other = m.open("other");
            int[] t = new int[24 * 16];
            for (int i = 0; i < t.length; i++) {
                t[i] = 1_000_000 + i;
            }
            m.append(other, t);
            m.abort(other);
            m.resetPrefixCache();
            if (tier.stats().blocks() < PROMPT_BLOCKS) {
                throw new IllegalStateException("the tier holds " + tier.stats().blocks() + " blocks");
            }
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            m.close();
            tier.close();
            store.close();
        }
    }

    @Benchmark
    public int promote16(Promote st) {
        Sequence s = st.m.open("p");
        int served = st.m.append(s, st.prompt);
        st.m.abort(s);
        st.m.resetPrefixCache(); // the promoted blocks leave the store again; the tier keeps them
        if (served != PROMPT_BLOCKS * 16) {
            throw new IllegalStateException("served " + served);
        }
        return served;
    }

    /** Host memory and store-sized memory for the copy baselines. */
    @State(Scope.Thread)
    public static class Copy {
        Arena arena;
        MemorySegment host;
        MemorySegment device;
        long next;
        final java.util.zip.CRC32C crc = new java.util.zip.CRC32C();

        @Setup(Level.Trial)
        public void setup() {
            arena = Arena.ofShared();
            long bytes = PROMPT_BLOCKS * LAYOUT.bytesPerBlock();
            host = arena.allocate(bytes, 64);
            device = arena.allocate(bytes, 64);
            host.fill((byte) 7);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            arena.close();
        }
    }

    @Benchmark
    public MemorySegment copy16(Copy c) {
        MemorySegment.copy(c.host, 0, c.device, 0, c.host.byteSize());
        return c.device;
    }

    @Benchmark
    public MemorySegment copyOneBlock(Copy c) {
        MemorySegment.copy(c.host, 0, c.device, 0, LAYOUT.bytesPerBlock());
        return c.device;
    }

    /**
     * One block copied from a rotating one of 16 (as an eviction reads the least recently used
     * block, not a cache-hot one): the copy an evicting append's demotion really makes.
     */
    @Benchmark
    public MemorySegment copyOneColdBlock(Copy c) {
        long b = LAYOUT.bytesPerBlock();
        long at = (c.next++ & (PROMPT_BLOCKS - 1)) * b;
        MemorySegment.copy(c.host, at, c.device, at, b);
        return c.device;
    }

    /** The CRC32C a host tier takes of a block it keeps (what it verifies a load against). */
    @Benchmark
    public long crcOneBlock(Copy c) {
        c.crc.reset();
        c.crc.update(c.host.asSlice(0, LAYOUT.bytesPerBlock()).asByteBuffer());
        return c.crc.getValue();
    }

    /** A pool of 16 blocks kept full of cached published blocks; each call adds one, evicting one. */
    @State(Scope.Thread)
    public static class Evicting {
        OffHeapKvStore store;
        HostTier tier;
        KvCacheManager m;
        final int[] block = new int[16];
        int next;

        void build(HostTier.Checksum withTier) {
            store = OffHeapKvStore.allocate(LAYOUT, 16);
            KvCacheManager.Builder b = KvCacheManager.builder(LAYOUT).store(store);
            if (withTier != null) {
                tier = HostTier.allocate(LAYOUT, 8 * LAYOUT.bytesPerBlock(), withTier);
                b.tier(tier);
            }
            m = b.build();
            for (int i = 0; i < 32; i++) {
                appendOne();
            }
        }

        int appendOne() {
            for (int i = 0; i < block.length; i++) {
                block[i] = next++;
            }
            Sequence s = m.open("e");
            int r = m.append(s, block);
            m.free(s); // published: its block joins the cached ones
            return r;
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            m.close();
            if (tier != null) {
                tier.close();
            }
            store.close();
        }
    }

    public static class EvictingWithTier extends Evicting {
        @Setup(Level.Trial)
        public void setup() {
            build(HostTier.Checksum.SYNC);
        }
    }

    public static class EvictingWithAsyncTier extends Evicting {
        @Setup(Level.Trial)
        public void setup() {
            build(HostTier.Checksum.ASYNC);
        }
    }

    public static class EvictingNoTier extends Evicting {
        @Setup(Level.Trial)
        public void setup() {
            build(null);
        }
    }

    @Benchmark
    public int evictingAppendWithTier(EvictingWithTier st) {
        return st.appendOne();
    }

    @Benchmark
    public int evictingAppendWithAsyncTier(EvictingWithAsyncTier st) {
        return st.appendOne();
    }

    @Benchmark
    public int evictingAppendNoTier(EvictingNoTier st) {
        return st.appendOne();
    }
}
