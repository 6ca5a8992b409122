/**
 * Test support for engines built on kvcache (use it with test scope).
 *
 * <p>{@link dev.kvcache.testkit.ManagerModel} is the jqwik reference model of the block manager:
 * {@link dev.kvcache.testkit.ManagerModel#run ManagerModel.run(config, ops, checks)} drives a fresh
 * manager through a list of {@link dev.kvcache.testkit.Op}s, checking the contract after every
 * step, and throws an AssertionError naming the step and what differs; the
 * {@link dev.kvcache.testkit.Ops} arbitraries generate workloads that reach prefix hits, refusals,
 * evictions, copy-on-write, sliding windows and faults. {@link dev.kvcache.testkit.StoreUnderTest}
 * puts your own {@link dev.kvcache.KvStore} under the model:
 *
 * <pre>{@code
 * @Property
 * void myStoreKeepsEveryPrefixsKv(@ForAll("workload") List<Op> ops) {
 *     ManagerModel.run(new ManagerModel.Config(16, 4, true, false, 0, 0)
 *                     .withStore(StoreUnderTest.of(KvFormats.Q8_0, MyStore::allocate)),
 *             ops, new ManagerModel.Checks(false, true));
 * }
 *
 * @Provide
 * Arbitrary<List<Op>> workload() {
 *     return Ops.faultWorkload(3, 100);
 * }
 * }</pre>
 *
 * <p>{@link dev.kvcache.testkit.ReadmeSnippets} compiles (and runs) the Java blocks of a README as
 * they stand, so documentation and code cannot drift apart.
 */
package dev.kvcache.testkit;
