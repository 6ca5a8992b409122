package dev.kvcache.redis;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.KvTier;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;
import io.lettuce.core.GetExArgs;
import io.lettuce.core.RedisFuture;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A {@link KvTier} in a Redis (or Valkey, or Redis Cluster) that a fleet of engines shares:
 * LMCache's Redis backend for this library. One engine's published blocks become hits for every
 * other engine of the same model and layout.
 *
 * <h2>Keys and values</h2>
 * A block lives under {@link RedisKeys#block(long, PrefixKey)} ({@code kvc:<namespace>:<salt>:<prefix key>}); its
 * value (see {@code BlockValue}) is a header with the key, parent key, salt, scope, token ids,
 * layout fingerprint and two CRC32C checksums, then the block's bytes in the store's format. No
 * hash tags: in a cluster the blocks spread over every slot.
 *
 * <h2>Lookup: one round trip</h2>
 * {@link #leadingHits} sends one pipelined batch of {@code GET}s (or {@code GETEX} with a TTL,
 * which refreshes it) for at most {@link Builder#batchKeys} keys, flushes once and waits for the
 * answers up to a deadline of {@link Builder#lookupTimeout} plus the batch's bytes at
 * {@link Builder#assumedBandwidth}. It keeps the values it got (bounded by
 * {@link Builder#prefetchBytes}, which also caps how many keys one call asks), so the manager's
 * {@link #load}s right after cost no further round trip. Another batch is sent only if every key of the last one hit; a prompt that misses
 * costs exactly one round trip. A timeout or an error ends the lookup with the hits already
 * verified to exist: a miss, never a stall.
 *
 * <h2>Load: verified before a byte moves</h2>
 * Before the store imports a byte, a value is checked whole (exact length, the header's and the
 * payload's CRC32C: by the lookup as each value arrives, so the checksums overlap the transfer of
 * the rest of the batch, or by the load for a value the lookup did not keep) and against the
 * {@link TierEntry} the manager expects (every header field: key, parent key, salt, scope, token
 * ids, layout fingerprint). With a fleet key the value's seal is opened first (its tag verified,
 * its KV decrypted in place). A damaged value ends a lookup's hits there; a mismatch is a miss.
 * Both are counted in {@code verificationMisses}.
 *
 * <h2>Who may write and read: the fleet key</h2>
 * Checksums catch damage, not a forgery: anyone who can write to the Redis and knows a prompt can
 * build a value whose every field and checksum is right. With {@link Builder#authenticationKey}
 * every value this tier writes is sealed under the fleet's secret (AES-256-GCM under a key per
 * value: the KV encrypted, the whole value authenticated; {@code ValueSeal}), and a value whose
 * tag the key does not verify is a miss like any mismatch; no byte of it reaches the store.
 *
 * <h2>Writes: behind, bounded, never blocking</h2>
 * {@link #put} (a demotion) and {@link #writeOnPublish} (every block the moment it is published,
 * i.e. once its KV exists) copy the block out of the store on the caller's thread, then offer it
 * to a bounded queue ({@link Builder#queueBlocks}, {@link Builder#queueBytes}); when the queue is
 * full the block is dropped and counted. One daemon thread per tier drains the queue in
 * pipelined batches ({@code SET key value PX ttl}). A key this tier wrote or loaded within half
 * the TTL is not written again.
 *
 * <h2>Expiry</h2>
 * With a {@link Builder#ttl TTL} (default 1 hour) every block expires unless a lookup hits it
 * again (GETEX refreshes it). With {@code ttl(Duration.ZERO)} blocks never expire and the server's
 * {@code maxmemory} with {@code maxmemory-policy allkeys-lru} (or {@code volatile-lru} with a TTL)
 * bounds the memory: the usual setting for a cache, documented in the module's README.
 *
 * <h2>Failure is a miss</h2>
 * Every call has a deadline and nothing waits on Redis longer than it. A
 * {@code CircuitBreaker} opens after {@link Builder#breakerThreshold} consecutive failures
 * (timeouts or errors) and for {@link Builder#breakerOpen} every lookup, load and write skips
 * Redis; then one call probes. Lettuce reconnects by itself, so a restarted server is used again
 * without anyone calling anything. If the server is down when the tier is built, the writer
 * thread keeps trying to connect. Every skip, timeout and error is counted in {@link #redisStats}.
 *
 * <h2>Threads</h2>
 * Lookups and loads take one lock (they share a pipelined connection); the writer thread
 * ({@code WriteBehind}) has its own connection. A tier may be shared by several managers.
 *
 * <p>The class is the SPI's lookup and load path and its builder (about a fifth of it); the write
 * path is {@code WriteBehind}, the value format {@code BlockValue}, the counters
 * {@code TierCounters}.
 */
public final class RedisTier implements KvTier {

    private static final System.Logger LOG = System.getLogger(RedisTier.class.getName());

    private final RedisEndpoint endpoint;
    private final KvLayout layout;
    private final RedisKeys keys;
    private final long fingerprint;
    private final long payloadBytes;
    private final long ttlMillis;
    private final long lookupTimeoutNanos;
    private final double nanosPerByte;
    private final int batchKeys;
    private final long prefetchBytes;
    private final CircuitBreaker breaker;
    private final TierCounters c = new TierCounters();
    /** Checks the seal of every value read (under lookupLock); null: values are not sealed. */
    private final ValueSeal lookupSeal;

    private final Object lookupLock = new Object();
    private volatile RedisEndpoint.Link<ByteBuffer> lookupLink;
    private volatile RedisEndpoint.Link<byte[]> writeLink;
    /** The lookup connection's codec: values land in reused direct buffers (see ValueBuffers). */
    private final ValueBuffers buffers;
    /** Values the last lookups fetched, oldest first; consumed by load. Under lookupLock. */
    private final PrefetchedValues prefetched;
    private final WriteBehind writes;
    private volatile boolean closed;
    private volatile boolean warnedConnect;

    private RedisTier(Builder b) {
        this.endpoint = b.endpoint;
        this.layout = b.layout;
        this.keys = RedisKeys.of(b.model, b.layout);
        this.fingerprint = TierEntry.fingerprint(layout);
        this.payloadBytes = layout.bytesPerBlock();
        this.ttlMillis = b.ttl.toMillis();
        this.lookupTimeoutNanos = b.lookupTimeout.toNanos();
        this.nanosPerByte = 1e9 / b.bandwidth;
        this.batchKeys = b.batchKeys;
        this.prefetchBytes = b.prefetchBytes;
        long valueCapacity = payloadBytes + 4096; // the header of a block with a scope of up to ~3 KiB
        this.buffers = new ValueBuffers((int) Math.min(Integer.MAX_VALUE - 8, valueCapacity),
                (int) Math.max(2, Math.min(4096, prefetchBytes / valueCapacity + batchKeys)));
        this.prefetched = new PrefetchedValues(prefetchBytes, buffers);
        this.breaker = new CircuitBreaker(b.breakerThreshold, b.breakerOpen.toNanos(), System::nanoTime);
        connect(); // one try now, so that a reachable server is used from the first call
        this.lookupSeal = b.authenticationKey == null ? null : new ValueSeal(b.authenticationKey, payloadBytes);
        this.writes = new WriteBehind(endpoint, () -> writeLink, this::connect, breaker, c, ttlMillis,
                b.writeTimeout.toNanos(), b.queueBlocks, b.queueBytes,
                b.authenticationKey == null ? null : new ValueSeal(b.authenticationKey, payloadBytes)::seal);
    }

    /**
     * A builder for a tier over {@code endpoint} holding blocks of {@code layout}.
     *
     * @param endpoint the Redis server or cluster to use; the tier opens its own connections on it
     * @param layout   the layout of every block the tier holds (part of its key namespace)
     * @return a builder with every setting at its default
     */
    public static Builder builder(RedisEndpoint endpoint, KvLayout layout) {
        return new Builder(endpoint, layout);
    }

    /** How a {@link RedisTier} is set up; every setting has a default that fits a decode step. */
    public static final class Builder {
        private final RedisEndpoint endpoint;
        private final KvLayout layout;
        private String model = "default";
        private Duration ttl = Duration.ofHours(1);
        private Duration lookupTimeout = Duration.ofMillis(5);
        private double bandwidth = 1e9;
        private Duration writeTimeout = Duration.ofMillis(500);
        private int batchKeys = 32;
        private long prefetchBytes = 64L << 20;
        private int queueBlocks = 1024;
        private long queueBytes = 256L << 20;
        private int breakerThreshold = 3;
        private Duration breakerOpen = Duration.ofSeconds(1);
        private byte[] authenticationKey;

        private Builder(RedisEndpoint endpoint, KvLayout layout) {
            this.endpoint = Objects.requireNonNull(endpoint, "endpoint");
            this.layout = Objects.requireNonNull(layout, "layout");
        }

        /**
         * The model id every engine of the fleet uses for this model (default "default"); part of the namespace.
         *
         * @param id the model id, 1 to 256 characters
         * @return this builder
         * @throws IllegalArgumentException an empty id or one over 256 characters
         */
        public Builder model(String id) {
            RedisKeys.of(id, layout); // checks it
            this.model = id;
            return this;
        }

        /**
         * How long a block lives after its last write or hit (default 1 hour); zero: no expiry (rely on maxmemory LRU).
         *
         * @param d the time to live, zero or at least 1 ms
         * @return this builder
         * @throws IllegalArgumentException a negative duration or one between zero and 1 ms
         */
        public Builder ttl(Duration d) {
            Objects.requireNonNull(d, "ttl");
            if (d.isNegative() || (!d.isZero() && d.toMillis() < 1)) {
                throw new IllegalArgumentException("ttl " + d + " must be zero (no expiry) or at least 1 ms");
            }
            this.ttl = d;
            return this;
        }

        /**
         * The wait for a lookup's answers beyond their transfer time (default 5 ms).
         *
         * @param d the extra wait, positive
         * @return this builder
         * @throws IllegalArgumentException a zero or negative duration
         */
        public Builder lookupTimeout(Duration d) {
            this.lookupTimeout = positive("lookupTimeout", d);
            return this;
        }

        /**
         * The bandwidth assumed to Redis, in bytes per second (default 1e9): a lookup's or load's
         * deadline grows by its expected bytes at this rate.
         *
         * @param bytesPerSecond the assumed bandwidth in bytes per second, finite and at least 1e3
         * @return this builder
         * @throws IllegalArgumentException a value below 1e3, NaN or infinite
         */
        public Builder assumedBandwidth(double bytesPerSecond) {
            if (!(bytesPerSecond >= 1e3) || Double.isInfinite(bytesPerSecond)) {
                throw new IllegalArgumentException("assumedBandwidth " + bytesPerSecond + " must be at least 1e3 bytes/s and finite");
            }
            this.bandwidth = bytesPerSecond;
            return this;
        }

        /**
         * The writer thread's wait for a batch of writes (default 500 ms; off the decode path).
         *
         * @param d the wait for one batch's answers, positive
         * @return this builder
         * @throws IllegalArgumentException a zero or negative duration
         */
        public Builder writeTimeout(Duration d) {
            this.writeTimeout = positive("writeTimeout", d);
            return this;
        }

        /**
         * Keys per pipelined lookup batch (default 32, 1 to 1024).
         *
         * @param n the keys sent per batch, 1 to 1024
         * @return this builder
         * @throws IllegalArgumentException {@code n} outside 1 to 1024
         */
        public Builder batchKeys(int n) {
            if (n < 1 || n > 1024) {
                throw new IllegalArgumentException("batchKeys " + n + " must be 1 to 1024");
            }
            this.batchKeys = n;
            return this;
        }

        /**
         * The most bytes of fetched values kept for the loads that follow a lookup (default 64 MiB; at least one value).
         *
         * @param bytes the bound in value bytes, positive
         * @return this builder
         * @throws IllegalArgumentException {@code bytes} below 1
         */
        public Builder prefetchBytes(long bytes) {
            if (bytes < 1) {
                throw new IllegalArgumentException("prefetchBytes " + bytes + " must be positive");
            }
            this.prefetchBytes = bytes;
            return this;
        }

        /**
         * The write-behind queue's length in blocks (default 1024, 1 to 2^20).
         *
         * @param n the most blocks queued for writing, 1 to 2^20
         * @return this builder
         * @throws IllegalArgumentException {@code n} outside 1 to 2^20
         */
        public Builder queueBlocks(int n) {
            if (n < 1 || n > 1 << 20) {
                throw new IllegalArgumentException("queueBlocks " + n + " must be 1 to " + (1 << 20));
            }
            this.queueBlocks = n;
            return this;
        }

        /**
         * The write-behind queue's bound in value bytes (default 256 MiB).
         *
         * @param bytes the most value bytes queued for writing, positive
         * @return this builder
         * @throws IllegalArgumentException {@code bytes} below 1
         */
        public Builder queueBytes(long bytes) {
            if (bytes < 1) {
                throw new IllegalArgumentException("queueBytes " + bytes + " must be positive");
            }
            this.queueBytes = bytes;
            return this;
        }

        /**
         * Consecutive failures that open the circuit breaker (default 3, 1 to 1000).
         *
         * @param n the consecutive failures that open it, 1 to 1000
         * @return this builder
         * @throws IllegalArgumentException {@code n} outside 1 to 1000
         */
        public Builder breakerThreshold(int n) {
            if (n < 1 || n > 1000) {
                throw new IllegalArgumentException("breakerThreshold " + n + " must be 1 to 1000");
            }
            this.breakerThreshold = n;
            return this;
        }

        /**
         * How long an open breaker skips Redis before one call probes it (default 1 s).
         *
         * @param d the time the breaker stays open, positive
         * @return this builder
         * @throws IllegalArgumentException a zero or negative duration
         */
        public Builder breakerOpen(Duration d) {
            this.breakerOpen = positive("breakerOpen", d);
            return this;
        }

        /**
         * Seals every value this tier writes under {@code key}, and serves only values sealed with
         * it (default: none; values are checked by their checksums and fields only). Every engine
         * of a fleet that shares blocks sets the same key. Without a key, anyone who can write to
         * the Redis and knows a prompt can build a well-formed value for it; with one, a value not
         * sealed with the key is a miss (counted in {@code verificationMisses}). The seal is
         * AES-256-GCM under a key derived per value from {@code key} and a random salt: the KV is
         * encrypted, the whole value authenticated. It costs one GCM pass over each value written
         * (on the writer thread) and read. A tier without the key cannot read sealed values.
         *
         * @param key the fleet's shared secret, at least 16 bytes (copied)
         * @return this builder
         * @throws IllegalArgumentException a key shorter than 16 bytes
         */
        public Builder authenticationKey(byte[] key) {
            Objects.requireNonNull(key, "key");
            if (key.length < ValueSeal.MIN_KEY_BYTES) {
                throw new IllegalArgumentException("authentication key of " + key.length + " bytes: at least "
                        + ValueSeal.MIN_KEY_BYTES + " are needed");
            }
            this.authenticationKey = key.clone();
            return this;
        }

        private static Duration positive(String name, Duration d) {
            Objects.requireNonNull(d, name);
            if (d.isNegative() || d.isZero()) {
                throw new IllegalArgumentException(name + " " + d + " must be positive");
            }
            return d;
        }

        /**
         * The tier; it connects now if it can, else keeps trying in the background.
         *
         * @return a new open tier with these settings (its writer thread started)
         */
        public RedisTier build() {
            return new RedisTier(this);
        }
    }

    @Override
    public String name() {
        return "redis";
    }

    /**
     * The key space it reads and writes.
     *
     * @return the keys of its model and layout
     */
    public RedisKeys keys() {
        return keys;
    }

    /**
     * The layout of the blocks it holds.
     *
     * @return the layout given to {@link #builder}
     */
    public KvLayout layout() {
        return layout;
    }

    // ------------------------------------------------------------------ lookup and load

    /**
     * {@link #leadingHits(PrefixKey[], int, int, long)} under salt 0, the salt of an engine that
     * sets none (a salted tenant's blocks are misses here).
     *
     * @param keyArray the prompt's block keys
     * @param from     the first key to look up
     * @param count    how many keys to look up
     * @return how many leading keys this tier holds under salt 0
     */
    @Override
    public int leadingHits(PrefixKey[] keyArray, int from, int count) {
        return leadingHits(keyArray, from, count, 0);
    }

    /**
     * Looks the keys up under {@code kvc:<namespace>:<salt>:}, in pipelined batches (see the class
     * comment); what it finds is kept for the loads that follow.
     *
     * @param keyArray the prompt's block keys
     * @param from     the first key to look up
     * @param count    how many keys to look up
     * @param salt     the cache salt of the prompt's sequence
     * @return how many leading keys this tier holds; 0 on any failure (counted)
     */
    @Override
    public int leadingHits(PrefixKey[] keyArray, int from, int count, long salt) {
        Objects.requireNonNull(keyArray, "keys");
        Objects.checkFromIndexSize(from, count, keyArray.length);
        checkOpen();
        if (count == 0) {
            return 0;
        }
        RedisEndpoint.Link<ByteBuffer> link = lookupLink;
        if (link == null || !breaker.allow()) {
            c.skipped.increment();
            return 0;
        }
        c.lookups.increment();
        synchronized (lookupLock) {
            int found = 0;
            long kept = 0; // value bytes this call keeps for the loads: never more than prefetchBytes
            while (found < count) {
                int b = (int) Math.min(Math.min(batchKeys, count - found), (prefetchBytes - kept) / valueBytes());
                if (b <= 0) {
                    if (found > 0) {
                        break; // what was found is served; the manager computes the rest
                    }
                    b = 1;     // a value larger than the budget: still one at a time
                }
                prefetched.makeRoom((long) b * valueBytes());
                @SuppressWarnings("unchecked")
                RedisFuture<ByteBuffer>[] fs = new RedisFuture[b];
                byte[][] redisKeys = new byte[b][];
                GetExArgs ex = ttlMillis > 0 ? GetExArgs.Builder.px(ttlMillis) : null;
                for (int i = 0; i < b; i++) {
                    PrefixKey k = Objects.requireNonNull(keyArray[from + found + i], "keys[" + (from + found + i) + "]");
                    redisKeys[i] = keys.block(salt, k);
                    fs[i] = get(link, redisKeys[i], ex);
                }
                link.connection().flushCommands();
                c.roundTrips.increment();
                c.lookupKeys.add(b);
                long deadline = System.nanoTime() + lookupTimeoutNanos + (long) (b * valueBytes() * nanosPerByte);
                int hits = 0;
                boolean failed = false;
                for (int i = 0; i < b; i++) {
                    PrefixKey k = keyArray[from + found + i];
                    ByteBuffer v;
                    try {
                        v = fs[i].get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                    } catch (TimeoutException e) {
                        c.timeouts.increment();
                        failed = true;
                        break;
                    } catch (ExecutionException e) {
                        c.error(e);
                        failed = true;
                        break;
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        failed = true;
                        break;
                    }
                    if (v == null) {
                        writes.forget(k); // not in Redis: the next put of it writes it again
                        break;
                    }
                    c.bytesRead.add(v.remaining());
                    // opened and checked here, while the batch's later values are still arriving
                    int at = opened(redisKeys[i], v) ? BlockValue.intact(v, k, fingerprint, payloadBytes) : -1;
                    if (at < 0) {
                        buffers.release(v);
                        c.verificationMisses.increment();
                        writes.forget(k);
                        break;
                    }
                    prefetched.keep(k, v, at);
                    kept += v.remaining();
                    hits++;
                }
                if (failed) {
                    // values still to come land in buffers no one gives back (ValueBuffers)
                    for (RedisFuture<ByteBuffer> f : fs) {
                        f.cancel(false);
                    }
                    releaseUnread(fs, hits); // those that had arrived before the cancel
                    breaker.failure();
                    c.lookupHits.add(found + hits);
                    return found + hits;
                }
                breaker.success();
                found += hits;
                if (hits < b) {
                    releaseUnread(fs, hits + 1); // the answers after the miss: read by no one
                    break;
                }
            }
            c.lookupHits.add(found);
            return found;
        }
    }

    /**
     * Gives back, as each arrives, the buffers of answers {@code fs[from..]} that this lookup will
     * not read. No one else can read them (the futures are this call's), so the pool may reuse
     * them; a cancelled future never runs the callback, and its late value is left to the GC.
     */
    private void releaseUnread(RedisFuture<ByteBuffer>[] fs, int from) {
        for (int i = from; i < fs.length; i++) {
            fs[i].thenAccept(buffers::release);
        }
    }

    /** The lookup codec's pool (for tests). */
    ValueBuffers valueBuffers() {
        return buffers;
    }

    private RedisFuture<ByteBuffer> get(RedisEndpoint.Link<ByteBuffer> link, byte[] key, GetExArgs ex) {
        return ex != null ? link.commands().getex(key, ex) : link.commands().get(key);
    }

    /**
     * With a fleet key, whether {@code v}, read from {@code redisKey}, carries this tier's seal for
     * that key, its payload then decrypted in place; without one, whether it is unsealed (a sealed
     * value's payload is ciphertext this tier cannot read). Under lookupLock.
     */
    private boolean opened(byte[] redisKey, ByteBuffer v) {
        return lookupSeal == null ? !BlockValue.sealed(v) : lookupSeal.open(redisKey, v);
    }

    private long valueBytes() {
        return payloadBytes + 256;
    }

    @Override
    public boolean load(TierEntry expected, KvStore store, int block) {
        Objects.requireNonNull(expected, "expected");
        Objects.requireNonNull(store, "store");
        checkOpen();
        checkLayout(store, expected);
        ByteBuffer v;
        boolean pre;
        int off;
        long t0;
        synchronized (lookupLock) {
            PrefetchedValues.Fetched f = prefetched.take(expected.key());
            pre = f != null;
            if (pre) {
                v = f.value();
                t0 = System.nanoTime();
                off = BlockValue.matches(v, expected) ? f.at() : -1; // its checksums were taken on arrival
            } else {
                byte[] redisKey = keys.block(expected.salt(), expected.key());
                v = fetch(redisKey);
                if (v == null) {
                    writes.forget(expected.key()); // gone from Redis (evicted, deleted): the next put writes it again
                    return false;
                }
                t0 = System.nanoTime();
                off = opened(redisKey, v) ? BlockValue.verify(v, expected, payloadBytes) : -1;
            }
        }
        // this thread owns v now (out of the map): it goes back to the pool after its last read
        if (off < 0) {
            buffers.release(v);
            c.verificationMisses.increment();
            writes.forget(expected.key()); // what Redis holds is not this block: the next put replaces it
            return false;
        }
        store.importBlock(block, MemorySegment.ofBuffer(v).asSlice(off, payloadBytes));
        buffers.release(v);
        c.copyNanos.add(System.nanoTime() - t0);
        c.loads.increment();
        if (pre) {
            c.prefetchedLoads.increment();
        }
        writes.markRecent(expected.key());
        return true;
    }

    /** One GET with a deadline, outside a lookup (the prefetch did not keep it); null: a miss. */
    private ByteBuffer fetch(byte[] redisKey) {
        RedisEndpoint.Link<ByteBuffer> link = lookupLink;
        if (link == null || !breaker.allow()) {
            c.skipped.increment();
            return null;
        }
        RedisFuture<ByteBuffer> f = link.commands().get(redisKey);
        link.connection().flushCommands();
        c.roundTrips.increment();
        try {
            ByteBuffer v = f.get(lookupTimeoutNanos + (long) (valueBytes() * nanosPerByte), TimeUnit.NANOSECONDS);
            breaker.success();
            if (v != null) {
                c.bytesRead.add(v.remaining());
            }
            return v;
        } catch (TimeoutException ex) {
            c.timeouts.increment();
        } catch (ExecutionException ex) {
            c.error(ex);
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
        }
        f.cancel(false);
        breaker.failure();
        return null;
    }

    // ------------------------------------------------------------------ writes

    @Override
    public boolean put(TierEntry entry, KvStore store, int block) {
        Objects.requireNonNull(entry, "entry");
        Objects.requireNonNull(store, "store");
        checkOpen();
        checkLayout(store, entry);
        if (writes.isRecent(entry.key())) {
            c.writesDeduplicated.increment();
            return true;
        }
        int h = BlockValue.headerLength(entry);
        boolean sealed = lookupSeal != null;
        long size = h + payloadBytes + (sealed ? ValueSeal.TAG_BYTES : 0);
        if (h < 0 || size > Integer.MAX_VALUE - 8 || !writes.hasRoom(size)) {
            c.writesDropped.increment();
            return false;
        }
        long t0 = System.nanoTime();
        byte[] v = new byte[(int) size];
        int crc = store.exportBlockCrc32c(block, MemorySegment.ofArray(v).asSlice(h, payloadBytes));
        BlockValue.writeHeader(v, entry, payloadBytes, crc, sealed); // the writer thread adds the tag
        c.copyNanos.add(System.nanoTime() - t0);
        if (!writes.offer(entry.key(), keys.block(entry.salt(), entry.key()), v)) {
            c.writesDropped.increment();
            return false;
        }
        writes.markRecent(entry.key());
        c.writesQueued.increment();
        return true;
    }

    /**
     * A listener that writes every block {@code store}'s manager publishes (a
     * {@link KvCacheEvent.BlockStored}) to this tier at once, so other engines hit it while this one
     * still holds it: register it with {@link dev.kvcache.KvCacheManager#addListener}. It copies the
     * block on the manager's thread and queues it (dropped and counted when the queue is full);
     * it never throws for a Redis failure.
     *
     * @param store the store whose manager publishes the blocks; it must have the tier's layout
     * @return a listener to register with that store's manager
     * @throws IllegalArgumentException {@code store}'s layout differs from the tier's
     */
    public KvCacheListener writeOnPublish(KvStore store) {
        Objects.requireNonNull(store, "store");
        if (!store.layout().equals(layout)) {
            throw new IllegalArgumentException("store layout " + store.layout() + " differs from the tier's " + layout);
        }
        return ev -> {
            if (ev instanceof KvCacheEvent.BlockStored s && s.key() != null && !closed) {
                put(new TierEntry(s.key(), s.parentKey(), s.cacheSalt(), s.scope(), s.tokenIds(), fingerprint), store, s.block());
            }
        };
    }

    /**
     * {@link #remove(PrefixKey, long)} under salt 0.
     *
     * @param key the block's prefix key
     * @return true when the delete was queued
     */
    @Override
    public boolean remove(PrefixKey key) {
        return remove(key, 0);
    }

    /**
     * Queues a delete of the block {@code key} of salt {@code salt}: true when queued (whether
     * Redis held it is not known).
     *
     * @param key  the block's prefix key
     * @param salt the cache salt its sequence had
     * @return true when the delete was queued, false when the queue was full
     */
    public boolean remove(PrefixKey key, long salt) {
        Objects.requireNonNull(key, "key");
        checkOpen();
        writes.forget(key);
        synchronized (lookupLock) {
            prefetched.discard(key);
        }
        return writes.offer(key, keys.block(salt, key), null);
    }

    /**
     * Waits until every write queued so far was sent and answered (or failed), at most
     * {@code timeout}: true when the queue drained in time. For tests, demos and shutdown.
     *
     * @param timeout the longest wait
     * @return true when every queued write was answered in time; false on timeout or interrupt
     */
    public boolean awaitWrites(Duration timeout) {
        return writes.await(timeout);
    }

    /**
     * The last error Redis or the client reported (null if none): for diagnosis.
     *
     * @return the last error's description (its exception, or that exception's cause, as text), or null
     */
    public String lastError() {
        return c.lastError();
    }

    /**
     * Opens the two connections if they are not open; a failure leaves them for the next try (the
     * writer thread asks again). A single server's connections flush by hand (one write per
     * batch); a cluster's flush each command (its node connections open lazily, and commands
     * queued on one still connecting must go out when it is up), which still pipelines: nothing
     * waits until the whole batch is sent.
     */
    private void connect() {
        try {
            if (lookupLink == null) {
                RedisEndpoint.Link<ByteBuffer> l = endpoint.open(buffers);
                l.connection().setAutoFlushCommands(!endpoint.isCluster());
                lookupLink = l;
            }
            if (writeLink == null) {
                RedisEndpoint.Link<byte[]> l = endpoint.open();
                l.connection().setAutoFlushCommands(!endpoint.isCluster());
                writeLink = l;
            }
        } catch (RuntimeException e) {
            c.error(e);
            if (!warnedConnect) {
                warnedConnect = true;
                LOG.log(System.Logger.Level.WARNING, "Redis tier cannot connect to {0} ({1}); it is a miss until it can",
                        endpoint, e.getMessage());
            }
        }
    }

    private void checkLayout(KvStore store, TierEntry e) {
        if (!store.layout().equals(layout)) {
            throw new IllegalArgumentException("store layout " + store.layout() + " differs from the tier's " + layout);
        }
        if (e.layoutFingerprint() != fingerprint) {
            throw new IllegalArgumentException("entry layout fingerprint " + Long.toHexString(e.layoutFingerprint())
                    + " differs from the tier's " + Long.toHexString(fingerprint));
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("Redis tier is closed");
        }
    }

    // ------------------------------------------------------------------ stats and close

    /**
     * {@link TierStats}: Redis holds the blocks, so {@code blocks}, {@code bytes},
     * {@code capacityBytes} and {@code evictions} are 0 (ask the server: {@code INFO memory},
     * {@code DBSIZE}); {@code puts} are blocks queued, {@code refusedPuts} blocks dropped or whose
     * write failed, {@code bytesMoved} value bytes written and read.
     */
    @Override
    public TierStats stats() {
        return new TierStats(name(), 0, 0, 0, c.writesQueued.sum(), c.writesDropped.sum() + c.writesFailed.sum(),
                c.loads.sum(), c.verificationMisses.sum(), 0, c.bytesWritten.sum() + c.bytesRead.sum(), c.copyNanos.sum());
    }

    /**
     * Everything it counted, failures included.
     *
     * @return a snapshot of its counters, taken now
     */
    public RedisTierStats redisStats() {
        return c.snapshot(breaker.opened());
    }

    /**
     * Whether the circuit breaker is open now (Redis is being skipped).
     *
     * @return true while the breaker is open
     */
    public boolean breakerOpen() {
        return breaker.isOpen();
    }

    /**
     * Stops taking writes, sends what is queued (waiting at most about two write timeouts), stops
     * the writer thread and closes its connections. The endpoint stays open. Idempotent.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        writes.close();
        for (RedisEndpoint.Link<?> l : new RedisEndpoint.Link<?>[]{lookupLink, writeLink}) {
            if (l != null) {
                endpoint.release(l.connection());
            }
        }
        synchronized (lookupLock) {
            prefetched.clear();
            buffers.clear();
        }
    }
}
