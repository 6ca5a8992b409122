package dev.kvcache.quant;

import dev.kvcache.KvFormats;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Provider selection: vector only with the incubator module and without -Dkvcache.vector=false. */
class ProviderTest {

    /** Prints the active provider; run in child JVMs with different flags. */
    public static final class Probe {
        public static void main(String[] args) {
            // touching a codec proves the chosen path links and runs
            float[] x = new float[64];
            x[3] = 1.5f;
            var q = Quantizers.of(KvFormats.Q8_0);
            q.encode(x, 1, 64, java.lang.foreign.MemorySegment.ofArray(new byte[(int) q.encodedBytes(1, 64)]));
            System.out.println("provider=" + Quantizers.provider());
        }
    }

    @Test
    void inThisJvmTheVectorProviderIsActiveWhenWanted() {
        boolean present = ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent();
        assertEquals(present && !"false".equals(System.getProperty("kvcache.vector")), Quantizers.vectorWanted());
        if (Quantizers.vectorized()) {
            assertTrue(Quantizers.vectorWanted());
            assertTrue(Quantizers.provider().startsWith("vector("), Quantizers.provider());
            String capped = System.getProperty("kvcache.vector.bits");
            if (capped != null) {
                // the vector-256 surefire execution: the cap must really narrow the kernels
                int want = Math.max(256, Math.min(Integer.parseInt(capped),
                        jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.vectorBitSize()));
                assertEquals("vector(" + want + "-bit)", Quantizers.provider());
            }
            assertEquals(2, Quantizers.availableProviders().size());
        } else {
            assertEquals("scalar", Quantizers.provider());
        }
    }

    private static String probe(String... flags) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(List.of(flags));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Probe.class.getName()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        try {
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "probe JVM did not finish");
            assertEquals(0, p.exitValue(), out);
            return out.lines().filter(l -> l.startsWith("provider=")).findFirst().orElse(out);
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void childJvmsPickTheProviderByModuleAndProperty() throws Exception {
        assertEquals("provider=scalar", probe("-Xshare:auto"));   // no incubator module at all
        assertEquals("provider=scalar", probe("--add-modules", "jdk.incubator.vector", "-Dkvcache.vector=false"));
        String withModule = probe("--add-modules", "jdk.incubator.vector");
        assertTrue(withModule.startsWith("provider=vector(") || withModule.equals("provider=scalar"), withModule);
        if (Quantizers.vectorized()) {
            assertTrue(withModule.startsWith("provider=vector("), withModule);
            assertEquals("provider=vector(256-bit)",
                    probe("--add-modules", "jdk.incubator.vector", "-Dkvcache.vector.bits=256"));
        }
    }
}
