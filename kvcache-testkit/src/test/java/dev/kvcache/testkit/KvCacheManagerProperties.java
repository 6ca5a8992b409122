package dev.kvcache.testkit;

import dev.kvcache.testkit.ManagerModel.Checks;
import dev.kvcache.testkit.ManagerModel.Config;
import dev.kvcache.testkit.ManagerModel.Coverage;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.EdgeCasesMode;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.RandomDistribution;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.statistics.Statistics;

import java.util.List;

/**
 * Random workloads against the block manager contract (API.md, "The block manager").
 *
 * <p>Each property runs a list of {@link Op}s (open, append of one token / a few / a multi-block
 * prompt, fork, free, resetPrefixCache) on a small pool, 4..24 blocks of 1..8 tokens, so that
 * appends are refused for want of blocks and cached blocks get evicted, and {@link ManagerModel}
 * checks after every step: used + cached + empty == total; refCount(b) == occurrences of b in the
 * live block tables and usedBlocks == distinct held blocks; liveTokens and liveSequences; a refused
 * append changes nothing but allocationFailures and is refused only when the free blocks really
 * are fewer than it needs (no external fragmentation); at most blockTokens-1 wasted slots per
 * sequence; append's return value equals the prefix hits predicted from the published blocks
 * (mirrored from events), a multiple of blockTokens, below the call's token count and 0 unless
 * the sequence was empty; evictions follow LRU or priority order and never take an empty block's
 * turn or a hit block; slot(p) agrees with blockTable() and two sequences share a slot only
 * through a shared block with the same tokens; sliding-window releases are exactly the blocks the
 * contract names; an append with a negative token id throws naming it and changes nothing; and
 * the ledger counters. Counterexamples shrink to a short op list.
 *
 * <p>Edge cases are off: jqwik's list edge cases are one-step workloads, which would take a third
 * of the tries; the small integer ranges reach their ends anyway. Statistics show what each
 * property exercised; coverage checks make a property fail if a generator change stops it
 * reaching prefix hits, refusals, evictions, copy-on-write or window releases.
 */
class KvCacheManagerProperties {

    private static final Checks BROAD = new Checks(false, true);

    @Property(tries = 500, edgeCases = EdgeCasesMode.NONE)
    void randomWorkloadsKeepTheContract(@ForAll @IntRange(min = 4, max = 24) int blocks,
                                        @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                        @ForAll boolean prefixCaching,
                                        @ForAll boolean priorityPolicy,
                                        @ForAll("workload") List<Op> ops) {
        Coverage c = ManagerModel.run(new Config(blocks, blockTokens, prefixCaching, priorityPolicy, 0, 0), ops, BROAD);
        collect(c);
        Statistics.label("prefix hit").coverage(k -> k.check(true).percentage(p -> p >= 15));
        Statistics.label("append refused").coverage(k -> k.check(true).percentage(p -> p >= 15));
        Statistics.label("eviction").coverage(k -> k.check(true).percentage(p -> p >= 5));
        Statistics.label("copy-on-write").coverage(k -> k.check(true).percentage(p -> p >= 3));
    }

    @Property(tries = 500, edgeCases = EdgeCasesMode.NONE)
    void priorityPolicyServingWorkloads(@ForAll @IntRange(min = 4, max = 24) int blocks,
                                        @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                        @ForAll("serving") List<Op> ops) {
        // requests of four priorities sharing prefixes: hits on blocks held by other priorities
        // raise the block's priority, and evictions must follow priority, then release order
        Coverage c = ManagerModel.run(new Config(blocks, blockTokens, true, true, 0, 0), ops, BROAD);
        collect(c);
        Statistics.label("prefix hit").coverage(k -> k.check(true).percentage(p -> p >= 30));
        Statistics.label("eviction").coverage(k -> k.check(true).percentage(p -> p >= 30));
    }

