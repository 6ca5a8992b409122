package dev.kvcache.testkit;

import dev.kvcache.KvFormats;
import dev.kvcache.testkit.ManagerModel.Checks;
import dev.kvcache.testkit.ManagerModel.Config;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.EdgeCasesMode;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link StoreUnderTest}: the model's workloads over a real store. A correct store passes every
 * workload (faults, swaps and a tier included); a store whose copy-on-write copies only one layer
 * is caught; the store is closed after every run, a failed one too.
 */
class StoreUnderTestProperties {

    private static final Checks CHECKS = new Checks(false, true);

    @Property(tries = 150, edgeCases = EdgeCasesMode.NONE)
    void aCorrectStoreKeepsEveryPrefixsKv(@ForAll @IntRange(min = 4, max = 16) int blocks,
                                          @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                          @ForAll @IntRange(min = 0, max = 4) int tierBlocks,
                                          @ForAll boolean faults,
                                          @ForAll("workloads") List<Op> ops) {
        List<HeapKvStore> made = new ArrayList<>();
        StoreUnderTest store = StoreUnderTest.of(KvFormats.F32, (layout, n) -> {
            HeapKvStore s = new HeapKvStore(layout, n, false);
            made.add(s);
            return s;
        });
        ManagerModel.run(new Config(blocks, blockTokens, true, false, 0, 0, faults, tierBlocks).withStore(store),
                ops, CHECKS);
        assertEquals(1, made.size());
        assertEquals(1, made.getFirst().closes, "the model closes the store after the run");
    }

    /** Forks, then a decode step into the shared partial block: a copy-on-write. */
    @Example
    void aStoreThatCopiesOnlyOneLayerIsCaught() {
        List<HeapKvStore> made = new ArrayList<>();
        StoreUnderTest broken = StoreUnderTest.of(KvFormats.F32, (layout, n) -> {
            HeapKvStore s = new HeapKvStore(layout, n, true);
            made.add(s);
            return s;
        });
        List<Op> ops = List.of(new Op.Open(0, 0), new Op.Append(0, List.of(1, 2, 3)), new Op.Fork(0),
                new Op.Append(0, List.of(4)));
        AssertionError e = assertThrows(AssertionError.class,
                () -> ManagerModel.run(new Config(8, 4, true, false, 0, 0).withStore(broken), ops, CHECKS));
        assertTrue(e.getMessage().contains("the store under test reads") && e.getMessage().contains("layer 1"),
                e.getMessage());
        assertEquals(1, made.getFirst().closes, "a failed run closes the store too");
        // the same workload over a correct store passes
        ManagerModel.run(new Config(8, 4, true, false, 0, 0)
                .withStore(StoreUnderTest.of(KvFormats.F32, (l, n) -> new HeapKvStore(l, n, false))), ops, CHECKS);
    }

    @Example
    void aFactoryThatReturnsTheWrongShapeIsRefusedNamingBoth() {
        HeapKvStore[] made = new HeapKvStore[1];
        StoreUnderTest wrong = StoreUnderTest.of(KvFormats.F32, (layout, n) -> made[0] = new HeapKvStore(layout, n + 1, false));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ManagerModel.run(new Config(8, 4, true, false, 0, 0).withStore(wrong), List.of(), CHECKS));
        assertTrue(e.getMessage().contains("9 blocks") && e.getMessage().contains("and 8"), e.getMessage());
        assertEquals(1, made[0].closes, "the refused store is closed");
    }

    @Example
    void defaultTolerancesFollowTheBytesPerValue() {
        assertEquals(0.05f, StoreUnderTest.of(KvFormats.F16, (l, n) -> null).tolerance());
        assertEquals(0.5f, StoreUnderTest.of(KvFormats.Q8_0, (l, n) -> null).tolerance());
        assertEquals(1.0f, StoreUnderTest.of(KvFormats.Q4_0, (l, n) -> null).tolerance());
        assertThrows(IllegalArgumentException.class,
                () -> StoreUnderTest.of(KvFormats.F16, (l, n) -> null).withTolerance(Float.NaN));
    }

    @Provide
    Arbitrary<List<Op>> workloads() {
        return Arbitraries.oneOf(Ops.workload(3, 60), Ops.faultWorkload(3, 60), Ops.servingWorkload(3, 60));
    }
}
