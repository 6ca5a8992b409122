package dev.kvcache;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/**
 * {@link PrefixKey}'s byte encoding is a contract with other processes (tiers, routers, another
 * JVM): these vectors were computed outside Java, with Python's hashlib over the encoding the
 * javadoc documents, on 2026-12-03:
 * <pre>
 * import hashlib, struct
 * root = hashlib.sha256(b"kvcache.prefix.v1" + struct.pack(">q", 0) + struct.pack(">i", 7) + b"default").digest()[:16]
 * blk = hashlib.sha256(root + struct.pack(">i", 4) + b"".join(struct.pack(">i", t) for t in [1, 2, 3, 4])).digest()[:16]
 * shared = hashlib.sha256(b"kvcache.prefix.v1" + struct.pack(">q", -5) + struct.pack(">i", -1)).digest()[:16]
 * </pre>
 */
class PrefixKeyTest {

    @Test
    void keysMatchAnIndependentImplementationOfTheDocumentedEncoding() {
        PrefixKey root = PrefixKey.root(0L, "default");
        assertEquals("e21254d226dbdcde7725d3972e37fd95", root.toHex());
        assertEquals("e1f09a6735690b45825c456d9c055eb8", PrefixKey.chain(root, new int[]{9, 1, 2, 3, 4}, 1, 4).toHex());
        assertEquals("bac316cc024bdcc281fa62551c8a49b1", PrefixKey.root(-5L, null).toHex());
    }

    @Test
    void everyInputEntersTheKey() {
        Random rnd = new Random();
        int[] tokens = rnd.ints(16, 0, 1 << 20).toArray();
        PrefixKey root = PrefixKey.root(3L, "a");
        PrefixKey k = PrefixKey.chain(root, tokens, 0, 16);
        assertNotEquals(root, PrefixKey.root(4L, "a"));
        assertNotEquals(root, PrefixKey.root(3L, "b"));
        assertNotEquals(root, PrefixKey.root(3L, null));
        assertNotEquals(PrefixKey.root(3L, ""), PrefixKey.root(3L, null));
        for (int i = 0; i < 16; i++) {
            int[] other = tokens.clone();
            other[i] ^= 1 << rnd.nextInt(20);
            assertNotEquals(k, PrefixKey.chain(root, other, 0, 16), "token " + i);
        }
        assertNotEquals(k, PrefixKey.chain(root, tokens, 0, 15), "the count enters the key");
        assertEquals(k, PrefixKey.chain(PrefixKey.root(3L, "a"), tokens.clone(), 0, 16), "stable");
    }
}
