package dev.kvcache.testkit;

import dev.kvcache.KvCacheEvent;
import dev.kvcache.KvCacheListener;
import dev.kvcache.KvCacheManager;
import dev.kvcache.PreemptedSequence;
import dev.kvcache.Sequence;
import dev.kvcache.testkit.ManagerModel.Checks;
import dev.kvcache.testkit.ManagerModel.Config;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

/**
 * The state a {@link ManagerModel} run keeps beside the manager, and the helpers every step and
 * check uses: the live sequences as the model knows them, the preemption records, the mirror of
 * the published blocks (fed only by {@link KvCacheEvent}s), the reuse queue with each cached
 * block's priority, and the ledger counters the manager's ledger must equal.
 *
 * <p>The model is split by concern into a chain of package-private classes, so that each reads
 * alone: this state, {@link ModelChecks} (the invariants after every step), {@link ModelAppend}
 * (the append step, the one the contract says most about), {@link ModelSteps} (every other step)
 * and {@link ManagerModel} (configuration and runs). Only {@link ManagerModel} is API.
 */
abstract class ModelState implements KvCacheListener {

    static final class Seq {
        final Sequence s;
        final String id;
        final int priority;
        final long salt;
        final List<Integer> tokens;
        int lenBeforeLastAppend;
        int cachedTokens;
        /** Full blocks offered for publication (committed), the rest of the full ones are pending. */
        int committed;

        Seq(Sequence s, String id, int priority, long salt, List<Integer> tokens) {
            this.s = s;
            this.id = id;
            this.priority = priority;
            this.salt = salt;
            this.tokens = tokens;
        }
    }

    record Key(long parent, long salt, List<Integer> tokens) {
    }

    /** A published block; {@code parent} is the publication it was stored after (null: the root). */
    record Pub(int block, long hash, Key key, Pub parent, List<Integer> prefix) {
    }

    record Queued(int block, int priority) {
    }

    /** A preemption record the model keeps, with what the sequence was. */
    static final class Kept {
        final PreemptedSequence record;
        final Seq seq;
        final boolean swap;
        boolean resumed;

        Kept(PreemptedSequence record, Seq seq, boolean swap) {
            this.record = record;
            this.seq = seq;
            this.swap = swap;
        }
    }

    final Config c;
    final Checks checks;
    final ModelEngine engine;
    final KvCacheManager m;
    final int B;
    final int total;
    final List<Seq> live = new ArrayList<>();
    final List<Kept> kept = new ArrayList<>();
    int nextId;

    // mirror of the published blocks, fed by events
    final Map<Key, Pub> byKey = new HashMap<>();
    final Map<Integer, Pub> byBlock = new HashMap<>();
    final Map<Long, Pub> byHash = new HashMap<>();
    final List<Integer> removedThisOp = new ArrayList<>();
    final List<Pub> removedPubsThisOp = new ArrayList<>();
    final List<Pub> storedThisOp = new ArrayList<>();
    /** Stores and removals of this operation in event order. */
    final List<Logged> publicationLog = new ArrayList<>();

    record Logged(boolean stored, Pub pub) {
    }
    final List<KvCacheEvent.AppendRefused> refusedThisOp = new ArrayList<>();
    int eventsThisOp;
    long storedEvents;
    long injectedListenerThrows;

    // cached blocks in the order the policy must reuse them (before priority)
    final List<Queued> queue = new ArrayList<>();
    /** Highest priority among the holders of a held block since it was last free. */
    final int[] prio;

    // ledger model
    long forks;
    long copyOnWrites;
    long windowReleased;
    long appendedTokens;
    int peakUsed;
    int hitAppends;
    int failedAppends;
    int resets;
    int failedCopies;
    int doubleResumes;
    int aborts;
    boolean counting;

    String where = "initial state";
    boolean closed;

