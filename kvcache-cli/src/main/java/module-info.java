/**
 * The {@code kvcache} command line: capacity planning ({@code plan}), a workload replay through
 * the real block manager ({@code simulate}), the JMH launcher ({@code bench}) and the llama2.c
 * reference engine ({@code generate}, from {@code dev.kvcache.llama2}).
 */
module dev.kvcache.cli {
    requires dev.kvcache;
    requires dev.kvcache.llama2;
    requires dev.kvcache.metrics;
    requires dev.kvcache.quant;
    requires dev.kvcache.offheap; // share: the demo's stores
    requires dev.kvcache.redis;   // share: the Redis tier
    requires info.picocli;
    requires jmh.core;                    // bench --*-report: JMH's Runner API
    requires com.fasterxml.jackson.jr.ob; // workload JSONL, --json, config.json
    requires com.fasterxml.jackson.core;
    requires org.knowm.xchart;            // simulate charts
    requires java.desktop;                // XChart draws with java.awt
    requires jdk.jfr; // simulate --jfr records to a file

    exports dev.kvcache.cli;
    // picocli reads and writes the annotated fields of the commands reflectively
    opens dev.kvcache.cli to info.picocli;
}
