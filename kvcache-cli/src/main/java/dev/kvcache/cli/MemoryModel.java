package dev.kvcache.cli;

import dev.kvcache.PreemptionMode;

import java.util.List;
import java.util.Map;

/**
 * Where a configuration's KV memory comes from, as the {@link Scheduler} sees it: the real block
 * manager ({@link PagedMemory}) or contiguous reservations ({@link ContiguousMemory}).
 *
 * <p>The interface is what every memory model can do; what only some can is a capability
 * interface the scheduler asks for with {@code instanceof} ({@link Preempting}, {@link IdleReleasing}),
 * as in Caffeine's simulator, so no model carries methods it cannot honour.
 */
interface MemoryModel {

    /** Starts holding memory for {@code r}; false if that is refused now (nothing changed). */
    boolean open(Request r);

    /** Appends tokens; -1 when memory ran out (nothing changed), else prefix-hit tokens. */
    int append(Request r, int[] tokens, int n);

    /**
     * Says that {@code r}'s KV is written for every token appended so far (the simulated engine
     * has computed it), so its full blocks may serve other requests now.
     */
    void commit(Request r);

    /** Gives back everything {@code r} holds. */
    void release(Request r);

    /** Whether admitting {@code r} with a prefill of {@code tokens} tokens should be tried now. */
    boolean canAdmit(Request r, int tokens);

    long usedBytes();

    long cachedBytes();

    long capacityBytes();

    int totalBlocks();

    /** Bytes held by these requests, each block counted once. */
    long heldBytes(List<Request> rs);

    /** Cached blocks evicted for reuse so far. */
    long evictedBlocks();

    /** KV bytes a decode step of {@code r} reads (what attention sees). */
    long kvBytesRead(Request r);

    /** Bytes held by running requests untouched for more than {@code deadline} steps, per route. */
    long[] idleHeld(List<Request> running, int step, int deadline, int routes);

    /** Bytes moved over the host link so far (swap and host-tier copies). */
    default long transferredBytes() {
        return 0;
    }

    /** Bytes moved over the network so far (shared-tier copies). */
    default long networkBytes() {
        return 0;
    }

    /** A memory model whose appends can fail, so running requests are preempted and resumed. */
    interface Preempting {
        /** The request to preempt so that {@code q}'s append can go on ({@code q} itself if it ranks lowest). */
        Request victim(Request q, Map<String, Request> running);

        /** Preempts {@code v}; says how (RECOMPUTE or SWAP). */
        PreemptionMode preempt(Request v);

        /** Brings a preempted request back; -1 when it does not fit now, else the tokens not to recompute. */
        int resume(Request q);
    }

    /** A memory model that releases requests idle past a lease. */
    interface IdleReleasing {
        /** Releases what idles past the lease; returns (request, bytes) pairs. */
        List<Map.Entry<Request, Long>> reapIdle(Map<String, Request> running);
    }
}
