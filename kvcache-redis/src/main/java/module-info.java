/**
 * A shared KV tier, KV events on the wire and a prefix-aware router over Redis, Valkey or Redis
 * Cluster, through Lettuce.
 */
module dev.kvcache.redis {
    requires transitive dev.kvcache;
    requires lettuce.core;

    exports dev.kvcache.redis;
}
