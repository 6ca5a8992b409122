/**
 * The {@code kvcache} command line: capacity planning ({@code plan}), a workload replay through
 * the real block manager ({@code simulate}), the JMH launcher ({@code bench}) and the llama2.c
 * reference engine ({@code generate}, from {@code dev.kvcache.llama2}). Also a JFR bridge that
 * makes a running manager's ledger observable.
 */
module dev.kvcache.cli {
    requires transitive dev.kvcache; // JfrLedgerBridge's signatures use its types
    requires dev.kvcache.llama2;
    requires info.picocli;
    requires jdk.jfr;

    exports dev.kvcache.cli;
    // picocli reads and writes the annotated fields of the commands reflectively
    opens dev.kvcache.cli to info.picocli;
}
