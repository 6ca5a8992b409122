package dev.kvcache.redis;

import dev.kvcache.PrefixKey;
import io.lettuce.core.RedisFuture;
import io.lettuce.core.SetArgs;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BiConsumer;
import java.util.function.Supplier;

/**
 * A {@link RedisTier}'s write path: a bounded queue of values (in blocks and in bytes) that one
 * daemon thread sends in pipelined batches ({@code SET key value [PX ttl]}, or {@code DEL}),
 * waiting at most the write timeout for each batch. Offering never blocks: a full queue refuses
 * and the caller counts a drop. A failed or timed-out write is counted, tells the shared circuit
 * breaker, and forgets the key's "recently written" mark so that a later put tries again. While the
 * tier has no connection the thread asks it to connect, at most every 200 ms.
 */
final class WriteBehind {

    private static final System.Logger LOG = System.getLogger(WriteBehind.class.getName());
    private static final int BATCH = 64;
    private static final int RECENT_KEYS = 1 << 16;

    /** One queued write: a value, or a delete when {@code value} is null. */
    private record Write(PrefixKey key, byte[] redisKey, byte[] value) {
    }

    private final RedisEndpoint endpoint;
    private final Supplier<RedisEndpoint.Link<byte[]>> link;
    private final Runnable connect;
    private final CircuitBreaker breaker;
    private final TierCounters c;
    private final long ttlMillis;
    private final long timeoutNanos;
    private final long queueBytes;
    private final long recentNanos;
    private final ArrayBlockingQueue<Write> queue;
    /** Seals a value for its Redis key before it is sent (the writer thread's own ValueSeal); null: none. */
    private final BiConsumer<byte[], byte[]> seal;
    private final AtomicLong queuedBytes = new AtomicLong();
    /** Writes offered and not yet sent and answered (or failed): queued and in flight. */
    private final AtomicLong pending = new AtomicLong();
    /** Keys written or loaded recently, oldest first (nanoTime). */
    private final LinkedHashMap<PrefixKey, Long> recent = new LinkedHashMap<>();
    private final Thread thread;
    private volatile boolean closed;
    private boolean warned;

    WriteBehind(RedisEndpoint endpoint, Supplier<RedisEndpoint.Link<byte[]>> link, Runnable connect, CircuitBreaker breaker,
                TierCounters counters, long ttlMillis, long timeoutNanos, int queueBlocks, long queueBytes,
                BiConsumer<byte[], byte[]> seal) {
        this.seal = seal;
        this.endpoint = endpoint;
        this.link = link;
        this.connect = connect;
        this.breaker = breaker;
        this.c = counters;
        this.ttlMillis = ttlMillis;
        this.timeoutNanos = timeoutNanos;
        this.queueBytes = queueBytes;
        this.recentNanos = ttlMillis > 0 ? TimeUnit.MILLISECONDS.toNanos(ttlMillis) / 2 : TimeUnit.MINUTES.toNanos(10);
        this.queue = new ArrayBlockingQueue<>(queueBlocks);
        this.thread = Thread.ofPlatform().daemon().name("kvcache-redis-writer").unstarted(this::loop);
        thread.start();
    }

    /** Whether a value of {@code size} bytes fits now (the caller copies it only then). */
    boolean hasRoom(long size) {
        return queue.remainingCapacity() > 0 && queuedBytes.get() + size <= queueBytes;
    }

    /** Queues a write of {@code value} (null: a delete); false when the queue is full. */
    boolean offer(PrefixKey key, byte[] redisKey, byte[] value) {
        long size = value == null ? 0 : value.length;
        queuedBytes.addAndGet(size);
        pending.incrementAndGet();
        if (!queue.offer(new Write(key, redisKey, value))) {
            pending.decrementAndGet();
            queuedBytes.addAndGet(-size);
            return false;
        }
        return true;
    }

    /** Whether {@code k} was written or loaded within the recent window. */
    boolean isRecent(PrefixKey k) {
        synchronized (recent) {
            Long t = recent.get(k);
            return t != null && System.nanoTime() - t < recentNanos;
        }
    }

