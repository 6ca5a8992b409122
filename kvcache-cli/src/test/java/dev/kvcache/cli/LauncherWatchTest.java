package dev.kvcache.cli;

import org.junit.jupiter.api.Test;

import java.io.File;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link LauncherWatch}: a JVM whose launcher shell is SIGKILLed (which no trap can pass on) exits
 * by itself; a JVM whose launcher is alive keeps running; values that do not name the parent
 * change nothing.
 */
class LauncherWatchTest {

    /** The JVM a fake launcher starts: sets the watch as {@code KvCacheCli.main} does, then idles. */
    public static final class Idle {
        public static void main(String[] args) throws InterruptedException {
            System.out.println(LauncherWatch.exitWhenGone(System.getProperty(LauncherWatch.PROPERTY)) ? "watching" : "not watching");
            System.out.flush();
            Thread.sleep(60_000);
        }
    }

    /** A JVM that runs a child as {@code bench} runs JMH ({@link LauncherWatch#runToEnd}). */
    public static final class RunsChild {
        public static void main(String[] args) throws Exception {
            LauncherWatch.exitWhenGone(System.getProperty(LauncherWatch.PROPERTY));
            System.exit(LauncherWatch.runToEnd(new ProcessBuilder("sleep", "60")));
        }
    }

    private static String classPath() throws URISyntaxException {
        Path tests = Path.of(Idle.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        Path main = Path.of(LauncherWatch.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        return tests + File.pathSeparator + main;
    }

    /** A bash "launcher" that starts the JVM as a background job and waits, as bin/kvcache does. */
    private static Process launcher(String pidValue) throws Exception {
        return launcher(pidValue, Idle.class);
    }

    private static Process launcher(String pidValue, Class<?> main) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String script = "'" + java + "' -Xmx32m -Dkvcache.launcher.pid=" + pidValue + " -cp '" + classPath() + "' '"
                + main.getName() + "' & wait"; // quoted: the nested class's name has a $
        return new ProcessBuilder("bash", "-c", script).redirectError(ProcessBuilder.Redirect.DISCARD).start();
    }

    private static ProcessHandle jvmOf(Process launcher) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (System.nanoTime() < end) {
            Optional<ProcessHandle> child = launcher.children().findFirst();
            if (child.isPresent()) {
                return child.get();
            }
            Thread.sleep(20);
        }
        throw new AssertionError("the launcher started no JVM");
    }

    private static String firstLine(Process launcher) throws Exception {
        String line = new java.io.BufferedReader(new java.io.InputStreamReader(launcher.getInputStream(),
                java.nio.charset.StandardCharsets.UTF_8)).readLine();
        return line == null ? "" : line;
    }

    @Test
    void aJvmWhoseLauncherIsKilledExitsByItself() throws Exception {
        Process launcher = launcher("$$");
        ProcessHandle jvm = jvmOf(launcher);
        try {
            assertEquals("watching", firstLine(launcher), "the JVM watches its launcher");
            assertTrue(jvm.isAlive(), "alive while the launcher is");
            launcher.destroyForcibly(); // SIGKILL: no trap runs
            assertTrue(launcher.waitFor(10, TimeUnit.SECONDS));
            assertTrue(jvm.onExit().get(15, TimeUnit.SECONDS) != null && !jvm.isAlive(),
                    "the orphaned JVM exits once its launcher is gone");
        } finally {
            jvm.destroyForcibly();
        }
    }

    @Test
    void theChildOfAJvmWhoseLauncherIsKilledEndsWithIt() throws Exception {
        Process launcher = launcher("$$", RunsChild.class);
        ProcessHandle jvm = jvmOf(launcher);
        ProcessHandle child = null;
        try {
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (child == null && System.nanoTime() < end) {
                child = jvm.children().findFirst().orElse(null);
                Thread.sleep(20);
            }
            assertTrue(child != null, "the JVM started its child");
            launcher.destroyForcibly();
            assertTrue(launcher.waitFor(10, TimeUnit.SECONDS));
            jvm.onExit().get(15, TimeUnit.SECONDS);
            child.onExit().get(15, TimeUnit.SECONDS);
            assertFalse(child.isAlive(), "the child ends with the JVM, not left running");
        } finally {
            jvm.destroyForcibly();
            if (child != null) {
                child.destroyForcibly();
            }
        }
    }

    @Test
    void aValueThatIsNotTheParentSetsNoWatch() throws Exception {
        Process launcher = launcher("1");
        ProcessHandle jvm = jvmOf(launcher);
        try {
            assertEquals("not watching", firstLine(launcher));
            launcher.destroyForcibly();
            assertTrue(launcher.waitFor(10, TimeUnit.SECONDS));
            assertFalse(jvm.onExit().isDone(), "a JVM not watching is left as it was");
        } finally {
            jvm.destroyForcibly();
        }
        assertFalse(LauncherWatch.exitWhenGone(null));
        assertFalse(LauncherWatch.exitWhenGone("not a pid"));
        assertFalse(LauncherWatch.exitWhenGone(Long.toString(ProcessHandle.current().pid())), "this JVM is not its own parent");
    }
}
