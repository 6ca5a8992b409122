package dev.kvcache.testkit;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.RandomDistribution;
import net.jqwik.api.Tuple;

import java.util.ArrayList;
import java.util.List;

/**
 * Generators for {@link Op} workloads. Token ids come from a small alphabet and prompts are
 * prefixes of three fixed base prompts (two of which share their first 8 tokens), so that prefix
 * cache hits, partial hits and divergent chains all happen at every block size from 1 to 8.
 */
public final class Ops {

    /** Alphabet of single tokens and short bursts. */
    public static final int ALPHABET = 4;

    private static final int BASE_LENGTH = 48;
    private static final int[][] BASE = new int[3][BASE_LENGTH];

    static {
        for (int i = 0; i < BASE_LENGTH; i++) {
            BASE[0][i] = (i * 5 + 1) % 7;
            BASE[1][i] = i < 8 ? BASE[0][i] : (i * 3 + 2) % 5;
            BASE[2][i] = 10 + i % 3;
        }
    }

    private Ops() {
    }

    /**
     * One token.
     *
     * @return a one-element list of a token id in [0, {@link #ALPHABET})
     */
    public static Arbitrary<List<Integer>> singleToken() {
        return Arbitraries.integers().between(0, ALPHABET - 1).map(List::of);
    }

    /**
     * 0 to 5 tokens (an empty append included: it must be a no-op).
     *
     * @return token lists of 0 to 5 ids
     */
    public static Arbitrary<List<Integer>> fewTokens() {
        return Arbitraries.integers().between(0, ALPHABET - 1).list().ofMinSize(0).ofMaxSize(5);
    }

    /**
     * A prefix (1..32 tokens) of a base prompt, then 0..2 tokens of its own.
     *
     * @return prompts that share prefixes
     */
    public static Arbitrary<List<Integer>> prompt() {
        Arbitrary<Integer> base = Arbitraries.integers().between(0, BASE.length - 1);
        Arbitrary<Integer> len = Arbitraries.integers().between(1, 32);
        Arbitrary<List<Integer>> suffix = Arbitraries.integers().between(0, ALPHABET - 1).list().ofMaxSize(2);
        return Combinators.combine(base, len, suffix).as((b, n, s) -> {
            List<Integer> t = new ArrayList<>(n + s.size());
            for (int i = 0; i < n; i++) {
                t.add(BASE[b][i]);
            }
            t.addAll(s);
            return t;
        });
    }

    /** Mostly the newest sequence (often still empty, so prompts meet the prefix cache). */
    private static Arbitrary<Integer> pick() {
        return Arbitraries.frequencyOf(
                Tuple.of(3, Arbitraries.just(0)),
                Tuple.of(2, Arbitraries.integers().between(1, 7)));
    }

    /**
     * A general workload step: open, append (one token, a few, or a multi-block prompt), fork,
     * free, reset.
     *
     * @param maxPriority bounds the priorities sequences are opened with
     * @return single steps
     */
    public static Arbitrary<Op> op(int maxPriority) {
        Arbitrary<Op> open = Combinators.combine(
                        Arbitraries.integers().between(0, maxPriority),
                        Arbitraries.frequency(Tuple.of(4, 0), Tuple.of(1, 1)))
                .as(Op.Open::new);
        Arbitrary<Op> appendOne = Combinators.combine(pick(), singleToken()).as(Op.Append::new);
        Arbitrary<Op> appendFew = Combinators.combine(pick(), fewTokens()).as(Op.Append::new);
        Arbitrary<Op> appendPrompt = Combinators.combine(pick(), prompt()).as(Op.Append::new);
        Arbitrary<Op> badAppend = Combinators.combine(pick(), fewTokens().filter(t -> !t.isEmpty()),
                        Arbitraries.integers().between(0, 4), Arbitraries.integers().between(-3, -1))
                .as((p, t, at, bad) -> {
                    List<Integer> toks = new ArrayList<>(t);
                    toks.set(at % toks.size(), bad);
                    return new Op.BadAppend(p, toks);
                });
        Arbitrary<Op> fork = pick().map(Op.Fork::new);
        Arbitrary<Op> free = pick().map(Op.Free::new);
        Arbitrary<Op> reset = Arbitraries.just(new Op.ResetPrefixCache());
        Arbitrary<Op> commit = pick().map(Op.Commit::new);
        return Arbitraries.frequencyOf(
                Tuple.of(3, open),
                Tuple.of(6, appendOne),
                Tuple.of(3, appendFew),
                Tuple.of(3, appendPrompt),
                Tuple.of(1, badAppend),
                Tuple.of(2, fork),
                Tuple.of(5, free),
                Tuple.of(2, commit),
                Tuple.of(1, reset));
    }

