package dev.kvcache;

import java.util.List;
import java.util.Objects;

/**
 * Answers the capacity questions of a serving review from a {@link KvLayout}: how much KV a
 * sequence costs, how many sequences fit a budget at a context length, how long a context fits at
 * a concurrency, and what a mix of routes needs.
 *
 * <p>Every answer counts whole blocks, as the paged block manager allocates them: a sequence of
 * {@code t} tokens holds {@code ceil(t / blockTokens)} blocks. The arithmetic is exact
 * (no floating point); an answer that would not fit a {@code long} throws
 * {@link IllegalArgumentException} naming the input and the limit, never a wrapped number.
 */
public final class CapacityPlanner {

    private CapacityPlanner() {
    }

    /**
     * KV bytes of one sequence of {@code tokens} tokens, rounded up to whole blocks.
     *
     * @param l the layout
     * @param tokens the sequence's tokens
     * @return KV bytes of one sequence of {@code tokens} tokens, rounded up to whole blocks
     */
    public static long kvBytes(KvLayout l, long tokens) {
        Objects.requireNonNull(l, "layout");
        long blocks = l.blocksFor(tokens);
        if (blocks > Long.MAX_VALUE / l.bytesPerBlock()) {
            throw tooLarge("KV of " + tokens + " tokens", blocks, l.bytesPerBlock());
        }
        return blocks * l.bytesPerBlock();
    }

    /**
     * KV bytes of one sequence of {@code tokens} tokens kept under a sliding window of
     * {@code sinkTokens} attention sinks plus the last {@code windowTokens} tokens: blocks wholly
     * outside both are released, so at most the sink blocks, the window's blocks and one partial
     * block on each side stay.
     *
     * @param l the layout
     * @param tokens the sequence's tokens
     * @param sinkTokens leading tokens always kept (attention sinks)
     * @param windowTokens trailing tokens kept
     * @return KV bytes of one sequence of {@code tokens} tokens kept under a sliding window of {@code sinkTokens} attention sinks plus the last {@code windowTokens} tokens: blocks wholly outside both are released, so at most the sink blocks, the window's blocks and one partial block on each side stay
     */
    public static long kvBytesWithWindow(KvLayout l, long tokens, int sinkTokens, int windowTokens) {
        Objects.requireNonNull(l, "layout");
        checkNonNegative("tokens", tokens);
        checkNonNegative("sinkTokens", sinkTokens);
        if (windowTokens <= 0) {
            throw new IllegalArgumentException("windowTokens must be > 0, got " + windowTokens);
        }
        long full = l.blocksFor(tokens);
        long b = l.blockTokens();
        long sinkBlocks = (sinkTokens + b - 1) / b;
        // blocks touching [tokens - window, tokens), plus one for the block being filled
        long windowBlocks = (windowTokens + b - 1) / b + 1;
        long kept = Math.min(full, sinkBlocks + windowBlocks);
        if (kept > Long.MAX_VALUE / l.bytesPerBlock()) {
            throw tooLarge("KV of " + tokens + " tokens under a window", kept, l.bytesPerBlock());
        }
        return kept * l.bytesPerBlock();
    }

    /**
     * How many sequences of {@code contextTokens} tokens each, kept under a sliding window, fit {@code budgetBytes}.
     *
     * @param l the layout
     * @param budgetBytes the memory budget in bytes
     * @param contextTokens tokens per sequence
     * @param sinkTokens leading tokens always kept (attention sinks)
     * @param windowTokens trailing tokens kept
     * @return how many sequences of {@code contextTokens} tokens each, kept under a sliding window, fit {@code budgetBytes}
     */
    public static long maxSequencesWithWindow(KvLayout l, long budgetBytes, long contextTokens,
                                              int sinkTokens, int windowTokens) {
        checkNonNegative("budgetBytes", budgetBytes);
        if (contextTokens <= 0) {
            throw new IllegalArgumentException("contextTokens must be > 0, got " + contextTokens);
        }
        return budgetBytes / kvBytesWithWindow(l, contextTokens, sinkTokens, windowTokens);
    }

    /**
     * How many sequences of {@code contextTokens} tokens each fit {@code budgetBytes}.
     *
     * @param l the layout
     * @param budgetBytes the memory budget in bytes
     * @param contextTokens tokens per sequence
     * @return how many sequences of {@code contextTokens} tokens each fit {@code budgetBytes}
     */
    public static long maxSequences(KvLayout l, long budgetBytes, long contextTokens) {
        Objects.requireNonNull(l, "layout");
        checkNonNegative("budgetBytes", budgetBytes);
        if (contextTokens <= 0) {
            throw new IllegalArgumentException("contextTokens must be > 0, got " + contextTokens);
        }
        return budgetBytes / kvBytes(l, contextTokens);
    }

