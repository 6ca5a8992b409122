package dev.kvcache.cuda;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The committed kernel image is present, is the one build-kernels.sh recorded, was built from the
 * current .cu sources, and holds SASS for sm_80 and sm_90 plus PTX, with every kernel the runtime
 * looks up. Needs no GPU and no nvcc.
 */
class KernelBinariesTest {

    private static final Path CUDA_SOURCES = Path.of("src", "main", "cuda");
    private static final String FIX = "; run kvcache-cuda/src/main/cuda/build-kernels.sh (needs nvcc) and commit "
            + "src/main/resources/dev/kvcache/cuda/";

    static Properties manifest() throws IOException {
        Properties p = new Properties();
        try (InputStream in = CudaRuntime.class.getResourceAsStream("kvcache_kernels.properties")) {
            assertNotNull(in, "kvcache_kernels.properties missing" + FIX);
            p.load(in);
        }
        return p;
    }

    static String sha256(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void imageMatchesTheRecordedHash() throws IOException {
        byte[] image = CudaRuntime.kernelImage();
        assertEquals(manifest().getProperty("fatbin.sha256"), sha256(image),
                "kvcache_kernels.fatbin is not the file build-kernels.sh wrote" + FIX);
    }

    @Test
    void imageIsFreshForTheCudaSources() throws IOException {
        // the same digest build-kernels.sh takes: for each *.cu in name order, its name, a newline, its bytes
        List<Path> sources;
        try (Stream<Path> s = Files.list(CUDA_SOURCES)) {
            sources = s.filter(p -> p.getFileName().toString().endsWith(".cu")).sorted().toList();
        }
        assertTrue(!sources.isEmpty(), "no .cu files in " + CUDA_SOURCES.toAbsolutePath());
        var all = new java.io.ByteArrayOutputStream();
        for (Path p : sources) {
            all.writeBytes((p.getFileName() + "\n").getBytes(StandardCharsets.UTF_8));
            all.writeBytes(Files.readAllBytes(p));
        }
        assertEquals(manifest().getProperty("sources.sha256"), sha256(all.toByteArray()),
                "the .cu sources changed after the kernel image was built" + FIX);
    }

    /** One entry of the fatbin container: kind 1 = PTX, 2 = ELF (SASS); sm = 80, 90, ... */
    record Entry(int kind, int sm) {
    }

    /**
     * Walks the fatbin container: a 16-byte header (magic 0xBA55ED50, version, header size, payload
     * size), then entries each with its own header (kind at 0, header size at 4, padded payload
     * size at 8, sm version at 28).
     */
    static List<Entry> entries(byte[] image) {
        ByteBuffer b = ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(0xBA55ED50, b.getInt(0), "fatbin magic");
        int headerSize = Short.toUnsignedInt(b.getShort(6));
        long fatSize = b.getLong(8);
        assertEquals(image.length, headerSize + fatSize, "fatbin size");
        List<Entry> out = new ArrayList<>();
        long off = headerSize;
        while (off < headerSize + fatSize) {
            int at = Math.toIntExact(off);
            int kind = Short.toUnsignedInt(b.getShort(at));
            long entryHeader = Integer.toUnsignedLong(b.getInt(at + 4));
            long padded = Integer.toUnsignedLong(b.getInt(at + 8));
            out.add(new Entry(kind, b.getInt(at + 28)));
            off += entryHeader + padded;
        }
        return out;
    }

    @Test
    void imageHoldsSm80AndSm90CodeAndEveryKernel() throws IOException {
        byte[] image = CudaRuntime.kernelImage();
        List<Entry> e = entries(image);
        assertTrue(e.contains(new Entry(2, 80)), "no sm_80 SASS in " + e);
        assertTrue(e.contains(new Entry(2, 90)), "no sm_90 SASS in " + e);
        assertTrue(e.contains(new Entry(1, 90)), "no compute_90 PTX in " + e);
        String text = new String(image, StandardCharsets.ISO_8859_1);
        for (String k : CudaRuntime.KERNEL_NAMES) {
            assertTrue(text.contains(k), "kernel " + k + " not in the image" + FIX);
        }
        assertEquals("sm_80,sm_90,compute_90", manifest().getProperty("archs"));
    }
}
