package dev.kvcache.llama2;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Objects;

/**
 * A llama2.c checkpoint (legacy format, "version 0"), loaded onto the heap.
 *
 * <h2>File layout</h2>
 * A header of seven little-endian int32 {@code dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len} (a negative {@code vocab_size} means the classifier is stored separately),
 * then float32 little-endian weights in this order, each row-major:
 * <pre>
 *   token_embedding_table [vocab][dim]
 *   rms_att_weight        [layers][dim]
 *   wq                    [layers][dim][dim]            (out, in)
 *   wk, wv                [layers][kvDim][dim]          kvDim = n_kv_heads * head_size
 *   wo                    [layers][dim][dim]
 *   rms_ffn_weight        [layers][dim]
 *   w1                    [layers][hidden][dim]
 *   w2                    [layers][dim][hidden]
 *   w3                    [layers][hidden][dim]
 *   rms_final_weight      [dim]
 *   freq_cis_real, _imag  [seq_len][head_size/2] each  (unused: RoPE is recomputed)
 *   wcls                  [vocab][dim]                  (only when vocab_size was negative)
 * </pre>
 * The file is mapped with {@link FileChannel#map(FileChannel.MapMode, long, long, Arena)} in a
 * confined arena, copied into {@code float[]} tensors (a llama2.c model small enough to test with
 * fits the heap comfortably; 2 GiB per tensor is the limit) and unmapped before {@link #load}
 * returns. The file size must match the header exactly, so a truncated or mislabelled file is
 * refused instead of being read as garbage.
 */
public final class Llama2Model {

    /** Header length in bytes: seven int32. */
    public static final int HEADER_BYTES = 7 * Integer.BYTES;

    /** llama2.c's version 1+ exports start with this magic ("ak42" little-endian). */
    private static final int MAGIC_AK42 = 0x616b3432;

    private static final ValueLayout.OfFloat F32_LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32_LE =
            ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /**
     * The hyperparameters of a checkpoint.
     *
     * @param dim              model width
     * @param hiddenDim        FFN width
     * @param layers           transformer layers
     * @param heads            query heads
     * @param kvHeads          key/value heads (grouped-query attention when fewer than heads)
     * @param vocabSize        vocabulary size (always positive here)
     * @param seqLen           maximum sequence length
     * @param sharedClassifier true when the classifier is the token embedding table
     */
    public record Config(int dim, int hiddenDim, int layers, int heads, int kvHeads, int vocabSize,
                         int seqLen, boolean sharedClassifier) {

        /**
         * Checks the header's values.
         *
         * @param dim              model width, {@code > 0}, a multiple of {@code heads}
         * @param hiddenDim        FFN width, {@code > 0}
         * @param layers           transformer layers, {@code > 0}
         * @param heads            query heads, {@code > 0}, a multiple of {@code kvHeads}; the head
         *                         size {@code dim / heads} must be even (RoPE rotates pairs)
         * @param kvHeads          key/value heads, in {@code [1, heads]}
         * @param vocabSize        vocabulary size, {@code > 0} (the file's sign is in {@code sharedClassifier})
         * @param seqLen           maximum sequence length, {@code > 0}
         * @param sharedClassifier true when the classifier is the token embedding table
         * @throws IllegalArgumentException naming the header field and its value when a check fails
         */
        public Config {
            positive("dim", dim);
            positive("hidden_dim", hiddenDim);
            positive("n_layers", layers);
            positive("n_heads", heads);
            positive("n_kv_heads", kvHeads);
            positive("vocab_size", vocabSize);
            positive("seq_len", seqLen);
            if (dim % heads != 0) {
                throw new IllegalArgumentException("dim " + dim + " is not a multiple of n_heads " + heads);
            }
            if (kvHeads > heads || heads % kvHeads != 0) {
                throw new IllegalArgumentException("n_heads " + heads
                        + " must be a multiple of n_kv_heads " + kvHeads + " (and n_kv_heads <= n_heads)");
            }
            if ((dim / heads) % 2 != 0) {
                throw new IllegalArgumentException("head size " + (dim / heads)
                        + " (dim / n_heads) must be even: RoPE rotates pairs");
            }
        }

        private static void positive(String name, int v) {
            if (v <= 0) {
                throw new IllegalArgumentException("checkpoint header: " + name + " must be > 0, got " + v);
            }
        }

        /**
         * Values per head: dim / heads.
         *
         * @return {@code dim / heads}, even and {@code > 0}
         */
        public int headSize() {
            return dim / heads;
        }

        /**
         * Key (or value) values per token and layer: kvHeads * headSize.
         *
         * @return {@code kvHeads * headSize()}, the floats of one token's K (or V) in one layer
         */
        public int kvDim() {
            return kvHeads * headSize();
        }

        /**
         * Query heads per KV head.
         *
         * @return {@code heads / kvHeads}, {@code >= 1} (1 without grouped-query attention)
         */
        public int kvMul() {
            return heads / kvHeads;
        }

        /**
         * Floats the weights take in the file after the header, skipped RoPE tables included.
         *
         * @return the number of float32 values after the header; the file is
         *         {@code HEADER_BYTES + 4 * weightFloats()} bytes
         */
        public long weightFloats() {
            long d = dim;
            long l = layers;
            long kv = kvDim();
            long n = (long) vocabSize * d                 // token embedding
                    + l * d                                // rms_att
                    + l * d * d                            // wq
                    + 2 * l * d * kv                       // wk, wv
                    + l * d * d                            // wo
                    + l * d                                // rms_ffn
                    + 3 * l * d * hiddenDim                // w1, w2, w3
                    + d                                    // rms_final
                    + (long) seqLen * headSize();          // freq_cis_real + freq_cis_imag
            if (!sharedClassifier) {
                n += (long) vocabSize * d;
            }
            return n;
        }
    }

