package dev.kvcache.offheap;

import dev.kvcache.KvCacheManager;
import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;

import java.util.ArrayList;
import java.util.List;

/**
 * Random shapes and histories (appends of random sizes, forks with copy-on-write, frees, with and
 * without a sliding window) in every format: attention always matches the float64 reference.
 */
class PagedAttentionProperties {

    @Property(tries = 60)
    void randomHistoriesMatchFloat64Reference(
            @ForAll @IntRange(min = 0, max = 8) int formatIndex,
            @ForAll @IntRange(min = 1, max = 3) int kvHeads,
            @ForAll @IntRange(min = 0, max = 3) int ratioLog2,
            @ForAll @IntRange(min = 1, max = 20) int blockTokens,
            @ForAll @IntRange(min = 1, max = 2) int groupsPerHead,
            @ForAll @IntRange(min = 0, max = 2) int windowMode,
            @ForAll @IntRange(min = 1, max = 10) int steps,
            @ForAll long seed) {
        KvFormat f = KvFormats.all().get(formatIndex);
        KvLayout layout = new KvLayout(2, kvHeads, 32 * groupsPerHead, blockTokens, f);
        KvCacheManager.Builder b = KvCacheManager.builder(layout).prefixCaching(false);
        if (windowMode > 0) {
            b.slidingWindow(windowMode == 1 ? 0 : 3, 2 * blockTokens + 5);
        }
        int queryHeads = kvHeads << ratioLog2;
        try (Harness h = new Harness(layout, 400, seed, b)) {
            List<Sequence> live = new ArrayList<>();
            live.add(h.open("s0"));
            int ids = 1;
            for (int step = 0; step < steps; step++) {
                Sequence s = live.get(h.rnd.nextInt(live.size()));
                int op = h.rnd.nextInt(10);
                if (op < 6) {
                    h.append(s, 1 + h.rnd.nextInt(3 * blockTokens));
                } else if (op < 9 && s.length() > 0) {
                    Sequence c = h.fork(s, "s" + ids++);
                    live.add(c);
                    h.append(c, 1 + h.rnd.nextInt(blockTokens));
                } else if (live.size() > 1) {
                    h.manager.free(s);
                    live.remove(s);
                }
            }
            for (Sequence s : live) {
                h.check(s, h.rnd.nextInt(2), queryHeads, PagedAttentionTest.TOL_STORED,
                        PagedAttentionTest.tolOriginal(f));
            }
        }
    }
}
