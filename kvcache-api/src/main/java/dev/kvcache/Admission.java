package dev.kvcache;

/**
 * Admission rules: blocks set aside for guaranteed sequences ({@link SequenceOptions#maxTokens()})
 * and the watermark kept free for running decodes.
 *
 * <h2>Invariants</h2>
 * {@link #outstanding()} is the sum over live sequences of {@code max(0, reserve - held)}: blocks a
 * guaranteed sequence may still take and nobody else may. A sequence's reserve is fixed at its
 * first append ({@code ceil(maxTokens / B)}), so once admitted it can never be refused for want of
 * blocks. Overflow-free: maxTokens is bounded by the pool's slots at open.
 */
final class Admission {

    private final int watermarkBlocks;
    private final boolean requireMaxTokens;
    private final Counters counters;
    private final Notifications notes;
    private int outstanding;

    Admission(int totalBlocks, double watermark, boolean requireMaxTokens, Counters counters, Notifications notes) {
        this.watermarkBlocks = (int) Math.ceil(watermark * totalBlocks);
        this.requireMaxTokens = requireMaxTokens;
        this.counters = counters;
        this.notes = notes;
    }

    /**
     * Records that an append (or resume) of {@code tokens} tokens to {@code q} was refused for
     * {@code why}: the counters, {@link KvCacheManager#lastRefusal()} and an event. Returns -1.
     */
    int refuse(PagedSequence q, int tokens, Refusal why, int freeBlocks) {
        switch (why) {
            case TENANT_QUOTA -> {
                q.tenant.refusals++;
                counters.quotaRefusals++;
            }
            case RESERVED -> counters.reservationRefusals++;
            case WATERMARK -> counters.watermarkRefusals++;
            default -> {
            }
        }
        counters.allocationFailures++;
        counters.lastRefusal = why;
        if (notes.listening()) {
            notes.event(new KvCacheEvent.AppendRefused(q.id, q.tenant.name, why, tokens, freeBlocks));
        }
        return -1;
    }

    int watermarkBlocks() {
        return watermarkBlocks;
    }

    boolean requireMaxTokens() {
        return requireMaxTokens;
    }

    /** Blocks set aside for guaranteed sequences and not yet taken by them. */
    int outstanding() {
        return outstanding;
    }

    /** The reserve {@code q}'s append sets: its whole maxTokens at its first append, else unchanged. */
    int reserveAfterAppend(PagedSequence q, int blockTokens) {
        if (q.length == 0 && q.options.maxTokens() > 0 && !q.forked) {
            return (int) (((long) q.options.maxTokens() + blockTokens - 1) / blockTokens);
        }
        return q.reserve;
    }

    /** Keeps {@link #outstanding()} equal to the sum of the live sequences' outstanding reservations. */
    void update(PagedSequence q) {
        int out = q.live ? Math.max(0, q.reserve - q.held) : 0;
        outstanding += out - q.outstanding;
        q.outstanding = out;
    }
}