    /**
     * {@link #op} plus the faults an engine and a flaky device bring: appends aborted before their
     * KV is written, copy-on-write copies that throw halfway, preemption by recompute or swap, and
     * resumes (a record already resumed is resumed again on purpose).
     *
     * @param maxPriority bounds the priorities sequences are opened with
     * @return single steps
     */
    public static Arbitrary<Op> faultOp(int maxPriority) {
        Arbitrary<Op> aborted = Combinators.combine(pick(), Arbitraries.oneOf(fewTokens(), prompt()))
                .as(Op.AbortedAppend::new);
        Arbitrary<Op> failingCopy = Combinators.combine(pick(), Arbitraries.oneOf(singleToken(), fewTokens()))
                .as(Op.FailingCopyAppend::new);
        Arbitrary<Op> preempt = Combinators.combine(pick(), Arbitraries.of(true, false)).as(Op.Preempt::new);
        Arbitrary<Op> resume = Arbitraries.integers().between(0, 3).map(Op.Resume::new);
        Arbitrary<Op> forkThenWrite = pick().map(Op.Fork::new);
        return Arbitraries.frequencyOf(
                Tuple.of(12, op(maxPriority)),
                Tuple.of(2, aborted),
                Tuple.of(3, failingCopy),
                Tuple.of(2, forkThenWrite),
                Tuple.of(2, preempt),
                Tuple.of(3, resume));
    }

    /**
     * A workload of {@link #faultOp}s and requests (some committed right after their prompt).
     *
     * @param maxPriority bounds the priorities sequences are opened with
     * @param maxSteps    about how many steps at most
     * @return workloads
     */
    public static Arbitrary<List<Op>> faultWorkload(int maxPriority, int maxSteps) {
        return chunks(Arbitraries.frequencyOf(Tuple.of(3, faultOp(maxPriority).map(List::of)),
                Tuple.of(1, committedRequest(maxPriority))), maxSteps);
    }

    /**
     * A general workload of up to {@code maxSteps} steps: single {@link #op}s mixed with requests,
     * an open followed by a prompt (so that prompts often meet the prefix cache on a fresh
     * sequence, the only time it is looked up).
     *
     * @param maxPriority bounds the priorities sequences are opened with
     * @param maxSteps    about how many steps at most
     * @return workloads
     */
    public static Arbitrary<List<Op>> workload(int maxPriority, int maxSteps) {
        return chunks(Arbitraries.frequencyOf(Tuple.of(6, op(maxPriority).map(List::of)),
                Tuple.of(1, request(maxPriority)), Tuple.of(1, committedRequest(maxPriority))), maxSteps);
    }

    /**
     * A serving workload: mostly requests (open at a random priority, then a prompt), frees and
     * decode steps, so that prompts of different priorities share cached prefixes and the
     * priority policy has to choose among them.
     *
     * @param maxPriority bounds the priorities sequences are opened with
     * @param maxSteps    about how many steps at most
     * @return workloads
     */
    public static Arbitrary<List<Op>> servingWorkload(int maxPriority, int maxSteps) {
        return chunks(Arbitraries.frequencyOf(
                Tuple.of(2, request(maxPriority)),
                Tuple.of(2, committedRequest(maxPriority)),
                Tuple.of(4, Arbitraries.integers().between(0, 7).map(i -> List.<Op>of(new Op.Free(i)))),
                Tuple.of(2, Combinators.combine(pick(), singleToken()).as(Op.Append::new).map(List::<Op>of)),
                Tuple.of(1, pick().map(i -> List.<Op>of(new Op.Fork(i))))), maxSteps);
    }

    private static Arbitrary<List<Op>> request(int maxPriority) {
        return Combinators.combine(
                        Arbitraries.integers().between(0, maxPriority),
                        Arbitraries.frequency(Tuple.of(4, 0), Tuple.of(1, 1)),
                        prompt())
                .as((p, s, t) -> List.of(new Op.Open(p, s), new Op.Append(0, t)));
    }

    /** A request whose engine commits right after writing the prompt's KV (others publish at their next append). */
    private static Arbitrary<List<Op>> committedRequest(int maxPriority) {
        return request(maxPriority).map(ops -> {
            List<Op> out = new ArrayList<>(ops);
            out.add(new Op.Commit(0));
            return out;
        });
    }

    private static Arbitrary<List<Op>> chunks(Arbitrary<List<Op>> chunk, int maxSteps) {
        return chunk.list().ofMinSize(1).ofMaxSize(maxSteps * 3 / 4)
                // uniform lengths: the default bias towards short lists leaves the pool mostly idle
                .withSizeDistribution(RandomDistribution.uniform())
                .map(chunks -> {
                    List<Op> ops = new ArrayList<>();
                    chunks.forEach(ops::addAll);
                    return ops;
                });
    }

    /**
     * A long-decode workload for a sliding window: mostly single-token appends, some opens, forks
     * and frees, and no multi-token appends (which legitimately hold more than the window).
     *
     * @return single steps; {@code decodeOp().list()} makes a workload
     */
    public static Arbitrary<Op> decodeOp() {
        Arbitrary<Op> open = Arbitraries.just(new Op.Open(0, 0));
        Arbitrary<Op> appendOne = Combinators.combine(pick(), singleToken()).as(Op.Append::new);
        Arbitrary<Op> fork = pick().map(Op.Fork::new);
        Arbitrary<Op> free = pick().map(Op.Free::new);
        return Arbitraries.frequencyOf(
                Tuple.of(2, open),
                Tuple.of(30, appendOne),
                Tuple.of(1, fork),
                Tuple.of(1, free));
    }
}
