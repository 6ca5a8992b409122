package dev.kvcache.jlama;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.github.tjake.jlama.model.AbstractModel;
import com.github.tjake.jlama.safetensors.DType;
import com.github.tjake.jlama.safetensors.SafeTensorSupport;
import com.github.tjake.jlama.safetensors.TensorInfo;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The llama2.c converter: the safetensors it writes are read back by Jlama's own parser with the
 * right names, shapes and bytes, and Jlama on the converted model decodes the same greedy ids as a
 * float64 port of run.c on the original checkpoint.
 */
class Llama2cConverterTest {

    @TempDir
    Path dir;

    private static Map<String, TensorInfo> header(Path file, Map<String, String> metadata) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        return SafeTensorSupport.readTensorInfoMap(b, Optional.of(metadata));
    }

    private static float[] tensor(Path file, TensorInfo info) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        long headerLength = b.getLong(0);
        FloatBuffer f = b.position((int) (8 + headerLength + info.dataOffsets[0])).slice().order(ByteOrder.LITTLE_ENDIAN)
                .asFloatBuffer();
        float[] out = new float[(int) ((info.dataOffsets[1] - info.dataOffsets[0]) / 4)];
        f.get(out);
        return out;
    }

    @Test
    void stories260KHeaderParsesInJlamaWithHfNamesAndShapes() throws IOException {
        Stories260K.assumeAvailable();
        Llama2cConverter.Config c = Llama2cConverter.convert(Stories260K.CHECKPOINT, dir);
        assertEquals(new Llama2cConverter.Config(64, 172, 5, 8, 4, 512, 512, true), c);
        Path st = dir.resolve("model.safetensors");
        assertEquals(0, (ByteBuffer.wrap(Files.readAllBytes(st)).order(ByteOrder.LITTLE_ENDIAN).getLong(0)) % 8);
        Map<String, String> meta = new java.util.HashMap<>();
        Map<String, TensorInfo> h = header(st, meta);
        assertEquals("pt", meta.get("format"));
        assertEquals(2 + 9 * 5, h.size(), "embedding, final norm, 9 per layer, no lm_head (tied): " + h.keySet());
        assertArrayEquals(new int[] {512, 64}, h.get("model.embed_tokens.weight").shape);
        assertArrayEquals(new int[] {64}, h.get("model.norm.weight").shape);
        for (int l = 0; l < 5; l++) {
            String p = "model.layers." + l + ".";
            assertArrayEquals(new int[] {64, 64}, h.get(p + "self_attn.q_proj.weight").shape);
            assertArrayEquals(new int[] {32, 64}, h.get(p + "self_attn.k_proj.weight").shape);
            assertArrayEquals(new int[] {32, 64}, h.get(p + "self_attn.v_proj.weight").shape);
            assertArrayEquals(new int[] {64, 64}, h.get(p + "self_attn.o_proj.weight").shape);
            assertArrayEquals(new int[] {172, 64}, h.get(p + "mlp.gate_proj.weight").shape);
            assertArrayEquals(new int[] {64, 172}, h.get(p + "mlp.down_proj.weight").shape);
            assertArrayEquals(new int[] {172, 64}, h.get(p + "mlp.up_proj.weight").shape);
            assertArrayEquals(new int[] {64}, h.get(p + "input_layernorm.weight").shape);
            assertArrayEquals(new int[] {64}, h.get(p + "post_attention_layernorm.weight").shape);
        }
        for (TensorInfo t : h.values()) assertEquals(DType.F32, t.dType);
        // data offsets tile the data section exactly
        long total = h.values().stream().mapToLong(t -> t.dataOffsets[1] - t.dataOffsets[0]).sum();
        long headerLength = ByteBuffer.wrap(Files.readAllBytes(st)).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        assertEquals(Files.size(st), 8 + headerLength + total);

        // bytes: the embedding is the checkpoint's first array; layer 0's k_proj is its wk, rows permuted
        ByteBuffer ck = ByteBuffer.wrap(Files.readAllBytes(Stories260K.CHECKPOINT)).order(ByteOrder.LITTLE_ENDIAN);
        FloatBuffer cf = ck.position(28).slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        float[] emb = new float[512 * 64];
        cf.get(emb);
        assertArrayEquals(emb, tensor(st, h.get("model.embed_tokens.weight")));
        int wkStart = 512 * 64 + 5 * 64 + 5 * 64 * 64;
        float[] wk0 = new float[32 * 64];
        cf.position(wkStart).get(wk0);
        float[] k0 = tensor(st, h.get("model.layers.0.self_attn.k_proj.weight"));
        // head 1 (rows 8..15), pair i=2, element t=1: old row 8+2*2+1 = 13 -> new row 8 + 1*4 + 2 = 14
        for (int col = 0; col < 64; col++) assertEquals(wk0[13 * 64 + col], k0[14 * 64 + col]);
        assertTrue(Files.readString(dir.resolve("config.json")).contains("\"num_key_value_heads\": 4"));
    }

    @Test
    void rotateHalfPermutationMovesEveryRowOnce() {
        int heads = 3, hs = 6, cols = 5;
        float[] w = new float[heads * hs * cols];
        for (int i = 0; i < w.length; i++) w[i] = i;
        float[] p = Llama2cConverter.permuteForRotateHalf(w, heads, hs, cols);
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < hs / 2; i++) {
                for (int t = 0; t < 2; t++) {
                    int oldRow = h * hs + 2 * i + t, newRow = h * hs + t * hs / 2 + i;
                    for (int c = 0; c < cols; c++) assertEquals(w[oldRow * cols + c], p[newRow * cols + c]);
                }
            }
        }
        assertThrows(IllegalArgumentException.class, () -> Llama2cConverter.permuteForRotateHalf(w, heads, hs, cols + 1));
    }

    @Test
    void jlamaOnConvertedWeightsDecodesLikeRunC() throws IOException {
        // 40 greedy ids from BOS: Jlama (F32, padded MLP) against a float64 run.c on the raw checkpoint
        AbstractModel m = Stories260K.load();
        try {
            int[] prompt = {1};
            int[] jlama = Stories260K.greedyWithJlamaCache(m, prompt, 40);
            int[] reference = new Llama2cReference(Stories260K.CHECKPOINT).greedy(prompt, 40);
            assertArrayEquals(reference, jlama);
        } finally {
            m.close();
        }
    }

    @Test
    void paddingTheMlpAddsOnlyZeros() throws IOException {
        Stories260K.assumeAvailable();
        Path plain = dir.resolve("plain"), padded = dir.resolve("padded");
        Llama2cConverter.convert(Stories260K.CHECKPOINT, plain);
        assertEquals(176, Llama2cConverter.convert(Stories260K.CHECKPOINT, padded, 16).hiddenDim());
        Map<String, TensorInfo> a = header(plain.resolve("model.safetensors"), new java.util.HashMap<>());
        Map<String, TensorInfo> b = header(padded.resolve("model.safetensors"), new java.util.HashMap<>());
        float[] down = tensor(plain.resolve("model.safetensors"), a.get("model.layers.3.mlp.down_proj.weight"));
        float[] downPadded = tensor(padded.resolve("model.safetensors"), b.get("model.layers.3.mlp.down_proj.weight"));
        assertArrayEquals(new int[] {64, 176}, b.get("model.layers.3.mlp.down_proj.weight").shape);
        for (int r = 0; r < 64; r++) {
            for (int c = 0; c < 176; c++) {
                assertEquals(c < 172 ? down[r * 172 + c] : 0f, downPadded[r * 176 + c], "row " + r + " col " + c);
            }
        }
        float[] up = tensor(padded.resolve("model.safetensors"), b.get("model.layers.3.mlp.up_proj.weight"));
        for (int i = 172 * 64; i < 176 * 64; i++) assertEquals(0f, up[i]);
        assertTrue(Files.readString(padded.resolve("config.json")).contains("\"intermediate_size\": 176"));
    }

    @Test
    void badCheckpointsAreRejectedNamingTheProblem() throws IOException {
        Path shortFile = dir.resolve("short.bin");
        Files.write(shortFile, new byte[10]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Llama2cConverter.convert(shortFile, dir.resolve("o1")));
        assertTrue(e.getMessage().contains("28-byte"), e.getMessage());

        Path versioned = dir.resolve("v1.bin");
        ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN).putInt(0x616b3432).putInt(1);
        Files.write(versioned, b.array());
        e = assertThrows(IllegalArgumentException.class, () -> Llama2cConverter.convert(versioned, dir.resolve("o2")));
        assertTrue(e.getMessage().contains("ak42"), e.getMessage());

        // a valid header for a tiny model, one float short
        Path truncated = dir.resolve("trunc.bin");
        int dim = 8, hidden = 8, layers = 1, heads = 2, kvHeads = 1, vocab = 4, seq = 4;
        long floats = vocab * dim + layers * (2L * dim + dim * dim + 2L * dim * 4 + dim * dim + 3L * dim * hidden) + dim
                + (long) seq * (dim / heads);
        ByteBuffer t = ByteBuffer.allocate((int) (28 + 4 * (floats - 1))).order(ByteOrder.LITTLE_ENDIAN);
        t.putInt(dim).putInt(hidden).putInt(layers).putInt(heads).putInt(kvHeads).putInt(vocab).putInt(seq);
        Files.write(truncated, t.array());
        e = assertThrows(IllegalArgumentException.class, () -> Llama2cConverter.convert(truncated, dir.resolve("o3")));
        assertTrue(e.getMessage().contains("holds " + (floats - 1) + " floats") && e.getMessage().contains("needs " + floats),
                e.getMessage());
        assertTrue(Files.notExists(dir.resolve("o3")), "nothing written for a rejected checkpoint");

        ByteBuffer odd = ByteBuffer.allocate(28).order(ByteOrder.LITTLE_ENDIAN);
        odd.putInt(9).putInt(8).putInt(1).putInt(3).putInt(1).putInt(4).putInt(4);
        Path oddHead = dir.resolve("odd.bin");
        Files.write(oddHead, odd.array());
        e = assertThrows(IllegalArgumentException.class, () -> Llama2cConverter.convert(oddHead, dir.resolve("o4")));
        assertTrue(e.getMessage().contains("head size 3 must be even"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Llama2cConverter.convert(oddHead, dir.resolve("o5"), 0));
    }

    @Test
    void aRandomTinyCheckpointRoundTripsEveryTensor() throws IOException {
        // an unshared classifier (negative vocab) and GQA, on random weights
        int dim = 16, hidden = 24, layers = 2, heads = 4, kvHeads = 2, vocab = 10, seq = 6, hs = dim / heads, kv = kvHeads * hs;
        Random rnd = new Random(42);
        int[] sizes = {vocab * dim, layers * dim, layers * dim * dim, layers * kv * dim, layers * kv * dim, layers * dim * dim,
                layers * dim, layers * hidden * dim, layers * dim * hidden, layers * hidden * dim, dim, seq * hs, vocab * dim};
        int total = 0;
        for (int s : sizes) total += s;
        float[] all = new float[total];
        for (int i = 0; i < total; i++) all[i] = (float) rnd.nextGaussian();
        ByteBuffer b = ByteBuffer.allocate(28 + 4 * total).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(dim).putInt(hidden).putInt(layers).putInt(heads).putInt(kvHeads).putInt(-vocab).putInt(seq);
        for (float f : all) b.putFloat(f);
        Path ck = dir.resolve("tiny.bin");
        Files.write(ck, b.array());
        Llama2cConverter.Config c = Llama2cConverter.convert(ck, dir.resolve("tiny"));
        assertEquals(false, c.sharedClassifier());
        Path st = dir.resolve("tiny/model.safetensors");
        Map<String, TensorInfo> h = header(st, new java.util.HashMap<>());
        int[] offsets = new int[sizes.length];
        for (int i = 1; i < sizes.length; i++) offsets[i] = offsets[i - 1] + sizes[i - 1];
        assertArrayEquals(java.util.Arrays.copyOfRange(all, offsets[12], offsets[12] + vocab * dim),
                tensor(st, h.get("lm_head.weight")));
        assertArrayEquals(java.util.Arrays.copyOfRange(all, offsets[10], offsets[10] + dim), tensor(st, h.get("model.norm.weight")));
        // layer 1's v_proj (not permuted) and w2 -> down_proj
        assertArrayEquals(java.util.Arrays.copyOfRange(all, offsets[4] + kv * dim, offsets[4] + 2 * kv * dim),
                tensor(st, h.get("model.layers.1.self_attn.v_proj.weight")));
        assertArrayEquals(java.util.Arrays.copyOfRange(all, offsets[8] + dim * hidden, offsets[8] + 2 * dim * hidden),
                tensor(st, h.get("model.layers.1.mlp.down_proj.weight")));
        // layer 1's q_proj is layer 1's wq with rotate-half row order
        float[] wq1 = java.util.Arrays.copyOfRange(all, offsets[2] + dim * dim, offsets[2] + 2 * dim * dim);
        assertArrayEquals(Llama2cConverter.permuteForRotateHalf(wq1, heads, hs, dim),
                tensor(st, h.get("model.layers.1.self_attn.q_proj.weight")));
        assertTrue(Files.readString(dir.resolve("tiny/tokenizer.json")).contains("\"<tok_9>\": 9"));
    }
}
