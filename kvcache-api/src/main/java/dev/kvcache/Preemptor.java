package dev.kvcache;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Preemption and its records: choosing victims, swapping blocks out and in, and making sure a
 * record resumes at most once.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>Every {@link PreemptedSequence} this manager hands out is <em>outstanding</em> (kept here
 *       by identity) until it is resumed or {@linkplain KvCacheManager#discard discarded}; only an
 *       outstanding record resumes. So a record never resumes twice (its swap handles may already
 *       hold another sequence's KV), and a record made up outside the manager never resumes.</li>
 *   <li>Swap-out is all or nothing: if the swap space refuses or throws on any block, the handles
 *       already taken are discarded and nothing changed.</li>
 *   <li>A record remembers how many of its blocks were committed (their KV written): a swapped
 *       sequence comes back with only those published.</li>
 *   <li>Per-id state is bounded: a sequence's preemption count lives in the sequence and in its
 *       outstanding records, and is gone once it is freed for good.</li>
 * </ul>
 */
final class Preemptor {

    /**
     * What the manager remembers of an outstanding record: its own copies of the tokens and swap
     * handles (a record's arrays can be changed by whoever holds it), its mode, its thrash count and
     * how many of its blocks were committed.
     */
    record Ticket(int[] tokens, long[] handles, PreemptionMode mode, int preemptions, int committedBlocks) {
    }

    private final Map<PreemptedSequence, Ticket> outstanding = new IdentityHashMap<>();
    private final SwapSpace swap;
    private final Counters counters;
    private final int thrashLimit;

    Preemptor(SwapSpace swap, Counters counters, int thrashLimit) {
        this.swap = swap;
        this.counters = counters;
        this.thrashLimit = thrashLimit;
    }

    SwapSpace swapSpace() {
        return swap;
    }

    /** Copies every held block of {@code q} out; null (and nothing kept) if the space refuses one. */
    long[] swapOut(PagedSequence q) {
        long[] handles = new long[q.tableSize];
        Arrays.fill(handles, -1L);
        for (int i = 0; i < q.tableSize; i++) {
            int b = q.table[i];
            if (b < 0) {
                continue;
            }
            long h;
            try {
                h = swap.swapOut(b);
            } catch (RuntimeException | Error e) {
                discardAll(handles);
                throw e;
            }
            if (h < 0) {
                discardAll(handles);
                return null;
            }
            handles[i] = h;
        }
        counters.swappedOutBytes += (long) q.held * swap.bytesPerBlock();
        return handles;
    }

    private void discardAll(long[] handles) {
        for (long h : handles) {
            if (h >= 0) {
                swap.discard(h);
            }
        }
    }

    /** A record of {@code q} as it is now, outstanding from here on. */
    PreemptedSequence issue(PagedSequence q, PreemptionMode mode, long[] handles, int preemptions) {
        int[] tokens = Arrays.copyOf(q.tokens, q.length);
        PreemptedSequence p = new PreemptedSequence(q.id, q.options, tokens.clone(), mode,
                handles == null ? null : handles.clone(), q.held);
        outstanding.put(p, new Ticket(tokens, handles, mode, preemptions, q.committedBlocks));
        return p;
    }

    /** The ticket of an outstanding record; IllegalStateException naming the record otherwise. */
    Ticket ticket(PreemptedSequence p) {
        Ticket t = outstanding.get(p);
        if (t == null) {
            throw new IllegalStateException("preempted sequence '" + p.id() + "' is not outstanding here: it was"
                    + " already resumed or discarded, or this manager did not issue it");
        }
        return t;
    }

    /** Retires an outstanding record (resumed, or given up). */
    void retire(PreemptedSequence p) {
        outstanding.remove(p);
    }

    /** Retires {@code p} and frees its swapped blocks. */
    void discard(PreemptedSequence p) {
        Ticket t = ticket(p);
        retire(p);
        if (t.handles() != null) {
            discardAll(t.handles());
        }
    }

    int outstandingRecords() {
        return outstanding.size();
    }

    /** The thrash count of {@code id}: of its live sequence, else the highest of its outstanding records. */
    int count(String id, PagedSequence live) {
        if (live != null) {
            return live.preemptions;
        }
        int n = 0;
        for (Map.Entry<PreemptedSequence, Ticket> e : outstanding.entrySet()) {
            if (e.getKey().id().equals(id)) {
                n = Math.max(n, e.getValue().preemptions());
            }
        }
        return n;
    }

    /**
     * Victims in the order to preempt them: tenants above their fair share first, then lowest
     * priority, then newest admitted; never {@code requester}, a guaranteed sequence or one
     * preempted {@code thrashLimit} times. Only blocks a victim holds alone count as freed.
     */
    List<Sequence> victims(Iterable<PagedSequence> live, int blocksNeeded, Sequence requester, BlockPool pool,
                           int fairShare) {
        List<PagedSequence> candidates = new ArrayList<>();
        for (PagedSequence q : live) {
            if (q != requester && q.reserve == 0 && q.preemptions < thrashLimit) {
                candidates.add(q);
            }
        }
        candidates.sort(Comparator
                .comparing((PagedSequence q) -> q.tenant.used <= fairShare)
                .thenComparingInt(q -> q.priority)
                .thenComparing(Comparator.comparingLong((PagedSequence q) -> q.admission).reversed()));
        List<Sequence> out = new ArrayList<>();
        int freed = 0;
        for (PagedSequence q : candidates) {
            if (freed >= blocksNeeded) {
                break;
            }
            out.add(q);
            for (int i = 0; i < q.tableSize; i++) {
                int b = q.table[i];
                if (b >= 0 && pool.refCount(b) == 1) {
                    freed++;
                }
            }
        }
        return out;
    }
}
