package dev.kvcache.retention;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class SlidingWindowRetentionTest {

    private static final KvLayout L = new KvLayout(1, 1, 8, 4, KvFormats.F32);

    /** Dropping what the policy selects releases exactly the blocks the manager's own window releases. */
    @Test
    void theRetentionFormReleasesWhatTheBuiltInWindowReleases() {
        Random rnd = new Random();
        for (int trial = 0; trial < 50; trial++) {
            int sinks = rnd.nextInt(9);
            int window = 1 + rnd.nextInt(24);
            int length = 1 + rnd.nextInt(120);
            int[] tokens = IntStream.range(0, length).toArray();
            try (KvCacheManager plain = KvCacheManager.builder(L).blocks(64).build();
                 KvCacheManager windowed = KvCacheManager.builder(L).blocks(64).slidingWindow(sinks, window).build()) {
                Sequence a = plain.open("a");
                plain.append(a, tokens);
                Sequence b = windowed.open("b");
                windowed.append(b, tokens);
                windowed.append(b, 0); // releases what lies outside the window of `length`
                plain.dropTokens(a, new SlidingWindowRetention(sinks, window).select(a, null, 4), 0,
                        new SlidingWindowRetention(sinks, window).select(a, null, 4).length);
                int[] ta = a.blockTable();
                int[] tb = b.blockTable();
                for (int i = 0; i < ta.length; i++) {
                    // a block wholly outside sinks and window is released by both, and only those
                    assertEquals(tb[i] < 0, ta[i] < 0, "block " + i + " of " + length + " tokens, sinks " + sinks
                            + ", window " + window);
                }
                assertArrayEquals(new int[0], new SlidingWindowRetention(sinks, window).select(a, null, 4),
                        "idempotent");
                plain.free(a);
                windowed.free(b);
            }
        }
    }

    @Test
    void everyRetentionPolicyIsOneInterface() {
        List<RetentionPolicy> policies = List.of(new SlidingWindowRetention(2, 8),
                new HeavyHitterRetention(2, 8, 4, false), new SnapKvRetention(2, 8, 4, 3, false));
        try (KvCacheManager m = KvCacheManager.builder(L).blocks(64).build()) {
            for (RetentionPolicy p : policies) {
                Sequence s = m.open("s");
                m.append(s, IntStream.range(0, 40).toArray());
                AttentionMass mass = new AttentionMass(40);
                for (int i = 0; i < 40; i++) {
                    mass.add(i, i % 7);
                }
                int[] drop = p.select(s, mass, 4);
                m.dropTokens(s, drop, 0, drop.length);
                assertEquals(drop.length, s.droppedTokens(), p.getClass().getSimpleName());
                for (int i = 0; i < 2; i++) {
                    assertEquals(false, s.isDropped(i), "sinks kept by " + p.getClass().getSimpleName());
                }
                for (int i = 32; i < 40; i++) {
                    assertEquals(false, s.isDropped(i), "recent window kept by " + p.getClass().getSimpleName());
                }
                m.free(s);
            }
        }
        assertThrows(IllegalArgumentException.class, () -> new SlidingWindowRetention(-1, 4));
        assertThrows(IllegalArgumentException.class, () -> new SlidingWindowRetention(0, 0));
    }
}
