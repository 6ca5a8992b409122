package dev.kvcache.quant;

import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue #16: without {@code --add-modules jdk.incubator.vector} the scalar fallback says so once,
 * through System.Logger at WARNING, naming the flag and the measured slowdown; with the module, or
 * with {@code -Dkvcache.vector=false} (a deliberate choice), there is no such warning.
 */
class ScalarFallbackWarningTest {

    /** Selects the provider twice (class init, then {@code availableProviders} twice) and prints it. */
    public static final class Probe {
        public static void main(String[] args) {
            String provider = Quantizers.provider();
            int available = Quantizers.availableProviders().size();
            available = Math.min(available, Quantizers.availableProviders().size());
            var q = Quantizers.of(KvFormats.Q8_0);   // the chosen path links and runs
            q.encode(new float[64], 1, 64, java.lang.foreign.MemorySegment.ofArray(new byte[(int) q.encodedBytes(1, 64)]));
            System.out.println("provider=" + provider + " available=" + available);
        }
    }

    /** stdout and stderr of a child JVM running {@link Probe} on this test's class path. */
    private record Child(String out, String err) {
    }

    /*
     * Surefire runs this module's tests on the class path (useModulePath=false in the parent pom;
     * the incubator module comes from its argLine ${kvcache.jvm.flags}), so java.class.path is the
     * whole test class path and the child gets only the flags given here.
     */
    private static Child run(String... flags) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xshare:auto");
        cmd.add("-XX:TieredStopAtLevel=1");
        cmd.addAll(List.of(flags));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Probe.class.getName()));
        Process p = new ProcessBuilder(cmd).start();
        try {
            CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> read(p.getErrorStream()));
            String out = read(p.getInputStream());
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "probe JVM did not finish");
            String e = err.join();
            assertEquals(0, p.exitValue(), out + e);
            return new Child(out, e);
        } finally {
            p.destroyForcibly();
        }
    }

    private static String read(java.io.InputStream in) {
        try {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static int count(String text, String part) {
        int n = 0;
        for (int i = text.indexOf(part); i >= 0; i = text.indexOf(part, i + part.length())) {
            n++;
        }
        return n;
    }

    @Test
    void withoutTheModuleTheScalarProviderWarnsOnceNamingTheFlagAndTheSlowdown() throws Exception {
        Child c = run();
        assertTrue(c.out().contains("provider=scalar available=1"), c.out() + c.err());
        assertEquals(1, count(c.err(), Quantizers.MISSING_MODULE_WARNING), c.err());
        // the JDK's default System.Logger backend (java.util.logging) prints the level before the message
        assertTrue(c.err().contains("WARNING: " + Quantizers.MISSING_MODULE_WARNING), c.err());
        assertEquals(1, count(c.err(), "jdk.incubator.vector is not in the boot layer"), c.err());
        assertTrue(c.err().contains("--add-modules jdk.incubator.vector"), c.err());
        assertTrue(c.err().contains("requires jdk.incubator.vector"), c.err());
        assertTrue(c.err().contains("quantizer-report-2026-11-25.txt"), c.err());
    }

    @Test
    void withTheModuleThereIsNoWarning() throws Exception {
        Child c = run("--add-modules", "jdk.incubator.vector");
        assertTrue(c.out().contains("provider="), c.out() + c.err());
        assertFalse(c.err().contains("is not in the boot layer"), c.err());
        assertFalse(c.err().contains(Quantizers.MISSING_MODULE_WARNING), c.err());
        if (Quantizers.vectorized()) {
            assertTrue(c.out().contains("provider=vector(") && c.out().contains("available=2"), c.out());
        }
    }

    @Test
    void disablingTheVectorPathOnPurposeDoesNotWarn() throws Exception {
        Child c = run("-Dkvcache.vector=false");
        assertTrue(c.out().contains("provider=scalar available=1"), c.out() + c.err());
        assertFalse(c.err().contains("WARNING"), c.err());
        assertFalse(c.err().contains("is not in the boot layer"), c.err());
    }
}
