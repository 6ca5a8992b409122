package dev.kvcache.cli;

import dev.kvcache.PreemptedSequence;
import dev.kvcache.Sequence;

/**
 * One request of one session, as the {@link Scheduler} tracks it; survives preemption (then
 * {@code seq} is null and it waits again). Its lengths are drawn once, from the route's seed and
 * the request's identity, so every configuration replays the same requests. Token ids are a
 * deterministic hash of (route, position) inside the shared prefix and of (route, session,
 * request, position) after it, so shared system prompts really are identical token runs and a
 * preempted request re-prefills exactly the tokens it had. Times are simulated seconds.
 */
final class Request {
    final int route;
    final int session;
    final int serial;
    final Workload.Route spec;
    final int activeTokens;
    final int decodeTokens;
    final boolean truncated;
    /** 0 (default tenant) or the longpool class: "short" / "long". */
    String tenant;
    int length;          // tokens it holds (running) or must re-prefill (waiting after preemption)
    PreemptedSequence preempted; // paged, while waiting after a preemption
    Sequence seq;        // paged
    boolean reserved;    // contiguous
    long admitOrder;
    int lastAppendStep;
    final double arrival;
    double firstToken = Double.NaN;
    double lastToken;
    int generated;       // tokens produced so far (the first one by the prefill)

    Request(int route, int session, int serial, Workload.Route spec, double arrival, int maxLen) {
        this.route = route;
        this.session = session;
        this.serial = serial;
        this.spec = spec;
        this.arrival = arrival;
        int[] s = spec.sample(session, serial);
        int active = s[0];
        int decode = s[1];
        boolean cut = active > maxLen;
        if (cut) {
            // truncate the prompt's tail (keeps the shared prefix) so the request fits the context
            int over = active - maxLen;
            int prompt = Math.max(spec.sharedPrefix() + 1, active - decode - over);
            active = Math.min(maxLen, prompt + decode);
            decode = Math.max(1, active - prompt);
        }
        this.activeTokens = active;
        this.decodeTokens = decode;
        this.truncated = cut;
    }

    int promptTokens() {
        return activeTokens - decodeTokens;
    }

    String id() {
        return route + "/" + session + "/" + serial;
    }

    int tokenAt(int pos) {
        long h = pos < spec.sharedPrefix()
                ? mix(0x5EED_0000_0000L + ((long) route << 32) + pos)
                : mix(mix(((long) route << 48) ^ ((long) session << 24) ^ serial) + pos);
        return (int) (h >>> 33);
    }

    boolean stalled() {
        return spec.idle() && length >= activeTokens;
    }

    boolean live() {
        return seq != null || reserved;
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 33)) * 0xFF51AFD7ED558CCDL;
        z = (z ^ (z >>> 33)) * 0xC4CEB9FE1A85EC53L;
        return z ^ (z >>> 33);
    }
}
