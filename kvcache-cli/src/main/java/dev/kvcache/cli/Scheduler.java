package dev.kvcache.cli;

import dev.kvcache.KvCacheLedger;
import dev.kvcache.KvCacheManager;
import dev.kvcache.KvCacheStats;
import dev.kvcache.KvLayout;
import dev.kvcache.PreemptionMode;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The scheduler of {@code kvcache simulate}, the same for every configuration, one method per
 * phase of a step; see {@link Simulator} for the model. One step stands for {@code decodeChunk}
 * engine iterations: each running request decodes {@code decodeChunk} tokens in one append, and
 * the prompts admitted in the step are prefilled in {@code prefillChunk}-token appends that the
 * {@link StepTimeModel} mixes into those iterations (chunked prefill, as vLLM schedules it). The
 * step's simulated seconds come from the time model after the step ({@link #time}); first tokens,
 * inter-token gaps and completions are stamped then ({@link #stamp}).
 *
 * <p>Phases: {@link #reapIdle} (idle release by the manager's lease), {@link #arrive} (closed
 * sessions by step, Poisson arrivals by simulated time), {@link #decode} (oldest admission first;
 * a failed append preempts a victim, which waits at the head of its queue), {@link #admit} (first
 * come first served while the free blocks cover the prompt; with {@code longpool} one queue per
 * class, so a long prompt that does not fit never holds up a short one), {@link #time},
 * {@link #stamp} and {@link #record}.
 */
final class Scheduler {
    private final Simulator.Settings settings;
    private final SimConfig config;
    private final MemoryModel mem;
    private final KvCacheManager manager;
    private final List<Workload.Route> routes;
    private final Simulator.Observer observer;
    private final StepTimeModel time;
    private final KvLayout layout;

    private final List<RouteLedger> ledgers = new ArrayList<>();
    private final int[][] nextArrival;
    private final int[][] serials;
    private final double[] nextPoisson;
    private final SplittableRandom[] poissonRnd;
    private final int[] outstanding;
    private final Deque<Request> waiting = new ArrayDeque<>();
    private final Deque<Request> waitingLong = new ArrayDeque<>();
    private final List<Request> running = new ArrayList<>();
    private final Map<String, Request> runningById = new HashMap<>();
    private final int[] buf;
    private final List<List<Request>> byRoute = new ArrayList<>();

    private final long[] used;
    private final long[] cached;
    private final int[] runningCount;
    private final double[] stepSeconds;
    private double now;
    private long admitCounter;
    private long idleReleased;
    private long idleReleasedBytes;
    private double slotWasteSum;
    private final StepWork work;

    Scheduler(Simulator.Settings settings, SimConfig config, KvLayout layout, MemoryModel mem, KvCacheManager manager,
              List<Workload.Route> routes, Simulator.Observer observer) {
        this.settings = settings;
        this.config = config;
        this.layout = layout;
        this.mem = mem;
        this.manager = manager;
        this.routes = routes;
        this.observer = observer;
        this.time = settings.time();
        this.work = new StepWork(settings);
        int steps = settings.steps();
        int longest = settings.decodeChunk();
        nextArrival = new int[routes.size()][];
        serials = new int[routes.size()][];
        nextPoisson = new double[routes.size()];
        poissonRnd = new SplittableRandom[routes.size()];
        outstanding = new int[routes.size()];
        for (int ri = 0; ri < routes.size(); ri++) {
            Workload.Route r = routes.get(ri);
            ledgers.add(new RouteLedger(r));
            byRoute.add(new ArrayList<>());
            longest = Math.max(longest, Math.min(r.maxActiveTokens(), settings.maxModelLen()));
            if (r.poisson()) {
                nextArrival[ri] = new int[0];
                serials[ri] = new int[1];
                poissonRnd[ri] = new SplittableRandom(r.seed() * 0x632BE59BD9B4E019L + ri);
                nextPoisson[ri] = exponential(ri);
            } else {
                nextArrival[ri] = new int[r.sessions()];
                serials[ri] = new int[r.sessions()];
                for (int s = 0; s < r.sessions(); s++) {
                    nextArrival[ri][s] = (int) ((long) s * r.rampSteps() / r.sessions());
                }
            }
        }
        buf = new int[longest];
        used = new long[steps];
        cached = new long[steps];
        runningCount = new int[steps];
        stepSeconds = new double[steps];
    }

    private double exponential(int ri) {
        return -Math.log(1 - poissonRnd[ri].nextDouble()) / routes.get(ri).rate();
    }

    SimResult run(long t0, long[] clock) {
        for (int step = 0; step < settings.steps(); step++) {
            clock[0] = step * 1_000_000_000L; // the manager's clock counts steps (its idle leases)
            begin();
            if (mem instanceof MemoryModel.IdleReleasing idle && config.idleRelease()) {
                reapIdle(idle);
            }
            arrive(step);
            decode(step);
            admit(step);
            double seconds = time();
            stamp(seconds);
            record(step, seconds);
            observer.stepDone(config, step);
        }
        return end(t0);
    }

    private void begin() {
        work.begin(mem.transferredBytes(), mem.networkBytes());
    }

    /** (1) Idle release by the manager's lease; the client is gone, its session sends nothing more. */
    private void reapIdle(MemoryModel.IdleReleasing idle) {
        for (Map.Entry<Request, Long> e : idle.reapIdle(runningById)) {
            Request q = e.getKey();
            running.remove(q);
            runningById.remove(q.id());
            RouteLedger rl = ledgers.get(q.route);
            rl.idleReleased++;
            rl.idleReleasedBytes += e.getValue();
            rl.tokensLost += q.length;
            idleReleased++;
            idleReleasedBytes += e.getValue();
        }
    }

    /** (2) Arrivals: closed sessions whose next request is due at this step, Poisson arrivals up to now. */
    private void arrive(int step) {
        for (int ri = 0; ri < routes.size(); ri++) {
            Workload.Route r = routes.get(ri);
            if (r.poisson()) {
                while (nextPoisson[ri] <= now) {
                    double at = nextPoisson[ri];
                    nextPoisson[ri] += exponential(ri);
                    if (outstanding[ri] >= r.sessions()) {
                        ledgers.get(ri).dropped++;
                        continue;
                    }
                    enqueue(new Request(ri, 0, serials[ri][0]++, r, at, settings.maxModelLen()), step);
                }
                continue;
            }
            for (int s = 0; s < nextArrival[ri].length; s++) {
                if (nextArrival[ri][s] == step) {
                    nextArrival[ri][s] = -1;
                    enqueue(new Request(ri, s, serials[ri][s]++, r, now, settings.maxModelLen()), step);
                }
            }
        }
    }

    private void enqueue(Request q, int step) {
        RouteLedger rl = ledgers.get(q.route);
        rl.arrivals++;
        if (q.truncated) {
            if (!settings.truncate()) {
                // over the max model length: the engine refuses it, the client tries again later
                rl.refused++;
                sessionDone(q, step);
                return;
            }
            rl.truncated++;
        }
        if (config.longPool()) {
            q.tenant = settings.isLong(q.spec) ? "long" : "short";
        }
        outstanding[q.route]++;
        queueOf(q).addLast(q);
    }

    private Deque<Request> queueOf(Request q) {
        return config.longPool() && "long".equals(q.tenant) ? waitingLong : waiting;
    }

    private void sessionDone(Request q, int step) {
        if (!q.spec.poisson()) {
            nextArrival[q.route][q.session] = step + 1 + q.spec.thinkSteps();
        }
    }

    /** (3) Decode, oldest admission first; a failed append preempts a victim and is retried. */
    private void decode(int step) {
        for (Request q : new ArrayList<>(running)) {
            if (!q.live() || q.stalled()) {
                continue; // preempted earlier in this step, or a stream whose client went away
            }
            int n = Math.min(settings.decodeChunk(), q.activeTokens - q.length);
            long kv = mem.kvBytesRead(q);
            fill(q, q.length, n, buf);
            while (true) {
                long ev = mem.evictedBlocks();
                int rc = mem.append(q, buf, n);
                ledgers.get(q.route).evictedBlocks += mem.evictedBlocks() - ev;
                if (rc >= 0) {
                    q.length += n;
                    q.lastAppendStep = step;
                    work.decoded(q, n, kv, kv / layout.bytesPerToken());
                    break;
                }
                ledgers.get(q.route).allocationFailures++;
                if (!(mem instanceof MemoryModel.Preempting p)) {
                    throw new IllegalStateException(config.name() + ": an append failed in a memory model without preemption");
                }
                Request victim = p.victim(q, runningById);
                PreemptionMode mode = p.preempt(victim);
                running.remove(victim);
                runningById.remove(victim.id());
                queueOf(victim).addFirst(victim);
                RouteLedger vl = ledgers.get(victim.route);
                vl.preemptions++;
                if (mode == PreemptionMode.SWAP) {
                    vl.swaps++;
                }
                if (victim == q) {
                    break;
                }
            }
            if (q.live() && q.length >= q.activeTokens) {
                work.finished(q);
                if (!q.spec.idle()) {
                    if (q.seq != null && config.window()) {
                        ledgers.get(q.route).tokensLost += windowLost(q);
                    }
                    mem.release(q);
                    running.remove(q);
                    runningById.remove(q.id());
                    ledgers.get(q.route).completions++;
                    outstanding[q.route]--;
                    sessionDone(q, step);
                }
            }
        }
    }

    /** (4) Admission: per queue, first come first served, stopping at the first that does not fit. */
    private void admit(int step) {
        admitFrom(waiting, step);
        if (config.longPool()) {
            admitFrom(waitingLong, step);
        }
    }

    private void admitFrom(Deque<Request> queue, int step) {
        while (!queue.isEmpty()) {
            Request q = queue.peekFirst();
            RouteLedger rl = ledgers.get(q.route);
            int target = q.preempted != null ? q.length : q.promptTokens();
            if (!mem.canAdmit(q, target)) {
                return;
            }
            if (q.preempted != null) {
                int hits = ((MemoryModel.Preempting) mem).resume(q);
                if (hits < 0) {
                    rl.allocationFailures++;
                    return;
                }
                queue.pollFirst();
                rl.prefixHitTokens += Math.min(hits, target);
                rl.recomputedTokens += target - Math.min(hits, target);
                prefill(q, Math.min(hits, target), target, true);
                start(q, step, rl);
                continue;
            }
            if (!mem.open(q)) {
                rl.allocationFailures++;
                return;
            }
            int hits = 0;
            boolean ok = true;
            long ev = mem.evictedBlocks();
            int from = 0;
            for (; from < target; from += settings.prefillChunk()) {
                int n = Math.min(settings.prefillChunk(), target - from);
                fill(q, from, n, buf);
                int rc = mem.append(q, buf, n);
                if (rc < 0) {
                    ok = false;
                    break;
                }
                hits += rc;
            }
            rl.evictedBlocks += mem.evictedBlocks() - ev;
            if (!ok) {
                // the check above was optimistic (a hit block it counted was evicted, or a window
                // released less than planned): roll back; the prefilled work is lost to this request
                // but was computed all the same (free publishes the chunks computed before the
                // refused one; the refused append changed nothing)
                rl.allocationFailures++;
                rl.rolledBackTokens += q.seq != null ? q.seq.length() : 0;
                work.wasted(hits, Math.max(0, from - hits));
                mem.release(q);
                return;
            }
            // the prompt's KV is computed now: its full blocks may serve the next requests
            mem.commit(q);
            queue.pollFirst();
            rl.prefixHitTokens += hits;
            rl.queueWait.add(now - q.arrival);
            prefill(q, hits, target, false);
            q.length = target;
            start(q, step, rl);
        }
    }

    private void prefill(Request q, int hits, int target, boolean recompute) {
        work.prefilled(q, hits, target, recompute);
    }

    private void start(Request q, int step, RouteLedger rl) {
        q.lastAppendStep = step;
        q.admitOrder = admitCounter++;
        running.add(q);
        runningById.put(q.id(), q);
        rl.admissions++;
    }

    /** (5) The step's simulated seconds ({@link StepWork#seconds}). */
    private double time() {
        return work.seconds(mem.transferredBytes(), mem.networkBytes());
    }

    /** (6) First tokens, inter-token gaps and completions ({@link StepWork#stamp}). */
    private void stamp(double seconds) {
        work.stamp(now, seconds, ledgers);
    }

    /** (7) Memory and occupancy per route. */
    private void record(int step, double seconds) {
        used[step] = mem.usedBytes();
        cached[step] = mem.cachedBytes();
        runningCount[step] = running.size();
        stepSeconds[step] = seconds;
        now += seconds;
        for (List<Request> l : byRoute) {
            l.clear();
        }
        for (Request q : running) {
            byRoute.get(q.route).add(q);
        }
        for (int ri = 0; ri < routes.size(); ri++) {
            RouteLedger rl = ledgers.get(ri);
            List<Request> rs = byRoute.get(ri);
            rl.peakRunning = Math.max(rl.peakRunning, rs.size());
            rl.requestSteps += rs.size();
            for (Request q : rs) {
                rl.tokenSteps += q.length;
            }
            long held = mem.heldBytes(rs);
            rl.heldByteSteps += held;
            rl.peakHeldBytes = Math.max(rl.peakHeldBytes, held);
        }
        long[] idleHeld = mem.idleHeld(running, step, settings.idleDeadlineSteps(), routes.size());
        for (int ri = 0; ri < routes.size(); ri++) {
            RouteLedger rl = ledgers.get(ri);
            rl.idleHeldByteSteps += idleHeld[ri];
            if (step == settings.steps() - 1) {
                rl.idleHeldBytesEnd = idleHeld[ri];
            }
        }
        if (manager != null) {
            slotWasteSum += manager.ledger().slotWaste();
        }
    }

    private SimResult end(long t0) {
        for (Deque<Request> queue : List.of(waiting, waitingLong)) {
            for (Request q : queue) {
                RouteLedger rl = ledgers.get(q.route);
                rl.waitingAtEnd++;
                undecided(q, rl);
            }
        }
        for (Request q : running) {
            RouteLedger rl = ledgers.get(q.route);
            rl.runningAtEnd++;
            if (q.seq != null && config.window()) {
                rl.tokensLost += windowLost(q);
            }
            if (!q.stalled()) {
                undecided(q, rl);
            }
        }
        long allocationFailures;
        long evicted = 0;
        long hitTokens = 0;
        long windowReleased = 0;
        long cow = 0;
        KvCacheLedger finalLedger = null;
        if (manager != null) {
            finalLedger = manager.ledger();
            KvCacheStats st = finalLedger.stats();
            allocationFailures = st.allocationFailures();
            evicted = st.evictedBlocks();
            hitTokens = st.prefixHitTokens();
            windowReleased = finalLedger.windowReleasedBlocks();
            cow = finalLedger.copyOnWrites();
        } else {
            allocationFailures = ledgers.stream().mapToLong(r -> r.allocationFailures).sum();
        }
        return new SimResult(config, layout, mem.capacityBytes(), mem.totalBlocks(), ledgers, used, cached,
                runningCount, stepSeconds, allocationFailures, evicted, hitTokens, windowReleased, cow, idleReleased,
                idleReleasedBytes, slotWasteSum / settings.steps(), finalLedger, mem.transferredBytes() + mem.networkBytes(),
                work.transferSeconds, work.recomputeSeconds, System.nanoTime() - t0);
    }

    /** A request still out at the end counts against the SLO once it is already past its TTFT target. */
    private void undecided(Request q, RouteLedger rl) {
        double ttft = Double.isNaN(q.firstToken) ? now - q.arrival : q.firstToken - q.arrival;
        if (ttft > q.spec.ttftSlo()) {
            rl.sloDecided++;
        }
    }

    /** Tokens attention no longer sees: the blocks the window released (-1 in the table) and any dropped token. */
    private long windowLost(Request q) {
        long released = 0;
        for (int b : q.seq.blockTable()) {
            if (b < 0) {
                released++;
            }
        }
        return released * layout.blockTokens() + q.seq.droppedTokens();
    }

    private static void fill(Request q, int from, int n, int[] buf) {
        for (int i = 0; i < n; i++) {
            buf[i] = q.tokenAt(from + i);
        }
    }
}
