/**
 * A reference llama2.c engine whose KV cache lives in kvcache: the checkpoint loader, run.c's
 * forward pass as an oracle, the paged engine and the {@code generate} command.
 */
@SuppressWarnings("module") // the name ends in a digit (llama2) by the project's naming scheme
module dev.kvcache.llama2 {
    requires transitive dev.kvcache;
    requires dev.kvcache.offheap;
    requires info.picocli;

    exports dev.kvcache.llama2;
    opens dev.kvcache.llama2 to info.picocli;
}
