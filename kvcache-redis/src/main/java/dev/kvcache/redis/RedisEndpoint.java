package dev.kvcache.redis;

import io.lettuce.core.AbstractRedisClient;
import io.lettuce.core.ClientOptions;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisURI;
import io.lettuce.core.SocketOptions;
import io.lettuce.core.TimeoutOptions;
import io.lettuce.core.api.StatefulConnection;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.cluster.ClusterClientOptions;
import io.lettuce.core.cluster.RedisClusterClient;
import io.lettuce.core.cluster.api.StatefulRedisClusterConnection;
import io.lettuce.core.cluster.api.async.RedisClusterAsyncCommands;
import io.lettuce.core.codec.ByteArrayCodec;
import io.lettuce.core.codec.RedisCodec;
import io.lettuce.core.resource.ClientResources;
import io.lettuce.core.resource.Delay;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Where a fleet's shared Redis (or Valkey) lives: one Lettuce client, for a single server or a
 * Redis Cluster, that {@link RedisTier}, {@link KvEventPublisher} and {@link PrefixRouter} open
 * their connections from.
 *
 * <h2>Failure behaviour</h2>
 * The client is set up so that a dead or paused server never stalls a caller: it reconnects by
 * itself (delays of 10 ms doubling up to {@link #MAX_RECONNECT_DELAY}), rejects commands at once
 * while it is disconnected from a single server (instead of queueing them until the server
 * returns; a cluster client queues them, since it opens node connections lazily), bounds its
 * request queue, and expires any command after {@link #COMMAND_TIMEOUT} as a backstop (the
 * callers wait far less: see {@link RedisTier}). Connects give up after {@link #CONNECT_TIMEOUT}.
 *
 * <h2>Cluster</h2>
 * With {@link #cluster}, the URIs are seeds: Lettuce reads the slot map and sends each key to the
 * master of its slot. The keys this module writes carry no hash tags, so they spread over all
 * slots (and all masters) of the cluster.
 */
public final class RedisEndpoint implements AutoCloseable {

    /** The longest a reconnect waits between attempts. */
    public static final Duration MAX_RECONNECT_DELAY = Duration.ofMillis(500);
    /** Lettuce's own timeout on every command: a backstop, far above what callers wait. */
    public static final Duration COMMAND_TIMEOUT = Duration.ofSeconds(2);
    /** How long a connect may take. */
    public static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(2);
    private static final int REQUEST_QUEUE = 65_536;

    private final ClientResources resources;
    private final AbstractRedisClient client;
    private final boolean cluster;
    private final String description;
    private final List<StatefulConnection<?, ?>> connections = new ArrayList<>();
    private boolean closed;

    private RedisEndpoint(ClientResources resources, AbstractRedisClient client, boolean cluster, String description) {
        this.resources = resources;
        this.client = client;
        this.cluster = cluster;
        this.description = description;
    }

    /**
     * A single server (or a primary), e.g. {@code "redis://127.0.0.1:6379"},
     * {@code "redis://:password@host:6379/0"} or {@code "rediss://host:6380"} (TLS): Lettuce's
     * {@link RedisURI} syntax.
     *
     * @param uri the server's URI in Lettuce's syntax
     * @return a new endpoint (it connects when a tier, publisher or check first opens a connection)
     * @throws IllegalArgumentException the URI does not parse
     */
    public static RedisEndpoint standalone(String uri) {
        RedisURI u = parse(uri);
        ClientResources res = resources();
        RedisClient c = RedisClient.create(res, u);
        c.setOptions(ClientOptions.builder()
                .autoReconnect(true)
                .disconnectedBehavior(ClientOptions.DisconnectedBehavior.REJECT_COMMANDS)
                .requestQueueSize(REQUEST_QUEUE)
                .socketOptions(SocketOptions.builder().connectTimeout(CONNECT_TIMEOUT).build())
                .timeoutOptions(TimeoutOptions.enabled(COMMAND_TIMEOUT))
                .build());
        return new RedisEndpoint(res, c, false, u.getHost() + ":" + u.getPort());
    }

    /**
     * A Redis Cluster reached through one or more seed nodes, e.g.
     * {@code cluster("redis://10.0.0.1:7000", "redis://10.0.0.2:7000")}.
     *
     * @param seeds the URIs of one or more of the cluster's nodes, in Lettuce's syntax
     * @return a new endpoint over the cluster (node connections open lazily)
     * @throws IllegalArgumentException no seed, or one does not parse
     */
    public static RedisEndpoint cluster(String... seeds) {
        Objects.requireNonNull(seeds, "seeds");
        if (seeds.length == 0) {
            throw new IllegalArgumentException("a cluster needs at least one seed URI, got 0");
        }
        List<RedisURI> uris = new ArrayList<>();
        for (String s : seeds) {
            uris.add(parse(s));
        }
        ClientResources res = resources();
        // a cluster opens its node connections lazily, and one that is still connecting would
        // reject commands: they are accepted and queued instead (bounded by the request queue and
        // expired by the command timeout), and callers stop waiting at their own deadlines
        RedisClusterClient c = RedisClusterClient.create(res, uris);
        c.setOptions(ClusterClientOptions.builder()
                .autoReconnect(true)
                .disconnectedBehavior(ClientOptions.DisconnectedBehavior.ACCEPT_COMMANDS)
                .requestQueueSize(REQUEST_QUEUE)
                .socketOptions(SocketOptions.builder().connectTimeout(CONNECT_TIMEOUT).build())
                .timeoutOptions(TimeoutOptions.enabled(COMMAND_TIMEOUT))
                .build());
        return new RedisEndpoint(res, c, true, "cluster " + String.join(",", seeds));
    }

    /**
     * {@link #cluster} when {@code uri} starts with {@code "redis-cluster://"} followed by one or
     * more comma-separated seed hosts (each rewritten to a {@code redis://} seed), else
     * {@link #standalone}: what the command line accepts.
     *
     * @param uri a {@code redis-cluster://host:port[,host:port...]} URI, or a single server's URI
     * @return a new endpoint
     * @throws IllegalArgumentException the URI, or one of its seeds, does not parse
     */
    public static RedisEndpoint connect(String uri) {
        Objects.requireNonNull(uri, "uri");
        if (uri.startsWith("redis-cluster://")) {
            String rest = uri.substring("redis-cluster://".length());
            String[] hosts = rest.split(",");
            String[] seeds = new String[hosts.length];
            for (int i = 0; i < hosts.length; i++) {
                seeds[i] = "redis://" + hosts[i];
            }
            return cluster(seeds);
        }
        return standalone(uri);
    }

    private static RedisURI parse(String uri) {
        Objects.requireNonNull(uri, "uri");
        try {
            RedisURI u = RedisURI.create(uri);
            u.setTimeout(COMMAND_TIMEOUT);
            return u;
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("Redis URI '" + uri + "' does not parse: " + e.getMessage(), e);
        }
    }

    private static ClientResources resources() {
        return ClientResources.builder()
                .ioThreadPoolSize(2)
                .computationThreadPoolSize(2)
                .reconnectDelay(Delay.exponential(Duration.ofMillis(10), MAX_RECONNECT_DELAY, 2,
                        java.util.concurrent.TimeUnit.MILLISECONDS))
                .build();
    }

    /**
     * Checks that the server (a cluster: its seeds) answers, within {@link #CONNECT_TIMEOUT}.
     *
     * @throws IllegalStateException it cannot be reached, with the reason
     */
    public void checkReachable() {
        Link<byte[]> l;
        try {
            l = open();
        } catch (RuntimeException e) {
            throw new IllegalStateException("cannot reach Redis at " + description + ": " + e.getMessage(), e);
        }
        try {
            l.commands().ping().get(CONNECT_TIMEOUT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            throw new IllegalStateException("Redis at " + description + " does not answer PING: " + e, e);
        } finally {
            release(l.connection());
        }
    }

    /**
     * Whether this is a Redis Cluster.
     *
     * @return true for an endpoint made by {@link #cluster}, false for a single server
     */
    public boolean isCluster() {
        return cluster;
    }

    /**
     * A new byte-array connection of its own (pipelining state is per connection). The endpoint
     * closes it on {@link #close()}.
     *
     * @throws io.lettuce.core.RedisConnectionException the server cannot be reached
     */
    Link<byte[]> open() {
        return open(ByteArrayCodec.INSTANCE);
    }

    /**
     * A new connection of its own whose values {@code codec} decodes (keys are byte arrays). The
     * endpoint closes it on {@link #close()}.
     *
     * @throws io.lettuce.core.RedisConnectionException the server cannot be reached
     */
    <V> Link<V> open(RedisCodec<byte[], V> codec) {
        synchronized (connections) {
            if (closed) {
                throw new IllegalStateException("endpoint " + description + " is closed");
            }
            Link<V> l;
            if (cluster) {
                StatefulRedisClusterConnection<byte[], V> c = ((RedisClusterClient) client).connect(codec);
                l = new Link<>(c, c.async());
            } else {
                StatefulRedisConnection<byte[], V> c = ((RedisClient) client).connect(codec);
                l = new Link<>(c, c.async());
            }
            connections.add(l.connection());
            return l;
        }
    }

    /** Closes {@code c}, a connection {@link #open} gave, and forgets it. */
    void release(StatefulConnection<?, ?> c) {
        synchronized (connections) {
            if (!connections.remove(c)) {
                return;
            }
        }
        try {
            c.close();
        } catch (RuntimeException ignored) {
            // closing anyway
        }
    }

    /** One connection and its async commands (the same interface for a server and a cluster). */
    record Link<V>(StatefulConnection<byte[], V> connection, RedisClusterAsyncCommands<byte[], V> commands) {
    }

    @Override
    public String toString() {
        return "RedisEndpoint[" + description + "]";
    }

    /** Closes every connection it opened, then the client and its threads. Idempotent. */
    @Override
    public void close() {
        synchronized (connections) {
            if (closed) {
                return;
            }
            closed = true;
            for (StatefulConnection<?, ?> c : connections) {
                try {
                    c.close();
                } catch (RuntimeException ignored) {
                    // closing anyway
                }
            }
            connections.clear();
        }
        client.shutdown(Duration.ZERO, Duration.ofSeconds(2));
        resources.shutdown(0, 2, java.util.concurrent.TimeUnit.SECONDS);
    }
}
