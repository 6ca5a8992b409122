package dev.kvcache;

import java.util.List;
import java.util.Locale;

/**
 * The standard KV encodings and their exact sizes. This class is the single source of truth for
 * how many bytes a format takes; the quantizers in {@code kvcache-quant} produce exactly these
 * sizes and {@link KvLayout} sizes blocks with them.
 *
 * <table>
 *   <caption>Sizes of one block slice (t tokens of one head, d = headDim)</caption>
 *   <tr><th>format</th><th>keys</th><th>values</th><th>notes</th></tr>
 *   <tr><td>F32</td><td>4td</td><td>4td</td><td>IEEE binary32</td></tr>
 *   <tr><td>F16, BF16</td><td>2td</td><td>2td</td><td>round to nearest even, saturating</td></tr>
 *   <tr><td>FP8_E4M3, FP8_E5M2</td><td>td + 4</td><td>td + 4</td>
 *       <td>one float32 scale per block, per layer, per KV head, for K and for V: bytes [0, 4) of
 *       the slice, little-endian, then the t x d codes row-major; saturating</td></tr>
 *   <tr><td>Q8_0</td><td>34 t d/32</td><td>34 t d/32</td><td>llama.cpp {@code block_q8_0}</td></tr>
 *   <tr><td>Q5_0</td><td>22 t d/32</td><td>22 t d/32</td><td>llama.cpp {@code block_q5_0}</td></tr>
 *   <tr><td>Q4_0</td><td>18 t d/32</td><td>18 t d/32</td><td>llama.cpp {@code block_q4_0}</td></tr>
 *   <tr><td>KIVI_4 / KIVI_2</td><td>d (ceil(t b / 8) + 4)</td><td>t (d/32) (4 b + 4)</td>
 *       <td>keys grouped per channel across the block's tokens, values per token in groups of
 *       32; each group an fp16 scale and an fp16 minimum; b = 4 or 2 bits. Values are encoded
 *       row by row; keys need the whole block (the store keeps a partial block in full
 *       precision until it fills). Byte layout: {@code dev.kvcache.quant}'s package
 *       documentation</td></tr>
 * </table>
 *
 * <p>NaN and infinities are refused by every quantizer (IllegalArgumentException naming the index
 * and value); finite values beyond a format's range saturate (F16, BF16, FP8) or are refused
 * where the fp16 metadata would overflow (Q8_0, Q5_0, Q4_0, KIVI).
 *
 * <p>{@link KvFormat#keyBytes} and {@link KvFormat#valueBytes} are exact: a negative count, or a
 * size beyond {@link Long#MAX_VALUE}, throws IllegalArgumentException naming the values and the
 * limit (a wrapped size would turn into a negative or too small allocation).
 */
public final class KvFormats {

    private KvFormats() {
    }

    /** IEEE binary32, 4 bytes. */
    public static final KvFormat F32 = new Dense("F32", 4);
    /** IEEE binary16, 2 bytes, little-endian, round to nearest even. */
    public static final KvFormat F16 = new Dense("F16", 2);
    /** bfloat16, 2 bytes, little-endian, round to nearest even. */
    public static final KvFormat BF16 = new Dense("BF16", 2);
    /** OCP FP8 E4M3 ("FN": max 448, no infinities), saturating, with a float scale per block and head. */
    public static final KvFormat FP8_E4M3 = new Fp8("FP8_E4M3");
    /** OCP FP8 E5M2, saturating, with a float scale per block and head. */
    public static final KvFormat FP8_E5M2 = new Fp8("FP8_E5M2");
    /** llama.cpp Q8_0: blocks of 32 values, an fp16 scale then 32 int8. */
    public static final KvFormat Q8_0 = new GgmlBlock("Q8_0", 34);
    /** llama.cpp Q5_0: blocks of 32 values, an fp16 scale, 4 bytes of high bits, then 16 bytes of low nibbles. */
    public static final KvFormat Q5_0 = new GgmlBlock("Q5_0", 22);
    /** llama.cpp Q4_0: blocks of 32 values, an fp16 scale then 16 bytes of nibbles. */
    public static final KvFormat Q4_0 = new GgmlBlock("Q4_0", 18);
    /** KIVI 4-bit: keys per channel, values per token (groups of 32), asymmetric. */
    public static final KvFormat KIVI_4 = new Kivi("KIVI_4", 4);
    /** KIVI 2-bit: keys per channel, values per token (groups of 32), asymmetric. */
    public static final KvFormat KIVI_2 = new Kivi("KIVI_2", 2);

    private static final List<KvFormat> ALL =
            List.of(F32, F16, BF16, FP8_E4M3, FP8_E5M2, Q8_0, Q5_0, Q4_0, KIVI_4, KIVI_2);

    /**
     * Every standard format, widest first.
     *
     * @return an unmodifiable list of the ten formats of this class, F32 first and KIVI_2 last
     */
    public static List<KvFormat> all() {
        return ALL;
    }

