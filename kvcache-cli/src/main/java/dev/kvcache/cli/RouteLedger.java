package dev.kvcache.cli;

/**
 * One route's ledger under one configuration: memory, events, and the user-visible outcome in
 * simulated seconds (queue wait, time to first token, inter-token latency, SLO attainment).
 */
final class RouteLedger {
    final Workload.Route route;
    long admissions;
    long completions;
    long allocationFailures;
    long preemptions;
    long swaps;              // preemptions by SWAP
    long recomputedTokens;
    long prefixHitTokens;
    long evictedBlocks;
    long requestSteps;        // running requests summed over steps
    long tokenSteps;          // their tokens summed over steps
    long heldByteSteps;       // route memory summed over steps
    long peakHeldBytes;
    int peakRunning;
    int waitingAtEnd;
    int runningAtEnd;
    long idleHeldBytesEnd;
    long idleHeldByteSteps;
    long idleReleased;
    long idleReleasedBytes;
    long rolledBackTokens;
    long arrivals;
    long truncated;           // requests cut to the max model length
    long refused;             // requests over the max model length, refused
    long dropped;             // Poisson arrivals over the route's outstanding cap
    long generatedTokens;
    long tokensLost;          // tokens a trimming lever took from attention (window, idle release)
    long sloMet;              // finished within both SLOs
    long sloDecided;          // finished, or already past the TTFT SLO
    final Samples queueWait = new Samples();
    final Samples ttft = new Samples();
    final Samples itl = new Samples();

    RouteLedger(Workload.Route route) {
        this.route = route;
    }

    double avgActiveTokens() {
        return requestSteps == 0 ? 0 : (double) tokenSteps / requestSteps;
    }

    long avgHeldBytes(int steps) {
        return heldByteSteps / steps;
    }

    /** Share of decided requests that met both SLOs; NaN when none is decided. */
    double sloAttainment() {
        return sloDecided == 0 ? Double.NaN : (double) sloMet / sloDecided;
    }
}