    /**
     * The trust model under faults: appends aborted before their KV is written, copy-on-write
     * copies that throw halfway through, recompute and swap preemption with records resumed twice
     * on purpose, and (half the runs) a listener that throws on every third event. After every step
     * every live slot and every published block must hold KV of its own prefix, and a failed call
     * must have moved nothing.
     */
    @Property(tries = 400, edgeCases = EdgeCasesMode.NONE)
    void faultsNeverServeAnotherPrefixesKv(@ForAll @IntRange(min = 4, max = 24) int blocks,
                                          @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                          @ForAll boolean priorityPolicy,
                                          @ForAll @IntRange(min = 0, max = 8) int window,
                                          @ForAll boolean throwingListener,
                                          @ForAll("faults") List<Op> ops) {
        Coverage c = ManagerModel.run(new Config(blocks, blockTokens, true, priorityPolicy, window > 4 ? 1 : 0,
                window > 4 ? window : 0, throwingListener), ops, BROAD);
        collect(c);
        Statistics.label("failed copy").collect(c.failedCopies() > 0);
        Statistics.label("double resume").collect(c.doubleResumes() > 0);
        Statistics.label("abort").collect(c.aborts() > 0);
        Statistics.label("prefix hit").coverage(k -> k.check(true).percentage(p -> p >= 15));
        Statistics.label("failed copy").coverage(k -> k.check(true).percentage(p -> p >= 3));
        Statistics.label("double resume").coverage(k -> k.check(true).percentage(p -> p >= 10));
        Statistics.label("abort").coverage(k -> k.check(true).percentage(p -> p >= 20));
    }

    /**
     * A small tier below the store (1 to 8 blocks, LRU; in half the runs it throws on every fifth
     * call): evicted published blocks go down, prompts come back from it, and every block it serves
     * must read KV of exactly the reader's prefix (the trust check after every step), with every
     * other invariant of the model kept.
     */
    @Property(tries = 300, edgeCases = EdgeCasesMode.NONE)
    void aTierServesOnlyTheReadersOwnPrefix(@ForAll @IntRange(min = 4, max = 12) int blocks,
                                            @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                            @ForAll boolean priorityPolicy,
                                            @ForAll @IntRange(min = 1, max = 8) int tierBlocks,
                                            @ForAll boolean faults,
                                            @ForAll("tiered") List<Op> ops) {
        Coverage c = ManagerModel.run(new Config(blocks, blockTokens, true, priorityPolicy, 0, 0, faults, tierBlocks),
                ops, BROAD);
        collect(c);
        Statistics.label("promotion").collect(c.promotions() > 0);
        Statistics.label("promotion").coverage(k -> k.check(true).percentage(p -> p >= 4));
        Statistics.label("eviction").coverage(k -> k.check(true).percentage(p -> p >= 20));
    }

    @Property(tries = 200, edgeCases = EdgeCasesMode.NONE)
    void prefixCachingOffNeverCaches(@ForAll @IntRange(min = 4, max = 24) int blocks,
                                     @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                     @ForAll boolean priorityPolicy,
                                     @ForAll("workload") List<Op> ops) {
        // the model checks cachedBlocks == 0, no events and append() == 0 whenever caching is off
        Coverage c = ManagerModel.run(new Config(blocks, blockTokens, false, priorityPolicy, 0, 0), ops, BROAD);
        collect(c);
        Statistics.label("append refused").coverage(k -> k.check(true).percentage(p -> p >= 15));
    }

    @Property(tries = 300, edgeCases = EdgeCasesMode.NONE)
    void slidingWindowWorkloadsKeepTheContract(@ForAll @IntRange(min = 4, max = 24) int blocks,
                                               @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                               @ForAll boolean prefixCaching,
                                               @ForAll boolean priorityPolicy,
                                               @ForAll @IntRange(min = 0, max = 6) int sinks,
                                               @ForAll @IntRange(min = 1, max = 12) int window,
                                               @ForAll("workload") List<Op> ops) {
        Coverage c = ManagerModel.run(new Config(blocks, blockTokens, prefixCaching, priorityPolicy, sinks, window),
                ops, BROAD);
        collect(c);
        Statistics.label("window release").coverage(k -> k.check(true).percentage(p -> p >= 15));
    }

    @Property(tries = 200, edgeCases = EdgeCasesMode.NONE)
    void slidingWindowBoundsMemoryOnLongDecodes(@ForAll @IntRange(min = 4, max = 24) int blocks,
                                                @ForAll @IntRange(min = 1, max = 8) int blockTokens,
                                                @ForAll boolean prefixCaching,
                                                @ForAll @IntRange(min = 0, max = 6) int sinks,
                                                @ForAll @IntRange(min = 1, max = 12) int window,
                                                @ForAll("decode") List<Op> ops) {
        // heldBlocks <= ceil(sinks/B) + ceil(window/B) + 2 after every single-token append
        Coverage c = ManagerModel.run(new Config(blocks, blockTokens, prefixCaching, false, sinks, window),
                ops, new Checks(true, true));
        collect(c);
        Statistics.label("window release").coverage(k -> k.check(true).percentage(p -> p >= 50));
    }

    // ------------------------------------------------------------------ regressions