    void markRecent(PrefixKey k) {
        synchronized (recent) {
            recent.remove(k);
            recent.put(k, System.nanoTime());
            if (recent.size() > RECENT_KEYS) {
                Iterator<PrefixKey> it = recent.keySet().iterator();
                it.next();
                it.remove();
            }
        }
    }

    void forget(PrefixKey k) {
        synchronized (recent) {
            recent.remove(k);
        }
    }

    /** Waits until the queue is drained and nothing is in flight, at most {@code timeout}. */
    boolean await(Duration timeout) {
        long end = System.nanoTime() + timeout.toNanos();
        while (pending.get() > 0) {
            if (System.nanoTime() - end > 0) {
                return false;
            }
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }
        return true;
    }

    /** Sends what is queued (at most about two write timeouts), then stops the thread. */
    void close() {
        closed = true;
        try {
            thread.join(Math.max(100, TimeUnit.NANOSECONDS.toMillis(2 * timeoutNanos)));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (thread.isAlive()) {
            thread.interrupt();
        }
    }

    private void loop() {
        List<Write> batch = new ArrayList<>(BATCH);
        long nextConnect = 0;
        while (!closed || !queue.isEmpty()) {
            if (link.get() == null && System.nanoTime() - nextConnect >= 0) {
                connect.run();
                nextConnect = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(200);
            }
            Write first;
            try {
                first = queue.poll(50, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
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
                send(batch);
            } catch (RuntimeException e) {
                c.error(e);
                fail(batch);
            } finally {
                for (Write w : batch) {
                    if (w.value() != null) {
                        queuedBytes.addAndGet(-w.value().length);
                    }
                }
                pending.addAndGet(-batch.size());
            }
        }
    }

    private void send(List<Write> batch) {
        RedisEndpoint.Link<byte[]> l = link.get();
        if (l == null || !breaker.allow()) {
            c.skipped.add(batch.size());
            fail(batch);
            return;
        }
        RedisFuture<?>[] fs = new RedisFuture<?>[batch.size()];
        SetArgs args = ttlMillis > 0 ? SetArgs.Builder.px(ttlMillis) : null;
        for (int i = 0; i < fs.length; i++) {
            Write w = batch.get(i);
            if (w.value() == null) {
                fs[i] = l.commands().del(w.redisKey());
            } else {
                if (seal != null) {
                    seal.accept(w.redisKey(), w.value()); // here, not on the caller's (decode) thread
                }
                fs[i] = args != null ? l.commands().set(w.redisKey(), w.value(), args) : l.commands().set(w.redisKey(), w.value());
            }
        }
        l.connection().flushCommands();
        long deadline = System.nanoTime() + timeoutNanos;
        boolean anyFailed = false;
        for (int i = 0; i < fs.length; i++) {
            Write w = batch.get(i);
            try {
                fs[i].get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                if (w.value() != null) {
                    c.writesDone.increment();
                    c.bytesWritten.add(w.value().length);
                }
            } catch (TimeoutException | ExecutionException e) {
                if (e instanceof TimeoutException) {
                    c.timeouts.increment();
                } else {
                    c.error(e);
                }
                anyFailed = true;
                fs[i].cancel(false);
                failOne(w);
            } catch (InterruptedException e) {
                anyFailed = true;
                failOne(w);
            }
        }
        if (anyFailed) {
            breaker.failure();
            if (!warned) {
                warned = true;
                LOG.log(System.Logger.Level.WARNING,
                        "Redis tier at {0}: writes failing; blocks are dropped (counted) until it answers", endpoint);
            }
        } else {
            breaker.success();
            warned = false;
        }
    }

    private void fail(List<Write> batch) {
        for (Write w : batch) {
            failOne(w);
        }
    }

    private void failOne(Write w) {
        if (w.value() != null) {
            c.writesFailed.increment();
            forget(w.key()); // not written: a later put may try again
        }
    }
}
