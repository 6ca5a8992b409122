package dev.kvcache.jlama;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Converts a llama2.c checkpoint (version 0, "legacy" export) into the Hugging Face layout Jlama's
 * {@code LlamaModel} loads: {@code model.safetensors}, {@code config.json} and a minimal
 * {@code tokenizer.json}.
 *
 * <h2>Input</h2>
 * Seven little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
 * a negative vocab_size means the classifier is stored separately), then float32 arrays in run.c's
 * order: token embedding [vocab][dim]; per-layer stacks of rms_att [dim], wq [heads*hs][dim],
 * wk [kvHeads*hs][dim], wv [kvHeads*hs][dim], wo [dim][heads*hs], rms_ffn [dim], w1 [hidden][dim],
 * w2 [dim][hidden], w3 [hidden][dim]; rms_final [dim]; two legacy RoPE tables of seq_len*hs/2 floats
 * each (skipped); then the classifier [vocab][dim] only when vocab_size was negative. Matrices are
 * [out][in] row-major, the same as PyTorch's {@code nn.Linear.weight}, so they copy over as they are.
 *
 * <h2>RoPE</h2>
 * run.c rotates interleaved pairs (2i, 2i+1) of each head with frequency theta^(-2i/hs). Jlama, like
 * Hugging Face, rotates (i, i + hs/2) ("rotate_half"). The same rotation is obtained by permuting the
 * output rows of wq and wk within each head: new row {@code t*hs/2 + i} = old row {@code 2i + t}
 * (t in {0,1}), exactly what HF's {@code convert_llama_weights_to_hf.py} {@code permute} does. q and k
 * are permuted alike, so every dot product q.k is unchanged; v and wo are not touched.
 *
 * <h2>Padding the MLP</h2>
 * Jlama's Panama kernels process whole vectors and have no tail loop, so every row length must be a
 * multiple of the vector width (8 floats at 256 bits). stories260K's hidden_dim is 172. With
 * {@code hiddenMultiple > 1} the converter pads hidden_dim up to a multiple of it with zero rows in
 * w1 (gate) and w3 (up) and zero columns in w2 (down): a padded unit computes silu(0) * 0 = 0 and
 * adds exactly 0 to every output, so the model computes the same function.
 *
 * <h2>Tokenizer</h2>
 * The checkpoint carries no vocabulary, so tokenizer.json lists placeholder pieces ({@code <unk>},
 * {@code <s>}, {@code </s>}, 256 byte tokens like llama2.c's, then {@code <tok_N>}) with no merges:
 * enough for Jlama to construct its tokenizer; tests compare token ids, never text.
 */
public final class Llama2cConverter {

    /**
     * The checkpoint header: the model's shape, as {@link #readConfig} parsed and checked it (or, from
     * {@link #convert(Path, Path, int)}, the shape written, hidden_dim padded).
     *
     * @param dim              model width (embedding and residual size), dim in the header
     * @param hiddenDim        MLP hidden width, hidden_dim
     * @param layers           transformer layers, n_layers
     * @param heads            query heads, n_heads; divides {@code dim}
     * @param kvHeads          key/value heads, n_kv_heads; divides {@code heads}
     * @param vocab            vocabulary size, |vocab_size|
     * @param seqLen           maximum sequence length, seq_len
     * @param sharedClassifier true when the classifier shares the token embedding's weights (a
     *                         positive vocab_size in the header), false when it is stored separately
     */
    public record Config(int dim, int hiddenDim, int layers, int heads, int kvHeads, int vocab, int seqLen,
                         boolean sharedClassifier) {
        /**
         * Size of one attention head.
         *
         * @return {@code dim / heads}
         */
        public int headSize() {
            return dim / heads;
        }

        /**
         * Width of one position's K (or V) row over all KV heads.
         *
         * @return {@code kvHeads * headSize()}
         */
        public int kvDim() {
            return kvHeads * headSize();
        }
    }

    private Llama2cConverter() {}

    /**
     * Reads just the 28-byte header of a llama2.c checkpoint, without loading its weights.
     *
     * @param checkpoint a version 0 (legacy) llama2.c checkpoint file
     * @return the checked header
     * @throws IOException if the file cannot be read
     * @throws IllegalArgumentException if the file is shorter than the header, is a versioned export,
     *         or a header value is out of range or inconsistent (the message names the value and the limit)
     */
    public static Config readConfig(Path checkpoint) throws IOException {
        byte[] head = new byte[28];
        try (var in = Files.newInputStream(checkpoint)) {
            if (in.readNBytes(head, 0, 28) != 28) {
                throw new IllegalArgumentException(checkpoint + " is shorter than the 28-byte llama2.c header");
            }
        }
        return parseHeader(ByteBuffer.wrap(head).order(ByteOrder.LITTLE_ENDIAN), checkpoint);
    }

    private static Config parseHeader(ByteBuffer b, Path file) {
        int dim = b.getInt(), hidden = b.getInt(), layers = b.getInt(), heads = b.getInt(), kvHeads = b.getInt();
        int vocab = b.getInt(), seqLen = b.getInt();
        if (dim == 0x616b3432) {
            throw new IllegalArgumentException(file + " is a versioned llama2.c export (magic 'ak42'); only version 0 (legacy) is supported");
        }
        check("dim", dim, 1 << 16);
        check("hidden_dim", hidden, 1 << 18);
        check("n_layers", layers, 1024);
        check("n_heads", heads, 1024);
        check("n_kv_heads", kvHeads, heads);
        check("seq_len", seqLen, 1 << 20);
        check("|vocab_size|", Math.abs(vocab), 1 << 21);
        if (dim % heads != 0) {
            throw new IllegalArgumentException("dim " + dim + " is not a multiple of n_heads " + heads);
        }
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException("n_heads " + heads + " is not a multiple of n_kv_heads " + kvHeads);
        }
        if ((dim / heads) % 2 != 0) {
            throw new IllegalArgumentException("head size " + (dim / heads) + " must be even for RoPE");
        }
        return new Config(dim, hidden, layers, heads, kvHeads, Math.abs(vocab), seqLen, vocab > 0);
    }

    private static void check(String name, int v, int max) {
        if (v <= 0 || v > max) {
            throw new IllegalArgumentException(name + " " + v + " is outside 1.." + max);
        }
    }

    /**
     * Converts {@code checkpoint} into {@code outDir} (created if missing): model.safetensors,
     * config.json and tokenizer.json, with no padding of hidden_dim.
     *
     * @param checkpoint a version 0 (legacy) llama2.c checkpoint file
     * @param outDir     the directory to write into; created if missing, existing files replaced
     * @return the written model's shape (the checkpoint's, as no padding is asked)
     * @throws IOException if the checkpoint cannot be read or the output cannot be written
     * @throws IllegalArgumentException if the header is invalid or the file's size does not match it
     */
    public static Config convert(Path checkpoint, Path outDir) throws IOException {
        return convert(checkpoint, outDir, 1);
    }

    /**
     * As {@link #convert(Path, Path)}, padding hidden_dim with exact zeros up to a multiple of
     * {@code hiddenMultiple} (1 = no padding; see the class comment). The padded model computes the
     * same function.
     *
     * @param checkpoint     a version 0 (legacy) llama2.c checkpoint file
     * @param outDir         the directory to write into; created if missing, existing files replaced
     * @param hiddenMultiple pad hidden_dim up to a multiple of this, 1..1024 (e.g. 8 for 256-bit vectors)
     * @return the written model's shape: the checkpoint's, with hidden_dim rounded up to a multiple of
     *         {@code hiddenMultiple}
     * @throws IOException if the checkpoint cannot be read or the output cannot be written
     * @throws IllegalArgumentException if {@code hiddenMultiple} is outside 1..1024, the header is
     *         invalid, or the file's size does not match the header
     */
    public static Config convert(Path checkpoint, Path outDir, int hiddenMultiple) throws IOException {
        if (hiddenMultiple < 1 || hiddenMultiple > 1024) {
            throw new IllegalArgumentException("hiddenMultiple " + hiddenMultiple + " is outside 1..1024");
        }
        byte[] bytes = Files.readAllBytes(checkpoint);
        if (bytes.length < 28) {
            throw new IllegalArgumentException(checkpoint + " is shorter than the 28-byte llama2.c header");
        }
        ByteBuffer bb = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        Config c = parseHeader(bb, checkpoint);
        int hs = c.headSize(), kvDim = c.kvDim(), L = c.layers(), d = c.dim(), h = c.hiddenDim();
        long expected = (long) c.vocab() * d + (long) L * (2L * d + (long) d * d + 2L * d * kvDim + (long) d * d
                + 3L * d * h) + d + (long) c.seqLen() * hs + (c.sharedClassifier() ? 0 : (long) c.vocab() * d);
        long have = (bytes.length - 28) / 4;
        if (have != expected) {
            throw new IllegalArgumentException(checkpoint + " holds " + have + " floats after its header but "
                    + c + " needs " + expected);
        }
        FloatBuffer f = bb.position(28).slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();

        float[] emb = take(f, c.vocab() * d);
        float[][] rmsAtt = takeStack(f, L, d);
        float[][] wq = takeStack(f, L, d * d);
        float[][] wk = takeStack(f, L, kvDim * d);
        float[][] wv = takeStack(f, L, kvDim * d);
        float[][] wo = takeStack(f, L, d * d);
        float[][] rmsFfn = takeStack(f, L, d);
        float[][] w1 = takeStack(f, L, h * d);
        float[][] w2 = takeStack(f, L, d * h);
        float[][] w3 = takeStack(f, L, h * d);
        float[] rmsFinal = take(f, d);
        f.position(f.position() + c.seqLen() * hs); // freq_cis_real, freq_cis_imag: seq_len*hs/2 each
        float[] cls = c.sharedClassifier() ? null : take(f, c.vocab() * d);

        int hp = (h + hiddenMultiple - 1) / hiddenMultiple * hiddenMultiple;
        SafetensorsWriter w = new SafetensorsWriter().metadata("format", "pt")
                .metadata("source", "llama2.c checkpoint converted by dev.kvcache.jlama.Llama2cConverter");
        w.add("model.embed_tokens.weight", new int[] {c.vocab(), d}, emb);
        for (int l = 0; l < L; l++) {
            String p = "model.layers." + l + ".";
            w.add(p + "input_layernorm.weight", new int[] {d}, rmsAtt[l]);
            w.add(p + "self_attn.q_proj.weight", new int[] {d, d}, permuteForRotateHalf(wq[l], c.heads(), hs, d));
            w.add(p + "self_attn.k_proj.weight", new int[] {kvDim, d}, permuteForRotateHalf(wk[l], c.kvHeads(), hs, d));
            w.add(p + "self_attn.v_proj.weight", new int[] {kvDim, d}, wv[l]);
            w.add(p + "self_attn.o_proj.weight", new int[] {d, d}, wo[l]);
            w.add(p + "post_attention_layernorm.weight", new int[] {d}, rmsFfn[l]);
            w.add(p + "mlp.gate_proj.weight", new int[] {hp, d}, padRows(w1[l], h, d, hp));
            w.add(p + "mlp.down_proj.weight", new int[] {d, hp}, padColumns(w2[l], d, h, hp));
            w.add(p + "mlp.up_proj.weight", new int[] {hp, d}, padRows(w3[l], h, d, hp));
        }
        w.add("model.norm.weight", new int[] {d}, rmsFinal);
        if (cls != null) w.add("lm_head.weight", new int[] {c.vocab(), d}, cls);
        Config written = new Config(d, hp, L, c.heads(), c.kvHeads(), c.vocab(), c.seqLen(), c.sharedClassifier());

        Files.createDirectories(outDir);
        w.write(outDir.resolve("model.safetensors"));
        Files.writeString(outDir.resolve("config.json"), configJson(written), StandardCharsets.UTF_8);
        Files.writeString(outDir.resolve("tokenizer.json"), tokenizerJson(c.vocab()), StandardCharsets.UTF_8);
        return written;
    }

    /**
     * Reorders the output rows of a [heads*hs][cols] projection from interleaved RoPE pairs to
     * rotate-half pairs: new row {@code head*hs + t*hs/2 + i} takes old row {@code head*hs + 2i + t}.
     */
    static float[] permuteForRotateHalf(float[] w, int heads, int hs, int cols) {
        if (w.length != heads * hs * cols) {
            throw new IllegalArgumentException("matrix has " + w.length + " floats, expected " + heads + "*" + hs + "*" + cols);
        }
        float[] out = new float[w.length];
        int half = hs / 2;
        for (int head = 0; head < heads; head++) {
            for (int i = 0; i < half; i++) {
                for (int t = 0; t < 2; t++) {
                    int src = head * hs + 2 * i + t;
                    int dst = head * hs + t * half + i;
                    System.arraycopy(w, src * cols, out, dst * cols, cols);
                }
            }
        }
        return out;
    }

    /** [rows][cols] to [newRows][cols], the extra rows zero. */
    static float[] padRows(float[] w, int rows, int cols, int newRows) {
        return newRows == rows ? w : java.util.Arrays.copyOf(w, newRows * cols);
    }

    /** [rows][cols] to [rows][newCols], the extra columns zero. */
    static float[] padColumns(float[] w, int rows, int cols, int newCols) {
        if (newCols == cols) return w;
        float[] out = new float[rows * newCols];
        for (int r = 0; r < rows; r++) System.arraycopy(w, r * cols, out, r * newCols, cols);
        return out;
    }

    private static float[] take(FloatBuffer f, int n) {
        float[] a = new float[n];
        f.get(a);
        return a;
    }

    private static float[][] takeStack(FloatBuffer f, int layers, int n) {
        float[][] a = new float[layers][];
        for (int l = 0; l < layers; l++) a[l] = take(f, n);
        return a;
    }

    /** HF LlamaConfig fields Jlama reads; run.c's constants (eps 1e-5, theta 10000, SiLU, BOS 1, EOS 2). */
    static String configJson(Config c) {
        return "{\n"
                + "  \"architectures\": [\"LlamaForCausalLM\"],\n"
                + "  \"model_type\": \"llama\",\n"
                + "  \"hidden_size\": " + c.dim() + ",\n"
                + "  \"intermediate_size\": " + c.hiddenDim() + ",\n"
                + "  \"num_attention_heads\": " + c.heads() + ",\n"
                + "  \"num_key_value_heads\": " + c.kvHeads() + ",\n"
                + "  \"num_hidden_layers\": " + c.layers() + ",\n"
                + "  \"max_position_embeddings\": " + c.seqLen() + ",\n"
                + "  \"vocab_size\": " + c.vocab() + ",\n"
                + "  \"rms_norm_eps\": 1e-05,\n"
                + "  \"rope_theta\": 10000.0,\n"
                + "  \"hidden_act\": \"silu\",\n"
                + "  \"bos_token_id\": 1,\n"
                + "  \"eos_token_id\": 2,\n"
                + "  \"tie_word_embeddings\": " + c.sharedClassifier() + ",\n"
                + "  \"torch_dtype\": \"float32\"\n"
                + "}\n";
    }

    /** A BPE tokenizer.json with placeholder pieces and no merges (see the class comment). */
    static String tokenizerJson(int vocab) {
        StringBuilder sb = new StringBuilder("{\n  \"version\": \"1.0\",\n  \"model\": {\n    \"type\": \"BPE\",\n")
                .append("    \"unk_token\": \"<unk>\",\n    \"byte_fallback\": false,\n    \"vocab\": {");
        for (int id = 0; id < vocab; id++) {
            if (id > 0) sb.append(',');
            sb.append("\n      ").append(SafetensorsWriter.Json.quote(piece(id, vocab))).append(": ").append(id);
        }
        return sb.append("\n    },\n    \"merges\": []\n  }\n}\n").toString();
    }

    static String piece(int id, int vocab) {
        if (id == 0) return "<unk>";
        if (id == 1) return "<s>";
        if (id == 2) return "</s>";
        if (vocab >= 259 && id < 259) return String.format("<0x%02X>", id - 3);
        return "<tok_" + id + ">";
    }
}
