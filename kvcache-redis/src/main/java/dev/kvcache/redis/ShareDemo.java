package dev.kvcache.redis;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.Sequence;
import dev.kvcache.SequenceOptions;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Objects;
import java.util.SplittableRandom;
import java.util.function.BiFunction;

/**
 * Two engines sharing KV through Redis, one process each, so that a user sees it happen
 * ({@code bin/kvcache share}): a writer computes a prompt's KV and publishes it to Redis; a reader
 * in another process is served that prompt's blocks from Redis, checks them byte for byte against
 * its own computation of the same KV, checks that attention over them equals attention over its
 * own computation (a float64 reference over the store's reads), and checks that another cache
 * salt is served nothing.
 *
 * <p>With a key file (the same on both sides) the writer seals every value with the fleet key and
 * the reader serves only values that key verifies: a reader with another key is served nothing.
 *
 * <p>The "computation" is deterministic pseudo-random K and V per (seed, position, layer), the
 * same in both processes, as a model's would be for the same tokens.
 */
public final class ShareDemo {

    /**
     * What both roles agree on.
     *
     * @param redis  the Redis URI ({@link RedisEndpoint#connect})
     * @param role   {@code writer} or {@code reader}
     * @param tokens the prompt's length
     * @param model  the model id (the key namespace)
     * @param salt   the cache salt both use
     * @param seed   the prompt's and the KV's seed
     * @param format the KV format's name ({@link KvFormats#byName})
     * @param keyFile a file holding the fleet key ({@link RedisTier.Builder#authenticationKey}),
     *                16 to 4096 bytes, the same file for both roles; null: values are not sealed
     */
    public record Options(String redis, String role, int tokens, String model, long salt, long seed, String format,
                          Path keyFile) {
        /**
         * Checks the options.
         *
         * @throws IllegalArgumentException a role other than writer or reader, a token count out
         *                                  of [16, 65536], an unknown format
         */
        public Options {
            Objects.requireNonNull(redis, "redis");
            if (!"writer".equals(role) && !"reader".equals(role)) {
                throw new IllegalArgumentException("--role '" + role + "' must be writer or reader");
            }
            if (tokens < 16 || tokens > 65_536) {
                throw new IllegalArgumentException("--tokens " + tokens + " must be 16 to 65536 (one block at least)");
            }
            KvFormats.byName(format);
        }

        /**
         * Options without a fleet key.
         *
         * @param redis  the Redis URI ({@link RedisEndpoint#connect})
         * @param role   {@code writer} or {@code reader}
         * @param tokens the prompt's length
         * @param model  the model id (the key namespace)
         * @param salt   the cache salt both use
         * @param seed   the prompt's and the KV's seed
         * @param format the KV format's name ({@link KvFormats#byName})
         * @throws IllegalArgumentException as the canonical constructor
         */
        public Options(String redis, String role, int tokens, String model, long salt, long seed, String format) {
            this(redis, role, tokens, model, salt, seed, format, null);
        }
    }

    /** The longest key file {@code --key-file} reads. */
    static final int MAX_KEY_FILE_BYTES = 4096;
    private static final int LAYERS = 4;
    private static final int KV_HEADS = 4;
    private static final int HEAD_DIM = 64;
    private static final int BLOCK = 16;
    private static final int QUERY_HEADS = 8;

    private ShareDemo() {
    }

    /**
     * Runs one role against Redis at {@code o.redis()} with stores made by {@code stores}
     * (layout, blocks): 0 when every check held, 1 otherwise.
     *
     * @param o      the role and what both processes agree on
     * @param stores makes the store for a layout and a capacity in blocks
     * @param out    where the role reports what it did and checked
     * @return the exit status: 0 when every check held, 1 otherwise
     * @throws IllegalArgumentException bad options, a key file that cannot be read or holds under
     *                                  16 or over 4096 bytes
     * @throws IllegalStateException    Redis cannot be reached
     */
    public static int run(Options o, BiFunction<KvLayout, Integer, KvStore> stores, PrintWriter out) {
        byte[] fleetKey = o.keyFile() == null ? null : fleetKey(o.keyFile());
        KvLayout layout = new KvLayout(LAYERS, KV_HEADS, HEAD_DIM, BLOCK, KvFormats.byName(o.format()));
        int[] prompt = prompt(o.tokens(), o.seed());
        int full = prompt.length / BLOCK;
        int blocks = full + 2;
        try (RedisEndpoint ep = RedisEndpoint.connect(o.redis())) {
            ep.checkReachable();
            try (KvStore store = stores.apply(layout, blocks);
                 RedisTier tier = tier(ep, layout, o, fleetKey);
                 KvCacheManager m = KvCacheManager.builder(layout).store(store).tier(tier).build()) {
                if (fleetKey != null) {
                    out.printf("%s: values sealed and checked with the fleet key in %s%n", o.role(), o.keyFile());
                }
                return "writer".equals(o.role()) ? write(o, store, tier, m, prompt, out) : read(o, layout, stores, store, tier, m, prompt, out);
            }
        }
    }

