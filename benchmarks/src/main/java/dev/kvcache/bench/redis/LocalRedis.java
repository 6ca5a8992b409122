package dev.kvcache.bench.redis;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * A redis-server of the benchmark's own on a free loopback port, without persistence, in a temp
 * directory; {@link #close()} stops it (and a shutdown hook, should the fork die first).
 */
final class LocalRedis implements AutoCloseable {

    final int port;
    private final Process process;
    private final Path dir;

    private LocalRedis(int port, Process process, Path dir) {
        this.port = port;
        this.process = process;
        this.dir = dir;
    }

    /** Starts one; IllegalStateException when redis-server is not installed or does not come up. */
    static LocalRedis start() throws IOException, InterruptedException {
        int port;
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress("127.0.0.1", 0));
            port = s.getLocalPort();
        }
        Path dir = Files.createTempDirectory("kvcache-bench-redis-");
        Process p;
        try {
            p = new ProcessBuilder("redis-server", "--port", String.valueOf(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", dir.toString(), "--daemonize", "no", "--loglevel", "warning")
                    .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        } catch (IOException e) {
            throw new IllegalStateException("redis-server is not installed (apt-get install redis-server): " + e.getMessage(), e);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(p::destroyForcibly));
        LocalRedis r = new LocalRedis(port, p, dir);
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (true) {
            try {
                if (r.command("PING").startsWith("+PONG")) {
                    return r;
                }
            } catch (IOException e) {
                // not up yet
            }
            if (!p.isAlive() || System.nanoTime() > end) {
                r.close();
                throw new IllegalStateException("redis-server on port " + port + " did not start");
            }
            Thread.sleep(10);
        }
    }

    String uri() {
        return "redis://127.0.0.1:" + port;
    }

    /** One command, its first reply line (a bulk reply read whole). */
    String command(String... args) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 500);
            s.setSoTimeout(2000);
            StringBuilder req = new StringBuilder("*" + args.length + "\r\n");
            for (String a : args) {
                req.append('$').append(a.length()).append("\r\n").append(a).append("\r\n");
            }
            OutputStream out = s.getOutputStream();
            out.write(req.toString().getBytes(StandardCharsets.US_ASCII));
            out.flush();
            InputStream in = s.getInputStream();
            StringBuilder line = new StringBuilder();
            int c;
            while ((c = in.read()) >= 0 && c != '\r') {
                line.append((char) c);
            }
            in.read();
            if (line.charAt(0) == '$') {
                int n = Integer.parseInt(line.substring(1));
                return n < 0 ? "" : new String(in.readNBytes(n), StandardCharsets.US_ASCII);
            }
            return line.toString();
        }
    }

    /** Calls of {@code cmd} in INFO commandstats. */
    long calls(String cmd) throws IOException {
        for (String l : command("INFO", "commandstats").split("\r\n")) {
            if (l.startsWith("cmdstat_" + cmd + ":")) {
                String v = l.substring(l.indexOf("calls=") + 6);
                return Long.parseLong(v.substring(0, v.indexOf(',')));
            }
        }
        return 0;
    }

    @Override
    public void close() {
        process.destroyForcibly();
        try {
            process.waitFor(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        try (var w = Files.walk(dir)) {
            w.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        } catch (IOException ignored) {
            // a temp directory
        }
    }
}
