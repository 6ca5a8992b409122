package dev.kvcache.cli;

import dev.kvcache.offheap.OffHeapKvStore;
import dev.kvcache.redis.ShareDemo;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/**
 * {@code kvcache share}: two engines sharing KV through Redis, one process each
 * ({@link ShareDemo}). Run the writer, then the reader, against the same Redis:
 * <pre>
 *   bin/kvcache share --redis redis://127.0.0.1:6379 --role writer
 *   bin/kvcache share --redis redis://127.0.0.1:6379 --role reader
 * </pre>
 * With {@code --key-file} on both, the values are sealed with that fleet key and only values it
 * verifies are served. The reader reports how much of the prompt Redis served, that the served blocks are
 * byte-identical to its own computation, that attention over them is equal, and that another cache
 * salt is served nothing; exit 0 when all of that holds, 1 otherwise.
 */
@Command(name = "share", mixinStandardHelpOptions = true,
        description = "Two processes share a prompt's KV through Redis: run --role writer, then --role reader.")
public final class ShareCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    /** Creates the command; picocli sets its options and its spec before calling it. */
    public ShareCommand() {
    }

    @Option(names = "--redis", required = true,
            description = "Redis URI, e.g. redis://127.0.0.1:6379, or redis-cluster://host:port,host:port for a cluster.")
    String redis;

    @Option(names = "--role", required = true, description = "writer (computes and publishes) or reader (is served).")
    String role;

    @Option(names = "--tokens", defaultValue = "1000", description = "Prompt tokens (default ${DEFAULT-VALUE}).")
    int tokens;

    @Option(names = "--model", defaultValue = "share-demo", description = "Model id, the key namespace (default ${DEFAULT-VALUE}).")
    String model;

    @Option(names = "--salt", defaultValue = "0", description = "Cache salt both roles use (default ${DEFAULT-VALUE}).")
    long salt;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of the prompt and its KV (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--format", defaultValue = "F16", description = "KV format (default ${DEFAULT-VALUE}).")
    String format;

    @Option(names = "--key-file",
            description = "File holding the fleet key (16 to 4096 bytes, the same for both roles): values are sealed with it "
                    + "and only values it verifies are served.")
    Path keyFile;

    @Override
    public Integer call() {
        ShareDemo.Options o = new ShareDemo.Options(redis, role, tokens, model, salt, seed, format, keyFile);
        try {
            return ShareDemo.run(o, OffHeapKvStore::allocate, spec.commandLine().getOut());
        } catch (IllegalStateException e) {
            // an unreachable server is the user's URI or setup: one line, exit 2
            throw new IllegalArgumentException(e.getMessage(), e);
        }
    }
}
