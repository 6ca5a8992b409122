package dev.kvcache.redis;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Test Redis servers of our own: {@code redis-server} processes on free loopback ports, in a
 * temp directory, never persisting ({@code --save "" --appendonly no}), stopped by
 * {@link #close()} (and by a shutdown hook should a test JVM die first). Never a system service.
 *
 * <p>When {@code redis-server} is missing, a test is skipped, unless {@code CI=true}: then it
 * fails loudly (bin/test installs the package).
 */
final class RedisServers {

    private static final Set<Process> LIVE = ConcurrentHashMap.newKeySet();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> LIVE.forEach(Process::destroyForcibly)));
    }

    private RedisServers() {
    }

    /** Skips (or, with CI=true, fails) when redis-server or redis-cli is not installed. */
    static void requireRedis() {
        boolean have = onPath("redis-server") && onPath("redis-cli");
        if (!have) {
            if ("true".equalsIgnoreCase(System.getenv("CI"))) {
                Assertions.fail("redis-server/redis-cli not installed and CI=true: bin/test installs Debian's redis-server");
            }
            Assumptions.abort("redis-server not installed (apt-get install redis-server); set CI=true to make this a failure");
        }
    }

    private static boolean onPath(String exe) {
        String path = System.getenv("PATH");
        if (path == null) {
            return false;
        }
        for (String d : path.split(":")) {
            if (Files.isExecutable(Path.of(d, exe))) {
                return true;
            }
        }
        return false;
    }

    /**
     * A port p with p and p + 10000 (the cluster bus) free on loopback, both below Linux's default
     * ephemeral range (32768 and up), so an outgoing connection does not take one between the
     * check and the bind.
     */
    static int freePort() {
        for (int i = 0; i < 200; i++) {
            int p = ThreadLocalRandom.current().nextInt(12_000, 22_700);
            if (free(p) && free(p + 10_000)) {
                return p;
            }
        }
        throw new IllegalStateException("no free loopback port pair found");
    }

    private static boolean free(int p) {
        try (ServerSocket s = new ServerSocket()) {
            s.setReuseAddress(false);
            s.bind(new InetSocketAddress("127.0.0.1", p));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** One redis-server process. */
    static final class Server implements AutoCloseable {
        final int port;
        final Path dir;
        final boolean clusterNode;
        private Process process;

        private Server(int port, Path dir, boolean clusterNode) {
            this.port = port;
            this.dir = dir;
            this.clusterNode = clusterNode;
        }

        /** A single server on a free port in a fresh temp directory. */
        static Server start() throws IOException {
            requireRedis();
            Path dir = Files.createTempDirectory("kvcache-redis-");
            try {
                return startOn(dir, false);
            } catch (IOException | RuntimeException e) {
                deleteTree(dir);
                throw e;
            }
        }

        static Server startClusterNode(Path dir) throws IOException {
            return startOn(dir, true);
        }

        /** Starts on a free port, another one if the port was taken between the check and the bind. */
        private static Server startOn(Path dir, boolean cluster) throws IOException {
            IOException last = null;
            for (int attempt = 0; attempt < 5; attempt++) {
                Server s = new Server(freePort(), dir, cluster);
                try {
                    s.launch();
                    return s;
                } catch (IOException e) {
                    last = e;
                }
            }
            throw last;
        }

        String uri() {
            return "redis://127.0.0.1:" + port;
        }

        long pid() {
            return process.pid();
        }

        /** Starts (again) on the same port: an empty server, as after a crash without persistence. */
        void launch() throws IOException {
            List<String> cmd = new ArrayList<>(List.of("redis-server", "--port", String.valueOf(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", dir.toString(), "--protected-mode", "no",
                    "--daemonize", "no", "--loglevel", "warning", "--logfile", dir.resolve("redis-" + port + ".log").toString()));
            if (clusterNode) {
                cmd.addAll(List.of("--cluster-enabled", "yes", "--cluster-config-file", "nodes-" + port + ".conf",
                        "--cluster-node-timeout", "2000"));
            }
            process = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            LIVE.add(process);
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (true) {
                if (ping()) {
                    return;
                }
                if (!process.isAlive() || System.nanoTime() > end) {
                    String log = log();
                    process.destroyForcibly();
                    LIVE.remove(process);
                    throw new IOException("redis-server on port " + port + " did not start; log: " + log);
                }
                sleep(10);
            }
        }

        private String log() {
            try {
                return Files.readString(dir.resolve("redis-" + port + ".log"));
            } catch (IOException e) {
                return "(no log)";
            }
        }

        boolean ping() {
            try {
                return command("PING").startsWith("+PONG");
            } catch (IOException e) {
                return false;
            }
        }

        /** Sends one inline command and returns the raw reply (bulk replies read whole). */
        String command(String... args) throws IOException {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 500);
                s.setSoTimeout(2000);
                StringBuilder req = new StringBuilder("*" + args.length + "\r\n");
                for (String a : args) {
                    req.append('$').append(a.getBytes(StandardCharsets.UTF_8).length).append("\r\n").append(a).append("\r\n");
                }
                OutputStream out = s.getOutputStream();
                out.write(req.toString().getBytes(StandardCharsets.UTF_8));
                out.flush();
                InputStream in = s.getInputStream();
                String line = readLine(in);
                if (line.startsWith("$")) {
                    int n = Integer.parseInt(line.substring(1));
                    if (n < 0) {
                        return "";
                    }
                    byte[] b = in.readNBytes(n + 2);
                    return new String(b, 0, n, StandardCharsets.UTF_8);
                }
                return line;
            }
        }

        /** An integer reply. */
        long integer(String... args) throws IOException {
            String r = command(args);
            if (!r.startsWith(":")) {
                throw new IOException("not an integer reply to " + String.join(" ", args) + ": " + r);
            }
            return Long.parseLong(r.substring(1).trim());
        }

        /** Calls of {@code command} in INFO commandstats (0 when never called). */
        long commandCalls(String command) throws IOException {
            for (String l : command("INFO", "commandstats").split("\r\n")) {
                if (l.startsWith("cmdstat_" + command + ":")) {
                    String calls = l.substring(l.indexOf("calls=") + 6);
                    return Long.parseLong(calls.substring(0, calls.indexOf(',')));
                }
            }
            return 0;
        }

        private static String readLine(InputStream in) throws IOException {
            StringBuilder b = new StringBuilder();
            int c;
            while ((c = in.read()) >= 0) {
                if (c == '\r') {
                    in.read();
                    break;
                }
                b.append((char) c);
            }
            return b.toString();
        }

        /** SIGSTOP: the server keeps its sockets but answers nothing. */
        void pause() throws IOException, InterruptedException {
            signal("STOP");
        }

        /** SIGCONT. */
        void resume() throws IOException, InterruptedException {
            signal("CONT");
        }

        private void signal(String sig) throws IOException, InterruptedException {
            Process p = new ProcessBuilder("kill", "-" + sig, String.valueOf(process.pid())).inheritIO().start();
            if (p.waitFor() != 0) {
                throw new IOException("kill -" + sig + " " + process.pid() + " failed");
            }
        }

        /** SIGKILL, waits for it to die. */
        void kill() throws InterruptedException {
            process.destroyForcibly();
            process.waitFor(5, TimeUnit.SECONDS);
            LIVE.remove(process);
        }

        @Override
        public void close() {
            if (process == null) {
                return;
            }
            try {
                resume(); // a paused server ignores SIGTERM until continued
            } catch (IOException | InterruptedException ignored) {
                // it may be gone already
            }
            process.destroyForcibly();
            try {
                process.waitFor(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            LIVE.remove(process);
            if (!clusterNode) {
                deleteTree(dir);
            }
        }
    }

    /** Three masters, no replicas, made with redis-cli --cluster create. */
    static final class Cluster implements AutoCloseable {
        final List<Server> nodes = new ArrayList<>();
        final Path dir;

        private Cluster(Path dir) {
            this.dir = dir;
        }

        static Cluster start(int masters) throws IOException, InterruptedException {
            requireRedis();
            Cluster c = new Cluster(Files.createTempDirectory("kvcache-redis-cluster-"));
            boolean ok = false;
            try {
                for (int i = 0; i < masters; i++) {
                    c.nodes.add(Server.startClusterNode(c.dir));
                }
                List<String> cmd = new ArrayList<>(List.of("redis-cli", "--cluster", "create"));
                for (Server s : c.nodes) {
                    cmd.add("127.0.0.1:" + s.port);
                }
                cmd.addAll(List.of("--cluster-replicas", "0", "--cluster-yes"));
                Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
                String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
                    throw new IOException("redis-cli --cluster create failed: " + out);
                }
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                for (Server s : c.nodes) {
                    while (!s.command("CLUSTER", "INFO").contains("cluster_state:ok")) {
                        if (System.nanoTime() > end) {
                            throw new IOException("cluster did not reach state ok: " + s.command("CLUSTER", "INFO"));
                        }
                        sleep(20);
                    }
                }
                ok = true;
                return c;
            } finally {
                if (!ok) {
                    c.close();
                }
            }
        }

        String[] seeds() {
            return nodes.stream().map(Server::uri).toArray(String[]::new);
        }

        @Override
        public void close() {
            for (Server s : nodes) {
                s.close();
            }
            deleteTree(dir);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static void deleteTree(Path dir) {
        if (dir == null || !Files.exists(dir)) {
            return;
        }
        try (Stream<Path> w = Files.walk(dir)) {
            w.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // temp files; best effort
                }
            });
        } catch (IOException ignored) {
            // best effort
        }
    }
}