    private static RedisTier tier(RedisEndpoint ep, KvLayout layout, Options o, byte[] fleetKey) {
        RedisTier.Builder b = RedisTier.builder(ep, layout).model(o.model()).lookupTimeout(Duration.ofMillis(500));
        if (fleetKey != null) {
            b.authenticationKey(fleetKey);
        }
        return b.build();
    }

    private static byte[] fleetKey(Path file) {
        byte[] key;
        try (InputStream in = Files.newInputStream(file)) {
            key = in.readNBytes(MAX_KEY_FILE_BYTES + 1); // bounded: /dev/zero or a huge file is refused, not read
        } catch (IOException e) {
            String why = e instanceof NoSuchFileException ? "no such file"
                    : e instanceof AccessDeniedException ? "access denied" : e.getMessage();
            throw new IllegalArgumentException("--key-file " + file + " cannot be read: " + why, e);
        }
        if (key.length < ValueSeal.MIN_KEY_BYTES) {
            throw new IllegalArgumentException("--key-file " + file + " holds " + key.length + " bytes: a fleet key needs at least "
                    + ValueSeal.MIN_KEY_BYTES);
        }
        if (key.length > MAX_KEY_FILE_BYTES) {
            throw new IllegalArgumentException("--key-file " + file + " holds more than " + MAX_KEY_FILE_BYTES
                    + " bytes: a fleet key file holds at most " + MAX_KEY_FILE_BYTES);
        }
        return key;
    }

    private static int write(Options o, KvStore store, RedisTier tier, KvCacheManager m, int[] prompt, PrintWriter out) {
        m.addListener(tier.writeOnPublish(store));
        Sequence s = m.open("writer", SequenceOptions.DEFAULT.withCacheSalt(o.salt()));
        if (m.append(s, prompt) < 0) {
            throw new IllegalStateException("the writer's append was refused: " + m.lastRefusal());
        }
        compute(store, s, o.seed(), 0, prompt.length);
        m.free(s); // publishes the full blocks: their KV exists
        boolean drained = tier.awaitWrites(Duration.ofSeconds(10));
        RedisTierStats st = tier.redisStats();
        out.printf("writer: computed %d prompt tokens (%d full blocks of %d, %s, %d bytes each) and published them to %s%n",
                prompt.length, prompt.length / BLOCK, BLOCK, store.layout().format().name(), store.layout().bytesPerBlock(), o.redis());
        out.printf("writer: %d blocks written to Redis (namespace %s), %d dropped, %d failed%n", st.writesDone(),
                tier.keys().namespace(), st.writesDropped(), st.writesFailed());
        out.flush();
        return drained && st.writesDone() == prompt.length / BLOCK ? 0 : 1;
    }

