package dev.kvcache.offheap;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.TierEntry;

/**
 * The wiring checks a tier of one layout ({@link HostTier}, {@link DiskTier}) makes before it
 * moves a block: an entry or store of another layout is a bug of the caller, never data, and is
 * an IllegalArgumentException naming both layouts; a store that cannot say its layout (closed,
 * broken) is a refused call, which the tier counts. Both run under the tier's lock and change
 * nothing.
 */
final class TierChecks {

    private TierChecks() {
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
