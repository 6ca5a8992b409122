package dev.kvcache.offheap;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.TierEntry;

/**
 * The checks of a tier of one layout ({@link HostTier}, {@link DiskTier}): its budget at
 * creation (at least one block, at most the tier's limit of blocks), and before it moves a block
 * the wiring: an entry or store of another layout is a bug of the caller, never data, and is
 * an IllegalArgumentException naming both layouts; a store that cannot say its layout (closed,
 * broken) is a refused call, which the tier counts. The wiring checks run under the tier's lock;
 * none of the checks changes anything.
 */
final class TierChecks {

    private TierChecks() {
    }

    /**
     * Throws IllegalArgumentException naming the budget when it holds less than one block.
     *
     * @param tier the tier's kind in the message ("host", "disk")
     */
    static void oneBlock(String tier, KvLayout layout, long budgetBytes) {
        long per = layout.bytesPerBlock();
        if (budgetBytes < per) {
            throw new IllegalArgumentException(tier + " tier budget " + budgetBytes + " bytes holds less than one block of "
                    + layout + " (" + per + " bytes)");
        }
    }

    /**
     * The whole blocks of {@code layout} a budget of at least one block holds; IllegalArgumentException
     * naming the budget and {@code limit} when they are more than {@code limit}.
     *
     * @param tier the tier's kind in the message ("host", "disk")
     */
    static long blocks(String tier, KvLayout layout, long budgetBytes, long limit) {
        long per = layout.bytesPerBlock();
        long blocks = budgetBytes / per;
        if (blocks > limit) {
            throw new IllegalArgumentException(tier + " tier budget " + budgetBytes + " bytes is " + blocks
                    + " blocks of " + per + " bytes; the limit is " + limit + " blocks");
        }
        return blocks;
    }

    /** Throws unless {@code entry} was made for the layout of {@code fingerprint}. */
    static void entryLayout(TierEntry entry, long fingerprint, KvLayout layout) {
        if (entry.layoutFingerprint() != fingerprint) {
            throw new IllegalArgumentException("entry's layout fingerprint " + Long.toHexString(entry.layoutFingerprint())
                    + " is not this tier's " + Long.toHexString(fingerprint) + " (" + layout + ")");
        }
    }

    /**
     * Whether {@code store} answered its layout: false when {@code store.layout()} threw (the
     * caller refuses the call and counts it).
     *
     * @throws IllegalArgumentException the store's layout is not {@code layout}
     */
    static boolean storeLayout(KvStore store, KvLayout layout) {
        KvLayout sl;
        try {
            sl = store.layout();
        } catch (RuntimeException e) {
            return false;
        }
        if (!layout.equals(sl)) {
            throw new IllegalArgumentException("store's layout " + sl + " is not this tier's " + layout);
        }
        return true;
    }
}