    ModelState(Config c, Checks checks) {
        this.c = c;
        this.checks = checks;
        this.engine = new ModelEngine(c.blockTokens(), c.blocks(), c.store(), c.blocks());
        KvCacheManager built;
        try {
            built = c.build(engine);
        } catch (RuntimeException | Error e) {
            engine.close();
            throw e;
        }
        this.m = built;
        this.B = c.blockTokens();
        this.total = c.blocks();
        this.prio = new int[total];
        m.addListener(this);
        if (c.faults()) {
            m.addListener(new KvCacheListener() {
                private int n;

                @Override
                public void onEvent(KvCacheEvent e) {
                    if (++n % 3 == 0) {
                        injectedListenerThrows++;
                        throw new IllegalStateException("injected listener failure on " + e);
                    }
                }
            });
        }
    }

    // ------------------------------------------------------------------ events

    /**
     * The model's own listener on its manager (it mirrors the published blocks from the events);
     * not for callers.
     *
     * @param e the manager's event
     */
    @Override
    public void onEvent(KvCacheEvent e) {
        if (e instanceof KvCacheEvent.AppendRefused r) {
            refusedThisOp.add(r);
            return;
        }
        if (e instanceof KvCacheEvent.SequencePreempted) {
            return;
        }
        eventsThisOp++;
        switch (e) {
            case KvCacheEvent.BlockStored s -> {
                storedEvents++;
                Key k = new Key(s.parentHash(), s.cacheSalt(), boxed(s.tokenIds()));
                check(s.tokenIds().length == B, () -> "stored block with " + s.tokenIds().length + " tokens: " + s);
                check(s.key() != null && s.hash() == s.key().hi(), () -> "stored without its key: " + s);
                check(!byKey.containsKey(k), () -> "content published twice: " + s + ", already " + byKey.get(k));
                check(!byBlock.containsKey(s.block()), () -> "block published twice: " + s);
                Pub parent = null;
                if (s.parentKey() != null) {
                    parent = byHash.get(s.parentHash());
                    check(parent != null, () -> "stored after a parent that is not published: " + s);
                } else {
                    check(s.parentHash() == KvCacheManager.ROOT_HASH, () -> "first block without ROOT_HASH: " + s);
                }
                List<Integer> prefix = new ArrayList<>(parent == null ? List.of() : parent.prefix());
                prefix.addAll(k.tokens());
                Pub p = new Pub(s.block(), s.hash(), k, parent, List.copyOf(prefix));
                byKey.put(k, p);
                byBlock.put(s.block(), p);
                byHash.put(s.hash(), p);
                storedThisOp.add(p);
                publicationLog.add(new Logged(true, p));
            }
            case KvCacheEvent.BlockRemoved r -> {
                Pub p = byBlock.remove(r.block());
                check(p != null && p.hash() == r.hash(), () -> "removed a block that was not published: " + r);
                byKey.remove(p.key());
                byHash.remove(p.hash());
                removedThisOp.add(r.block());
                removedPubsThisOp.add(p);
                publicationLog.add(new Logged(false, p));
            }
            case KvCacheEvent.AllBlocksCleared a -> {
                byKey.clear();
                byBlock.clear();
                byHash.clear();
            }
            default -> check(false, () -> "unexpected event " + e);
        }
    }

    // ------------------------------------------------------------------ helpers

    /** Block i lies wholly outside the sinks and the last {@code window} tokens of length {@code len}. */
    boolean released(int i, int len) {
        return (long) i * B >= c.sinks() && (long) (i + 1) * B <= (long) len - c.window();
    }

    /**
     * Published blocks matching {@code tokens} block by block from the root, at most {@code max},
     * each stored after the one matched before it (still the same publication).
     */
    List<Integer> mirrorChain(long salt, List<Integer> tokens, int max) {
        List<Integer> out = new ArrayList<>();
        Pub prev = null;
        for (int j = 0; j < max && (j + 1) * B <= tokens.size(); j++) {
            long parent = prev == null ? KvCacheManager.ROOT_HASH : prev.hash();
            Pub p = byKey.get(new Key(parent, salt, tokens.subList(j * B, (j + 1) * B)));
            if (p == null || p.parent() != prev) {
                break;
            }
            out.add(p.block());
            prev = p;
        }
        return out;
    }