    /**
     * The first bug these properties found (shrunk counterexample): appendLocked set
     * {@code cachedTokens} on every append, so a sequence's second append reset it to 0. Fixed in
     * 99dbeea; Sequence.cachedTokens() must keep what the first append hit.
     */
    @Example
    void cachedTokensSurviveASecondAppend() {
        ManagerModel.run(new Config(4, 1, true, false, 0, 0), List.of(
                new Op.Open(0, 0), new Op.Append(0, List.of(1)), new Op.Commit(0),
                new Op.Open(0, 0), new Op.Append(0, List.of(1, 0)),   // hits block [1]: cachedTokens 1
                new Op.Append(0, List.of(0))),                         // cachedTokens must stay 1
                BROAD);
    }

    /**
     * Found by a long fuzz run (2026-12-03): a window released a block that the same append then
     * evicted and took again; the model kept the old holders' priority for it, the manager rightly
     * restarted it. The model now restarts the priority of every block an append frees.
     */
    @Example
    void aBlockFreedAndRetakenInOneAppendStartsAFreshPriority() {
        ManagerModel.run(new Config(22, 1, true, true, 0, 9), List.of(
                new Op.Open(0, 0), new Op.Append(0, List.of(1, 6, 4, 2, 0)), new Op.Commit(0), new Op.Open(0, 0),
                new Op.Open(0, 0), new Op.Append(0, List.of(0)), new Op.Append(0, List.of(0)),
                new Op.Append(0, List.of(0)), new Op.Open(0, 0), new Op.Append(0, List.of(0)), new Op.Free(0),
                new Op.Append(0, List.of(0)), new Op.Append(2, List.of(0)), new Op.Open(0, 0),
                new Op.Append(3, List.of(0)), new Op.Free(0), new Op.Open(1, 0), new Op.Append(0, List.of(1, 6)),
                new Op.Free(0), new Op.Append(2, List.of(0, 0, 0)), new Op.Append(0, List.of(1, 6, 4, 2, 0, 0)),
                new Op.Append(2, List.of(1, 0, 0)), new Op.Open(0, 0), new Op.Open(0, 0), new Op.Open(0, 0),
                new Op.Free(5), new Op.Append(0, List.of(0))),
                BROAD);
    }

    /**
     * Found on a fresh clone (2026-12-03): a prompt's promoted blocks are published after the
     * append's allocations, and a stale entry their publication replaced went to the empty pool
     * after an eviction had taken a cached block; the model took that empty block for an eviction
     * out of order.
     */
    @Example
    void aStaleEntryReplacedByAPromotedBlockEmptiesAfterTheAllocations() {
        ManagerModel.run(new Config(4, 2, true, true, 0, 0, false, 3), List.of(
                new Op.Open(0, 0), new Op.Append(0, List.of(1, 6, 4, 2, 0)), new Op.Commit(0),
                new Op.Preempt(0, true), new Op.Open(0, 0), new Op.Resume(0), new Op.Append(0, List.of(0)),
                new Op.FailingCopyAppend(0, List.of(0)), new Op.AbortedAppend(0, List.of(0)), new Op.Open(0, 0),
                new Op.Open(0, 0), new Op.Open(0, 0), new Op.Append(0, List.of(1, 6, 4, 2, 0)), new Op.Commit(0)),
                BROAD);
    }

    // ------------------------------------------------------------------ generators

    @Provide
    Arbitrary<List<Op>> workload() {
        return Ops.workload(3, 100);
    }

    @Provide
    Arbitrary<List<Op>> serving() {
        return Ops.servingWorkload(3, 100);
    }

    /** Serving requests (prompts that come back after others evicted them) mixed with the faults. */
    @Provide
    Arbitrary<List<Op>> tiered() {
        return Arbitraries.oneOf(Ops.servingWorkload(3, 100), Ops.faultWorkload(3, 100));
    }

    @Provide
    Arbitrary<List<Op>> faults() {
        return Ops.faultWorkload(3, 100);
    }

    @Provide
    Arbitrary<List<Op>> decode() {
        return Ops.decodeOp().list().ofMinSize(1).ofMaxSize(400)
                .withSizeDistribution(RandomDistribution.uniform());
    }

    private static void collect(Coverage c) {
        Statistics.label("prefix hit").collect(c.prefixHits() > 0);
        Statistics.label("append refused").collect(c.failedAppends() > 0);
        Statistics.label("eviction").collect(c.evictions() > 0);
        Statistics.label("copy-on-write").collect(c.copyOnWrites() > 0);
        Statistics.label("window release").collect(c.windowReleases() > 0);
    }
}
