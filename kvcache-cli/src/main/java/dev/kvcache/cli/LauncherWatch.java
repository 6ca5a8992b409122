package dev.kvcache.cli;

import java.io.IOException;
import java.util.Optional;

/**
 * Ends the JVM when the {@code bin/kvcache} launcher that started it is gone. The launcher passes
 * TERM, HUP and INT on to the JVM, but nothing can catch a SIGKILL of the launcher (an OOM killer,
 * {@code kill -9}, a supervisor's timeout): the JVM would be left running, orphaned, with no one
 * reading its output. The launcher names itself in {@code -Dkvcache.launcher.pid}; if that process
 * is this JVM's parent, its exit makes the JVM exit with 143 (as a TERM would, shutdown hooks
 * included). Any other value (absent, not a number, not the parent) changes nothing, so a JVM
 * started another way is never ended by it. {@link #runToEnd} does the same one level down: a
 * child the CLI runs (JMH for {@code bench}) ends with the JVM.
 */
final class LauncherWatch {

    /** The system property the launcher sets to its own pid. */
    static final String PROPERTY = "kvcache.launcher.pid";
    /** The status the JVM exits with when its launcher is gone: 128 + SIGTERM. */
    static final int EXIT_LAUNCHER_GONE = 143;

    private LauncherWatch() {
    }

    /**
     * Watches the launcher named by {@code pid} (the property's value, may be null).
     *
     * @param pid the launcher's pid as the launcher wrote it, or null
     * @return whether a watch was set (the value named this JVM's parent)
     */
    static boolean exitWhenGone(String pid) {
        if (pid == null) {
            return false;
        }
        long launcher;
        try {
            launcher = Long.parseLong(pid.strip());
        } catch (NumberFormatException e) {
            return false;
        }
        Optional<ProcessHandle> parent = ProcessHandle.current().parent();
        if (parent.isEmpty() || parent.get().pid() != launcher) {
            return false;
        }
        parent.get().onExit().thenRun(() -> System.exit(EXIT_LAUNCHER_GONE));
        return true;
    }

    /**
     * Runs a child process to its end and returns its status. If this JVM exits first (a TERM the
     * launcher passed on, or the watch above after a SIGKILL of the launcher), the child and
     * its descendants (JMH's forks) are sent TERM too instead of being left running, orphaned.
     */
    static int runToEnd(ProcessBuilder pb) throws IOException, InterruptedException {
        Process p = pb.start();
        Thread hook = new Thread(() -> {
            p.descendants().forEach(ProcessHandle::destroy);
            p.destroy();
        }, "kvcache-child-stop");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            return p.waitFor();
        } finally {
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // the hook is running or will: nothing to undo
            }
        }
    }
}
