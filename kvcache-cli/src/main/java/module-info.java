/**
 * The {@code kvcache} command line: capacity planning ({@code plan}), a workload replay through the
 * real block manager ({@code simulate}), the JMH launcher ({@code bench}) and, when the llama2.c
 * reference engine is on the class path, {@code generate}. Also a JFR bridge that makes a running
 * manager's ledger observable.
 */
module dev.kvcache.cli {
    requires dev.kvcache;
    requires info.picocli;
    requires jdk.jfr;

    exports dev.kvcache.cli;
    // picocli reads and writes the annotated fields of the commands reflectively
    opens dev.kvcache.cli to info.picocli;
}
