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
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.zip.CRC32C;

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
 * Stats are a consistent snapshot.
 *
 * <h2>Stats</h2>
 * {@link #stats()}: blocks and payload bytes held, capacity in bytes
 * ({@code capacityBlocks * bytesPerBlock}), puts, refused puts, loads, verification misses,
 * evictions (at open and to make room), bytes moved (payload bytes in by puts and out by loads)
 * and copy nanos ({@link System#nanoTime()} around export, checksum and write, and around read,
 * checksum and import).
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
    private static final String TEMP_SUFFIX = ".kvb.tmp";
    private static final String LOCK_NAME = ".lock";
    private static final int FIXED = 72;     // header bytes without scope and token ids
    private static final int FLAG_PARENT = 1;
    private static final int FLAG_SCOPE = 2;

    /** Directories (real paths) a tier of this JVM holds open. */
    private static final java.util.Set<Path> OPEN_DIRS = java.util.concurrent.ConcurrentHashMap.newKeySet();

    private final Path dir;
    private final KvLayout layout;
    private final long fingerprint;
    private final long payloadBytes;
    private final int capacity;
    private final FileChannel lockChannel;
    private final FileLock fileLock;

    private final Object lock = new Object();
    /** Held blocks in LRU order (eldest first); get touches, containsKey does not. */
    private final LinkedHashMap<PrefixKey, TierEntry> index = new LinkedHashMap<>(16, 0.75f, true);
    private final CRC32C crc = new CRC32C();
    private byte[] buffer = new byte[0];

    private final long skippedFiles;
    private long puts;
    private long refusedPuts;
    private long loads;
    private long failedLoads;
    private long verificationMisses;
    private long ioErrors;
    private long evictions;
    private final TierEvents events = new TierEvents();
    private long bytesMoved;
    private long copyNanos;
    private boolean closed;

    private DiskTier(Path dir, KvLayout layout, int capacity, FileChannel lockChannel, FileLock fileLock) {
        this.dir = dir;
        this.layout = layout;
        this.fingerprint = TierEntry.fingerprint(layout);
        this.payloadBytes = layout.bytesPerBlock();
        this.capacity = capacity;
        this.lockChannel = lockChannel;
        this.fileLock = fileLock;
        this.skippedFiles = scan();
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
        long per = layout.bytesPerBlock();
        if (budgetBytes < per) {
            throw new IllegalArgumentException("disk tier budget " + budgetBytes + " bytes holds less than one block of "
                    + layout + " (" + per + " bytes)");
        }
        if (per > Integer.MAX_VALUE - MAX_HEADER - 4) {
            throw new IllegalArgumentException("a block of " + layout + " is " + per + " bytes; a disk tier file holds at most "
                    + (Integer.MAX_VALUE - MAX_HEADER - 4));
        }
        long blocks = budgetBytes / per;
        if (blocks > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("disk tier budget " + budgetBytes + " bytes is " + blocks
                    + " blocks of " + per + " bytes; the limit is " + Integer.MAX_VALUE + " blocks");
        }
        Path real;
        try {
            Files.createDirectories(dir);
            real = dir.toRealPath();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create disk tier directory " + dir, e);
        }
        if (!OPEN_DIRS.add(real)) {
            throw new IllegalStateException("disk tier directory " + dir + " is in use by another DiskTier");
        }
        FileChannel ch = null;
        FileLock fl = null;
        try {
            ch = FileChannel.open(real.resolve(LOCK_NAME), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
            fl = ch.tryLock();
            if (fl == null) {
                throw new IllegalStateException("disk tier directory " + dir + " is in use by another process");
            }
            return new DiskTier(real, layout, (int) blocks, ch, fl);
        } catch (IOException | RuntimeException | Error e) {
            if (fl != null) {
                try {
                    fl.release();
                } catch (IOException ignored) {
                    // closing the channel releases it
                }
            }
            closeQuietly(ch);
            OPEN_DIRS.remove(real);
            if (e instanceof RuntimeException re) {
                throw re;
            }
            if (e instanceof Error er) {
                throw er;
            }
            throw new UncheckedIOException("cannot open disk tier directory " + dir, (IOException) e);
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
        synchronized (lock) {
            checkOpen();
            events.set(l);
            for (TierEntry e : new java.util.ArrayList<>(index.values())) {
                events.stored(e);
            }
        }
        events.flush();
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
            return failedLoads;
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
        return dir.resolve(key.toHex() + SUFFIX);
    }

    @Override
    public int leadingHits(PrefixKey[] keys, int from, int count) {
        Objects.requireNonNull(keys, "keys");
        Objects.checkFromIndexSize(from, count, keys.length);
        synchronized (lock) {
            checkOpen();
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
    }

    @Override
    public boolean put(TierEntry entry, KvStore store, int block) {
        try {
            return putLocked(entry, store, block);
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    private boolean putLocked(TierEntry entry, KvStore store, int block) {
        Objects.requireNonNull(entry, "entry");
        Objects.requireNonNull(store, "store");
        synchronized (lock) {
            checkOpen();
            if (entry.layoutFingerprint() != fingerprint) {
                throw new IllegalArgumentException("entry's layout fingerprint " + Long.toHexString(entry.layoutFingerprint())
                        + " is not this tier's " + Long.toHexString(fingerprint) + " (" + layout + ")");
            }
            KvLayout sl;
            try {
                sl = store.layout();
            } catch (RuntimeException e) {
                refusedPuts++;
                return false;
            }
            checkLayout(sl);
            PrefixKey key = entry.key();
            TierEntry held = index.get(key); // touches
            if (held != null) {
                if (held.matches(entry)) {
                    setTime(fileOf(key));
                    puts++;
                    return true;
                }
                unindex(key);
                delete(fileOf(key));
            }
            byte[] scope = entry.scope() == null ? null : entry.scope().getBytes(StandardCharsets.UTF_8);
            long header = (long) FIXED + (scope == null ? 0 : scope.length) + 4L * entry.tokens().length;
            if (header > MAX_HEADER) {
                refusedPuts++;
                return false;
            }
            int h = (int) header;
            int fileLen = h + (int) payloadBytes + 4;
            byte[] buf = buffer(fileLen);
            long t0 = System.nanoTime();
            try {
                store.exportBlock(block, MemorySegment.ofArray(buf).asSlice(h, payloadBytes));
            } catch (RuntimeException e) {
                copyNanos += System.nanoTime() - t0;
                refusedPuts++;
                return false;
            }
            writeHeader(ByteBuffer.wrap(buf), entry, scope);
            crc.reset();
            crc.update(buf, 0, fileLen - 4);
            ByteBuffer.wrap(buf).putInt(fileLen - 4, (int) crc.getValue());
            if (index.size() >= capacity) {
                evictEldest();
            }
            Path real = fileOf(key);
            Path tmp = dir.resolve(key.toHex() + TEMP_SUFFIX);
            try {
                try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                        StandardOpenOption.TRUNCATE_EXISTING)) {
                    ByteBuffer bb = ByteBuffer.wrap(buf, 0, fileLen);
                    while (bb.hasRemaining()) {
                        ch.write(bb);
                    }
                }
                Files.move(tmp, real, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (IOException | RuntimeException e) {
                copyNanos += System.nanoTime() - t0;
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // best effort; a leftover temp file is deleted by the next open
                }
                ioErrors++;
                refusedPuts++;
                return false;
            }
            copyNanos += System.nanoTime() - t0;
            TierEntry kept = new TierEntry(key, entry.parentKey(), entry.salt(), entry.scope(), entry.tokens().clone(),
                    entry.layoutFingerprint());
            index.put(key, kept);
            events.stored(kept);
            puts++;
            bytesMoved += payloadBytes;
            return true;
        }
    }

    @Override
    public boolean load(TierEntry expected, KvStore store, int block) {
        try {
            return loadLocked(expected, store, block);
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    private boolean loadLocked(TierEntry expected, KvStore store, int block) {
        Objects.requireNonNull(expected, "expected");
        Objects.requireNonNull(store, "store");
        synchronized (lock) {
            checkOpen();
            PrefixKey key = expected.key();
            TierEntry held = index.get(key);
            if (held == null) {
                return false;
            }
            Path file = fileOf(key);
            if (!held.matches(expected)) {
                verificationMisses++;
                unindex(key);
                delete(file);
                return false;
            }
            KvLayout sl;
            try {
                sl = store.layout();
            } catch (RuntimeException e) {
                failedLoads++;
                return false;
            }
            checkLayout(sl);
            long t0 = System.nanoTime();
            int h;
            try {
                h = readAndVerify(file, expected);
            } catch (IOException e) {
                copyNanos += System.nanoTime() - t0;
                ioErrors++;
                unindex(key);
                if (!(e instanceof NoSuchFileException)) {
                    delete(file);
                }
                return false;
            }
            if (h < 0) {
                copyNanos += System.nanoTime() - t0;
                verificationMisses++;
                unindex(key);
                delete(file);
                return false;
            }
            try {
                store.importBlock(block, MemorySegment.ofArray(buffer).asSlice(h, payloadBytes));
            } catch (RuntimeException e) {
                failedLoads++;
                return false;
            } finally {
                copyNanos += System.nanoTime() - t0;
            }
            setTime(file);
            loads++;
            bytesMoved += payloadBytes;
            return true;
        }
    }

    @Override
    public boolean remove(PrefixKey key) {
        try {
            return removeLocked(key);
        } finally {
            events.flush(); // outside the lock, once the change is whole
        }
    }

    private boolean removeLocked(PrefixKey key) {
        Objects.requireNonNull(key, "key");
        synchronized (lock) {
            checkOpen();
            if (index.remove(key) == null) {
                return false;
            }
            events.removed(key);
            delete(fileOf(key));
            return true;
        }
    }

    @Override
    public TierStats stats() {
        synchronized (lock) {
            long blocks = index.size();
            return new TierStats(name(), blocks, blocks * payloadBytes, capacity * payloadBytes, puts, refusedPuts,
                    loads, verificationMisses, evictions, bytesMoved, copyNanos);
        }
    }

    /** Releases the directory's lock and the buffer. Idempotent; the files stay. */
    @Override
    public void close() {
        try {
            closeLocked();
        } finally {
            events.flush();
        }
    }

    private void closeLocked() {
        synchronized (lock) {
            if (closed) {
                return;
            }
            closed = true;
            events.cleared();
            events.set(null);
            index.clear();
            buffer = new byte[0];
            try {
                fileLock.release();
            } catch (IOException ignored) {
                // the channel's close releases it as well
            }
            closeQuietly(lockChannel);
            OPEN_DIRS.remove(dir);
        }
    }

    @Override
    public String toString() {
        synchronized (lock) {
            return "DiskTier[" + dir + ", " + layout + ", " + index.size() + "/" + capacity + " blocks"
                    + (closed ? ", closed]" : "]");
        }
    }

    /** Test hook: the keys held, least recently used first. */
    PrefixKey[] lruOrderForTest() {
        synchronized (lock) {
            return index.keySet().toArray(new PrefixKey[0]);
        }
    }

    // ------------------------------------------------------------------ internals (under the lock)

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("DiskTier is closed");
        }
    }

    private void checkLayout(KvLayout sl) {
        if (!layout.equals(sl)) {
            throw new IllegalArgumentException("store's layout " + sl + " is not this tier's " + layout);
        }
    }

    private byte[] buffer(int n) {
        if (buffer.length < n) {
            buffer = new byte[n];
        }
        return buffer;
    }

    private void writeHeader(ByteBuffer b, TierEntry e, byte[] scope) {
        b.putInt(MAGIC);
        b.putShort(VERSION);
        b.putShort((short) ((e.parentKey() != null ? FLAG_PARENT : 0) | (scope != null ? FLAG_SCOPE : 0)));
        b.putLong(fingerprint);
        b.putLong(e.key().hi());
        b.putLong(e.key().lo());
        b.putLong(e.parentKey() == null ? 0 : e.parentKey().hi());
        b.putLong(e.parentKey() == null ? 0 : e.parentKey().lo());
        b.putLong(e.salt());
        b.putInt(scope == null ? 0 : scope.length);
        if (scope != null) {
            b.put(scope);
        }
        int[] tokens = e.tokens();
        b.putInt(tokens.length);
        for (int t : tokens) {
            b.putInt(t);
        }
        b.putLong(payloadBytes);
    }

    /** A parsed header: its entry and length. */
    private record Header(TierEntry entry, int length) {
    }

    /**
     * Parses the header at the start of {@code b[0, len)}; null when it is not a well-formed header
     * of this tier's magic, version, fingerprint and payload length, or does not fit in {@code len}.
     */
    private Header parseHeader(byte[] b, int len) {
        if (len < FIXED) {
            return null;
        }
        ByteBuffer bb = ByteBuffer.wrap(b, 0, len);
        if (bb.getInt() != MAGIC || bb.getShort() != VERSION) {
            return null;
        }
        int flags = bb.getShort();
        if ((flags & ~(FLAG_PARENT | FLAG_SCOPE)) != 0 || bb.getLong() != fingerprint) {
            return null;
        }
        PrefixKey key = new PrefixKey(bb.getLong(), bb.getLong());
        long phi = bb.getLong();
        long plo = bb.getLong();
        PrefixKey parent = (flags & FLAG_PARENT) != 0 ? new PrefixKey(phi, plo) : null;
        if (parent == null && (phi | plo) != 0) {
            return null;
        }
        long salt = bb.getLong();
        int s = bb.getInt();
        if (s < 0 || ((flags & FLAG_SCOPE) == 0 && s != 0) || (long) FIXED + s > Math.min(len, MAX_HEADER)) {
            return null;
        }
        String scope = null;
        if ((flags & FLAG_SCOPE) != 0) {
            byte[] sb = new byte[s];
            bb.get(sb);
            scope = new String(sb, StandardCharsets.UTF_8);
            if (!java.util.Arrays.equals(sb, scope.getBytes(StandardCharsets.UTF_8))) {
                return null; // not valid UTF-8
            }
        }
        int t = bb.getInt();
        long h = (long) FIXED + s + 4L * t;
        if (t < 0 || h > Math.min(len, MAX_HEADER)) {
            return null;
        }
        int[] tokens = new int[t];
        for (int i = 0; i < t; i++) {
            tokens[i] = bb.getInt();
        }
        if (bb.getLong() != payloadBytes) {
            return null;
        }
        return new Header(new TierEntry(key, parent, salt, scope, tokens, fingerprint), (int) h);
    }

    /**
     * Reads {@code file} whole into the buffer and verifies it against {@code expected}: the
     * header's offset of the payload, or -1 when it fails any check.
     */
    private int readAndVerify(Path file, TierEntry expected) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < FIXED + payloadBytes + 4 || size > MAX_HEADER + payloadBytes + 4) {
                return -1;
            }
            int n = (int) size;
            byte[] buf = buffer(n);
            ByteBuffer bb = ByteBuffer.wrap(buf, 0, n);
            while (bb.hasRemaining()) {
                if (ch.read(bb) < 0) {
                    return -1; // shrank while read
                }
            }
            Header hd = parseHeader(buf, n);
            if (hd == null || hd.length() + payloadBytes + 4 != size || !hd.entry().matches(expected)) {
                return -1;
            }
            crc.reset();
            crc.update(buf, 0, n - 4);
            if ((int) crc.getValue() != ByteBuffer.wrap(buf).getInt(n - 4)) {
                return -1;
            }
            return hd.length();
        }
    }

    /** Reads and parses the header of {@code file}: null when it is not a header of this tier's. */
    private Header readHeader(Path file, long size) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            int have = readFully(ch, buffer(4096), (int) Math.min(size, 4096));
            if (have < 60) {
                return null;
            }
            int s = ByteBuffer.wrap(buffer).getInt(56);
            if (s < 0 || (long) FIXED + s > MAX_HEADER) {
                return null;
            }
            int need = 64 + s;
            if (need > have) {
                have = readFully(ch, buffer(need), (int) Math.min(size, need));
                if (have < need) {
                    return null;
                }
            }
            int t = ByteBuffer.wrap(buffer).getInt(60 + s);
            long h = (long) FIXED + s + 4L * t;
            if (t < 0 || h > MAX_HEADER) {
                return null;
            }
            if (h > have) {
                have = readFully(ch, buffer((int) h), (int) Math.min(size, h));
                if (have < h) {
                    return null;
                }
            }
            return parseHeader(buffer, (int) h);
        }
    }

    private static int readFully(FileChannel ch, byte[] buf, int n) throws IOException {
        ByteBuffer bb = ByteBuffer.wrap(buf, 0, n);
        ch.position(0);
        while (bb.hasRemaining()) {
            if (ch.read(bb) < 0) {
                break;
            }
        }
        return bb.position();
    }

    /** Indexes the directory: deletes its own temp files, counts and leaves foreign entries. */
    private long scan() {
        record Found(TierEntry entry, FileTime time, String name) {
        }
        List<Found> found = new ArrayList<>();
        long skipped = 0;
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                String name = p.getFileName().toString();
                if (name.equals(LOCK_NAME)) {
                    continue;
                }
                if (name.endsWith(TEMP_SUFFIX) && isHex32(name, name.length() - TEMP_SUFFIX.length())) {
                    try {
                        Files.deleteIfExists(p);
                    } catch (IOException e) {
                        ioErrors++;
                    }
                    continue;
                }
                BasicFileAttributes a;
                try {
                    a = Files.readAttributes(p, BasicFileAttributes.class);
                } catch (IOException e) {
                    skipped++;
                    continue;
                }
                if (!a.isRegularFile() || !name.endsWith(SUFFIX) || !isHex32(name, name.length() - SUFFIX.length())) {
                    skipped++;
                    continue;
                }
                Header h;
                try {
                    h = readHeader(p, a.size());
                } catch (IOException e) {
                    h = null;
                }
                if (h == null || !name.equals(h.entry().key().toHex() + SUFFIX)) {
                    skipped++;
                    continue;
                }
                found.add(new Found(h.entry(), a.lastModifiedTime(), name));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list disk tier directory " + dir, e);
        }
        found.sort(Comparator.comparing(Found::time).thenComparing(Found::name));
        for (Found f : found) {
            index.put(f.entry().key(), f.entry());
        }
        buffer = new byte[0];
        return skipped;
    }

    private static boolean isHex32(String name, int end) {
        if (end != 32) {
            return false;
        }
        for (int i = 0; i < 32; i++) {
            char c = name.charAt(i);
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
                return false;
            }
        }
        return true;
    }

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
        evictions++;
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

    private static void closeQuietly(FileChannel ch) {
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // nothing to do
            }
        }
    }
}
