package dev.kvcache.offheap;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import dev.kvcache.Sequence;
import dev.kvcache.quant.Quantizers;

/**
 * Run by {@link NoVectorModuleTest} in a JVM without {@code jdk.incubator.vector}: the store and
 * attention must work on the scalar kernels alone. Prints one line per format and "OK" at the end;
 * exits 1 on any failure.
 */
public final class NoVectorMain {

    private NoVectorMain() {
    }

    public static void main(String[] args) {
        try {
            if (ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent()) {
                throw new AssertionError("jdk.incubator.vector is present; this check needs a JVM without it");
            }
            System.out.println("provider " + Quantizers.provider());
            for (KvFormat f : KvFormats.all()) {
                KvLayout layout = new KvLayout(2, 2, 32, 8, f);
                try (Harness h = new Harness(layout, 16, 99)) {
                    Sequence s = h.open("s");
                    h.append(s, 29);
                    Sequence c = h.fork(s, "c");
                    h.append(c, 4);
                    h.check(s, 1, 8, PagedAttentionTest.TOL_STORED, PagedAttentionTest.tolOriginal(f));
                    h.check(c, 0, 4, PagedAttentionTest.TOL_STORED, PagedAttentionTest.tolOriginal(f));
                }
                System.out.println("format " + f + " ok");
            }
            System.out.println("OK");
        } catch (Throwable t) {
            t.printStackTrace(System.out);
            System.exit(1);
        }
    }
}
