package dev.kvcache.redis;

import io.lettuce.core.codec.RedisCodec;

import java.nio.ByteBuffer;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.atomic.LongAdder;

/**
 * The codec of a tier's lookup connection: it decodes each value into a reused direct buffer
 * instead of a fresh {@code byte[]}.
 *
 * <p><b>Why.</b> A block value is the size of a block (512 KiB for 8 layers x 8 KV heads x 128 x
 * 16 tokens in F16). Lettuce's {@code ByteArrayCodec} allocates a new array per value: for G1 that
 * is a humongous object, allocated in its own regions and zeroed before Lettuce copies into it,
 * and the store's import then copies it again from the Java heap. Reused native buffers skip the
 * allocation and the zeroing, and the import is a native-to-native copy. The reason and the
 * measurement are in {@code kvcache-redis/bench-results/}.
 *
 * <p><b>Ownership, the invariant that keeps one request's bytes out of another's.</b> A buffer
 * has one owner at a time: the pool, or the one value it was decoded into. {@link #decodeValue}
 * (Lettuce's IO thread) only ever writes into a buffer it just took from the pool; the tier gives
 * a buffer back with {@link #release} only after the last read of its value (after the import,
 * or when it drops a prefetched value), and forgets it. A value that arrives for a lookup that
 * stopped waiting (a timeout, a cancel) is decoded into a buffer nobody will give back: it is
 * never reused, and the garbage collector frees its memory. So no buffer is written while a
 * reader holds it.
 *
 * <p>Values larger than a pooled buffer (a long scope or a foreign value) are decoded into a
 * heap buffer of their own, which verification then rejects or accepts like any other. The
 * pool keeps at most {@code maxPooled} buffers; its memory is the direct buffers' own, which the
 * garbage collector releases once the tier and its connection are gone (there is no explicit
 * free, since a value may still be arriving into a buffer when the tier closes). When the JVM's
 * direct memory limit is reached, a value is decoded into a heap buffer instead.
 */
final class ValueBuffers implements RedisCodec<byte[], ByteBuffer> {

    private final int capacity;
    private final ArrayBlockingQueue<ByteBuffer> free;
    /** Pool-sized buffers ever created, and values ever decoded (tests count the ones out). */
    private final LongAdder created = new LongAdder();
    private final LongAdder decoded = new LongAdder();

    /**
     * @param capacity  bytes of one pooled buffer: the largest value it decodes natively
     * @param maxPooled the most buffers the pool keeps
     */
    ValueBuffers(int capacity, int maxPooled) {
        if (capacity <= 0 || maxPooled <= 0) {
            throw new IllegalArgumentException("capacity " + capacity + " and maxPooled " + maxPooled + " must be positive");
        }
        this.capacity = capacity;
        this.free = new ArrayBlockingQueue<>(maxPooled);
    }

    @Override
    public byte[] decodeKey(ByteBuffer bytes) {
        byte[] k = new byte[bytes.remaining()];
        bytes.get(k);
        return k;
    }

    /** A buffer positioned at 0 whose limit is the value's length. */
    @Override
    public ByteBuffer decodeValue(ByteBuffer bytes) {
        int n = bytes.remaining();
        ByteBuffer d;
        if (n > capacity) {
            d = ByteBuffer.allocate(n);
        } else {
            d = free.poll();
            if (d == null) {
                try {
                    d = ByteBuffer.allocateDirect(capacity);
                } catch (OutOfMemoryError e) {
                    // -XX:MaxDirectMemorySize reached: this value on the heap, as ByteArrayCodec would
                    d = ByteBuffer.allocate(capacity);
                }
                created.increment();
            }
            d.clear();
        }
        d.put(bytes).flip();
        decoded.increment();
        return d;
    }

    @Override
    public ByteBuffer encodeKey(byte[] key) {
        return ByteBuffer.wrap(key);
    }

    @Override
    public ByteBuffer encodeValue(ByteBuffer value) {
        return value.duplicate();
    }

    /**
     * Gives {@code b}, a value {@link #decodeValue} returned, back to the pool. The caller must not
     * touch it afterwards. Heap buffers and buffers beyond the pool's bound are dropped.
     */
    void release(ByteBuffer b) {
        if (b != null && b.isDirect() && b.capacity() == capacity) {
            free.offer(b);
        }
    }

    /** Buffers in the pool now (for tests). */
    int pooled() {
        return free.size();
    }

    /**
     * Pool-sized buffers out of the pool now: created minus pooled, i.e. held by a value someone
     * still reads, or dropped (for tests; exact only once no value is being decoded).
     */
    long outstanding() {
        return created.sum() - free.size();
    }

    /** Values decoded so far (for tests). */
    long decoded() {
        return decoded.sum();
    }

    /** Drops every pooled buffer (the tier is closing). */
    void clear() {
        free.clear();
    }
}
