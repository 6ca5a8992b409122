package dev.kvcache.metrics;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.PreemptionMode;
import dev.kvcache.Sequence;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class KvCacheMetricsTest {

    private static final KvLayout LAYOUT = new KvLayout(2, 2, 8, 4, KvFormats.F16);

    @Test
    void micrometerReadsTheLedger() {
        SimpleMeterRegistry registry = new SimpleMeterRegistry();
        try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(4).build()) {
            new KvCacheMetrics(m, "pool").bindTo(registry);
            Sequence a = m.open("a");
            m.append(a, new int[12]);
            Sequence b = m.open("b");
            assertEquals(-1, m.append(b, 1, 2, 3, 4, 5, 6, 7, 8));
            assertEquals(3, registry.get("kvcache.blocks").tags("cache", "pool", "kind", "used").gauge().value());
            assertEquals(1, registry.get("kvcache.blocks").tags("kind", "empty").gauge().value());
            assertEquals(3 * LAYOUT.bytesPerBlock(), registry.get("kvcache.memory.used").gauge().value());
            assertEquals(12, registry.get("kvcache.tokens.live").gauge().value());
            assertEquals(1, registry.get("kvcache.allocation.failures").functionCounter().count());
            var record = m.preempt(a, PreemptionMode.RECOMPUTE);
            assertEquals(1, registry.get("kvcache.preemptions").functionCounter().count());
            assertEquals(0, registry.get("kvcache.blocks").tags("kind", "used").gauge().value());
            assertEquals(1, registry.get("kvcache.preemption.records").gauge().value());
            m.discard(record);
            assertEquals(0, registry.get("kvcache.preemption.records").gauge().value());
            assertEquals(0, registry.get("kvcache.published.blocks").functionCounter().count()); // a's KV never committed
            assertEquals(0, m.append(b, 1, 2, 3, 4, 5, 6, 7, 8, 9));  // two full blocks, pending
            m.abort(b);                                                  // the engine failed before writing them
            assertEquals(2, registry.get("kvcache.aborted.blocks").functionCounter().count());
            assertEquals(0, registry.get("kvcache.published.blocks").functionCounter().count());
            Sequence c = m.open("c");
            assertEquals(0, m.append(c, 1, 2, 3, 4, 5, 6, 7, 8, 9));
            m.free(c);                                                   // written: both published
            assertEquals(2, registry.get("kvcache.published.blocks").functionCounter().count());
            assertEquals(0, registry.get("kvcache.callback.errors").functionCounter().count());
            assertEquals(0, registry.get("kvcache.copy.failures").functionCounter().count());
            assertEquals(0, registry.get("kvcache.swap.failures").functionCounter().count());
        }
    }

    @Test
    void jfrRecordsEveryLever() throws Exception {
        Path file = Files.createTempFile("kvcache", ".jfr");
        try (Recording rec = new Recording()) {
            rec.enable("dev.kvcache.AppendRefused");
            rec.enable("dev.kvcache.SequencePreempted");
            rec.enable("dev.kvcache.BlockRemoved");
            rec.enable("dev.kvcache.Ledger").with("period", "endChunk");
            rec.start();
            try (KvCacheManager m = KvCacheManager.builder(LAYOUT).blocks(2).build();
                 KvCacheJfr jfr = KvCacheJfr.attach(m, "pool")) {
                Sequence a = m.open("a");
                m.append(a, 1, 2, 3, 4, 5, 6, 7, 8);
                m.free(a);
                Sequence b = m.open("b");
                m.append(b, 9); // evicts a's tail
                assertEquals(-1, m.append(b, new int[8]));
                m.preempt(b, PreemptionMode.RECOMPUTE);
                rec.stop(); // the end of the chunk fires the periodic statistics
            }
            rec.dump(file);
        }
        List<RecordedEvent> events = RecordingFile.readAllEvents(file);
        Files.delete(file);
        RecordedEvent refused = only(events, "dev.kvcache.AppendRefused");
        assertEquals("b", refused.getString("sequence"));
        assertEquals("NO_BLOCKS", refused.getString("reason"));
        assertEquals("RECOMPUTE", only(events, "dev.kvcache.SequencePreempted").getString("mode"));
        assertEquals(1, events.stream().filter(e -> e.getEventType().getName().equals("dev.kvcache.BlockRemoved")).count());
        assertTrue(events.stream().anyMatch(e -> e.getEventType().getName().equals("dev.kvcache.Ledger")
                && e.getString("cache").equals("pool") && e.getInt("totalBlocks") == 2));
    }

    private static RecordedEvent only(List<RecordedEvent> events, String name) {
        List<RecordedEvent> l = events.stream().filter(e -> e.getEventType().getName().equals(name)).toList();
        assertEquals(1, l.size(), name + ": " + l);
        return l.get(0);
    }
}
