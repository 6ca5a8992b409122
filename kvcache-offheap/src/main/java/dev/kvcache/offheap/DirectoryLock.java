package dev.kvcache.offheap;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A {@link DiskTier}'s hold on its directory: the directory's real path in a set of this JVM's
 * open directories, and {@link FileChannel#tryLock()} on its {@code .lock} file against other
 * processes. Invariants: while held, no other {@code DirectoryLock} of this JVM or of another
 * process holds the same directory; {@link #acquire} either returns a held lock or throws having
 * released whatever it took; {@link #release()} undoes all of it (idempotent only through the
 * tier's own closed flag).
 */
final class DirectoryLock {

    /** Directories (real paths) a tier of this JVM holds open. */
    private static final Set<Path> OPEN_DIRS = ConcurrentHashMap.newKeySet();

    private final Path real;
    private final FileChannel channel;
    private final FileLock fileLock;

    private DirectoryLock(Path real, FileChannel channel, FileLock fileLock) {
        this.real = real;
        this.channel = channel;
        this.fileLock = fileLock;
    }

    /**
     * Holds directory {@code real} (the real path of {@code dir}, which messages name).
     *
     * @throws IllegalStateException another tier, of this JVM or another process, holds it
     * @throws UncheckedIOException  the lock file cannot be opened or locked
     */
    static DirectoryLock acquire(Path dir, Path real) {
        if (!OPEN_DIRS.add(real)) {
            throw new IllegalStateException("disk tier directory " + dir + " is in use by another DiskTier");
        }
        FileChannel ch = null;
        FileLock fl = null;
        try {
            ch = FileChannel.open(real.resolve(BlockFiles.LOCK_NAME), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
            fl = ch.tryLock();
            if (fl == null) {
                throw new IllegalStateException("disk tier directory " + dir + " is in use by another process");
            }
            return new DirectoryLock(real, ch, fl);
        } catch (IOException | RuntimeException | Error e) {
            release(real, ch, fl);
            if (e instanceof RuntimeException re) {
                throw re;
            }
            if (e instanceof Error er) {
                throw er;
            }
            throw new UncheckedIOException("cannot open disk tier directory " + dir, (IOException) e);
        }
    }

    /** Releases the file lock, closes its channel and forgets the directory. */
    void release() {
        release(real, channel, fileLock);
    }

    private static void release(Path real, FileChannel ch, FileLock fl) {
        if (fl != null) {
            try {
                fl.release();
            } catch (IOException ignored) {
                // closing the channel releases it
            }
        }
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // nothing to do
            }
        }
        OPEN_DIRS.remove(real);
    }
}
