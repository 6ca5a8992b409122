package dev.kvcache.redis;

import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.io.IOException;

/**
 * One redis-server on a free loopback port and an endpoint on it for a test class, emptied
 * (FLUSHALL, CONFIG RESETSTAT) before each test:
 * {@code @RegisterExtension static final LocalRedis redis = new LocalRedis();}. The endpoint,
 * then the server, are closed after the class, even when a test failed.
 */
final class LocalRedis implements BeforeAllCallback, BeforeEachCallback, AfterAllCallback {

    private RedisServers.Server server;
    private RedisEndpoint endpoint;

    @Override
    public void beforeAll(ExtensionContext context) throws IOException {
        server = RedisServers.Server.start();
        endpoint = RedisEndpoint.standalone(server.uri());
    }

    @Override
    public void beforeEach(ExtensionContext context) throws IOException {
        server.command("FLUSHALL");
        server.command("CONFIG", "RESETSTAT");
    }

    @Override
    public void afterAll(ExtensionContext context) {
        try {
            if (endpoint != null) {
                endpoint.close();
            }
        } finally {
            if (server != null) {
                server.close();
            }
        }
    }

    /** The server (its URI, commands, pause and kill). */
    RedisServers.Server server() {
        return server;
    }

    /** An endpoint on the server, shared by the class's tests. */
    RedisEndpoint endpoint() {
        return endpoint;
    }
}
