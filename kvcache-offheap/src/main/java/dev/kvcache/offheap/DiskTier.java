package dev.kvcache.offheap;

import dev.kvcache.KvLayout;
import dev.kvcache.KvStore;
import dev.kvcache.KvTier;
import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;
import dev.kvcache.TierStats;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * A {@link KvTier} on local disk (LMCache's disk tier): copies of published blocks, one file per
 * block in a directory the tier owns, under a byte budget, evicted least recently used first, and
 * kept across restarts: a new {@code DiskTier} over the same directory and layout serves the
 * blocks a previous one stored. Any {@link KvStore} that implements
 * {@link KvStore#exportBlock}/{@link KvStore#importBlock} can put blocks into it and load them back.
 *
 * <h2>Files</h2>
 * Block {@code key} is the file {@code <key.toHex()>.kvb} (32 lowercase hex digits, hi first). A
 * put writes {@code <key.toHex()>.kvb.tmp} and then renames it to the real name
 * ({@link StandardCopyOption#ATOMIC_MOVE}), so a crash of the process never leaves a half-written
 * file under the real name. Files are not forced to the device (no {@code fsync}: a demotion runs
 * under the manager's lock); after a power loss a file may be truncated or zero, which a load
 * detects and counts like any other corruption. The directory also holds {@code .lock}, locked
 * ({@link FileChannel#tryLock()}) while a tier is open on it: a second tier over the same
 * directory, in this process or another, is refused.
 * The names, the codec of the format below, a load's whole-file check and the scan at open are
 * {@link BlockFiles}; the hold on the directory is {@link DirectoryLock}.
 *
 * <h2>File format, version 1 (all integers big-endian)</h2>
 * <pre>
 *   offset        size  field
 *   0             4     magic 0x4B564231 ("KVB1" in ASCII)
 *   4             2     format version, 1
 *   6             2     flags: bit 0 = has a parent key, bit 1 = has a scope; other bits 0
 *   8             8     layout fingerprint ({@link TierEntry#fingerprint(KvLayout)})
 *   16            8     key hi
 *   24            8     key lo
 *   32            8     parent key hi (0 when there is none)
 *   40            8     parent key lo (0 when there is none)
 *   48            8     salt
 *   56            4     S, the scope's length in bytes (0 when there is none)
 *   60            S     scope, UTF-8
 *   60+S          4     T, the token count
 *   64+S          4*T   token ids
 *   64+S+4T       8     P, the payload length (= layout.bytesPerBlock())
 *   72+S+4T       P     payload: the store's encoded block exactly as exportBlock wrote it
 *   72+S+4T+P     4     CRC32C of bytes [0, 72+S+4T+P): header and payload
 * </pre>
 * The header ({@code H = 72+S+4T} bytes) is at most {@value #MAX_HEADER} bytes; a put of an entry
 * whose header would be longer is refused. A file is exactly {@code H + P + 4} bytes.
 *
 * <h2>Open: the restart</h2>
 * {@link #open(Path, KvLayout, long) open(dir, layout, budgetBytes)} creates the directory if
 * needed, takes its lock, deletes its own leftover temp files ({@code <32 hex>.kvb.tmp}, a put
 * that a crash interrupted) and reads the header of every {@code <32 hex>.kvb}: one with the right
 * magic, version, fingerprint and payload length, a well-formed header and the key its name says
 * is indexed, least recently used first by modification time (a load and a repeated put set a
 * file's time, so the order survives a restart). Everything else (files of another layout or
 * version, foreign files, directories) is left alone and counted in {@link #skippedFiles()}. The
 * payload is not read at open: a truncated or corrupted indexed file is found by its load. If the
 * indexed files exceed the budget, the least recently used are deleted (counted in evictions).
 *
 * <h2>Budget</h2>
 * {@code floor(budgetBytes / layout.bytesPerBlock())} blocks; the budget counts payload bytes
 * (what {@link TierStats#bytes()} reports): each file adds its header and checksum,
 * {@code 76 + S + 4T} bytes. A full tier deletes its least recently used file to make room.
 *
 * <h2>Put</h2>
 * A key already held with a matching entry is only touched (it counts as a put, writes nothing).
 * Otherwise the store exports the block into a heap buffer after the header (a store that throws:
 * refused, nothing evicted), the CRC32C is taken, room is made (an eviction is not undone if the
 * write then fails), and the file is written and renamed. An IO error is a refused put (also
 * counted in {@link #ioErrors()}), never an exception; the temp file is deleted. A key held with a
 * different entry is replaced.
 *
 * <h2>Load: a tier is trusted with nothing</h2>
 * {@link #load} compares the indexed entry with the expected one, then reads the whole file and
 * checks its length, magic, version, flags, fingerprint, payload length, CRC32C and the entry the
 * file itself holds ({@link TierEntry#matches}: key, parent key, salt, scope, token ids, layout
 * fingerprint). Any mismatch (a truncated, corrupted or replaced file) is a miss, counted in
 * {@code verificationMisses}, and the file is deleted. An IO error reading it (the file vanished,
 * a device error) is a miss counted in {@link #ioErrors()}; the file is dropped from the index
 * and deleted if it can be. Only then does the store import the payload. A store that throws on
 * import is a miss as well ({@link #failedLoads()}); the file stays. {@link #leadingHits} looks
 * the index up and refreshes the keys it finds in the in-memory LRU order, the first most recent
 * (the manager loads them right after, and the same append's allocations may first demote blocks
 * into this tier); it does not touch the files (the load sets their time).
 *
 * <h2>Threads</h2>
 * Every method takes one lock, file IO included, so a tier may be shared by several managers.
 * Stats are a consistent snapshot. The frame of each call (argument checks, the lock, the open
 * and layout checks, the events flushed once the lock is released) is {@link TierFrame}, shared
 * with {@link HostTier}.
 *
 * <h2>Stats</h2>
 * {@link #stats()}: blocks and payload bytes held, capacity in bytes
 * ({@code capacityBlocks * bytesPerBlock}), puts, refused puts, loads, verification misses,
 * evictions (at open and to make room), bytes moved (payload bytes in by puts and out by loads)
 * and copy nanos ({@link System#nanoTime()} around export, checksum and write, and around read,
 * checksum and import), kept in a {@link TierCounters} as {@link HostTier}'s are.
 *
 * <h2>Errors</h2>
 * A budget below one block: IllegalArgumentException naming it. A directory that cannot be
 * created or read: UncheckedIOException; one another tier holds: IllegalStateException. A store
 * or entry of another layout (wiring, not data): IllegalArgumentException. Every call but
 * {@link #name()}, {@link #stats()}, {@link #close()} and the getters above
 * ({@link #directory()}, {@link #layout()}, {@link #capacityBlocks()}, {@link #skippedFiles()},
 * {@link #ioErrors()}, {@link #failedLoads()}, {@link #fileOf}) after {@code close()}:
 * IllegalStateException. {@link #close()} releases the lock; the files stay.
 */
public final class DiskTier implements KvTier {

    /** "KVB1". */
    public static final int MAGIC = 0x4B564231;
    /** The file format version this class reads and writes. */
    public static final short VERSION = 1;
    /** The longest header a file may have, in bytes. */
    public static final int MAX_HEADER = 65536;
    /** File name suffix of a block. */
    public static final String SUFFIX = ".kvb";

    private final Path dir;
    private final KvLayout layout;
    private final long payloadBytes;
    private final int capacity;
    private final DirectoryLock dirLock;

    private final TierFrame frame;
    private final Object lock;
    /** Held blocks in LRU order (eldest first); get touches, containsKey does not. */
    private final LinkedHashMap<PrefixKey, TierEntry> index = new LinkedHashMap<>(16, 0.75f, true);
    private final BlockFiles files;

    private final long skippedFiles;
    private long ioErrors;
    private final TierCounters counters;
    private final TierEvents events;

    private DiskTier(Path dir, KvLayout layout, int capacity, DirectoryLock dirLock) {
        this.frame = new TierFrame("DiskTier", name(), layout, capacity, this::putHeld, this::loadHeld, this::removeHeld,
                this::leadingHitsHeld, index::size);
        this.lock = frame.lock;
        this.counters = frame.counters;
        this.events = frame.events;
        this.dir = dir;
        this.layout = layout;
        this.payloadBytes = layout.bytesPerBlock();
        this.capacity = capacity;
        this.dirLock = dirLock;
        this.files = new BlockFiles(dir, frame.fingerprint(), payloadBytes);
        BlockFiles.Scan found = files.scan();
        for (TierEntry e : found.entries()) {
            index.put(e.key(), e);
        }
        this.ioErrors = found.ioErrors();
        this.skippedFiles = found.skipped();
        while (index.size() > capacity) {
            evictEldest();
        }
    }

    /**
     * A disk tier over {@code dir} (created if missing) for blocks of {@code layout}, holding at
     * most {@code budgetBytes / layout.bytesPerBlock()} blocks; it indexes the blocks a previous
     * tier of the same layout left there.
     *
     * @param dir         the directory the tier owns while open; created with its parents if missing; not null
     * @param layout      the layout of the blocks it holds (files of another layout are skipped,
     *                    a store or entry of another layout is refused); not null
     * @param budgetBytes the most payload bytes it may hold, at least {@code layout.bytesPerBlock()};
     *                    file headers and checksums come on top
     * @return a new open tier indexing the valid blocks already in {@code dir} (least recently used
     *         ones beyond the budget deleted); the caller closes it to release the directory
     * @throws NullPointerException     if {@code dir} or {@code layout} is null
     * @throws IllegalArgumentException the budget holds less than one block, or more than 2^31-1
     *                                  blocks, or a block's payload is over 2 GiB
     * @throws IllegalStateException    another tier holds the directory
     * @throws UncheckedIOException     the directory cannot be created, locked or listed
     */
    public static DiskTier open(Path dir, KvLayout layout, long budgetBytes) {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(layout, "layout");
        TierChecks.oneBlock("disk", layout, budgetBytes);
        long per = layout.bytesPerBlock();
        if (per > Integer.MAX_VALUE - MAX_HEADER - 4) {
            throw new IllegalArgumentException("a block of " + layout + " is " + per + " bytes; a disk tier file holds at most "
                    + (Integer.MAX_VALUE - MAX_HEADER - 4));
        }
        long blocks = TierChecks.blocks("disk", layout, budgetBytes, Integer.MAX_VALUE);
        Path real;
        try {
            Files.createDirectories(dir);
            real = dir.toRealPath();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create disk tier directory " + dir, e);
        }
        DirectoryLock held = DirectoryLock.acquire(dir, real);
        try {
            return new DiskTier(real, layout, (int) blocks, held);
        } catch (RuntimeException | Error e) {
            held.release();
            throw e;
        }
    }

    /**
     * Reports the blocks this tier starts and stops holding to {@code l}, as {@link
     * dev.kvcache.KvCacheEvent.BlockStored} / {@link dev.kvcache.KvCacheEvent.BlockRemoved} with
     * block -1, and {@link dev.kvcache.KvCacheEvent.AllBlocksCleared} when it closes: what a KV-event
     * publisher reports under the tier's medium (e.g. {@code KvEventPublisher.tierListener("DISK")}
     * in kvcache-redis). Setting a listener first reports every block held now. {@code l} is called
     * once each change is whole, outside the tier's lock, in the order of the changes, on a thread
     * that made one; it may call the tier. An exception it throws is counted
     * ({@link #listenerFailures}) and ignored: the change stands.
     *
     * @param l the listener, or null to stop reporting
     * @return this tier
     */
    public DiskTier listener(dev.kvcache.KvCacheListener l) {
        frame.listener(l, () -> {
            for (TierEntry e : new ArrayList<>(index.values())) {
                events.stored(e);
            }
        });
        return this;
    }

    /**
     * Exceptions its listener threw (see {@link #listener}).
     *
     * @return the count since it was built
     */
    public long listenerFailures() {
        return events.failures(); // not under the tier's lock: a listener running now may hold the tier
    }

    @Override
    public String name() {
        return "disk";
    }

    /**
     * The directory it owns.
     *
     * @return the directory's real path ({@link Path#toRealPath}), resolved at open
     */
    public Path directory() {
        return dir;
    }

    /**
     * The layout of the blocks it holds.
     *
     * @return the layout given to {@link #open}; every payload is its {@code bytesPerBlock()} long
     */
    public KvLayout layout() {
        return layout;
    }

    /**
     * The most blocks it holds.
     *
     * @return {@code floor(budgetBytes / layout.bytesPerBlock())}, in {@code [1, Integer.MAX_VALUE]}
     */
    public int capacityBlocks() {
        return capacity;
    }

    /**
     * Entries found in the directory at open that are not this tier's blocks, left alone.
     *
     * @return the entries the open's scan left alone (files of another layout or version, foreign
     *         files, directories); fixed once open returns
     */
    public long skippedFiles() {
        return skippedFiles;
    }

    /**
     * IO errors: puts refused by one, loads missed by one, files it could not delete.
     *
     * @return the IO errors since open, each counted once, none of which was thrown
     */
    public long ioErrors() {
        synchronized (lock) {
            return ioErrors;
        }
    }

    /**
     * Loads that failed because the store threw on import (the file stays).
     *
     * @return the loads since open that were misses because the store's {@code importBlock} threw
     *         (verification misses and IO errors are not counted here)
     */
    public long failedLoads() {
        synchronized (lock) {
            return counters.failedLoads;
        }
    }

    /**
     * The file that holds (or would hold) the block of {@code key}.
     *
     * @param key the block's prefix key; not null
     * @return {@code directory().resolve(key.toHex() + ".kvb")}, whether or not the file exists
     * @throws NullPointerException if {@code key} is null
     */
    public Path fileOf(PrefixKey key) {
        return files.fileOf(key);
    }

    @Override
    public int leadingHits(PrefixKey[] keys, int from, int count) {
        return frame.leadingHits(keys, from, count);
    }

    /** The lookup under the lock, the tier open and the range checked ({@link TierFrame#leadingHits}). */
    private int leadingHitsHeld(PrefixKey[] keys, int from, int count) {
        int n = 0;
        while (n < count && keys[from + n] != null && index.containsKey(keys[from + n])) {
            n++;
        }
        // the manager loads these next, after its own allocations may have demoted blocks into
        // this tier: refresh them, the first most recent (a lost first key loses them all)
        for (int i = n - 1; i >= 0; i--) {
            index.get(keys[from + i]);
        }
        return n;
    }

    @Override
    public boolean put(TierEntry entry, KvStore store, int block) {
        return frame.put(entry, store, block);
    }

    /** The put under the lock, the tier open and the call checked ({@link TierFrame#put}). */
    private boolean putHeld(TierEntry entry, KvStore store, int block) {
        PrefixKey key = entry.key();
        TierEntry held = index.get(key); // touches
        if (held != null) {
            if (held.matches(entry)) {
                setTime(fileOf(key));
                counters.puts++; // a repeated put writes nothing
                return true;
            }
            unindex(key);
            delete(fileOf(key));
        }
        byte[] scope = entry.scope() == null ? null : entry.scope().getBytes(StandardCharsets.UTF_8);
        int h = BlockFiles.headerLength(entry, scope);
        if (h < 0) {
            counters.refusedPuts++;
            return false;
        }
        int fileLen = h + (int) payloadBytes + 4;
        MemorySegment payload = files.payloadFor(h, fileLen);
        long t0 = System.nanoTime();
        try {
            store.exportBlock(block, payload);
        } catch (RuntimeException e) {
            counters.copyNanos += System.nanoTime() - t0;
            counters.refusedPuts++;
            return false;
        }
        files.seal(entry, scope, fileLen);
        if (index.size() >= capacity) {
            evictEldest();
        }
        try {
            files.write(key, fileLen);
        } catch (IOException | RuntimeException e) {
            counters.copyNanos += System.nanoTime() - t0;
            try {
                Files.deleteIfExists(files.tempOf(key));
            } catch (IOException ignored) {
                // best effort; a leftover temp file is deleted by the next open
            }
            ioErrors++;
            counters.refusedPuts++;
            return false;
        }
        counters.copyNanos += System.nanoTime() - t0;
        TierEntry kept = new TierEntry(key, entry.parentKey(), entry.salt(), entry.scope(), entry.tokens().clone(),
                entry.layoutFingerprint());
        index.put(key, kept);
        events.stored(kept);
        counters.stored(payloadBytes);
        return true;
    }

    @Override
    public boolean load(TierEntry expected, KvStore store, int block) {
        return frame.load(expected, store, block);
    }

    /** The load under the lock, the tier open and the call checked ({@link TierFrame#load}). */
    private boolean loadHeld(TierEntry expected, KvStore store, int block) {
        PrefixKey key = expected.key();
        TierEntry held = index.get(key);
        if (held == null) {
            return false;
        }
        Path file = fileOf(key);
        if (!held.matches(expected)) {
            counters.verificationMisses++;
            unindex(key);
            delete(file);
            return false;
        }
        if (!TierChecks.storeLayout(store, layout)) {
            counters.failedLoads++;
            return false;
        }
        long t0 = System.nanoTime();
        int h;
        try {
            h = files.readAndVerify(file, expected);
        } catch (IOException e) {
            counters.copyNanos += System.nanoTime() - t0;
            ioErrors++;
            unindex(key);
            if (!(e instanceof NoSuchFileException)) {
                delete(file);
            }
            return false;
        }
        if (h < 0) {
            counters.copyNanos += System.nanoTime() - t0;
            counters.verificationMisses++;
            unindex(key);
            delete(file);
            return false;
        }
        try {
            store.importBlock(block, files.payload(h));
        } catch (RuntimeException e) {
            counters.failedLoads++;
            return false;
        } finally {
            counters.copyNanos += System.nanoTime() - t0;
        }
        setTime(file);
        counters.served(payloadBytes);
        return true;
    }

    @Override
    public boolean remove(PrefixKey key) {
        return frame.remove(key);
    }

    /** The remove under the lock, the tier open and the call checked ({@link TierFrame#remove}). */
    private boolean removeHeld(PrefixKey key) {
        if (index.remove(key) == null) {
            return false;
        }
        events.removed(key);
        delete(fileOf(key));
        return true;
    }

    @Override
    public TierStats stats() {
        return frame.stats();
    }

    /** Releases the directory's lock and the buffer. Idempotent; the files stay. */
    @Override
    public void close() {
        frame.close(() -> {
            events.cleared();
            events.set(null);
            index.clear();
            files.releaseBuffer();
            dirLock.release();
        }, () -> { });
    }

    @Override
    public String toString() {
        synchronized (lock) {
            return "DiskTier[" + dir + ", " + layout + ", " + index.size() + "/" + capacity + " blocks"
                    + (frame.closed() ? ", closed]" : "]");
        }
    }

    /** Test hook: the keys held, least recently used first. */
    PrefixKey[] lruOrderForTest() {
        synchronized (lock) {
            return index.keySet().toArray(new PrefixKey[0]);
        }
    }

    // ------------------------------------------------------------------ internals (under the lock)


    /** Forgets {@code key}'s entry (held) and reports it. */
    private void unindex(PrefixKey key) {
        if (index.remove(key) != null) {
            events.removed(key);
        }
    }

    private void evictEldest() {
        Iterator<Map.Entry<PrefixKey, TierEntry>> it = index.entrySet().iterator();
        PrefixKey eldest = it.next().getKey();
        it.remove();
        events.removed(eldest);
        delete(fileOf(eldest));
        counters.evictions++;
    }

    private void delete(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            ioErrors++;
        }
    }

    /** Marks a file used now (its LRU position after a restart); an error only costs that order. */
    private void setTime(Path file) {
        try {
            Files.setLastModifiedTime(file, FileTime.fromMillis(System.currentTimeMillis()));
        } catch (IOException ignored) {
            // the order after a restart is a hint
        }
    }
}
