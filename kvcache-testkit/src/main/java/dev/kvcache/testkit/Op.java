package dev.kvcache.testkit;

import java.util.List;

/**
 * One step of a random block-manager workload, as plain data so that jqwik can shrink a failing
 * run to a short, readable list. Sequences are named by {@code pick}, an index taken modulo the
 * number of live sequences and counted from the newest (0 is the sequence opened or forked last,
 * usually still empty), so any sub-list of a run is still a valid run and shrinking moves towards
 * the newest sequence; with no live sequence such a step does nothing.
 */
public sealed interface Op {

    /**
     * {@code open} a new sequence with this priority and cache salt.
     *
     * @param priority the sequence's priority ({@code SequenceOptions.withPriority})
     * @param salt     its cache salt ({@code SequenceOptions.withCacheSalt})
     */
    record Open(int priority, int salt) implements Op {
        @Override
        public String toString() {
            return "open(prio=" + priority + ", salt=" + salt + ")";
        }
    }

    /**
     * {@code append} these token ids to live sequence {@code pick}.
     *
     * @param pick   which live sequence, counted from the newest (modulo their number)
     * @param tokens the token ids (copied)
     */
    record Append(int pick, List<Integer> tokens) implements Op {
        /** Copies the token list. */
        public Append {
            tokens = List.copyOf(tokens);
        }

        @Override
        public String toString() {
            return "append(#" + pick + ", " + tokens + ")";
        }
    }

    /**
     * {@code append} token ids of which at least one is negative to live sequence {@code pick}:
     * must throw IllegalArgumentException naming the value and change nothing.
     *
     * @param pick   which live sequence, counted from the newest
     * @param tokens the token ids, at least one negative (copied)
     */
    record BadAppend(int pick, List<Integer> tokens) implements Op {
        /** Copies the token list. */
        public BadAppend {
            tokens = List.copyOf(tokens);
        }

        @Override
        public String toString() {
            return "badAppend(#" + pick + ", " + tokens + ")";
        }
    }

    /**
     * {@code fork} live sequence {@code pick}.
     *
     * @param pick which live sequence, counted from the newest
     */
    record Fork(int pick) implements Op {
        @Override
        public String toString() {
            return "fork(#" + pick + ")";
        }
    }

    /**
     * {@code free} live sequence {@code pick}.
     *
     * @param pick which live sequence, counted from the newest
     */
    record Free(int pick) implements Op {
        @Override
        public String toString() {
            return "free(#" + pick + ")";
        }
    }

    /** {@code resetPrefixCache()}. */
    record ResetPrefixCache() implements Op {
        @Override
        public String toString() {
            return "resetPrefixCache()";
        }
    }

    /**
     * {@code commit} live sequence {@code pick}: its KV is written, its pending blocks become hit-able.
     *
     * @param pick which live sequence, counted from the newest
     */
    record Commit(int pick) implements Op {
        @Override
        public String toString() {
            return "commit(#" + pick + ")";
        }
    }

    /**
     * {@code append} these tokens to {@code pick}, then the engine fails before writing their KV and
     * calls {@code abort}: nothing it did not write may ever be served.
     *
     * @param pick   which live sequence, counted from the newest
     * @param tokens the token ids (copied)
     */
    record AbortedAppend(int pick, List<Integer> tokens) implements Op {
        /** Copies the token list. */
        public AbortedAppend {
            tokens = List.copyOf(tokens);
        }

        @Override
        public String toString() {
            return "abortedAppend(#" + pick + ", " + tokens + ")";
        }
    }

    /**
     * {@code append} these tokens to {@code pick} while the block copier throws: if the append needs
     * a copy-on-write it must throw and change nothing (else it succeeds as usual).
     *
     * @param pick   which live sequence, counted from the newest
     * @param tokens the token ids (copied)
     */
    record FailingCopyAppend(int pick, List<Integer> tokens) implements Op {
        /** Copies the token list. */
        public FailingCopyAppend {
            tokens = List.copyOf(tokens);
        }

        @Override
        public String toString() {
            return "failingCopyAppend(#" + pick + ", " + tokens + ")";
        }
    }

    /**
     * {@code preempt} live sequence {@code pick} by recompute or swap; the record is kept.
     *
     * @param pick which live sequence, counted from the newest
     * @param swap SWAP (when the swap space has room) instead of RECOMPUTE
     */
    record Preempt(int pick, boolean swap) implements Op {
        @Override
        public String toString() {
            return "preempt(#" + pick + (swap ? ", SWAP)" : ", RECOMPUTE)");
        }
    }

    /**
     * {@code resume} kept record {@code pick} (counted from the newest); a record already resumed is
     * tried again on purpose: it must throw and change nothing.
     *
     * @param pick which kept record, counted from the newest
     */
    record Resume(int pick) implements Op {
        @Override
        public String toString() {
            return "resume(record #" + pick + ")";
        }
    }
}
