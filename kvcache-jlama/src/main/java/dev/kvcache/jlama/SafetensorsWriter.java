package dev.kvcache.jlama;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Writes float32 tensors in the safetensors format.
 *
 * <h2>Format</h2>
 * <pre>
 *   u64 little-endian N | N bytes of UTF-8 JSON header | raw tensor data
 * </pre>
 * The header maps each tensor name to {@code {"dtype":"F32","shape":[...],"data_offsets":[b,e]}},
 * offsets relative to the start of the data section, plus an optional {@code "__metadata__"} map of
 * strings. Tensors are written in insertion order, back to back, little-endian and row-major. The
 * header is padded with spaces to a multiple of 8 bytes so every tensor starts 8-byte aligned (the
 * reference implementation does the same; readers must accept trailing spaces in the JSON).
 */
public final class SafetensorsWriter {

    /**
     * One tensor to write: its shape and its row-major float32 data.
     *
     * @param shape the dimensions, each {@code > 0}
     * @param data the row-major float32 values; its length is the product of {@code shape}
     */
    public record Tensor(int[] shape, float[] data) {
        /**
         * Checks that every dimension is positive and that {@code data} holds exactly as many floats
         * as {@code shape} describes.
         *
         * @param shape the dimensions, each {@code > 0}
         * @param data the row-major float32 values
         * @throws IllegalArgumentException if a dimension is {@code <= 0} or the data length does not
         *         match the product of the shape
         */
        public Tensor {
            long n = 1;
            for (int d : shape) {
                if (d <= 0) {
                    throw new IllegalArgumentException("dimension " + d + " of shape " + Arrays.toString(shape) + " must be > 0");
                }
                n *= d;
            }
            if (n != data.length) {
                throw new IllegalArgumentException(
                        "shape " + Arrays.toString(shape) + " holds " + n + " floats but data has " + data.length);
            }
        }
    }

    /** Creates an empty writer with no tensors and no metadata. */
    public SafetensorsWriter() { }

    private final Map<String, Tensor> tensors = new LinkedHashMap<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();

    /**
     * Adds a tensor; names must be unique.
     *
     * @param name the tensor name
     * @param shape the dimensions, each {@code > 0} (copied)
     * @param data the row-major float32 values; its length is the product of {@code shape}
     * @return this writer
     * @throws IllegalArgumentException if {@code name} was already added, a dimension is
     *         {@code <= 0}, or the data length does not match the shape
     */
    public SafetensorsWriter add(String name, int[] shape, float[] data) {
        if (tensors.containsKey(name)) {
            throw new IllegalArgumentException("tensor " + name + " added twice");
        }
        tensors.put(name, new Tensor(shape.clone(), data));
        return this;
    }

    /**
     * Adds one {@code __metadata__} string entry.
     *
     * @param key the metadata key
     * @param value the metadata value
     * @return this writer
     */
    public SafetensorsWriter metadata(String key, String value) {
        metadata.put(key, value);
        return this;
    }

    /** The header JSON (unpadded) this writer would produce. */
    String headerJson() {
        StringBuilder sb = new StringBuilder("{");
        if (!metadata.isEmpty()) {
            sb.append("\"__metadata__\":{");
            boolean first = true;
            for (Map.Entry<String, String> e : metadata.entrySet()) {
                if (!first) sb.append(',');
                first = false;
                sb.append(Json.quote(e.getKey())).append(':').append(Json.quote(e.getValue()));
            }
            sb.append('}');
        }
        long offset = 0;
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            if (sb.length() > 1) sb.append(',');
            Tensor t = e.getValue();
            long end = offset + 4L * t.data().length;
            sb.append(Json.quote(e.getKey())).append(":{\"dtype\":\"F32\",\"shape\":[");
            for (int i = 0; i < t.shape().length; i++) {
                if (i > 0) sb.append(',');
                sb.append(t.shape()[i]);
            }
            sb.append("],\"data_offsets\":[").append(offset).append(',').append(end).append("]}");
            offset = end;
        }
        return sb.append('}').toString();
    }

    /**
     * Writes the file, replacing any existing one.
     *
     * @param file the path to write
     * @throws IOException if the file cannot be opened or written
     */
    public void write(Path file) throws IOException {
        byte[] json = headerJson().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) & ~7;
        ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(json);
        while (head.hasRemaining()) head.put((byte) ' ');
        head.flip();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            writeFully(ch, head);
            for (Tensor t : tensors.values()) {
                ByteBuffer b = ByteBuffer.allocate(4 * t.data().length).order(ByteOrder.LITTLE_ENDIAN);
                b.asFloatBuffer().put(t.data());
                writeFully(ch, b);
            }
        }
    }

    private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) ch.write(b);
    }

    /** Minimal JSON string quoting: the names this module writes are ASCII, but escape anyway. */
    static final class Json {
        private Json() {}

        static String quote(String s) {
            StringBuilder sb = new StringBuilder(s.length() + 2).append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    default -> {
                        if (c < 0x20 || c > 0x7e) sb.append(String.format("\\u%04x", (int) c));
                        else sb.append(c);
                    }
                }
            }
            return sb.append('"').toString();
        }
    }
}
