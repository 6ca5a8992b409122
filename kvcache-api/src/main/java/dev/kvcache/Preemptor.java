package dev.kvcache;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Preemption and its records: choosing victims, swapping blocks out and in, idle offload, and
 * making sure a record resumes at most once.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>Every {@link PreemptedSequence} this manager hands out is <em>outstanding</em> (kept here
 *       by identity, with the manager's own copies of its tokens and swap handles) until it is
 *       resumed or {@linkplain KvCacheManager#discard discarded}; only an outstanding record
 *       resumes. So a record never resumes twice (its swap handles may already hold another
 *       sequence's KV), a record made up or altered outside the manager never resumes what it
 *       claims, and a refused resume leaves the record outstanding.</li>
 *   <li>Swap-out is all or nothing: if the swap space refuses or throws on any block, the handles
 *       already taken are discarded and nothing changed. A swap-in that throws gives back every
 *       block it took and retires the record (its host copies are discarded; its tokens can still
 *       be prefilled again).</li>
 *   <li>A record remembers how many of its blocks were committed (their KV written): a swapped
 *       sequence comes back with only those published. Preemption itself publishes nothing
 *       pending: a scheduler may preempt before the engine wrote the last append's KV.</li>
 *   <li>Per-id state is bounded: a sequence's preemption count lives in the sequence and in its
 *       outstanding records, and is gone once it is freed for good.</li>
 * </ul>
 */
final class Preemptor {

    /** Appends through the manager (its refusal bookkeeping included); -1 when refused. */
    @FunctionalInterface
    interface Append {
        int append(PagedSequence q, int[] tokens, int off, int n);
    }

    /** What the manager keeps of an outstanding record. */
    record Ticket(int[] tokens, long[] handles, PreemptionMode mode, int preemptions, int committedBlocks) {
    }

    private final Map<PreemptedSequence, Ticket> outstanding = new IdentityHashMap<>();
    private final SwapSpace swap;
    private final Sequences sequences;
    private final BlockPool pool;
    private final Admission admission;
    private final Publisher publisher;
    private final Counters counters;
    private final Notifications notes;
    private final int thrashLimit;
    private final int blockTokens;

    Preemptor(SwapSpace swap, Sequences sequences, BlockPool pool, Admission admission, Publisher publisher,
              Counters counters, Notifications notes, int thrashLimit, int blockTokens) {
        this.swap = swap;
        this.sequences = sequences;
        this.pool = pool;
        this.admission = admission;
        this.publisher = publisher;
        this.counters = counters;
        this.notes = notes;
        this.thrashLimit = thrashLimit;
        this.blockTokens = blockTokens;
    }

    /** Takes {@code q} out of the cache: SWAP copies its blocks out first, all or nothing. */
    PreemptedSequence preempt(PagedSequence q, PreemptionMode mode) {
        long[] handles = null;
        if (mode == PreemptionMode.SWAP) {
            if (swap == null) {
                throw new IllegalStateException("SWAP preemption of '" + q.id + "' needs a swap space (Builder.swapSpace)");
            }
            if (swap.freeBlocks() < q.held) {
                throw new IllegalStateException("swap space has " + swap.freeBlocks()
                        + " free blocks; sequence '" + q.id + "' holds " + q.held);
            }
            handles = swapOut(q);
            if (handles == null) {
                throw new IllegalStateException("swap space refused a block of '" + q.id + "'");
            }
        }
        int released = q.held;
        PreemptedSequence p = issue(q, mode, handles, q.preemptions + 1);
        counters.preemptions++;
        q.tenant.preemptions++;
        sequences.release(q);
        if (notes.listening()) {
            notes.event(new KvCacheEvent.SequencePreempted(q.id, q.tenant.name, mode, q.length, released));
        }
        return p;
    }

    /**
     * An idle sequence's offload: its blocks copied to the swap space and a SWAP record issued, or
     * null (nothing kept) when the space lacks room, refuses or throws.
     */
    PreemptedSequence offload(PagedSequence q) {
        if (swap == null || swap.freeBlocks() < q.held) {
            return null;
        }
        long[] handles;
        try {
            handles = swapOut(q);
        } catch (RuntimeException e) {
            counters.swapFailures++;
            return null;
        }
        return handles == null ? null : issue(q, PreemptionMode.SWAP, handles, q.preemptions);
    }

    /** Brings an outstanding record back; null (record still outstanding) when it does not fit. */
    Sequence resume(PreemptedSequence p, Append append) {
        Ticket ticket = ticket(p);
        if (sequences.isLive(p.id())) {
            throw new IllegalArgumentException("sequence id '" + p.id() + "' is already live");
        }
        PagedSequence q = sequences.create(p.id(), p.options(), ticket.tokens().length);
        q.preemptions = ticket.preemptions();
        if (ticket.mode() == PreemptionMode.RECOMPUTE) {
            sequences.register(q);
            int[] tokens = ticket.tokens();
            int hits = tokens.length == 0 ? 0 : append.append(q, tokens, 0, tokens.length);
            if (hits < 0) {
                sequences.unregister(q);
                return null;
            }
            outstanding.remove(p);
            counters.recomputedTokens += tokens.length - hits;
            return q;
        }
        return resumeSwapped(q, p, ticket);
    }

    private Sequence resumeSwapped(PagedSequence q, PreemptedSequence p, Ticket ticket) {
        long[] handles = ticket.handles();
        int[] tokens = ticket.tokens();
        int need = 0;
        for (long h : handles) {
            if (h >= 0) {
                need++;
            }
        }
        TenantAccounts.Tenant t = q.tenant;
        if ((long) t.used + need > t.quota) {
            admission.refuse(q, tokens.length, Refusal.TENANT_QUOTA, pool.free());
            return null;
        }
        if (need > pool.free() - admission.outstanding()) {
            admission.refuse(q, tokens.length, need > pool.free() ? Refusal.NO_BLOCKS : Refusal.RESERVED, pool.free());
            return null;
        }
        q.ensureCapacity(tokens.length, handles.length);
        Arrays.fill(q.table, 0, handles.length, -1);
        int peak = pool.peakUsed();
        int i = 0;
        try {
            for (; i < handles.length; i++) {
                if (handles[i] >= 0) {
                    int b = pool.allocate(q);
                    q.table[i] = b;
                    swap.swapIn(handles[i], b);
                }
            }
        } catch (RuntimeException | Error e) {
            // the swap space failed: give back every block taken, drop the copies it still holds
            for (int j = 0; j <= i && j < handles.length; j++) {
                if (q.table[j] >= 0) {
                    pool.discardAllocated(q.table[j], q, peak);
                }
            }
            // the copies it did not reach, and the one it failed on (whether the failed call freed
            // it is the swap space's secret: a refused discard means it did)
            for (int j = i; j < handles.length; j++) {
                if (handles[j] >= 0) {
                    try {
                        swap.discard(handles[j]);
                    } catch (RuntimeException ignored) {
                        // already freed
                    }
                }
            }
            outstanding.remove(p);
            counters.swapFailures++;
            throw e;
        }
        outstanding.remove(p);
        System.arraycopy(tokens, 0, q.tokens, 0, tokens.length);
        q.length = tokens.length;
        q.tableSize = handles.length;
        q.admission = ++counters.admissions;
        for (i = 0; i < handles.length; i++) {
            if (handles[i] < 0) {
                if ((i + 1) * blockTokens <= q.length) {
                    q.windowReleasedTo = Math.max(q.windowReleasedTo, i + 1);
                }
            } else {
                q.held++;
            }
        }
        counters.swappedInBytes += (long) need * swap.bytesPerBlock();
        publisher.commit(q, ticket.committedBlocks());
        sequences.register(q);
        counters.liveTokens += q.length;
        t.liveTokens += q.length;
        counters.lastRefusal = Refusal.NONE;
        return q;
    }

    /** Retires {@code p} and frees its swapped blocks. */
    void discard(PreemptedSequence p) {
        Ticket t = ticket(p);
        outstanding.remove(p);
        if (t.handles() != null) {
            discardAll(t.handles());
        }
    }

    int outstandingRecords() {
        return outstanding.size();
    }

    /** The thrash count of {@code id}: of its live sequence, else the highest of its outstanding records. */
    int count(String id) {
        PagedSequence live = sequences.get(id);
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
    List<Sequence> victims(int blocksNeeded, Sequence requester, int fairShare) {
        List<PagedSequence> candidates = new ArrayList<>();
        for (PagedSequence q : sequences.all()) {
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

    /** Copies every held block of {@code q} out; null (and nothing kept) if the space refuses one. */
    private long[] swapOut(PagedSequence q) {
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
    private PreemptedSequence issue(PagedSequence q, PreemptionMode mode, long[] handles, int preemptions) {
        int[] tokens = Arrays.copyOf(q.tokens, q.length);
        PreemptedSequence p = new PreemptedSequence(q.id, q.options, tokens.clone(), mode,
                handles == null ? null : handles.clone(), q.held);
        outstanding.put(p, new Ticket(tokens, handles, mode, preemptions, q.committedBlocks));
        return p;
    }

    private Ticket ticket(PreemptedSequence p) {
        Ticket t = outstanding.get(p);
        if (t == null) {
            throw new IllegalStateException("preempted sequence '" + p.id() + "' is not outstanding here: it was"
                    + " already resumed or discarded, or this manager did not issue it");
        }
        return t;
    }
}
