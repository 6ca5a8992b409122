package dev.kvcache.redis;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The lookup codec's buffer pool: exact values, reuse only after release, bounded. */
class ValueBuffersTest {

    private static ByteBuffer random(SplittableRandom r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return ByteBuffer.wrap(b);
    }

    @Test
    void aDecodedValueIsExactlyTheBytesAtPositionZero() {
        SplittableRandom r = new SplittableRandom(System.nanoTime());
        ValueBuffers p = new ValueBuffers(4096, 4);
        for (int n : new int[]{0, 1, 80, 4095, 4096}) {
            ByteBuffer src = random(r, n);
            ByteBuffer v = p.decodeValue(src.duplicate());
            assertEquals(0, v.position());
            assertEquals(n, v.remaining());
            assertTrue(v.isDirect());
            assertEquals(src, v, "length " + n);
            p.release(v);
        }
    }

    @Test
    void aBufferIsReusedOnlyAfterItsRelease() {
        SplittableRandom r = new SplittableRandom(System.nanoTime());
        ValueBuffers p = new ValueBuffers(1024, 4);
        ByteBuffer a = p.decodeValue(random(r, 1000));
        ByteBuffer aCopy = ByteBuffer.allocate(1000).put(a.duplicate()).flip();
        ByteBuffer b = p.decodeValue(random(r, 1000));
        assertNotSame(a, b, "a held buffer is never handed out again");
        assertEquals(aCopy, a, "decoding another value left the held one alone");
        p.release(a);
        ByteBuffer c = p.decodeValue(random(r, 10));
        assertSame(a, c, "a released buffer is reused");
        assertEquals(10, c.remaining());
        assertEquals(0, p.pooled());
    }

    @Test
    void anOversizedValueGetsAHeapBufferOfItsOwnThatThePoolRefuses() {
        SplittableRandom r = new SplittableRandom(System.nanoTime());
        ValueBuffers p = new ValueBuffers(64, 2);
        ByteBuffer src = random(r, 65);
        ByteBuffer v = p.decodeValue(src.duplicate());
        assertFalse(v.isDirect());
        assertEquals(src, v);
        p.release(v);
        assertEquals(0, p.pooled());
    }

    @Test
    void thePoolKeepsAtMostItsBound() {
        ValueBuffers p = new ValueBuffers(16, 2);
        ByteBuffer[] held = new ByteBuffer[5];
        for (int i = 0; i < held.length; i++) {
            held[i] = p.decodeValue(ByteBuffer.wrap(new byte[16]));
        }
        for (ByteBuffer b : held) {
            p.release(b);
        }
        assertEquals(2, p.pooled());
        p.clear();
        assertEquals(0, p.pooled());
        assertThrows(IllegalArgumentException.class, () -> new ValueBuffers(0, 1));
    }
}
