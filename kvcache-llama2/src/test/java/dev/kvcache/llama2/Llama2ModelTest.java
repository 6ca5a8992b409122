package dev.kvcache.llama2;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class Llama2ModelTest {

    @TempDir
    Path tmp;

    @Test
    void loadsStories260K() throws IOException {
        Llama2Model m = TestModels.stories();
        assertEquals(new Llama2Model.Config(64, 172, 5, 8, 4, 512, 512, true), m.config());
        Llama2Model.Config c = m.config();
        assertEquals(8, c.headSize());
        assertEquals(32, c.kvDim());
        assertEquals(2, c.kvMul());
        assertEquals(Files.size(TestModels.storiesPath()), Llama2Model.HEADER_BYTES + 4 * c.weightFloats());
        assertSame(m.tokenEmbedding, m.wcls, "shared classifier");
        // spot values read straight from the file: first embedding float, last rms_final float
        ByteBuffer file = ByteBuffer.wrap(Files.readAllBytes(TestModels.storiesPath())).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(file.getFloat(28), m.tokenEmbedding[0]);
        long rmsFinalEnd = Llama2Model.HEADER_BYTES + 4L * (c.weightFloats() - (long) c.seqLen() * c.headSize()) - 4;
        assertEquals(file.getFloat((int) rmsFinalEnd), m.rmsFinal[c.dim() - 1]);
    }

    /** A tiny random checkpoint with the given header; weights = floats counted from the header unless given. */
    private Path write(int[] header, long floats) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) (28 + 4 * floats)).order(ByteOrder.LITTLE_ENDIAN);
        for (int h : header) {
            b.putInt(h);
        }
        for (long i = 0; i < floats; i++) {
            b.putFloat((float) Math.sin(i));
        }
        Path p = Files.createTempFile(tmp, "ckpt", ".bin");
        Files.write(p, b.array());
        return p;
    }

    private static long floats(int[] h) {
        return new Llama2Model.Config(h[0], h[1], h[2], h[3], h[4], Math.abs(h[5]), h[6], h[5] > 0).weightFloats();
    }

    @Test
    void unsharedClassifierIsReadAfterTheRopeTables() throws IOException {
        int[] h = {8, 12, 2, 2, 1, -10, 6};
        Path p = write(h, floats(h));
        Llama2Model m = Llama2Model.load(p);
        assertEquals(false, m.config().sharedClassifier());
        assertEquals(10 * 8, m.wcls.length);
        assertTrue(m.wcls != m.tokenEmbedding);
        // wcls is the last 80 floats of the file
        long total = floats(h);
        float[] expected = new float[80];
        for (int i = 0; i < 80; i++) {
            expected[i] = (float) Math.sin(total - 80 + i);
        }
        assertArrayEquals(expected, m.wcls);
        // and it runs
        int[] ids = new Llama2Reference(m).generate(new int[] {1}, 6);
        assertTrue(ids.length <= 6, Arrays.toString(ids));
    }

    @Test
    void refusesBadHeadersNamingTheValue() throws IOException {
        int[][] bad = {
                {0, 12, 2, 2, 1, 10, 6},     // dim
                {8, -1, 2, 2, 1, 10, 6},     // hidden
                {8, 12, 0, 2, 1, 10, 6},     // layers
                {8, 12, 2, 3, 1, 10, 6},     // dim % heads
                {8, 12, 2, 2, 3, 10, 6},     // kv heads > heads
                {12, 12, 2, 4, 1, 10, 6},    // odd head size 3
                {8, 12, 2, 2, 1, 0, 6},      // vocab
                {8, 12, 2, 2, 1, 10, 0},     // seq_len
        };
        String[] names = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head size", "vocab_size", "seq_len"};
        for (int i = 0; i < bad.length; i++) {
            Path p = write(bad[i], 100);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Llama2Model.load(p));
            assertTrue(e.getMessage().contains(names[i]), e.getMessage());
        }
    }

    @Test
    void refusesWrongSizes() throws IOException {
        int[] h = {8, 12, 2, 2, 1, 10, 6};
        long n = floats(h);
        for (long f : new long[] {n - 1, n + 1, 0}) {
            Path p = write(h, f);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Llama2Model.load(p));
            assertTrue(e.getMessage().contains("needs " + (28 + 4 * n) + " bytes"), e.getMessage());
        }
        Path shortFile = Files.write(tmp.resolve("short.bin"), new byte[27]);
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Llama2Model.load(shortFile))
                .getMessage().contains("27 bytes"));
        Path v1 = write(new int[] {0x616b3432, 1, 0, 0, 0, 0, 0}, 10);
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Llama2Model.load(v1))
                .getMessage().contains("version 1"));
        assertThrows(NoSuchFileException.class, () -> Llama2Model.load(tmp.resolve("missing.bin")));
    }
}
