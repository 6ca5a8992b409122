package dev.kvcache.offheap;

import dev.kvcache.PrefixKey;
import dev.kvcache.TierEntry;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.zip.CRC32C;

import static dev.kvcache.offheap.DiskTier.MAGIC;
import static dev.kvcache.offheap.DiskTier.MAX_HEADER;
import static dev.kvcache.offheap.DiskTier.SUFFIX;
import static dev.kvcache.offheap.DiskTier.VERSION;

/**
 * The block files of one {@link DiskTier} directory, in file format version 1 as
 * {@link DiskTier}'s class documentation specifies it: the names ({@code <32 hex>.kvb}, the temp
 * {@code <32 hex>.kvb.tmp} a put writes and renames), the header codec, the whole-file
 * verification a load makes, and the scan at open. It holds one heap buffer, reused by every put
 * and load (grown to the largest file, dropped by {@link #releaseBuffer()}), and one CRC32C.
 * Invariants: a file it writes is exactly {@code H + P + 4} bytes with the CRC32C of everything
 * before the last four; {@link #readAndVerify} accepts a file only if every field of the header
 * is this tier's and well formed, the length adds up, the checksum matches and the entry it holds
 * matches the expected one; the scan indexes a file only on a well-formed header of this tier's
 * layout whose key is the one its name says. It changes no index or counter of the tier.
 *
 * <p>Not thread-safe: the tier calls it under its lock (the scan from its constructor).
 */
final class BlockFiles {

    /** The directory's lock file, never a block. */
    static final String LOCK_NAME = ".lock";
    private static final String TEMP_SUFFIX = ".kvb.tmp";
    private static final int FIXED = 72;     // header bytes without scope and token ids
    private static final int FLAG_PARENT = 1;
    private static final int FLAG_SCOPE = 2;

    private final Path dir;
    private final long fingerprint;
    private final long payloadBytes;
    private final CRC32C crc = new CRC32C();
    private byte[] buffer = new byte[0];

    /** The files of {@code dir} (a real path) for blocks of {@code payloadBytes} of the layout of {@code fingerprint}. */
    BlockFiles(Path dir, long fingerprint, long payloadBytes) {
        this.dir = dir;
        this.fingerprint = fingerprint;
        this.payloadBytes = payloadBytes;
    }

    /** The file of {@code key}'s block. */
    Path fileOf(PrefixKey key) {
        return dir.resolve(key.toHex() + SUFFIX);
    }

    /** The temp file a put of {@code key} writes before the rename. */
    Path tempOf(PrefixKey key) {
        return dir.resolve(key.toHex() + TEMP_SUFFIX);
    }

    /** The header length of {@code e} with its scope encoded as {@code scope}, or -1 when it is over {@link DiskTier#MAX_HEADER}. */
    static int headerLength(TierEntry e, byte[] scope) {
        long header = (long) FIXED + (scope == null ? 0 : scope.length) + 4L * e.tokens().length;
        return header > MAX_HEADER ? -1 : (int) header;
    }

    /** The payload range {@code [h, h + P)} of the buffer, grown to {@code fileLen} bytes first: where a put's export goes. */
    MemorySegment payloadFor(int h, int fileLen) {
        buffer(fileLen);
        return payload(h);
    }

    /** The payload range {@code [h, h + P)} of the buffer as the last put or load left it. */
    MemorySegment payload(int h) {
        return MemorySegment.ofArray(buffer).asSlice(h, payloadBytes);
    }

    /** Writes {@code e}'s header before the exported payload and the CRC32C of {@code [0, fileLen - 4)} after it. */
    void seal(TierEntry e, byte[] scope, int fileLen) {
        writeHeader(ByteBuffer.wrap(buffer), e, scope);
        crc.reset();
        crc.update(buffer, 0, fileLen - 4);
        ByteBuffer.wrap(buffer).putInt(fileLen - 4, (int) crc.getValue());
    }

    /** Writes the sealed buffer's {@code fileLen} bytes to {@code key}'s temp file and renames it to its file. */
    void write(PrefixKey key, int fileLen) throws IOException {
        Path tmp = tempOf(key);
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer bb = ByteBuffer.wrap(buffer, 0, fileLen);
            while (bb.hasRemaining()) {
                ch.write(bb);
            }
        }
        Files.move(tmp, fileOf(key), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /** Drops the buffer (after the scan, and at close). */
    void releaseBuffer() {
        buffer = new byte[0];
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
            if (!Arrays.equals(sb, scope.getBytes(StandardCharsets.UTF_8))) {
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
    int readAndVerify(Path file, TierEntry expected) throws IOException {
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

    /**
     * What the scan at open found.
     *
     * @param entries  the blocks to index, least recently used first
     * @param skipped  entries left alone (not this tier's blocks)
     * @param ioErrors own temp files it could not delete
     */
    record Scan(List<TierEntry> entries, long skipped, long ioErrors) {
    }

    /**
     * Scans the directory: deletes its own temp files, counts and leaves foreign entries, and
     * orders the blocks by modification time (then name). The buffer is dropped afterwards.
     *
     * @throws UncheckedIOException the directory cannot be listed
     */
    Scan scan() {
        record Found(TierEntry entry, FileTime time, String name) {
        }
        List<Found> found = new ArrayList<>();
        long skipped = 0;
        long ioErrors = 0;
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
        List<TierEntry> entries = new ArrayList<>(found.size());
        for (Found f : found) {
            entries.add(f.entry());
        }
        releaseBuffer();
        return new Scan(entries, skipped, ioErrors);
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
}
