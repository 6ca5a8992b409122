package dev.kvcache.cli;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvLayout;

import java.util.Arrays;
import java.util.List;

/**
 * Everything one configuration produced: per-step series (memory, running requests, the step's
 * simulated seconds), per-route ledgers and the manager's final ledger (null for contiguous).
 */
record SimResult(SimConfig config, KvLayout layout, long poolBytes, int totalBlocks, List<RouteLedger> routes,
                 long[] usedBytes, long[] cachedBytes, int[] running, double[] stepSeconds,
                 long allocationFailures, long evictedBlocks, long prefixHitTokens, long windowReleasedBlocks,
                 long copyOnWrites, long idleReleased, long idleReleasedBytes, double avgSlotWaste,
                 KvCacheLedger finalLedger, long transferBytes, double transferSeconds,
                 double recomputeSeconds, long elapsedNanos) {

    long peakUsedBytes() {
        return Arrays.stream(usedBytes).max().orElse(0);
    }

    long minHeadroomBytes() {
        return poolBytes - peakUsedBytes();
    }

    int peakRunning() {
        return Arrays.stream(running).max().orElse(0);
    }

    long completions() {
        return routes.stream().mapToLong(r -> r.completions).sum();
    }

    long admissions() {
        return routes.stream().mapToLong(r -> r.admissions).sum();
    }

    long preemptions() {
        return routes.stream().mapToLong(r -> r.preemptions).sum();
    }

    long swaps() {
        return routes.stream().mapToLong(r -> r.swaps).sum();
    }

    long recomputedTokens() {
        return routes.stream().mapToLong(r -> r.recomputedTokens).sum();
    }

    long idleHeldBytesEnd() {
        return routes.stream().mapToLong(r -> r.idleHeldBytesEnd).sum();
    }

    int waitingAtEnd() {
        return routes.stream().mapToInt(r -> r.waitingAtEnd).sum();
    }

    long generatedTokens() {
        return routes.stream().mapToLong(r -> r.generatedTokens).sum();
    }

    /** Simulated seconds the replay covered. */
    double simulatedSeconds() {
        return Arrays.stream(stepSeconds).sum();
    }

    /** Simulated time at the end of each step. */
    double[] clock() {
        double[] t = new double[stepSeconds.length];
        double s = 0;
        for (int i = 0; i < t.length; i++) {
            s += stepSeconds[i];
            t[i] = s;
        }
        return t;
    }

    /** The ledger of the route named {@code name}. */
    RouteLedger route(String name) {
        return routes.stream().filter(r -> r.route.name().equals(name)).findFirst().orElseThrow();
    }
}
