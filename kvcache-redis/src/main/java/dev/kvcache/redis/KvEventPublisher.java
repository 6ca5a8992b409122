package dev.kvcache.redis;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheListener;
import dev.kvcache.PrefixKey;
import io.lettuce.core.RedisFuture;
import io.lettuce.core.XAddArgs;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * Sends one instance's {@link KvCacheEvent.BlockStored}, {@link KvCacheEvent.BlockRemoved} and
 * {@link KvCacheEvent.AllBlocksCleared} to a Redis Stream of its own
 * ({@link RedisKeys#stream}), the way vLLM publishes its KV events, so that a
 * {@link PrefixRouter} in another process can mirror which prefixes the instance holds.
 *
 * <h2>Design</h2>
 * It is a {@link KvCacheListener}: the manager calls it under its lock, so {@link #onEvent} only
 * turns the event into a {@link KvWireEvent} and offers it to a bounded queue (full: dropped and
 * counted; a router that misses an event sees the gap in {@code seq} and drops what it knew of
 * the instance). A daemon thread drains the queue, coalesces runs (consecutive stores of one
 * chain into one entry, consecutive removals into one) and appends them with
 * {@code XADD <stream> MAXLEN ~ <maxLength> * field value ...}, pipelined, so the stream stays
 * bounded. Each publisher starts a new epoch with an {@code AllBlocksCleared} of medium
 * {@code "ALL"}: a restarted instance holds nothing. A Redis failure drops the batch (counted);
 * nothing waits on Redis but the publisher's own thread, at most {@link Builder#writeTimeout}.
 */
public final class KvEventPublisher implements KvCacheListener, AutoCloseable {

    private static final int BATCH = 256;

    private final RedisEndpoint endpoint;
    private final String instance;
    private final byte[] stream;
    private final int blockSize;
    private final String medium;
    private final long maxLength;
    private final long writeTimeoutNanos;
    private final long epoch = System.currentTimeMillis();
    private final ArrayBlockingQueue<Queued> queue;
    private final CircuitBreaker breaker;
    private final AtomicLong seq = new AtomicLong();
    private final AtomicLong pending = new AtomicLong();
    private final Thread thread;
    private volatile RedisEndpoint.Link<byte[]> link;
    private volatile boolean closed;

    private final LongAdder events = new LongAdder();
    private final LongAdder dropped = new LongAdder();
    private final LongAdder entries = new LongAdder();
    private final LongAdder failedEntries = new LongAdder();
    private final LongAdder unkeyed = new LongAdder();

    private KvEventPublisher(Builder b) {
        this.endpoint = b.endpoint;
        this.instance = RedisKeys.checkInstance(b.instance);
        this.stream = b.keys.stream(instance).getBytes(StandardCharsets.US_ASCII);
        this.blockSize = b.blockSize;
        this.medium = b.medium;
        this.maxLength = b.maxLength;
        this.writeTimeoutNanos = b.writeTimeout.toNanos();
        this.queue = new ArrayBlockingQueue<>(b.queueEvents);
        this.breaker = new CircuitBreaker(3, TimeUnit.SECONDS.toNanos(1), System::nanoTime);
        queue.add(new Queued(new KvCacheEvent.AllBlocksCleared(), KvWireEvent.ALL)); // the epoch's first entry
        pending.incrementAndGet();
        this.thread = Thread.ofPlatform().daemon().name("kvcache-redis-events-" + instance).unstarted(this::loop);
        thread.start();
    }

    /**
     * A publisher for instance {@code instance} (1 to 64 of [A-Za-z0-9._-]) of the model whose key
     * space is {@code keys}, with blocks of {@code blockSize} tokens.
     *
     * @param endpoint  the Redis server or cluster its stream lives on
     * @param keys      the key space of the model (names the stream)
     * @param instance  this engine's instance id, 1 to 64 characters of [A-Za-z0-9._-]
     * @param blockSize the tokens per block of its store, positive
     * @return a builder with the other settings at their defaults
     * @throws IllegalArgumentException a bad instance id or a {@code blockSize} below 1
     */
    public static Builder builder(RedisEndpoint endpoint, RedisKeys keys, String instance, int blockSize) {
        return new Builder(endpoint, keys, instance, blockSize);
    }

    /** How a {@link KvEventPublisher} is set up. */
    public static final class Builder {
        private final RedisEndpoint endpoint;
        private final RedisKeys keys;
        private final String instance;
        private final int blockSize;
        private String medium = KvWireEvent.GPU;
        private long maxLength = 100_000;
        private int queueEvents = 65_536;
        private Duration writeTimeout = Duration.ofMillis(500);

        private Builder(RedisEndpoint endpoint, RedisKeys keys, String instance, int blockSize) {
            this.endpoint = Objects.requireNonNull(endpoint, "endpoint");
            this.keys = Objects.requireNonNull(keys, "keys");
            this.instance = RedisKeys.checkInstance(instance);
            if (blockSize < 1) {
                throw new IllegalArgumentException("blockSize " + blockSize + " must be positive");
            }
            this.blockSize = blockSize;
        }

        /**
         * The medium its store's events are reported on (default {@code "GPU"}).
         *
         * @param m the medium's name, 1 to 32 characters, not {@code "ALL"}
         * @return this builder
         * @throws IllegalArgumentException an empty name, one over 32 characters, or {@code "ALL"}
         */
        public Builder medium(String m) {
            Objects.requireNonNull(m, "medium");
            checkMedium(m);
            this.medium = m;
            return this;
        }

        /**
         * The stream's approximate bound in entries (default 100,000, at least 16): XADD trims
         * older entries beyond it ({@code MAXLEN ~}). A router that starts later replays what the
         * bound kept; size it to the instance's cache (an entry holds up to 256 blocks).
         *
         * @param n the approximate bound in stream entries, at least 16
         * @return this builder
         * @throws IllegalArgumentException {@code n} below 16
         */
        public Builder maxLength(long n) {
            if (n < 16) {
                throw new IllegalArgumentException("maxLength " + n + " must be at least 16");
            }
            this.maxLength = n;
            return this;
        }

        /**
         * The queue's length in events (default 65,536, 1 to 2^22).
         *
         * @param n the most events queued for sending, 1 to 2^22
         * @return this builder
         * @throws IllegalArgumentException {@code n} outside 1 to 2^22
         */
        public Builder queueEvents(int n) {
            if (n < 1 || n > 1 << 22) {
                throw new IllegalArgumentException("queueEvents " + n + " must be 1 to " + (1 << 22));
            }
            this.queueEvents = n;
            return this;
        }

        /**
         * How long the publisher's thread waits for a batch of XADDs (default 500 ms).
         *
         * @param d the wait for one batch's answers, positive
         * @return this builder
         * @throws IllegalArgumentException a zero or negative duration
         */
        public Builder writeTimeout(Duration d) {
            Objects.requireNonNull(d, "writeTimeout");
            if (d.isNegative() || d.isZero()) {
                throw new IllegalArgumentException("writeTimeout " + d + " must be positive");
            }
            this.writeTimeout = d;
            return this;
        }

        /**
         * The publisher; its thread connects and publishes the epoch's first entry.
         *
         * @return a new publisher with its thread started
         */
        public KvEventPublisher build() {
            return new KvEventPublisher(this);
        }
    }

    /**
     * The instance it publishes for.
     *
     * @return the instance id given to {@link #builder}
     */
    public String instance() {
        return instance;
    }

    /**
     * This publisher's epoch (its start, ms since 1970).
     *
     * @return the epoch in milliseconds since 1970-01-01T00:00Z
     */
    public long epoch() {
        return epoch;
    }

    /** An event and the medium it happened on. */
    private record Queued(KvCacheEvent event, String medium) {
    }

    /** The store's events (register it with the manager): published under the builder's medium. */
    @Override
    public void onEvent(KvCacheEvent e) {
        offer(e, medium);
    }

    /**
     * A listener for a tier of this instance (e.g. {@code HostTier.listener} or
     * {@code DiskTier.listener} in kvcache-offheap): its events go to the same stream, in one order
     * with the store's, under {@code tierMedium} (vLLM's names are {@code "CPU"} and
     * {@code "DISK"}), so that a {@link PrefixRouter} knows which prefixes are one load away on
     * this instance. A block demoted from the store to the tier shows as its {@code BlockRemoved} on
     * the store's medium, then its {@code BlockStored} on the tier's.
     *
     * @param tierMedium the tier's medium, 1 to 32 characters, neither {@code "ALL"} nor the store's
     * @return a listener that publishes under {@code tierMedium}
     * @throws IllegalArgumentException a bad medium, or the store's own
     */
    public KvCacheListener tierListener(String tierMedium) {
        Objects.requireNonNull(tierMedium, "tierMedium");
        checkMedium(tierMedium);
        if (tierMedium.equals(medium)) {
            throw new IllegalArgumentException("medium '" + tierMedium + "' is the store's; a tier needs a medium of its own");
        }
        return e -> offer(e, tierMedium);
    }

    private static void checkMedium(String m) {
        if (m.isEmpty() || m.length() > 32 || KvWireEvent.ALL.equals(m)) {
            throw new IllegalArgumentException("medium '" + m + "' must be 1 to 32 characters and not ALL");
        }
    }

    private void offer(KvCacheEvent e, String m) {
        if (closed || !(e instanceof KvCacheEvent.BlockStored || e instanceof KvCacheEvent.BlockRemoved
                || e instanceof KvCacheEvent.AllBlocksCleared)) {
            return;
        }
        events.increment();
        pending.incrementAndGet();
        if (!queue.offer(new Queued(e, m))) {
            pending.decrementAndGet();
            dropped.increment();
        }
    }

    /**
     * Waits until every event offered so far was sent (or failed), at most {@code timeout}: true
     * when done in time.
     *
     * @param timeout the longest wait
     * @return true when every offered event was sent or failed in time; false on timeout
     */
    public boolean flush(Duration timeout) {
        long end = System.nanoTime() + timeout.toNanos();
        while (pending.get() > 0) {
            if (System.nanoTime() - end > 0) {
                return false;
            }
            RedisTimeouts.sleep(1);
        }
        return true;
    }

    /**
     * Events it was offered (stores, removals, clears).
     *
     * @return the count since it was built
     */
    public long events() {
        return events.sum();
    }

    /**
     * Events that carried no key (published while nobody listened): not sent.
     *
     * @return the count since it was built
     */
    public long unkeyedEvents() {
        return unkeyed.sum();
    }

    /**
     * Events dropped because the queue was full.
     *
     * @return the count since it was built
     */
    public long droppedEvents() {
        return dropped.sum();
    }

    /**
     * Stream entries Redis acknowledged.
     *
     * @return the count since it was built
     */
    public long entriesWritten() {
        return entries.sum();
    }

    /**
     * Stream entries that failed (Redis down, timeout): lost, a gap a router sees.
     *
     * @return the count since it was built
     */
    public long entriesFailed() {
        return failedEntries.sum();
    }

    private void loop() {
        List<Queued> batch = new ArrayList<>(BATCH);
        long nextConnect = 0;
        while (!closed || !queue.isEmpty()) {
            if (link == null && System.nanoTime() - nextConnect >= 0) {
                try {
                    link = endpoint.open();
                } catch (RuntimeException ex) {
                    nextConnect = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(200);
                }
            }
            Queued first;
            try {
                first = queue.poll(50, TimeUnit.MILLISECONDS);
            } catch (InterruptedException ex) {
                if (closed) {
                    break;
                }
                continue;
            }
            if (first == null) {
                continue;
            }
            batch.clear();
            batch.add(first);
            queue.drainTo(batch, BATCH - 1);
            try {
                send(coalesce(batch));
            } catch (RuntimeException ex) {
                failedEntries.increment();
            } finally {
                pending.addAndGet(-batch.size());
            }
        }
    }

    /** Runs of one chain's stores, and runs of removals, on one medium, become one entry each. */
    private List<KvWireEvent> coalesce(List<Queued> batch) {
        List<KvWireEvent> out = new ArrayList<>();
        List<PrefixKey> keys = new ArrayList<>();
        List<int[]> tokens = new ArrayList<>();
        PrefixKey parent = null;
        KvWireEvent.Type run = null;
        String runMedium = medium;
        for (Queued q : batch) {
            KvCacheEvent e = q.event();
            if (e instanceof KvCacheEvent.BlockStored s) {
                if (s.key() == null) {
                    unkeyed.increment();
                    continue;
                }
                boolean continues = run == KvWireEvent.Type.BlockStored && keys.size() < BATCH
                        && runMedium.equals(q.medium()) && keys.getLast().equals(s.parentKey());
                if (!continues) {
                    flushRun(out, run, keys, parent, tokens, runMedium);
                    run = KvWireEvent.Type.BlockStored;
                    runMedium = q.medium();
                    parent = s.parentKey();
                }
                keys.add(s.key());
                tokens.add(s.tokenIds());
            } else if (e instanceof KvCacheEvent.BlockRemoved r) {
                if (r.key() == null) {
                    unkeyed.increment();
                    continue;
                }
                if (run != KvWireEvent.Type.BlockRemoved || keys.size() >= BATCH || !runMedium.equals(q.medium())) {
                    flushRun(out, run, keys, parent, tokens, runMedium);
                    run = KvWireEvent.Type.BlockRemoved;
                    runMedium = q.medium();
                    parent = null;
                }
                keys.add(r.key());
            } else {
                flushRun(out, run, keys, parent, tokens, runMedium);
                run = null;
                out.add(wire(KvWireEvent.Type.AllBlocksCleared, List.of(), null, new int[0], q.medium()));
            }
        }
        flushRun(out, run, keys, parent, tokens, runMedium);
        return out;
    }

    private void flushRun(List<KvWireEvent> out, KvWireEvent.Type run, List<PrefixKey> keys, PrefixKey parent, List<int[]> tokens,
                          String m) {
        if (run == null || keys.isEmpty()) {
            keys.clear();
            tokens.clear();
            return;
        }
        int n = 0;
        for (int[] t : tokens) {
            n += t.length;
        }
        int[] all = new int[n];
        int at = 0;
        for (int[] t : tokens) {
            System.arraycopy(t, 0, all, at, t.length);
            at += t.length;
        }
        out.add(wire(run, List.copyOf(keys), run == KvWireEvent.Type.BlockStored ? parent : null, all, m));
        keys.clear();
        tokens.clear();
    }

    private KvWireEvent wire(KvWireEvent.Type t, List<PrefixKey> keys, PrefixKey parent, int[] tokens, String m) {
        return new KvWireEvent(t, epoch, seq.getAndIncrement(), System.currentTimeMillis(), keys, parent, tokens, blockSize, m);
    }

    private void send(List<KvWireEvent> entriesToSend) {
        RedisEndpoint.Link<byte[]> l = link;
        if (l == null || !breaker.allow()) {
            failedEntries.add(entriesToSend.size());
            return;
        }
        XAddArgs args = XAddArgs.Builder.maxlen(maxLength).approximateTrimming();
        List<RedisFuture<String>> fs = new ArrayList<>(entriesToSend.size());
        for (KvWireEvent w : entriesToSend) {
            Map<byte[], byte[]> body = new LinkedHashMap<>();
            for (Map.Entry<String, String> f : w.toFields().entrySet()) {
                body.put(f.getKey().getBytes(StandardCharsets.US_ASCII), f.getValue().getBytes(StandardCharsets.US_ASCII));
            }
            fs.add(l.commands().xadd(stream, args, body));
        }
        long deadline = System.nanoTime() + writeTimeoutNanos;
        boolean failed = false;
        for (RedisFuture<String> f : fs) {
            try {
                f.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                entries.increment();
            } catch (ExecutionException | TimeoutException ex) {
                failedEntries.increment();
                f.cancel(false);
                failed = true;
            } catch (InterruptedException ex) {
                failedEntries.increment();
                failed = true;
            }
        }
        if (failed) {
            breaker.failure();
        } else {
            breaker.success();
        }
    }

    /** Sends what is queued (waiting at most about two write timeouts), then stops its thread. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            thread.join(Math.max(100, TimeUnit.NANOSECONDS.toMillis(2 * writeTimeoutNanos)));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (thread.isAlive()) {
            thread.interrupt();
        }
        RedisEndpoint.Link<byte[]> l = link;
        if (l != null) {
            endpoint.release(l.connection());
        }
    }
}