    /**
     * The standard format with this name, case-insensitive.
     *
     * @param name a format name such as {@code "q8_0"} or {@code "fp8-e4m3"}: surrounding blanks are
     *             ignored and {@code '-'} reads as {@code '_'}
     * @return the format of {@link #all()} whose {@link KvFormat#name()} matches
     * @throws IllegalArgumentException if {@code name} is null or names no standard format; the
     *                                  message lists the known names
     */
    public static KvFormat byName(String name) {
        if (name != null) {
            String upper = name.trim().toUpperCase(Locale.ROOT).replace('-', '_');
            for (KvFormat f : ALL) {
                if (f.name().equals(upper)) {
                    return f;
                }
            }
        }
        throw new IllegalArgumentException("unknown KV format '" + name + "'; known: "
                + ALL.stream().map(KvFormat::name).toList());
    }

    /** Number of values in one llama.cpp quantization block and one KIVI value group. */
    public static final int GROUP = 32;

    private abstract static class Standard implements KvFormat {
        private final String name;

        Standard(String name) {
            this.name = name;
        }

        @Override
        public final String name() {
            return name;
        }

        @Override
        public final String toString() {
            return name;
        }

        static void checkPositive(int headDim, int blockTokens) {
            if (headDim <= 0) {
                throw new IllegalArgumentException("headDim must be > 0, got " + headDim);
            }
            if (blockTokens <= 0) {
                throw new IllegalArgumentException("blockTokens must be > 0, got " + blockTokens);
            }
        }

        /** {@code a * b} without overflow; IllegalArgumentException naming the sizes otherwise. */
        final long times(long a, long b, int tokens, int headDim) {
            try {
                return Math.multiplyExact(a, b);
            } catch (ArithmeticException e) {
                throw tooLarge(tokens, headDim);
            }
        }

        final long plus(long a, long b, int tokens, int headDim) {
            try {
                return Math.addExact(a, b);
            } catch (ArithmeticException e) {
                throw tooLarge(tokens, headDim);
            }
        }

        private IllegalArgumentException tooLarge(int tokens, int headDim) {
            return new IllegalArgumentException(name + ": " + tokens + " tokens x headDim " + headDim
                    + " take more than " + Long.MAX_VALUE + " bytes (Long.MAX_VALUE)");
        }

        static void checkCounts(int tokens, int headDim) {
            if (tokens < 0) {
                throw new IllegalArgumentException("tokens must be >= 0, got " + tokens);
            }
            if (headDim < 0) {
                throw new IllegalArgumentException("headDim must be >= 0, got " + headDim);
            }
        }

        static void checkGroup(String name, int headDim) {
            if (headDim % GROUP != 0) {
                throw new IllegalArgumentException(name + " stores heads in groups of " + GROUP
                        + " values: headDim must be a multiple of " + GROUP + ", got " + headDim);
            }
        }
    }

    private static final class Dense extends Standard {
        private final int bytes;

        Dense(String name, int bytes) {
            super(name);
            this.bytes = bytes;
        }

        @Override
        public long keyBytes(int tokens, int headDim) {
            checkCounts(tokens, headDim);
            return times(times(bytes, tokens, tokens, headDim), headDim, tokens, headDim);
        }

        @Override
        public long valueBytes(int tokens, int headDim) {
            return keyBytes(tokens, headDim);
        }
    }

    private static final class Fp8 extends Standard {
        Fp8(String name) {
            super(name);
        }

        @Override
        public long keyBytes(int tokens, int headDim) {
            checkCounts(tokens, headDim);
            return plus(times(tokens, headDim, tokens, headDim), Float.BYTES, tokens, headDim);
        }

        @Override
        public long valueBytes(int tokens, int headDim) {
            return keyBytes(tokens, headDim);
        }
    }

    private static final class GgmlBlock extends Standard {
        private final int bytesPerGroup;

        GgmlBlock(String name, int bytesPerGroup) {
            super(name);
            this.bytesPerGroup = bytesPerGroup;
        }

        @Override
        public long keyBytes(int tokens, int headDim) {
            checkCounts(tokens, headDim);
            return times(times(tokens, headDim / GROUP, tokens, headDim), bytesPerGroup, tokens, headDim);
        }

        @Override
        public long valueBytes(int tokens, int headDim) {
            return keyBytes(tokens, headDim);
        }

        @Override
        public void checkShape(int headDim, int blockTokens) {
            checkPositive(headDim, blockTokens);
            checkGroup(name(), headDim);
        }
    }

    private static final class Kivi extends Standard {
        private final int bits;

        Kivi(String name, int bits) {
            super(name);
            this.bits = bits;
        }

        /** Quantized bits per element (4 or 2). */
        int bits() {
            return bits;
        }

        @Override
        public long keyBytes(int tokens, int headDim) {
            // one group per channel spanning the block's tokens: packed codes, fp16 scale, fp16 min
            checkCounts(tokens, headDim);
            long codeBytes = ((long) tokens * bits + 7) / 8; // int * bits fits a long
            return times(headDim, codeBytes + 4, tokens, headDim);
        }

        @Override
        public long valueBytes(int tokens, int headDim) {
            // one group per 32 channels of each token: packed codes, fp16 scale, fp16 min
            checkCounts(tokens, headDim);
            return times(times(tokens, headDim / GROUP, tokens, headDim), GROUP * bits / 8 + 4, tokens, headDim);
        }

        @Override
        public void checkShape(int headDim, int blockTokens) {
            checkPositive(headDim, blockTokens);
            checkGroup(name(), headDim);
        }
    }
}