    private static int read(Options o, KvLayout layout, BiFunction<KvLayout, Integer, KvStore> stores, KvStore store,
                            RedisTier tier, KvCacheManager m, int[] prompt, PrintWriter out) {
        int full = prompt.length / BLOCK;
        Sequence s = m.open("reader", SequenceOptions.DEFAULT.withCacheSalt(o.salt()));
        int served = m.append(s, prompt);
        if (served < 0) {
            throw new IllegalStateException("the reader's append was refused: " + m.lastRefusal());
        }
        compute(store, s, o.seed(), served, prompt.length); // only what Redis did not serve
        out.printf("reader: %d of %d prompt tokens served from Redis (%d of %d full blocks, %d round trips), %d computed here%n",
                served, prompt.length, served / BLOCK, full, tier.redisStats().roundTrips(), prompt.length - served);
        int identical = 0;
        double maxDiff;
        try (KvStore ref = stores.apply(layout, full + 2);
             KvCacheManager mr = KvCacheManager.builder(layout).store(ref).prefixCaching(false).build()) {
            Sequence r = mr.open("reference");
            mr.append(r, prompt);
            compute(ref, r, o.seed(), 0, prompt.length);
            for (int j = 0; j < served / BLOCK; j++) {
                if (Arrays.equals(export(store, s.blockTable()[j]), export(ref, r.blockTable()[j]))) {
                    identical++;
                }
            }
            maxDiff = 0;
            SplittableRandom q = new SplittableRandom(o.seed() ^ 0x5eed);
            for (int layer = 0; layer < LAYERS; layer++) {
                double[] query = new double[QUERY_HEADS * HEAD_DIM];
                for (int i = 0; i < query.length; i++) {
                    query[i] = q.nextDouble() * 2 - 1;
                }
                double[] a = attend(store, s, layer, query);
                double[] b = attend(ref, r, layer, query);
                for (int i = 0; i < a.length; i++) {
                    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
                }
            }
            mr.free(r);
        }
        out.printf("reader: %d of %d served blocks byte-identical to this process's own computation%n", identical, served / BLOCK);
        out.printf("reader: attention over the served KV vs over this process's own: max |difference| %s%n", maxDiff);
        m.free(s);
        Sequence other = m.open("other-salt", SequenceOptions.DEFAULT.withCacheSalt(o.salt() + 1));
        int otherServed = m.append(other, prompt);
        m.free(other);
        out.printf("reader: another cache salt (%d) is served %d tokens%n", o.salt() + 1, Math.max(0, otherServed));
        int expected = (prompt.length - 1) / BLOCK * BLOCK; // a prompt's last token is always computed
        boolean ok = served == expected && identical == expected / BLOCK && maxDiff == 0 && otherServed == 0;
        out.println(ok ? "reader: OK, the writer's KV was shared" : "reader: FAILED");
        out.flush();
        return ok ? 0 : 1;
    }

    /** The demo's prompt: {@code n} token ids from {@code seed}. */
    static int[] prompt(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] p = new int[n];
        for (int i = 0; i < n; i++) {
            p[i] = r.nextInt(32_000);
        }
        return p;
    }

    /** "Computes" K and V of positions [from, to) of {@code s}: deterministic per (seed, position, layer). */
    static void compute(KvStore store, Sequence s, long seed, int from, int to) {
        int dim = KV_HEADS * HEAD_DIM;
        float[] k = new float[dim];
        float[] v = new float[dim];
        for (int p = from; p < to; p++) {
            for (int layer = 0; layer < LAYERS; layer++) {
                SplittableRandom r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + p * 131L + layer);
                for (int i = 0; i < dim; i++) {
                    k[i] = (float) (r.nextDouble() * 4 - 2);
                    v[i] = (float) (r.nextDouble() * 4 - 2);
                }
                store.write(layer, s.slot(p), k, v);
            }
        }
    }

    private static byte[] export(KvStore store, int block) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment seg = a.allocate(store.layout().bytesPerBlock());
            store.exportBlock(block, seg);
            return seg.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    /** Grouped-query attention over every position of {@code s}, in float64 from the store's reads. */
    private static double[] attend(KvStore store, Sequence s, int layer, double[] q) {
        int n = s.length();
        int dim = KV_HEADS * HEAD_DIM;
        float[][] keys = new float[n][dim];
        float[][] values = new float[n][dim];
        for (int p = 0; p < n; p++) {
            store.readKey(layer, s.slot(p), keys[p]);
            store.readValue(layer, s.slot(p), values[p]);
        }
        double[] out = new double[QUERY_HEADS * HEAD_DIM];
        int group = QUERY_HEADS / KV_HEADS;
        for (int h = 0; h < QUERY_HEADS; h++) {
            int kv = h / group;
            double[] logits = new double[n];
            double max = Double.NEGATIVE_INFINITY;
            for (int p = 0; p < n; p++) {
                double dot = 0;
                for (int i = 0; i < HEAD_DIM; i++) {
                    dot += q[h * HEAD_DIM + i] * keys[p][kv * HEAD_DIM + i];
                }
                logits[p] = dot / Math.sqrt(HEAD_DIM);
                max = Math.max(max, logits[p]);
            }
            double sum = 0;
            for (int p = 0; p < n; p++) {
                logits[p] = Math.exp(logits[p] - max);
                sum += logits[p];
            }
            for (int p = 0; p < n; p++) {
                for (int i = 0; i < HEAD_DIM; i++) {
                    out[h * HEAD_DIM + i] += logits[p] / sum * values[p][kv * HEAD_DIM + i];
                }
            }
        }
        return out;
    }
}