    /**
     * The longest context (whole blocks of tokens) each of {@code sequences} sequences can have within {@code budgetBytes}.
     *
     * @param l the layout
     * @param budgetBytes the memory budget in bytes
     * @param sequences concurrent sequences
     * @return the longest context (whole blocks of tokens) each of {@code sequences} sequences can have within {@code budgetBytes}
     */
    public static long maxContextTokens(KvLayout l, long budgetBytes, long sequences) {
        Objects.requireNonNull(l, "layout");
        checkNonNegative("budgetBytes", budgetBytes);
        if (sequences <= 0) {
            throw new IllegalArgumentException("sequences must be > 0, got " + sequences);
        }
        long blocksEach = budgetBytes / l.bytesPerBlock() / sequences;
        if (blocksEach > Long.MAX_VALUE / l.blockTokens()) {
            // only a custom format of under a byte per token gets here
            throw tooLarge("context of " + blocksEach + " blocks", blocksEach, l.blockTokens());
        }
        return blocksEach * l.blockTokens();
    }

    /**
     * How many whole blocks fit {@code budgetBytes}.
     *
     * @param l the layout
     * @param budgetBytes the memory budget in bytes
     * @return how many whole blocks fit {@code budgetBytes}
     */
    public static long blocksFor(KvLayout l, long budgetBytes) {
        Objects.requireNonNull(l, "layout");
        checkNonNegative("budgetBytes", budgetBytes);
        return budgetBytes / l.bytesPerBlock();
    }

    /**
     * KV bytes that {@code sessions} concurrent sessions of {@code activeTokens} live tokens each
     * would keep if every session preallocated a contiguous buffer for {@code maxTokens} tokens,
     * as engines without paging do; the baseline that paging relieves.
     *
     * @param l the layout
     * @param sessions concurrent sessions
     * @param maxTokens the context each session preallocates
     * @return KV bytes that {@code sessions} concurrent sessions of {@code activeTokens} live tokens each would keep if every session preallocated a contiguous buffer for {@code maxTokens} tokens, as engines without paging do; the baseline that paging relieves
     */
    public static long contiguousBytes(KvLayout l, long sessions, long maxTokens) {
        Objects.requireNonNull(l, "layout");
        checkNonNegative("sessions", sessions);
        checkNonNegative("maxTokens", maxTokens);
        long perSession;
        long total;
        try {
            perSession = Math.multiplyExact(maxTokens, l.bytesPerToken());
            total = Math.multiplyExact(sessions, perSession);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("contiguous KV of " + sessions + " sessions x " + maxTokens
                    + " tokens x " + l.bytesPerToken() + " bytes exceeds " + Long.MAX_VALUE + " (Long.MAX_VALUE)");
        }
        return total;
    }

    /**
     * One traffic class of a serving review: {@code sessions} concurrent sessions of
     * {@code activeTokens} live tokens each.
     *
     * @param name         the route's name, for reports
     * @param sessions     concurrent sessions, >= 0
     * @param activeTokens live tokens per session, >= 0
     */
    public record Route(String name, long sessions, long activeTokens) {
        /** Checks that the name is present and the counts are not negative. */
        public Route {
            Objects.requireNonNull(name, "name");
            checkNonNegative("sessions", sessions);
            checkNonNegative("activeTokens", activeTokens);
        }

        /**
         * KV bytes this route keeps live under layout {@code l}.
         *
         * @param l the layout
         * @return KV bytes this route keeps live under layout {@code l}
         */
        public long kvBytes(KvLayout l) {
            long each = CapacityPlanner.kvBytes(l, activeTokens);
            if (each != 0 && sessions > Long.MAX_VALUE / each) {
                throw tooLarge("route '" + name + "': KV of " + sessions + " sessions of " + activeTokens
                        + " tokens", sessions, each);
            }
            return sessions * each;
        }
    }

    /**
     * KV bytes that a mix of routes keeps live at once.
     *
     * @param l the layout
     * @param routes the routes
     * @return KV bytes that a mix of routes keeps live at once
     */
    public static long kvBytes(KvLayout l, List<Route> routes) {
        Objects.requireNonNull(l, "layout");
        long sum = 0;
        for (Route r : routes) {
            long b = r.kvBytes(l);
            if (sum > Long.MAX_VALUE - b) {
                throw new IllegalArgumentException("KV of all routes exceeds " + Long.MAX_VALUE
                        + " bytes (Long.MAX_VALUE) at route '" + r.name() + "'");
            }
            sum += b;
        }
        return sum;
    }

    private static IllegalArgumentException tooLarge(String what, long a, long b) {
        return new IllegalArgumentException(what + " = " + a + " x " + b + " exceeds " + Long.MAX_VALUE
                + " (Long.MAX_VALUE)");
    }

    private static void checkNonNegative(String what, long value) {
        if (value < 0) {
            throw new IllegalArgumentException(what + " must be >= 0, got " + value);
        }
    }
}
