package dev.kvcache.cli;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What one {@link Scheduler} step did, to be priced and stamped after it: the requests that
 * decoded (with their tokens and the KV they read), the prefills (with their FLOPs), the requests
 * that reached their length, and the host-link bytes moved. {@link #seconds} prices the step with
 * the {@link StepTimeModel}; {@link #stamp} turns it into first tokens, inter-token gaps and SLO
 * outcomes on the routes' ledgers.
 */
final class StepWork {
    private final Simulator.Settings settings;
    private final StepTimeModel time;
    private final List<Request> decoded = new ArrayList<>();
    private final List<Integer> decodedTokens = new ArrayList<>();
    private final List<Request> admitted = new ArrayList<>();
    private final List<Double> admittedFlops = new ArrayList<>();
    private final List<Request> finished = new ArrayList<>();
    private long kvBytes;
    private long contextTokens;
    private long prefillTokens;
    private double prefillFlops;
    private long transferredBefore;
    private long networkBefore;
    double transferSeconds;   // over the run
    double recomputeSeconds;  // over the run

    StepWork(Simulator.Settings settings) {
        this.settings = settings;
        this.time = settings.time();
    }

    void begin(long transferred, long network) {
        networkBefore = network;
        decoded.clear();
        decodedTokens.clear();
        admitted.clear();
        admittedFlops.clear();
        finished.clear();
        kvBytes = 0;
        contextTokens = 0;
        prefillTokens = 0;
        prefillFlops = 0;
        transferredBefore = transferred;
    }

    /** {@code q} decoded {@code n} tokens reading {@code kv} bytes of KV over {@code context} tokens. */
    void decoded(Request q, int n, long kv, long context) {
        decoded.add(q);
        decodedTokens.add(n);
        kvBytes += kv;
        contextTokens += context;
    }

    /** {@code q} reached its length in this step. */
    void finished(Request q) {
        finished.add(q);
    }

    /** {@code q} was prefilled (or re-prefilled on a recompute resume) from {@code hits} to {@code target}. */
    void prefilled(Request q, int hits, int target, boolean recompute) {
        long computed = target - hits;
        double flops = time.prefillFlops(hits, computed);
        prefillFlops += flops;
        prefillTokens += computed;
        if (recompute) {
            recomputeSeconds += time.recomputeSeconds(hits, computed);
        }
        admitted.add(q);
        admittedFlops.add(flops);
    }

    /** A prefill rolled back after computing {@code computed} tokens from {@code hits}: the work still took time. */
    void wasted(int hits, long computed) {
        prefillFlops += time.prefillFlops(hits, computed);
        prefillTokens += computed;
    }

    /**
     * The step's simulated seconds: {@code decodeChunk} iterations (more when the prefills need
     * more {@code prefillChunk}-token iterations; a prefill alone takes only its own), each priced
     * with the step's prefill spread evenly over them, plus the host-link and network transfers the step made.
     */
    double seconds(long transferred, long network) {
        int batch = decoded.size();
        long prefillIters = (prefillTokens + settings.prefillChunk() - 1) / settings.prefillChunk();
        long iterations = batch > 0 ? Math.max(settings.decodeChunk(), prefillIters)
                : prefillTokens > 0 ? Math.max(1, prefillIters) : settings.decodeChunk();
        double perIteration = time.iterationSeconds(batch, kvBytes, contextTokens, prefillFlops / iterations);
        double transfer = settings.copySeconds(transferred - transferredBefore)
                + settings.networkSeconds(network - networkBefore);
        transferSeconds += transfer;
        return iterations * perIteration + transfer;
    }

    /**
     * First tokens (a prefill ends at its share of the step's prefill work, in admission order),
     * inter-token gaps (a decode chunk's tokens spread evenly since the request's last token, so a
     * preemption's stall lands in the next gap), and SLO outcomes of the requests that finished.
     */
    void stamp(double now, double seconds, List<RouteLedger> ledgers) {
        double end = now + seconds;
        double total = 0;
        for (double f : admittedFlops) {
            total += f;
        }
        double cum = 0;
        for (int i = 0; i < admitted.size(); i++) {
            Request q = admitted.get(i);
            cum += admittedFlops.get(i);
            double at = now + seconds * (total > 0 ? cum / total : (i + 1.0) / admitted.size());
            if (Double.isNaN(q.firstToken)) {
                q.firstToken = at;
                q.lastToken = at;
                ledgers.get(q.route).ttft.add(at - q.arrival);
            }
        }
        // requests that decoded in the last step too share their gap: one weighted sample per
        // (route, gap), so the samples grow with the distinct gaps, not with requests x steps
        List<Map<Double, Long>> gaps = new ArrayList<>(ledgers.size());
        for (int r = 0; r < ledgers.size(); r++) {
            gaps.add(new HashMap<>());
        }
        for (int i = 0; i < decoded.size(); i++) {
            Request q = decoded.get(i);
            int n = decodedTokens.get(i);
            gaps.get(q.route).merge((end - q.lastToken) / n, (long) n, Long::sum);
            ledgers.get(q.route).generatedTokens += n;
            q.lastToken = end;
        }
        for (int r = 0; r < ledgers.size(); r++) {
            Samples itl = ledgers.get(r).itl;
            gaps.get(r).forEach(itl::add);
        }
        for (Request q : finished) {
            RouteLedger rl = ledgers.get(q.route);
            double meanItl = (end - q.firstToken) / Math.max(1, q.decodeTokens);
            rl.sloDecided++;
            if (q.firstToken - q.arrival <= q.spec.ttftSlo() && meanItl <= q.spec.itlSlo()) {
                rl.sloMet++;
            }
        }
    }
}
