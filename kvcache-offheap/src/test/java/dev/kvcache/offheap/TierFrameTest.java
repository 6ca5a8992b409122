package dev.kvcache.offheap;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static dev.kvcache.offheap.TierCountersTest.A;
import static dev.kvcache.offheap.TierCountersTest.B;
import static dev.kvcache.offheap.TierCountersTest.store;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** TierFrame: what runs before, around and after a tier's bodies. */
class TierFrameTest {

    private final List<String> ran = new ArrayList<>();
    private TierFrame frame;

    private TierFrame frame() {
        frame = new TierFrame("TestTier", "test", A, 4,
                (e, s, b) -> {
                    ran.add("put locked=" + Thread.holdsLock(frame.lock));
                    frame.events.removed(e.key());
                    if (b < 0) {
                        throw new IllegalStateException("body failed");
                    }
                    return true;
                },
                (e, s, b) -> ran.add("load"),
                k -> ran.add("remove"),
                (keys, from, count) -> count,
                () -> 3);
        return frame;
    }

    private static TierEntry entry(long fingerprint) {
        return new TierEntry(new PrefixKey(1, 2), null, 0, null, new int[] {1}, fingerprint);
    }

    @Test
    void aPutRunsItsBodyUnderTheLockAndFlushesWhatItRecordedAfterEvenWhenItThrows() {
        TierFrame f = frame();
        List<KvCacheEvent> seen = new ArrayList<>();
        f.listener(e -> seen.add(e), () -> { });
        assertTrue(f.put(entry(TierEntry.fingerprint(A)), store(A), 0));
        assertEquals(List.of("put locked=true"), ran);
        assertEquals(1, seen.size());
        assertThrows(IllegalStateException.class, () -> f.put(entry(TierEntry.fingerprint(A)), store(A), -1));
        assertEquals(2, seen.size(), "the event a failing body recorded is still delivered");
    }

    @Test
    void aPutOfAnotherLayoutOrThroughABrokenStoreRunsNoBody() {
        TierFrame f = frame();
        assertThrows(IllegalArgumentException.class, () -> f.put(entry(TierEntry.fingerprint(B)), store(A), 0));
        assertThrows(IllegalArgumentException.class, () -> f.put(entry(TierEntry.fingerprint(A)), store(B), 0));
        assertFalse(f.put(entry(TierEntry.fingerprint(A)), store(null), 0));
        assertThrows(NullPointerException.class, () -> f.put(null, store(A), 0));
        assertEquals(List.of(), ran);
        assertEquals(1, f.counters.refusedPuts);
        assertEquals(3, f.stats().blocks());
        assertEquals(4 * A.bytesPerBlock(), f.stats().capacityBytes());
    }

    @Test
    void closeRunsOnceAndEveryCallAfterItIsRefused() {
        TierFrame f = frame();
        f.close(() -> ran.add("closing locked=" + Thread.holdsLock(f.lock)), () -> ran.add("after locked=" + Thread.holdsLock(f.lock)));
        f.close(() -> ran.add("again"), () -> ran.add("again"));
        assertEquals(List.of("closing locked=true", "after locked=false"), ran);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> f.load(entry(1), store(A), 0));
        assertEquals("TestTier is closed", e.getMessage());
        assertThrows(IllegalStateException.class, () -> f.remove(new PrefixKey(1, 2)));
        assertThrows(IllegalStateException.class, () -> f.leadingHits(new PrefixKey[1], 0, 1));
        assertEquals(2, ran.size());
    }
}