    private final Config config;
    final float[] tokenEmbedding;
    final float[][] rmsAtt;
    final float[][] wq;
    final float[][] wk;
    final float[][] wv;
    final float[][] wo;
    final float[][] rmsFfn;
    final float[][] w1;
    final float[][] w2;
    final float[][] w3;
    final float[] rmsFinal;
    final float[] wcls;

    private Llama2Model(Config c, MemorySegment w) {
        this.config = c;
        int d = c.dim();
        int kv = c.kvDim();
        int h = c.hiddenDim();
        int l = c.layers();
        long[] off = {0};
        tokenEmbedding = take(w, off, (long) c.vocabSize() * d);
        rmsAtt = take(w, off, l, d);
        wq = take(w, off, l, (long) d * d);
        wk = take(w, off, l, (long) kv * d);
        wv = take(w, off, l, (long) kv * d);
        wo = take(w, off, l, (long) d * d);
        rmsFfn = take(w, off, l, d);
        w1 = take(w, off, l, (long) h * d);
        w2 = take(w, off, l, (long) d * h);
        w3 = take(w, off, l, (long) h * d);
        rmsFinal = take(w, off, d);
        off[0] += (long) c.seqLen() * c.headSize() * Float.BYTES; // freq_cis_real and _imag
        wcls = c.sharedClassifier() ? tokenEmbedding : take(w, off, (long) c.vocabSize() * d);
        if (off[0] != w.byteSize()) {
            throw new AssertionError("read " + off[0] + " of " + w.byteSize() + " weight bytes");
        }
    }

    private static float[] take(MemorySegment w, long[] off, long floats) {
        if (floats > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("a tensor of " + floats
                    + " floats exceeds the on-heap limit of " + (Integer.MAX_VALUE - 8));
        }
        float[] out = new float[(int) floats];
        MemorySegment.copy(w, F32_LE, off[0], out, 0, out.length);
        off[0] += floats * Float.BYTES;
        return out;
    }

    private static float[][] take(MemorySegment w, long[] off, int layers, long floats) {
        float[][] out = new float[layers][];
        for (int i = 0; i < layers; i++) {
            out[i] = take(w, off, floats);
        }
        return out;
    }

    /**
     * Reads a version-0 llama2.c checkpoint.
     *
     * @param path the checkpoint file; not null
     * @return the model, its weights copied onto the heap (the file is unmapped before this returns)
     * @throws NullPointerException     if {@code path} is null
     * @throws IllegalArgumentException when {@code path} is a directory or not a regular file,
     *                                  the header is invalid (a version 1+ "ak42" export
     *                                  included), the file size does not match it, or a tensor
     *                                  exceeds the on-heap array limit
     * @throws IOException              when the file cannot be read; a
     *                                  {@link java.nio.file.NoSuchFileException} when {@code path}
     *                                  does not exist
     */
    public static Llama2Model load(Path path) throws IOException {
        Objects.requireNonNull(path, "path");
        if (!Files.exists(path)) {
            throw new java.nio.file.NoSuchFileException(path.toString(), null,
                    "llama2.c checkpoint not found");
        }
        if (!Files.isRegularFile(path)) {
            throw new IllegalArgumentException(path + " is " + (Files.isDirectory(path) ? "a directory" : "not a regular file")
                    + ", not a llama2.c checkpoint");
        }
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ);
             Arena arena = Arena.ofConfined()) {
            long size = ch.size();
            if (size < HEADER_BYTES) {
                throw new IllegalArgumentException(path + ": " + size
                        + " bytes is shorter than the " + HEADER_BYTES + "-byte llama2.c header");
            }
            MemorySegment file = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            int[] h = new int[7];
            for (int i = 0; i < 7; i++) {
                h[i] = file.get(I32_LE, (long) i * Integer.BYTES);
            }
            if (h[0] == MAGIC_AK42) {
                throw new IllegalArgumentException(path + ": a llama2.c version "
                        + h[1] + " export (magic \"ak42\"); only the legacy version-0 format is supported");
            }
            Config c;
            try {
                c = new Config(h[0], h[1], h[2], h[3], h[4], Math.abs(h[5]), h[6], h[5] > 0);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(path + ": " + e.getMessage(), e);
            }
            long expected = HEADER_BYTES + c.weightFloats() * Float.BYTES;
            if (size != expected) {
                throw new IllegalArgumentException(path + ": header " + c + " needs " + expected
                        + " bytes but the file has " + size);
            }
            return new Llama2Model(c, file.asSlice(HEADER_BYTES));
        }
    }

    /**
     * The hyperparameters.
     *
     * @return the header's values, as checked by {@link Config}
     */
    public Config config() {
        return config;
    }

    @Override
    public String toString() {
        return "Llama2Model" + config;
    }
}