    /** {@code pick} counts live sequences from the newest: 0 is the one opened or forked last. */
    int at(int pick) {
        return live.size() - 1 - pick % live.size();
    }

    int pollQueue() {
        if (queue.isEmpty()) {
            return -1;
        }
        int at = 0;
        if (c.priorityPolicy()) {
            for (int i = 1; i < queue.size(); i++) {
                if (queue.get(i).priority() < queue.get(at).priority()) {
                    at = i;
                }
            }
        }
        return queue.remove(at).block();
    }

    String policyName() {
        return c.priorityPolicy() ? "priority" : "lru";
    }

    /** After a step: a held block's priority is the highest of its holders since it was last free. */
    void updatePriorities() {
        int[] max = new int[total];
        Arrays.fill(max, -1);
        for (Seq q : live) {
            for (int b : q.s.blockTable()) {
                if (b >= 0) {
                    max[b] = Math.max(max[b], q.priority);
                }
            }
        }
        for (int b = 0; b < total; b++) {
            if (max[b] < 0) {
                prio[b] = -1; // free: the next holder starts afresh
            } else {
                prio[b] = Math.max(prio[b], max[b]);
            }
        }
    }

    int[] occurrences() {
        int[] occ = new int[total];
        for (Seq q : live) {
            for (int b : q.s.blockTable()) {
                if (b >= 0) {
                    occ[b]++;
                }
            }
        }
        return occ;
    }

    Map<String, int[]> tables() {
        Map<String, int[]> t = new HashMap<>();
        for (Seq q : live) {
            t.put(q.id, q.s.blockTable());
        }
        return t;
    }

    /**
     * What the KV at position {@code p} of a sequence with {@code salt} and {@code tokens} was
     * computed from: the salt (it stands for an adapter or a modality, so equal tokens under
     * another salt are other KV) and the tokens up to and including {@code p}.
     */
    static List<Integer> id(long salt, List<Integer> tokens, int p) {
        List<Integer> out = new ArrayList<>(p + 2);
        out.add((int) salt);
        out.addAll(tokens.subList(0, p + 1));
        return out;
    }

    static List<Integer> boxed(int[] a) {
        List<Integer> l = new ArrayList<>(a.length);
        for (int x : a) {
            l.add(x);
        }
        return List.copyOf(l);
    }

    static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /** The store under test holds at {@code slot} what the engine wrote there. */
    void checkStore(long slot, String what) {
        String wrong = engine.checkStore(slot);
        check(wrong == null, () -> what + ": " + wrong);
    }

    void check(boolean ok, Supplier<String> message) {
        if (!ok) {
            throw new AssertionError(where + ": " + message.get());
        }
    }

    void checkEviction(int evicted) {
        int expected = pollQueue();
        check(evicted == expected, () -> "evicted block " + evicted + " but the " + policyName()
                + " policy's next victim is " + expected + "; queue was " + queue);
    }

    /**
     * Blocks whose publication ended only so that fresh content could take their key: a removal
     * followed, in the same operation, by a store under the same key.
     */
    Set<Integer> staleReplacements() {
        return staleReplacements(null);
    }

    /** The manager replaces a stale entry right before it publishes under the same key: adjacent events. */
    Set<Integer> staleReplacements(Pub notThis) {
        Set<Integer> out = new HashSet<>();
        for (int i = 0; i + 1 < publicationLog.size(); i++) {
            Logged removed = publicationLog.get(i);
            Logged next = publicationLog.get(i + 1);
            if (!removed.stored() && removed.pub() != notThis && next.stored()
                    && next.pub().key().equals(removed.pub().key())) {
                out.add(removed.pub().block());
            }
        }
        return out;
    }

    void checkTablesUnchanged(Map<String, int[]> before, String what) {
        for (Seq o : live) {
            check(Arrays.equals(o.s.blockTable(), before.get(o.id)) && o.s.length() == o.tokens.size(),
                    () -> what + " changed " + o.id + ": " + Arrays.toString(before.get(o.id)) + " -> "
                            + Arrays.toString(o.s.blockTable()) + ", length " + o.s.length());
        }
    }
}
