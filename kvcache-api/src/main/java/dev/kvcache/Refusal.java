package dev.kvcache;

/** Why the last append returned -1 ({@link KvCacheManager#lastRefusal()}). */
public enum Refusal {
    /** The last append succeeded. */
    NONE,
    /** Not enough empty or cached blocks. */
    NO_BLOCKS,
    /** The blocks exist but are set aside for sequences whose maximum length is guaranteed. */
    RESERVED,
    /** Admitting a new sequence would leave fewer free blocks than the watermark keeps for running decodes. */
    WATERMARK,
    /** The sequence's tenant would exceed its block quota. */
    TENANT_QUOTA
}
