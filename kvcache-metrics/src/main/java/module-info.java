/** The kvcache ledger as JDK Flight Recorder events and Micrometer meters. */
module dev.kvcache.metrics {
    requires transitive dev.kvcache;
    requires jdk.jfr;
    requires static micrometer.core;

    exports dev.kvcache.metrics;
}
