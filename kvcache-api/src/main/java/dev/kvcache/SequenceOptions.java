package dev.kvcache;

/**
 * How a sequence is opened. {@link #DEFAULT} is what {@link KvCacheManager#open(String)} uses.
 *
 * @param cacheSalt      mixed into every prefix hash of the sequence: sequences with different salts
 *                       never share cached blocks (isolates tenants, LoRA adapters, multimodal inputs)
 * @param priority       0 (lowest) to {@link #MAX_PRIORITY}; with {@link EvictionPolicy#priority()} the
 *                       cached blocks of lower priorities are reused first
 * @param expectedTokens a hint: capacity reserved up front for this many tokens so that appends up
 *                       to it allocate nothing on the heap (0 for none)
 */
public record SequenceOptions(long cacheSalt, int priority, int expectedTokens) {

    /** Highest priority value. */
    public static final int MAX_PRIORITY = 127;

    /** Salt 0, priority 0, no size hint. */
    public static final SequenceOptions DEFAULT = new SequenceOptions(0L, 0, 0);

    public SequenceOptions {
        if (priority < 0 || priority > MAX_PRIORITY) {
            throw new IllegalArgumentException("priority must be in 0.." + MAX_PRIORITY + ", got " + priority);
        }
        if (expectedTokens < 0) {
            throw new IllegalArgumentException("expectedTokens must be >= 0, got " + expectedTokens);
        }
    }

    public SequenceOptions withCacheSalt(long salt) {
        return new SequenceOptions(salt, priority, expectedTokens);
    }

    public SequenceOptions withPriority(int p) {
        return new SequenceOptions(cacheSalt, p, expectedTokens);
    }

    public SequenceOptions withExpectedTokens(int n) {
        return new SequenceOptions(cacheSalt, priority, n);
    }
}
