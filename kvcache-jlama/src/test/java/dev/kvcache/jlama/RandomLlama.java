package dev.kvcache.jlama;

import com.github.tjake.jlama.model.AbstractModel;
import com.github.tjake.jlama.model.ModelSupport;
import com.github.tjake.jlama.safetensors.DType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;

/**
 * A Llama model with seeded random weights, of any shape: written as a llama2.c checkpoint and
 * converted with {@link Llama2cConverter}, so Jlama loads it like any local model. Weights are
 * Gaussian scaled by 1/sqrt(fan-in) (norms 1), so activations stay of order one over thousands of
 * positions and attention is not degenerate.
 */
final class RandomLlama {
    private RandomLlama() {}

    /** Writes the model into a new temporary directory (deleted on exit) and loads it with F32 working memory. */
    static AbstractModel load(int dim, int hidden, int layers, int heads, int kvHeads, int vocab, int seqLen, long seed)
            throws IOException {
        Path dir = Files.createTempDirectory("random-llama");
        Path ckpt = dir.resolve("random.bin");
        write(ckpt, dim, hidden, layers, heads, kvHeads, vocab, seqLen, seed);
        Llama2cConverter.convert(ckpt, dir);
        Files.delete(ckpt);
        for (String f : new String[] {"model.safetensors", "config.json", "tokenizer.json"}) {
            dir.resolve(f).toFile().deleteOnExit();
        }
        dir.toFile().deleteOnExit();
        return ModelSupport.loadModel(dir.toFile(), DType.F32, DType.F32);
    }

    private static void write(Path file, int dim, int hidden, int layers, int heads, int kvHeads, int vocab, int seqLen,
                              long seed) throws IOException {
        int hs = dim / heads, kvDim = kvHeads * hs;
        Random r = new Random(seed);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer h = ByteBuffer.allocate(28).order(ByteOrder.LITTLE_ENDIAN);
            h.putInt(dim).putInt(hidden).putInt(layers).putInt(heads).putInt(kvHeads).putInt(vocab).putInt(seqLen).flip();
            while (h.hasRemaining()) ch.write(h);
            gaussian(ch, r, (long) vocab * dim, 1.0);                 // token embedding
            ones(ch, (long) layers * dim);                            // rms_att
            gaussian(ch, r, (long) layers * dim * dim, 1 / Math.sqrt(dim));   // wq
            gaussian(ch, r, (long) layers * kvDim * dim, 1 / Math.sqrt(dim)); // wk
            gaussian(ch, r, (long) layers * kvDim * dim, 1 / Math.sqrt(dim)); // wv
            gaussian(ch, r, (long) layers * dim * dim, 1 / Math.sqrt(dim));   // wo
            ones(ch, (long) layers * dim);                            // rms_ffn
            gaussian(ch, r, (long) layers * hidden * dim, 1 / Math.sqrt(dim));    // w1
            gaussian(ch, r, (long) layers * dim * hidden, 1 / Math.sqrt(hidden)); // w2
            gaussian(ch, r, (long) layers * hidden * dim, 1 / Math.sqrt(dim));    // w3
            ones(ch, dim);                                            // rms_final
            gaussian(ch, r, (long) seqLen * hs, 0);                   // freq_cis (unused by the converter)
            // vocab > 0: the classifier is the embedding
        }
    }

    private static void gaussian(FileChannel ch, Random r, long n, double scale) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < n; i++) {
            if (!b.hasRemaining()) drain(ch, b);
            b.putFloat((float) (r.nextGaussian() * scale));
        }
        drain(ch, b);
    }

    private static void ones(FileChannel ch, long n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < n; i++) {
            if (!b.hasRemaining()) drain(ch, b);
            b.putFloat(1f);
        }
        drain(ch, b);
    }

    private static void drain(FileChannel ch, ByteBuffer b) throws IOException {
        b.flip();
        while (b.hasRemaining()) ch.write(b);
        b.clear();
    }
}
