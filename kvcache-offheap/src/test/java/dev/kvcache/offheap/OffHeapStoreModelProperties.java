package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.testkit.ManagerModel;
import dev.kvcache.testkit.ManagerModel.Checks;
import dev.kvcache.testkit.ManagerModel.Config;
import dev.kvcache.testkit.Op;
import dev.kvcache.testkit.Ops;
import dev.kvcache.testkit.StoreUnderTest;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.EdgeCasesMode;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.List;

/**
 * kvcache-testkit's reference model over the real {@link OffHeapKvStore}: random workloads with
 * faults, swaps and a tier, in every format, and after every step every live slot and published
 * block read back from the store holds the KV written for its own prefix (within the format's
 * rounding). Covers the store's row writes, staging of block formats (FP8, KIVI) across
 * copy-on-write, and copies of whole blocks through every layer.
 */
class OffHeapStoreModelProperties {

    @Property(tries = 120, edgeCases = EdgeCasesMode.NONE)
    void theOffHeapStoreHoldsEveryPrefixsKv(@ForAll("formats") KvFormat format,
                                            @ForAll @IntRange(min = 4, max = 16) int blocks,
                                            @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                            @ForAll @IntRange(min = 0, max = 4) int tierBlocks,
                                            @ForAll boolean faults,
                                            @ForAll("workloads") List<Op> ops) {
        Config config = new Config(blocks, blockTokens, true, false, 0, 0, faults, tierBlocks)
                .withStore(StoreUnderTest.of(format, OffHeapKvStore::allocate));
        ManagerModel.run(config, ops, new Checks(false, true));
    }

    @Provide
    Arbitrary<KvFormat> formats() {
        return Arbitraries.of(KvFormats.F32, KvFormats.F16, KvFormats.BF16, KvFormats.Q8_0, KvFormats.Q4_0,
                KvFormats.FP8_E4M3, KvFormats.FP8_E5M2, KvFormats.KIVI_4, KvFormats.KIVI_2);
    }

    @Provide
    Arbitrary<List<Op>> workloads() {
        return Arbitraries.oneOf(Ops.faultWorkload(3, 60), Ops.servingWorkload(3, 60));
    }
}
