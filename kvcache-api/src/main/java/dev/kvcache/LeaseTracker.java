package dev.kvcache;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.function.LongSupplier;

/**
 * Idle leases: which live sequences have gone untouched for longer than their lease.
 *
 * <h2>Invariants</h2>
 * A sequence's last touch is tracked when it has a lease (its own or the manager's default) or the
 * manager was given a clock; otherwise the decode path reads no clock at all. Reads only: releasing
 * is the manager's (it frees, offloads and counts).
 */
final class LeaseTracker {

    private final LongSupplier clock;
    private final boolean trackAll;
    private final long defaultLeaseNanos;
    private final long bytesPerBlock;

    LeaseTracker(LongSupplier clock, boolean trackAll, long defaultLeaseNanos, long bytesPerBlock) {
        this.clock = clock;
        this.trackAll = trackAll;
        this.defaultLeaseNanos = defaultLeaseNanos;
        this.bytesPerBlock = bytesPerBlock;
    }

    LongSupplier clock() {
        return clock;
    }

    /** Starts tracking {@code q} if its lease (or the manager's clock) asks for it. */
    void register(PagedSequence q) {
        q.tracksIdle = trackAll || q.options.leaseNanos() > 0;
        touch(q);
    }

    void touch(PagedSequence q) {
        if (q.tracksIdle) {
            q.lastTouch = clock.getAsLong();
        }
    }

    private long lease(PagedSequence q) {
        return q.options.leaseNanos() > 0 ? q.options.leaseNanos() : defaultLeaseNanos;
    }

    /** Sequences idle past their lease ({@code byLease}) or past {@code minIdle}, by id. */
    List<IdleRelease> idle(Iterable<PagedSequence> live, boolean byLease, long minIdle) {
        long now = clock.getAsLong();
        List<IdleRelease> out = new ArrayList<>();
        for (PagedSequence q : live) {
            if (!q.tracksIdle) {
                continue;
            }
            long idle = now - q.lastTouch;
            long limit = byLease ? lease(q) : minIdle;
            if ((!byLease || limit > 0) && idle > limit) {
                out.add(new IdleRelease(q.id, q.tenant.name, idle, q.length, q.held, q.held * bytesPerBlock));
            }
        }
        out.sort(Comparator.comparing(IdleRelease::id));
        return out;
    }

    /** Blocks held by sequences idle past their lease (0 for sequences without one). */
    int idleHeldBlocks(Iterable<PagedSequence> live) {
        long now = clock.getAsLong();
        int held = 0;
        for (PagedSequence q : live) {
            long lease = lease(q);
            if (q.tracksIdle && lease > 0 && now - q.lastTouch > lease) {
                held += q.held;
            }
        }
        return held;
    }
}
