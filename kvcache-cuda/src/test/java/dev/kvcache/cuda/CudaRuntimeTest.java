package dev.kvcache.cuda;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import org.junit.jupiter.api.Test;
import org.lwjgl.cuda.CU;
import org.lwjgl.system.Library;

import java.io.File;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The probe never crashes or hangs and says why CUDA is unavailable. The child-JVM tests force
 * each failure (no driver library, a library that is not the driver, no LWJGL natives, disabled)
 * and so run identically with or without a GPU; the in-process test checks whichever state this
 * JVM is in.
 */
class CudaRuntimeTest {

    @Test
    void statusIsConsistentWithGetAndAllocate() {
        CudaRuntime.Status s = CudaRuntime.status();
        assertFalse(s.detail().isBlank());
        assertEquals(s, CudaRuntime.status(), "probed once, same answer");
        if (s.available()) {
            assertTrue(s.detail().contains("sm_"), s.detail());
            assertTrue(CudaRuntime.get().computeCapability() >= CudaRuntime.MIN_COMPUTE_CAPABILITY);
        } else {
            var e = assertThrows(CudaUnavailableException.class, CudaRuntime::get);
            assertEquals("CUDA unavailable: " + s.detail(), e.getMessage());
            var e2 = assertThrows(CudaUnavailableException.class,
                    () -> CudaKvStore.allocate(KvLayout.of(2, 2, 64, KvFormats.F16), 4));
            assertEquals(e.getMessage(), e2.getMessage());
            assertEquals("CUDA unavailable: " + s.detail(), s.toString());
        }
    }

    static String jarOf(Class<?> c) {
        try {
            return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
        } catch (URISyntaxException e) {
            throw new AssertionError(e);
        }
    }

    /** The jar holding LWJGL's linux natives, found through the resource it serves. */
    static String nativesJar() {
        String arch = System.getProperty("os.arch").matches("aarch64|arm64") ? "arm64" : "x64";
        String res = "linux/" + arch + "/org/lwjgl/liblwjgl.so";
        URL u = ClassLoader.getSystemResource(res);
        if (u == null) {
            u = CudaRuntimeTest.class.getClassLoader().getResource(res);
        }
        if (u == null || !"jar".equals(u.getProtocol())) {
            return null;
        }
        String s = u.getPath(); // file:/...jar!/linux/...
        return Path.of(URI.create(s.substring(0, s.indexOf("!/")))).toString();
    }

    /** Runs CudaRuntime.main in a fresh JVM and returns its stdout line; fails after 60 s. */
    static String probeInChild(boolean withNatives, String... props) throws Exception {
        List<String> cp = new ArrayList<>(List.of(jarOf(CudaRuntime.class), jarOf(CU.class), jarOf(Library.class)));
        if (withNatives) {
            String n = nativesJar();
            assertTrue(n != null, "org.lwjgl:lwjgl:natives-linux is not on the test class path");
            cp.add(n);
        }
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("--enable-native-access=ALL-UNNAMED");
        cmd.addAll(List.of(props));
        cmd.addAll(List.of("-cp", String.join(File.pathSeparator, cp), CudaRuntime.class.getName()));
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        boolean done = p.waitFor(60, TimeUnit.SECONDS);
        if (!done) {
            p.destroyForcibly();
        }
        assertTrue(done, "probe child JVM did not finish in 60 s: " + cmd);
        assertEquals(0, p.exitValue(), "probe child exit status");
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    }

    @Test
    void missingDriverLibraryIsReportedWithItsName() throws Exception {
        String line = probeInChild(true, "-Dkvcache.cuda.lib=/nonexistent/libcuda.so.1");
        assertTrue(line.startsWith("CUDA unavailable: the CUDA driver library '/nonexistent/libcuda.so.1'"), line);
        assertTrue(line.contains("UnsatisfiedLinkError"), line);
    }

    @Test
    void aLibraryThatIsNotTheDriverIsReported() throws Exception {
        // libc loads fine but lacks cuInit: LWJGL's "required function is missing" becomes a reason
        String line = probeInChild(true, "-Dkvcache.cuda.lib=libc.so.6");
        assertTrue(line.startsWith("CUDA unavailable: the CUDA driver library 'libc.so.6' could not be bound"), line);
    }

    @Test
    void missingLwjglNativesAreReported() throws Exception {
        String line = probeInChild(false);
        assertTrue(line.startsWith("CUDA unavailable: LWJGL's native library did not load"), line);
        assertTrue(line.contains("natives-linux"), line);
    }

    @Test
    void disabledByProperty() throws Exception {
        assertEquals("CUDA unavailable: disabled by -Dkvcache.cuda.disable=true",
                probeInChild(true, "-Dkvcache.cuda.disable=true"));
    }
}
