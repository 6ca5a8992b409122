package dev.kvcache.metrics;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

class KvCacheJfrTest {

    @Test
    void ledger_and_block_events_reach_the_recording(@TempDir Path dir) throws Exception {
        KvLayout l = new KvLayout(1, 1, 32, 4, KvFormats.F16);
        Path file = dir.resolve("r.jfr");
        try (Recording rec = new Recording(); KvCacheManager m = KvCacheManager.builder(l).blocks(3).build()) {
            rec.enable("dev.kvcache.Ledger").withPeriod(java.time.Duration.ofHours(1));
            rec.enable("dev.kvcache.BlockStored");
            rec.enable("dev.kvcache.BlockRemoved");
            rec.enable("dev.kvcache.AppendRefused");
            rec.enable("dev.kvcache.SequencePreempted");
            rec.start();
            KvCacheJfr bridge = KvCacheJfr.attach(m, "test-cache");
            var a = m.open("a");
            assertEquals(0, m.append(a, IntStream.range(0, 8).toArray()));   // 2 full blocks, pending until written
            var b = m.open("b");
            assertEquals(-1, m.append(b, IntStream.range(100, 108).toArray())); // needs 2, 1 left: failure
            m.free(a);                                                          // both published and cached
            assertEquals(0, m.append(b, IntStream.range(100, 108).toArray())); // evicts a cached block
            m.commit(b);                                                        // b's KV written: its 2 blocks published
            var p = m.preempt(b, dev.kvcache.PreemptionMode.RECOMPUTE);
            b = m.resume(p);                                                    // its 2 blocks come back from the cache
            bridge.emit();
            bridge.close();
            bridge.emit(); // after close: nothing
            m.free(b);
            rec.stop();
            rec.dump(file);
        }
        List<RecordedEvent> events = RecordingFile.readAllEvents(file);
        List<RecordedEvent> stored = byName(events, "dev.kvcache.BlockStored");
        assertEquals(4, stored.size());
        assertTrue(stored.stream().allMatch(e -> e.getString("cache").equals("test-cache") && e.getInt("tokens") == 4));
        // a's two blocks then b's two, each chained to the one before: the 128-bit keys as hex, the
        // 64-bit hashes their first halves, the first block of each sequence rooted
        for (int i = 0; i < 4; i++) {
            RecordedEvent e = stored.get(i);
            String key = e.getString("key");
            assertTrue(key.matches("[0-9a-f]{32}"), key);
            assertEquals(HexFormat.of().toHexDigits(e.getLong("hash")), key.substring(0, 16));
            if (i % 2 == 0) {
                assertNull(e.getString("parentKey"));
                assertEquals(KvCacheManager.ROOT_HASH, e.getLong("parentHash"));
            } else {
                RecordedEvent parent = stored.get(i - 1);
                assertEquals(parent.getString("key"), e.getString("parentKey"));
                assertEquals(parent.getLong("hash"), e.getLong("parentHash"));
            }
        }
        assertEquals(4, stored.stream().map(e -> e.getString("key")).distinct().count());
        List<RecordedEvent> removed = byName(events, "dev.kvcache.BlockRemoved");
        assertTrue(removed.stream().allMatch(e -> stored.stream().anyMatch(
                s -> s.getInt("block") == e.getInt("block") && s.getString("key").equals(e.getString("key"))
                        && s.getLong("hash") == e.getLong("hash"))), "each removal names a stored block's key");
        // one eviction for b's first append, one when b's resume needs a block beyond its hit
        assertEquals(2, removed.size());
        List<RecordedEvent> refused = byName(events, "dev.kvcache.AppendRefused");
        assertEquals(1, refused.size());
        assertEquals("NO_BLOCKS", refused.getFirst().getString("reason"));
        assertEquals("b", refused.getFirst().getString("sequence"));
        assertEquals(8, refused.getFirst().getInt("tokens"));
        List<RecordedEvent> preempted = byName(events, "dev.kvcache.SequencePreempted");
        assertEquals(1, preempted.size());
        assertEquals("RECOMPUTE", preempted.getFirst().getString("mode"));
        assertEquals(2, preempted.getFirst().getInt("blocks"));
        List<RecordedEvent> ledger = byName(events, "dev.kvcache.Ledger");
        assertEquals(1, ledger.size());
        RecordedEvent e = ledger.getFirst();
        assertEquals(1, e.getLong("allocationFailures"));
        assertEquals(2, e.getLong("evictedBlocks"));
        assertEquals(1, e.getLong("preemptions"));
        assertEquals(4, e.getLong("recomputedTokens")); // 8 tokens, 4 served by the prefix cache (never the last token's block)
        assertEquals(3, e.getInt("totalBlocks"));
        assertEquals(2, e.getInt("usedBlocks"));
        assertEquals(8, e.getLong("liveTokens"));
        assertEquals(2 * l.bytesPerBlock(), e.getLong("usedBytes"));
        assertEquals(4, e.getLong("publishedBlocks"));
        assertEquals(0, e.getLong("abortedBlocks"));
        assertEquals(0, e.getLong("callbackErrors"));
        assertEquals(0, e.getInt("outstandingRecords")); // b's record was resumed
    }

    private static List<RecordedEvent> byName(List<RecordedEvent> events, String name) {
        return events.stream().filter(e -> e.getEventType().getName().equals(name)).toList();
    }
}
