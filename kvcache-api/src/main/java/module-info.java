/**
 * kvcache's contracts and the parts that need no native memory: layouts and formats, the
 * capacity planner, the paged block manager with prefix caching, and the policies.
 */
module dev.kvcache {
    requires org.agrona;

    exports dev.kvcache;
    exports dev.kvcache.policy;
    exports dev.kvcache.retention;
}
