package dev.kvcache.jlama;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.github.tjake.jlama.model.AbstractModel;
import com.github.tjake.jlama.model.ModelSupport;
import com.github.tjake.jlama.safetensors.DType;
import com.github.tjake.jlama.tensor.AbstractTensor;
import com.github.tjake.jlama.tensor.KvBufferCache;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/** The shared test model: stories260K converted once per JVM, and Jlama greedy decoding helpers. */
final class Stories260K {
    static final Path CHECKPOINT = Path.of("/work/shared/models/stories260K.bin");
    /** Pad the MLP to whole 256-bit vectors (see Llama2cConverter and the surefire argLine). */
    static final int HIDDEN_MULTIPLE = 8;
    private static Path converted;

    private Stories260K() {}

    static void assumeAvailable() {
        assumeTrue(Files.isReadable(CHECKPOINT), "stories260K checkpoint not found at " + CHECKPOINT
                + " (see /work/shared/models/README.md)");
    }

    static synchronized Path converted() {
        assumeAvailable();
        if (converted == null) {
            try {
                Path dir = Files.createTempDirectory("stories260K-jlama");
                dir.toFile().deleteOnExit();
                Llama2cConverter.convert(CHECKPOINT, dir, HIDDEN_MULTIPLE);
                for (String f : new String[] {"model.safetensors", "config.json", "tokenizer.json"}) {
                    dir.resolve(f).toFile().deleteOnExit();
                }
                converted = dir;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return converted;
    }

    /** A fresh Jlama model (its own KvBufferCache) with F32 working memory. */
    static AbstractModel load() {
        return ModelSupport.loadModel(converted().toFile(), DType.F32, DType.F32);
    }

    /**
     * Greedy decoding through Jlama's public forward API: {@code prompt} from {@code startPos}, then
     * {@code n} sampled ids (temperature 0 = argmax), each fed back except the last.
     */
    static int[] greedy(AbstractModel m, KvBufferCache.KvBuffer kv, int[] prompt, int startPos, int n) {
        return greedy(m, kv, prompt, startPos, n, t -> {});
    }

    /**
     * Greedy decoding on a kvcache session: the caller admitted {@code prompt} already; each decoded id
     * is admitted before Jlama computes it (the engine-driven path, no embedding hook).
     */
    static int[] greedy(AbstractModel m, PagedSession s, int[] prompt, int startPos, int n) {
        return greedy(m, s.kvBuffer(), prompt, startPos, n, s::admit);
    }

    private static int[] greedy(AbstractModel m, KvBufferCache.KvBuffer kv, int[] prompt, int startPos, int n,
                                java.util.function.IntConsumer beforeFeed) {
        int[] out = new int[n];
        try (AbstractTensor logits = m.makeDenseTensor(m.getConfig().vocabularySize)) {
            AbstractTensor last = m.batchForward(prompt, startPos, kv);
            out[0] = m.sample(last.slice(last.shape().first() - 1), 0f, 0f, logits);
            last.close();
            int pos = startPos + prompt.length;
            for (int i = 1; i < n; i++) {
                beforeFeed.accept(out[i - 1]);
                AbstractTensor o = m.forward(out[i - 1], pos++, kv, Optional.empty());
                out[i] = m.sample(o, 0f, 0f, logits);
                o.close();
            }
        }
        return out;
    }

    /** Greedy ids with Jlama's own KvBufferCache (a fresh session). */
    static int[] greedyWithJlamaCache(AbstractModel m, int[] prompt, int n) {
        KvBufferCache own = new KvBufferCache(m);
        try {
            return greedy(m, own.getKvBuffer(java.util.UUID.randomUUID()), prompt, 0, n);
        } finally {
            own.close();
        }
    }

    static int[] concat(int[] a, int... b) {
        int[] r = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
