package dev.kvcache.redis;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheListener;
import dev.kvcache.PrefixKey;
import io.lettuce.core.RedisFuture;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.XReadArgs;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * Sends each prompt to the instance that holds the longest part of its prefix (llm-d's KV-cache
 * aware routing): it mirrors, from their KV events, which {@link PrefixKey}s each of N instances
 * holds, on its GPU (the engine's store) or in one of its tiers.
 *
 * <h2>Index</h2>
 * For every key some instance holds, two bit sets over the instances (store, tier); for every
 * instance, the set of keys it holds, so that a clear costs that instance's keys only. Events are
 * applied in each instance's order: {@code BlockStored} sets the instance's bit for every key of
 * the entry on its medium, {@code BlockRemoved} clears it, {@code AllBlocksCleared} clears the
 * medium's bits ({@code "ALL"}: both). An entry whose {@code seq} does not follow the last one of
 * the same epoch means events were lost (a full queue, a failed XADD, trimming): what the router
 * knew of that instance is dropped, since a lost removal would leave a stale entry. A new epoch
 * (a restarted instance) drops everything known of the old one. Stale knowledge costs a worse route, never a wrong block: an
 * engine verifies every hit itself.
 *
 * <h2>Route</h2>
 * {@link #route(int[], long, String)} chains the prompt's full blocks into keys from the root of
 * (salt, scope) exactly as the engines do, and walks them while any instance still holds every
 * key so far. The instance with the most leading blocks wins; ties (including "nobody holds
 * anything") go to the least loaded instance by {@link #reportLoad}, then to the one with more of
 * them on GPU, then to the first in the list.
 *
 * <h2>Feeds</h2>
 * In process: {@link #apply(String, KvWireEvent)} or {@link #listener(String)} (a
 * {@link KvCacheListener} to register with each manager), which is how a simulator drives it.
 * Over Redis: {@link #follow} starts a daemon thread that reads the instances' streams
 * ({@code XREAD}, pipelined, one per stream so that a cluster serves each from its own slot) from
 * the beginning of what the streams keep, so a router that restarts catches up by itself.
 *
 * <h2>Threads</h2>
 * Every method synchronizes on the router; a route costs one SHA-256 per full block of the prompt
 * plus a hash lookup per block.
 */
public final class PrefixRouter implements AutoCloseable {

    private static final System.Logger LOG = System.getLogger(PrefixRouter.class.getName());
    private static final int MAX_INSTANCES = 64;

    private final int blockTokens;
    private final List<String> instances;
    private final Map<String, Integer> index = new HashMap<>();
    /** key -> {store bits, tier bits}. */
    private final HashMap<PrefixKey, long[]> holders = new HashMap<>();
    private final List<Set<PrefixKey>> held = new ArrayList<>();
    private final long[] loads;
    private final long[] epochs;
    private final long[] lastSeq;
    private long applied;
    private long gaps;
    private long ignored;
    private volatile Thread follower;
    private volatile boolean closed;
    private final Map<String, String> positions = new LinkedHashMap<>();

    /**
     * A router over {@code instances} (1 to 64 distinct ids) whose engines use blocks of
     * {@code blockTokens} tokens.
     *
     * @param blockTokens the tokens per block of every engine it routes to, positive; events of
     *                    another block size are ignored
     * @param instances   the instance ids, 1 to 64 distinct ids of 1 to 64 characters of [A-Za-z0-9._-]
     * @throws IllegalArgumentException {@code blockTokens} below 1, no or more than 64 instances, a
     *                                  malformed instance id or one listed twice
     */
    public PrefixRouter(int blockTokens, List<String> instances) {
        if (blockTokens < 1) {
            throw new IllegalArgumentException("blockTokens " + blockTokens + " must be positive");
        }
        Objects.requireNonNull(instances, "instances");
        if (instances.isEmpty() || instances.size() > MAX_INSTANCES) {
            throw new IllegalArgumentException(instances.size() + " instances; a router takes 1 to " + MAX_INSTANCES);
        }
        this.blockTokens = blockTokens;
        this.instances = List.copyOf(instances);
        for (String s : this.instances) {
            RedisKeys.checkInstance(s);
            if (index.put(s, index.size()) != null) {
                throw new IllegalArgumentException("instance '" + s + "' listed twice");
            }
            held.add(new HashSet<>());
            positions.put(s, "0-0");
        }
        this.loads = new long[instances.size()];
        this.epochs = new long[instances.size()];
        this.lastSeq = new long[instances.size()];
        java.util.Arrays.fill(lastSeq, -1);
    }

    /**
     * Where {@link #route} sends a prompt.
     *
     * @param instance     the instance
     * @param cachedBlocks how many leading full blocks of the prompt it holds (GPU or tier)
     * @param cachedTokens the same in tokens
     * @param load         its load as last reported
     */
    public record Route(String instance, int cachedBlocks, int cachedTokens, long load) {
    }

    /**
     * The instances, in order.
     *
     * @return an unmodifiable copy of the ids it was built with
     */
    public List<String> instances() {
        return instances;
    }

    // ------------------------------------------------------------------ feeds

    /**
     * Applies one event of {@code instance}'s stream, in order.
     *
     * @param instance the instance whose stream carried the event
     * @param e        the event; a new epoch or a gap in {@code seq} first forgets what the
     *                 instance held
     * @throws IllegalArgumentException an instance the router does not know
     */
    public synchronized void apply(String instance, KvWireEvent e) {
        int i = instanceIndex(instance);
        if (e.blockSize() != blockTokens) {
            ignored++;
            return;
        }
        if (e.epoch() != epochs[i]) {
            epochs[i] = e.epoch();
            lastSeq[i] = e.seq() - 1;
            clear(i, true, true); // a new process holds nothing of the old one's (its first entry says so too)
        } else if (e.seq() != lastSeq[i] + 1) {
            gaps++;
            clear(i, true, true); // events were lost: forget the instance rather than keep stale keys
        }
        lastSeq[i] = e.seq();
        applied++;
        boolean gpu = KvWireEvent.GPU.equals(e.medium());
        switch (e.type()) {
            case BlockStored -> {
                for (PrefixKey k : e.blockHashes()) {
                    long[] h = holders.computeIfAbsent(k, x -> new long[2]);
                    h[gpu ? 0 : 1] |= 1L << i;
                    held.get(i).add(k);
                }
            }
            case BlockRemoved -> {
                for (PrefixKey k : e.blockHashes()) {
                    unset(i, k, gpu ? 0 : 1);
                }
            }
            case AllBlocksCleared -> {
                boolean all = KvWireEvent.ALL.equals(e.medium());
                clear(i, all || gpu, all || !gpu);
            }
        }
    }

    /**
     * A listener that feeds {@code instance}'s manager's events straight into this router, in
     * process (medium {@code "GPU"}); {@code seq} numbers are its own.
     *
     * @param instance the instance whose manager the listener is registered with
     * @return a listener for that manager (it starts a new epoch for the instance now)
     * @throws IllegalArgumentException an instance the router does not know
     */
    public KvCacheListener listener(String instance) {
        int i = instanceIndex(instance);
        long epoch = System.nanoTime();
        long[] seq = {0};
        apply(instance, new KvWireEvent(KvWireEvent.Type.AllBlocksCleared, epoch, seq[0]++, 0, List.of(), null,
                new int[0], blockTokens, KvWireEvent.ALL));
        return ev -> {
            KvWireEvent w = switch (ev) {
                case KvCacheEvent.BlockStored s when s.key() != null -> new KvWireEvent(KvWireEvent.Type.BlockStored, epoch,
                        seq[0]++, 0, List.of(s.key()), s.parentKey(), s.tokenIds(), blockTokens, KvWireEvent.GPU);
                case KvCacheEvent.BlockRemoved r when r.key() != null -> new KvWireEvent(KvWireEvent.Type.BlockRemoved, epoch,
                        seq[0]++, 0, List.of(r.key()), null, new int[0], blockTokens, KvWireEvent.GPU);
                case KvCacheEvent.AllBlocksCleared c -> new KvWireEvent(KvWireEvent.Type.AllBlocksCleared, epoch, seq[0]++, 0,
                        List.of(), null, new int[0], blockTokens, KvWireEvent.GPU);
                default -> null;
            };
            if (w != null) {
                apply(instances.get(i), w);
            }
        };
    }

    /**
     * Follows the instances' streams in {@code keys}'s namespace over {@code endpoint}, from the
     * oldest entry each stream keeps, polling every {@code pollInterval} when nothing is new. A
     * Redis failure is retried at the next poll. Call once.
     *
     * @param endpoint     the Redis server or cluster the streams live on
     * @param keys         the key space of the model (names the streams)
     * @param pollInterval the wait between polls that found nothing new (at least 1 ms is used)
     * @throws IllegalStateException the router already follows streams
     */
    public synchronized void follow(RedisEndpoint endpoint, RedisKeys keys, Duration pollInterval) {
        Objects.requireNonNull(endpoint, "endpoint");
        Objects.requireNonNull(keys, "keys");
        Objects.requireNonNull(pollInterval, "pollInterval");
        if (follower != null) {
            throw new IllegalStateException("the router already follows streams");
        }
        long pollMs = Math.max(1, pollInterval.toMillis());
        Thread t = Thread.ofPlatform().daemon().name("kvcache-router-follower").unstarted(() -> followLoop(endpoint, keys, pollMs));
        follower = t;
        t.start();
    }

    private void followLoop(RedisEndpoint endpoint, RedisKeys keys, long pollMs) {
        RedisEndpoint.Link<byte[]> link = null;
        byte[][] streams = new byte[instances.size()][];
        for (int i = 0; i < streams.length; i++) {
            streams[i] = keys.stream(instances.get(i)).getBytes(StandardCharsets.US_ASCII);
        }
        boolean warned = false;
        while (!closed) {
            try {
                if (link == null) {
                    link = endpoint.open();
                }
                List<RedisFuture<List<StreamMessage<byte[], byte[]>>>> fs = new ArrayList<>();
                for (int i = 0; i < streams.length; i++) {
                    String from;
                    synchronized (this) {
                        from = positions.get(instances.get(i));
                    }
                    fs.add(link.commands().xread(XReadArgs.Builder.count(1024),
                            XReadArgs.StreamOffset.from(streams[i], from)));
                }
                int got = 0;
                for (int i = 0; i < fs.size(); i++) {
                    List<StreamMessage<byte[], byte[]>> msgs = fs.get(i).get(2, TimeUnit.SECONDS);
                    if (msgs == null) {
                        continue;
                    }
                    for (StreamMessage<byte[], byte[]> m : msgs) {
                        Map<String, String> f = new HashMap<>();
                        for (Map.Entry<byte[], byte[]> en : m.getBody().entrySet()) {
                            f.put(new String(en.getKey(), StandardCharsets.US_ASCII), new String(en.getValue(), StandardCharsets.US_ASCII));
                        }
                        synchronized (this) {
                            try {
                                apply(instances.get(i), KvWireEvent.fromFields(f));
                            } catch (IllegalArgumentException bad) {
                                ignored++;
                            }
                            positions.put(instances.get(i), m.getId());
                        }
                        got++;
                    }
                }
                warned = false;
                if (got == 0) {
                    RedisTimeouts.sleep(pollMs);
                }
            } catch (InterruptedException e) {
                break;
            } catch (Exception e) {
                if (!warned) {
                    warned = true;
                    LOG.log(System.Logger.Level.WARNING, "prefix router: reading the event streams failed ({0}); retrying", e.toString());
                }
                RedisTimeouts.sleep(Math.max(pollMs, 50));
            }
        }
        if (link != null) {
            endpoint.release(link.connection());
        }
    }

    // ------------------------------------------------------------------ routing

    /**
     * Tells the router how loaded {@code instance} is (any scale the caller keeps consistent:
     * queued requests, active tokens); ties between equally cached instances go to the least loaded.
     *
     * @param instance the instance
     * @param load     its load, in the caller's units; lower is less loaded
     * @throws IllegalArgumentException an instance the router does not know
     */
    public synchronized void reportLoad(String instance, long load) {
        loads[instanceIndex(instance)] = load;
    }

    /**
     * {@link #route(int[], long, String)} for the default tenant
     * ({@link dev.kvcache.SequenceOptions#DEFAULT_TENANT}), which is what an engine that never
     * names tenants uses.
     *
     * @param tokens the prompt's token ids
     * @param salt   the cache salt of the request
     * @return where to send the prompt
     */
    public Route route(int[] tokens, long salt) {
        return route(tokens, salt, dev.kvcache.SequenceOptions.DEFAULT_TENANT);
    }

    /**
     * The instance holding the longest cached prefix of {@code tokens} for cache salt
     * {@code salt} in {@code scope} (the tenant, or null when the engines share their cache across
     * tenants), the least loaded among equals.
     *
     * @param tokens the prompt's token ids
     * @param salt   the cache salt of the request
     * @param scope  the tenant the prefix keys are scoped to, or null for a cache shared across tenants
     * @return where to send the prompt (the first instance in order among full equals)
     */
    public synchronized Route route(int[] tokens, long salt, String scope) {
        int[] matched = matchedBlocks(tokens, salt, scope);
        int best = -1;
        for (int i = 0; i < matched.length; i++) {
            if (best < 0 || matched[i] > matched[best] || (matched[i] == matched[best] && loads[i] < loads[best])) {
                best = i;
            }
        }
        return new Route(instances.get(best), matched[best], matched[best] * blockTokens, loads[best]);
    }

    /**
     * How many leading full blocks of the prompt each instance holds (store or tier), in instance order.
     *
     * @param tokens the prompt's token ids
     * @param salt   the cache salt of the request
     * @param scope  the tenant the prefix keys are scoped to, or null for a cache shared across tenants
     * @return a fresh array, one count per instance, each 0 to {@code tokens.length / blockTokens}
     */
    public synchronized int[] matchedBlocks(int[] tokens, long salt, String scope) {
        Objects.requireNonNull(tokens, "tokens");
        int n = instances.size();
        int[] matched = new int[n];
        long alive = n == 64 ? -1L : (1L << n) - 1;
        PrefixKey k = PrefixKey.root(salt, scope);
        int blocks = tokens.length / blockTokens;
        for (int j = 0; j < blocks && alive != 0; j++) {
            k = PrefixKey.chain(k, tokens, j * blockTokens, blockTokens);
            long[] h = holders.get(k);
            long has = h == null ? 0 : (h[0] | h[1]) & alive;
            for (long gone = alive & ~has; gone != 0; gone &= gone - 1) {
                matched[Long.numberOfTrailingZeros(gone)] = j;
            }
            alive = has;
            if (j == blocks - 1) {
                for (long a = alive; a != 0; a &= a - 1) {
                    matched[Long.numberOfTrailingZeros(a)] = blocks;
                }
            }
        }
        return matched;
    }

    /**
     * The keys {@code instance} holds on GPU ({@code gpu}) or in a tier, as the router knows them.
     *
     * @param instance the instance
     * @param gpu      true for the keys on its GPU (its store), false for those in a tier
     * @return a fresh set of those keys
     * @throws IllegalArgumentException an instance the router does not know
     */
    public synchronized Set<PrefixKey> held(String instance, boolean gpu) {
        int i = instanceIndex(instance);
        Set<PrefixKey> out = new HashSet<>();
        for (PrefixKey k : held.get(i)) {
            long[] h = holders.get(k);
            if (h != null && (h[gpu ? 0 : 1] & (1L << i)) != 0) {
                out.add(k);
            }
        }
        return out;
    }

    /**
     * Events applied so far.
     *
     * @return the count since the router was built
     */
    public synchronized long applied() {
        return applied;
    }

    /**
     * Gaps seen (lost events): each dropped what the router knew of one instance.
     *
     * @return the count since the router was built
     */
    public synchronized long gaps() {
        return gaps;
    }

    /**
     * Events ignored: another block size, or an entry that did not parse.
     *
     * @return the count since the router was built
     */
    public synchronized long ignored() {
        return ignored;
    }

    /**
     * The id of the last stream entry read per instance ("0-0" before any).
     *
     * @return an unmodifiable copy: instance id to stream entry id
     */
    public synchronized Map<String, String> positions() {
        return Map.copyOf(positions);
    }

    private void clear(int i, boolean gpu, boolean tier) {
        Set<PrefixKey> keys = held.get(i);
        for (PrefixKey k : new ArrayList<>(keys)) {
            if (gpu) {
                unset(i, k, 0);
            }
            if (tier) {
                unset(i, k, 1);
            }
        }
    }

    private void unset(int i, PrefixKey k, int medium) {
        long[] h = holders.get(k);
        if (h == null) {
            return;
        }
        h[medium] &= ~(1L << i);
        if (((h[0] | h[1]) & (1L << i)) == 0) {
            held.get(i).remove(k);
        }
        if (h[0] == 0 && h[1] == 0) {
            holders.remove(k);
        }
    }

    private int instanceIndex(String instance) {
        Integer i = index.get(instance);
        if (i == null) {
            throw new IllegalArgumentException("instance '" + instance + "' is not one of " + instances);
        }
        return i;
    }

    /** Stops following the streams (if it was). Idempotent. */
    @Override
    public void close() {
        closed = true;
        Thread t = follower;
        if (t != null) {
            t.interrupt();
            try {
                t.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
