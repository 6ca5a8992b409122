package dev.kvcache.offheap;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;
import org.junit.jupiter.api.Test;

import java.lang.reflect.Proxy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** TierCounters' snapshot and TierChecks' wiring checks. */
class TierCountersTest {

    static final KvLayout A = new KvLayout(2, 2, 32, 8, KvFormats.all().get(0));
    static final KvLayout B = new KvLayout(2, 2, 32, 16, KvFormats.all().get(0));

    @Test
    void statsPutsEachCounterInItsOwnFieldAndScalesBlocksByTheBlockBytes() {
        TierCounters c = new TierCounters();
        c.puts = 1;
        c.refusedPuts = 2;
        c.loads = 3;
        c.failedLoads = 4; // not a TierStats field
        c.verificationMisses = 5;
        c.evictions = 6;
        c.bytesMoved = 7;
        c.copyNanos = 8;
        TierStats s = c.stats("t", 3, 1L << 33, 5);
        assertEquals(new TierStats("t", 3, 3L << 33, 5L << 33, 1, 2, 3, 5, 6, 7, 8), s);
    }

    /** A store whose layout() answers {@code layout}, or throws when it is null. */
    static KvStore store(KvLayout layout) {
        return (KvStore) Proxy.newProxyInstance(KvStore.class.getClassLoader(), new Class<?>[] {KvStore.class}, (p, m, args) -> {
            if (m.getName().equals("layout")) {
                if (layout == null) {
                    throw new IllegalStateException("closed");
                }
                return layout;
            }
            throw new UnsupportedOperationException(m.getName());
        });
    }

    @Test
    void aStoreOfTheLayoutPassesOneThatThrowsIsRefusedAndAnotherLayoutIsAWiringError() {
        assertTrue(TierChecks.storeLayout(store(A), A));
        assertFalse(TierChecks.storeLayout(store(null), A));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TierChecks.storeLayout(store(B), A));
        assertEquals("store's layout " + B + " is not this tier's " + A, e.getMessage());
    }

    @Test
    void anEntryOfAnotherLayoutIsAWiringErrorNamingBothFingerprints() {
        long fa = TierEntry.fingerprint(A);
        long fb = TierEntry.fingerprint(B);
        TierChecks.entryLayout(new TierEntry(new PrefixKey(1, 2), null, 0, null, new int[] {1}, fa), fa, A);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TierChecks.entryLayout(new TierEntry(new PrefixKey(1, 2), null, 0, null, new int[] {1}, fb), fa, A));
        assertEquals("entry's layout fingerprint " + Long.toHexString(fb) + " is not this tier's " + Long.toHexString(fa)
                + " (" + A + ")", e.getMessage());
    }
}
