package dev.kvcache.quant.gen;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes the Vector API slice kernels of kvcache-quant from one template per skeleton plus
 * per-format snippets, as the JDK does with {@code X-Vector.java.template} and Lucene with
 * {@code gen_ForUtil.py}.
 *
 * <h2>Why generated</h2>
 * The fast kernels hold many vectors live at once (four rows, four query heads, two chunks) and
 * widen every stored chunk to floats in place. Written with helper methods that return vectors,
 * C2 does not reliably inline the helpers into methods this large and then boxes their results
 * (5-10x slower), so the widening has to be spelled out inside each loop body. Spelled out by hand
 * that is six skeletons times seven formats; here it is six templates and one snippet per format.
 *
 * <h2>Two template families</h2>
 * <ul>
 *   <li><b>element</b> formats (F32, F16, BF16, FP8): a row is {@code dim} fixed-size elements,
 *       optionally after a slice header holding a float scale (FP8). A snippet widens the L
 *       elements at a byte offset to a {@code FloatVector}; another gives one element as a float
 *       for the scalar tails ({@code dim % L}).</li>
 *   <li><b>block</b> formats (Q8_0, Q4_0, Q5_0): a row is {@code dim / 32} llama.cpp blocks of a
 *       fixed byte size starting with an fp16 scale. A snippet turns one <em>unit</em> of a block
 *       (the codes one load yields) into two {@code FloatVector} parts of L values each, at value
 *       offsets inside the block; blocks have no tails (L divides 16).</li>
 * </ul>
 * The skeletons: {@code dotRow} / {@code axpyRow} (one row), {@code dotRows} (four rows at a time,
 * independent FMA chains), {@code accumulateRows} (chunks outer, rows inner: the accumulator chunks
 * stay in registers across rows), and their grouped-query forms {@code dotRowsGroup} /
 * {@code accumulateRowsGroup} (four query heads per pass, each stored chunk widened once for the
 * four heads). Every method's arguments are already checked by {@code Codec}.
 *
 * <p>Run {@code main} with the source root ({@code kvcache-quant/src/main/java}) to rewrite the
 * files; {@code GeneratedKernelsTest} fails when a checked-in file differs from {@link #render()}.
 */
public final class KernelGenerator {

    private KernelGenerator() {
    }

    /** Package directory of the generated files, relative to the source root. */
    public static final String DIR = "dev/kvcache/quant";

    /** Snippet producing a {@code FloatVector var} from the L elements at byte offset {@code off} of {@code slice}. */
    interface Widen {
        List<String> lines(String var, String off);
    }

    /** A float expression for the element at byte offset {@code off} of {@code slice}. */
    interface Scalar {
        String expr(String off);
    }

    record Elem(String cls, String what, int ebytes, boolean sliceScale, Widen widen, Scalar scalar,
                int[] accChunks, boolean groupAcc, boolean group4Rows) {
    }

    /**
     * A block format. In the snippets {@code $g} is the block's byte offset variable and {@code $n}
     * a suffix that keeps one row's temporaries apart from another's; {@code k} is the unit's first
     * value index in the block.
     */
    record Block(String cls, String what, int blockBytes, String unitStride, int unitEnd,
                 String blockPre, String unitPre, String off0, String part0, String off1, String part1) {
    }

    static final String F16_WIDEN_DOC = "fp16 widened by bit manipulation (sign-extended S2I, exponent rebias by"
            + " multiplication, infinities patched in)";

    static List<Elem> elems() {
        return List.of(
                new Elem("F32Kernels", "F32", 4, false,
                        (v, o) -> List.of("FloatVector " + v + " = FloatVector.fromMemorySegment(F, slice, " + o + ", LE_ORDER);"),
                        o -> "slice.get(F32, " + o + ")",
                        new int[] {8, 4, 1}, false, true),
                new Elem("F16Kernels", "F16 (" + F16_WIDEN_DOC + ")", 2, false,
                        (v, o) -> List.of(
                                "IntVector " + v + "x = (IntVector) ShortVector.fromMemorySegment(S, slice, " + o + ", LE_ORDER).convertShape(S2I, I, 0);",
                                "IntVector " + v + "t = " + v + "x.lanewise(LSHL, 17).lanewise(LSHR, 4);",
                                "FloatVector " + v + " = " + v + "t.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()"
                                        + ".blend(" + v + "t.or(0x7F800000), " + v + "t.compare(GE, 0x7C00 << 13))"
                                        + ".or(" + v + "x.and(0x80000000)).reinterpretAsFloats();"),
                        o -> "Bits.fromF16(slice.get(I16, " + o + "))",
                        new int[] {4, 1}, true, true),
                new Elem("BF16Kernels", "BF16 (shift into the high half)", 2, false,
                        (v, o) -> List.of("FloatVector " + v + " = ((IntVector) ShortVector.fromMemorySegment(S, slice, " + o
                                + ", LE_ORDER).convertShape(S2I, I, 0)).lanewise(LSHL, 16).reinterpretAsFloats();"),
                        o -> "Bits.fromBf16(slice.get(I16, " + o + "))",
                        new int[] {4, 1}, true, true),
                new Elem("Fp8E4m3Kernels", "FP8_E4M3 (codes placed in a float's exponent and mantissa and rebiased;"
                        + " subnormals by int-to-float conversion; the slice's float scale folded into the result)", 1, true,
                        (v, o) -> List.of(
                                "IntVector " + v + "x = (IntVector) ByteVector.fromMemorySegment(B, slice, " + o + ", LE_ORDER).convertShape(B2I, I, 0);",
                                "IntVector " + v + "m = " + v + "x.and(0x7F);",
                                "FloatVector " + v + " = " + v + "m.lanewise(LSHL, 20).add((127 - 7) << 23)"
                                        + ".blend(((FloatVector) " + v + "m.convert(I2F, 0)).mul(0x1p-9f).reinterpretAsInts(), " + v + "m.compare(LT, 8))"
                                        + ".blend(0x7FC00000, " + v + "m.compare(EQ, 0x7F))"
                                        + ".or(" + v + "x.and(0x80).lanewise(LSHL, 24)).reinterpretAsFloats();"),
                        o -> "Fp8Codec.E4M3.table[slice.get(I8, " + o + ") & 0xFF]",
                        new int[] {2, 1}, true, false),
                new Elem("Fp8E5m2Kernels", "FP8_E5M2 (as FP8_E4M3, with infinities and NaNs patched in)", 1, true,
                        (v, o) -> List.of(
                                "IntVector " + v + "x = (IntVector) ByteVector.fromMemorySegment(B, slice, " + o + ", LE_ORDER).convertShape(B2I, I, 0);",
                                "IntVector " + v + "m = " + v + "x.and(0x7F);",
                                "FloatVector " + v + " = " + v + "m.lanewise(LSHL, 21).add((127 - 15) << 23)"
                                        + ".blend(((FloatVector) " + v + "m.convert(I2F, 0)).mul(0x1p-16f).reinterpretAsInts(), " + v + "m.compare(LT, 4))"
                                        + ".blend(0x7F800000, " + v + "m.compare(EQ, 0x7C)).blend(0x7FC00000, " + v + "m.compare(GT, 0x7C))"
                                        + ".or(" + v + "x.and(0x80).lanewise(LSHL, 24)).reinterpretAsFloats();"),
                        o -> "Fp8Codec.E5M2.table[slice.get(I8, " + o + ") & 0xFF]",
                        new int[] {2, 1}, true, false));
    }

    static List<Block> blocks() {
        return List.of(
                new Block("Q8Kernels", "Q8_0 (block_q8_0: fp16 d, 32 int8 codes; a unit is 2L codes, widened B2F)", 34, "2 * L", 32,
                        null, null,
                        "k", "((FloatVector) ByteVector.fromMemorySegment(B, slice, $g + 2 + k, LE_ORDER).convertShape(B2F, F, 0))",
                        "k + L", "((FloatVector) ByteVector.fromMemorySegment(B, slice, $g + 2 + k + L, LE_ORDER).convertShape(B2F, F, 0))"),
                // the nibbles are split in int lanes (one B2I widening per unit): x86 has no byte
                // shift, so a ByteVector LSHR is emulated with several instructions
                new Block("Q4Kernels", "Q4_0 (block_q4_0: fp16 d, 16 bytes; byte j holds value j (low nibble) and j + 16"
                        + " (high nibble), minus 8; the bytes widened to int lanes once, the nibbles split there)", 18, "L", 16,
                        null, "IntVector v$n = (IntVector) ByteVector.fromMemorySegment(B, slice, $g + 2 + k, LE_ORDER).convertShape(B2I, I, 0);",
                        "k", "((FloatVector) v$n.and(0x0F).sub(8).convert(I2F, 0))",
                        "k + 16", "((FloatVector) v$n.lanewise(LSHR, 4).and(0x0F).sub(8).convert(I2F, 0))"),
                new Block("Q5Kernels", "Q5_0 (block_q5_0: fp16 d, 32 high bits qh, 16 bytes of low nibbles as Q4_0;"
                        + " value j = (nibble | bit j of qh << 4) - 16; the bytes widened to int lanes once; the high bits"
                        + " become a lane mask)", 22, "L", 16,
                        "int h$n = slice.get(I32, $g + 2);",
                        "IntVector v$n = (IntVector) ByteVector.fromMemorySegment(B, slice, $g + 6 + k, LE_ORDER).convertShape(B2I, I, 0);",
                        "k", "((FloatVector) v$n.and(0x0F).lanewise(OR, 0x10, VectorMask.fromLong(I, h$n >>> k))"
                                + ".sub(16).convert(I2F, 0))",
                        "k + 16", "((FloatVector) v$n.lanewise(LSHR, 4).and(0x0F).lanewise(OR, 0x10, VectorMask.fromLong(I, h$n >>> (k + 16)))"
                                + ".sub(16).convert(I2F, 0))"));
    }

    /** File name to content, in a stable order. */
    public static Map<String, String> render() {
        Map<String, String> out = new LinkedHashMap<>();
        for (Elem e : elems()) {
            out.put(e.cls + ".java", elemFile(e));
        }
        for (Block b : blocks()) {
            out.put(b.cls + ".java", blockFile(b));
        }
        return out;
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            throw new IllegalArgumentException("usage: KernelGenerator <source root, e.g. kvcache-quant/src/main/java>");
        }
        Path dir = Path.of(args[0]).resolve(DIR);
        for (Map.Entry<String, String> f : render().entrySet()) {
            Files.writeString(dir.resolve(f.getKey()), f.getValue(), StandardCharsets.UTF_8);
        }
    }

    // ================================================================== output helpers

    private static final class Out {
        final StringBuilder sb = new StringBuilder();
        int indent;

        Out line(String s) {
            if (s.isEmpty()) {
                sb.append('\n');
            } else {
                sb.append("    ".repeat(indent)).append(s).append('\n');
            }
            return this;
        }

        Out open(String s) {
            line(s);
            indent++;
            return this;
        }

        Out close(String s) {
            indent--;
            return line(s);
        }

        Out lines(List<String> ls) {
            ls.forEach(this::line);
            return this;
        }
    }

    private static final String HEADER = """
            // GENERATED by kvcache-quant/src/test/java/dev/kvcache/quant/gen/KernelGenerator.java -- do not edit.
            // Regenerate: mvn -o -q -B test-compile -pl kvcache-quant && java -cp kvcache-quant/target/test-classes \\
            //     dev.kvcache.quant.gen.KernelGenerator kvcache-quant/src/main/java
            package dev.kvcache.quant;

            """;

    private static void imports(Out o, List<String> names) {
        for (String n : names) {
            o.line("import " + n + ";");
        }
    }

    private static String sub(String s, String g, String n) {
        return s.replace("$g", g).replace("$n", n);
    }

    private static final String[] H = {"0", "1", "2", "3"};
    private static final String[] R4 = {"a", "b", "c", "d"};

    // ================================================================== element formats

    static String elemFile(Elem e) {
        Out o = new Out();
        o.sb.append(HEADER);
        List<String> imp = new ArrayList<>(List.of("jdk.incubator.vector.ByteVector", "jdk.incubator.vector.FloatVector",
                "jdk.incubator.vector.IntVector", "jdk.incubator.vector.ShortVector"));
        String body = String.join("\n", e.widen.lines("k", "X"));
        imp.removeIf(i -> !body.contains(i.substring(i.lastIndexOf('.') + 1)) && !i.endsWith("FloatVector"));
        imports(o, imp);
        o.line("");
        o.line("import java.lang.foreign.MemorySegment;");
        o.line("");
        List<String> st = new ArrayList<>();
        st.add("dev.kvcache.quant.Bits.F32");
        st.add("dev.kvcache.quant.Bits.I16");
        st.add("dev.kvcache.quant.Bits.I8");
        st.add("dev.kvcache.quant.VectorProvider.B");
        st.add("dev.kvcache.quant.VectorProvider.F");
        st.add("dev.kvcache.quant.VectorProvider.I");
        st.add("dev.kvcache.quant.VectorProvider.L");
        st.add("dev.kvcache.quant.VectorProvider.LE_ORDER");
        st.add("dev.kvcache.quant.VectorProvider.S");
        for (String op : new String[] {"ADD", "B2I", "EQ", "GE", "GT", "I2F", "LSHL", "LSHR", "LT", "S2I"}) {
            st.add("jdk.incubator.vector.VectorOperators." + op);
        }
        String all = body + e.scalar.expr("X") + (e.sliceScale ? "F32" : "");
        for (String s : st) {
            String name = s.substring(s.lastIndexOf('.') + 1);
            boolean used = switch (name) {
                case "F", "L", "LE_ORDER", "ADD" -> true;
                case "F32" -> all.contains("F32");
                default -> java.util.regex.Pattern.compile("\\b" + name + "\\b").matcher(all).find();
            };
            if (used) {
                o.line("import static " + s + ";");
            }
        }
        o.line("");
        o.line("/*");
        o.line(" * Vector API slice kernels of " + e.what + ".");
        o.line(" * Element formats: a row is dim elements of " + e.ebytes + " byte(s)"
                + (e.sliceScale ? " after the slice's 4-byte float scale" : "") + "; vector chunks of L, then a scalar tail.");
        o.line(" * See KernelGenerator for the skeletons and why they are generated.");
        o.line(" */");
        o.open("final class " + e.cls + " {");
        o.line("");
        o.open("private " + e.cls + "() {");
        o.close("}");
        elemDotRow(o, e);
        elemAxpyRow(o, e);
        elemDotRows(o, e);
        elemAccumulateRows(o, e);
        elemDotRowsGroup(o, e);
        if (e.groupAcc) {
            elemAccumulateRowsGroup(o, e);
        }
        o.close("}");
        return o.sb.toString();
    }

    private static String eb(Elem e, String i) {
        return e.ebytes == 1 ? i : e.ebytes + "L * " + i;
    }

    /** Prologue of the slice-level methods: the header scale and where row 0 starts. */
    private static void sliceStart(Out o, Elem e, boolean dot) {
        if (e.sliceScale) {
            o.line(dot ? "float k = scale * slice.get(F32, off);" : "float ss = slice.get(F32, off);");
            o.line("long base = off + 4;");
        } else {
            o.line("long base = off;");
        }
        o.line("long rb = " + (e.ebytes == 1 ? "dim" : e.ebytes + "L * dim") + ";");
    }

    private static String kScale(Elem e) {
        return e.sliceScale ? "k" : "scale";
    }

    private static String weight(Elem e, String idx) {
        return e.sliceScale ? "w[" + idx + "] * ss" : "w[" + idx + "]";
    }

    static void elemDotRow(Out o, Elem e) {
        o.line("");
        o.line("/** dot(q[qOff ..), the row at byte offset o): one chain of FMAs, then the scalar tail. */");
        o.open("static float dotRow(MemorySegment slice, long o, int dim, float[] q, int qOff) {");
        o.line("FloatVector acc = FloatVector.zero(F);");
        o.line("int i = 0;");
        o.open("for (int bound = F.loopBound(dim); i < bound; i += L) {");
        o.lines(e.widen.lines("k", "o + " + eb(e, "i")));
        o.line("acc = k.fma(FloatVector.fromArray(F, q, qOff + i), acc);");
        o.close("}");
        o.line("float s = acc.reduceLanes(ADD);");
        o.open("for (; i < dim; i++) {");
        o.line("s += q[qOff + i] * " + e.scalar.expr("o + " + eb(e, "i")) + ";");
        o.close("}");
        o.line("return s;");
        o.close("}");
    }

    static void elemAxpyRow(Out o, Elem e) {
        o.line("");
        o.line("/** acc[aOff ..) += w * the row at byte offset o. */");
        o.open("static void axpyRow(MemorySegment slice, long o, int dim, float w, float[] acc, int aOff) {");
        o.line("FloatVector wv = FloatVector.broadcast(F, w);");
        o.line("int i = 0;");
        o.open("for (int bound = F.loopBound(dim); i < bound; i += L) {");
        o.lines(e.widen.lines("v", "o + " + eb(e, "i")));
        o.line("v.fma(wv, FloatVector.fromArray(F, acc, aOff + i)).intoArray(acc, aOff + i);");
        o.close("}");
        o.open("for (; i < dim; i++) {");
        o.line("acc[aOff + i] += w * " + e.scalar.expr("o + " + eb(e, "i")) + ";");
        o.close("}");
        o.close("}");
    }

    static void elemDotRows(Out o, Elem e) {
        o.line("");
        o.line("/*");
        o.line(" * Four rows at a time with independent accumulators: each query chunk is loaded once for four");
        o.line(" * rows and the four FMA chains overlap (one chain per row is latency-bound).");
        o.line(" */");
        o.open("static void dotRows(MemorySegment slice, long off, int rows, int count, int dim,");
        o.line("        float[] q, int qOff, float scale, float[] scores, int sOff) {");
        sliceStart(o, e, true);
        o.line("int bound = F.loopBound(dim);");
        o.line("int r = 0;");
        o.open("for (; r + 4 <= count; r += 4) {");
        o.line("long o0 = base + r * rb;");
        o.line("long o1 = o0 + rb;");
        o.line("long o2 = o1 + rb;");
        o.line("long o3 = o2 + rb;");
        o.line("FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;");
        o.open("for (int i = 0; i < bound; i += L) {");
        o.line("FloatVector qv = FloatVector.fromArray(F, q, qOff + i);");
        o.line("long e = " + eb(e, "i") + ";");
        for (String n : H) {
            o.lines(e.widen.lines("k" + n, "o" + n + " + e"));
            o.line("a" + n + " = k" + n + ".fma(qv, a" + n + ");");
        }
        o.close("}");
        o.line("float s0 = a0.reduceLanes(ADD), s1 = a1.reduceLanes(ADD), s2 = a2.reduceLanes(ADD), s3 = a3.reduceLanes(ADD);");
        o.open("for (int i = bound; i < dim; i++) {");
        o.line("float qi = q[qOff + i];");
        o.line("long e = " + eb(e, "i") + ";");
        for (String n : H) {
            o.line("s" + n + " += qi * " + e.scalar.expr("o" + n + " + e") + ";");
        }
        o.close("}");
        for (int n = 0; n < 4; n++) {
            o.line("scores[sOff + r" + (n == 0 ? "" : " + " + n) + "] = " + kScale(e) + " * s" + n + ";");
        }
        o.close("}");
        o.open("for (; r < count; r++) {");
        o.line("scores[sOff + r] = " + kScale(e) + " * dotRow(slice, base + r * rb, dim, q, qOff);");
        o.close("}");
        o.close("}");
    }

    static void elemAccumulateRows(Out o, Elem e) {
        o.line("");
        o.line("/*");
        o.line(" * Chunks outer, rows inner: " + e.accChunks[0] + " (then fewer) accumulator chunks stay in registers across all");
        o.line(" * rows, so acc is loaded and stored once per slice and the FMA chains are independent; then a");
        o.line(" * scalar tail per column.");
        o.line(" */");
        o.open("static void accumulateRows(MemorySegment slice, long off, int rows, int count, int dim,");
        o.line("        float[] w, int wOff, float[] acc, int aOff) {");
        sliceStart(o, e, false);
        o.line("long cb = " + (e.ebytes == 1 ? "L" : e.ebytes + "L * L") + ";");
        o.line("int i = 0;");
        for (int c : e.accChunks) {
            o.open("for (; i + " + (c == 1 ? "L" : c + " * L") + " <= dim; i += " + (c == 1 ? "L" : c + " * L") + ") {");
            o.line("int a = aOff + i;");
            for (int n = 0; n < c; n++) {
                o.line("FloatVector a" + n + " = FloatVector.fromArray(F, acc, a" + (n == 0 ? "" : n == 1 ? " + L" : " + " + n + " * L") + ");");
            }
            o.line("long o = base + " + eb(e, "i") + ";");
            o.open("for (int r = 0; r < count; r++, o += rb) {");
            o.line("FloatVector wv = FloatVector.broadcast(F, " + weight(e, "wOff + r") + ");");
            for (int n = 0; n < c; n++) {
                o.lines(e.widen.lines("v" + n, n == 0 ? "o" : n == 1 ? "o + cb" : "o + " + n + " * cb"));
                o.line("a" + n + " = v" + n + ".fma(wv, a" + n + ");");
            }
            o.close("}");
            for (int n = 0; n < c; n++) {
                o.line("a" + n + ".intoArray(acc, a" + (n == 0 ? "" : n == 1 ? " + L" : " + " + n + " * L") + ");");
            }
            o.close("}");
        }
        o.open("for (; i < dim; i++) {");
        o.line("float s = acc[aOff + i];");
        o.line("long o = base + " + eb(e, "i") + ";");
        o.open("for (int r = 0; r < count; r++, o += rb) {");
        o.line("s += " + weight(e, "wOff + r") + " * " + e.scalar.expr("o") + ";");
        o.close("}");
        o.line("acc[aOff + i] = s;");
        o.close("}");
        o.close("}");
    }

    static void elemDotRowsGroup(Out o, Elem e) {
        o.line("");
        o.line("/*");
        o.line(" * Grouped-query attention: the query heads of one KV head read the same slice. Four heads at a");
        o.line(" * time (the rest through dotRows), " + (e.group4Rows ? "four rows at a time when dim is a multiple of L, then two" : "two rows at a time")
                + ": each K chunk is widened once and FMA'd into the four heads' accumulators, and each query");
        o.line(" * chunk is loaded once for the rows of the pass.");
        o.line(" */");
        o.open("static void dotRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,");
        o.line("        float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {");
        sliceStart(o, e, true);
        String k = kScale(e);
        o.line("int bound = F.loopBound(dim);");
        o.line("int j = 0;");
        o.open("for (; j + 4 <= heads; j += 4) {");
        o.line("int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;");
        o.line("int s0 = sOff + j * sStride, s1 = s0 + sStride, s2 = s1 + sStride, s3 = s2 + sStride;");
        o.line("int r = 0;");
        if (e.group4Rows) {
            o.open("if (bound == dim) {");
            groupDotPass(o, e, 4, k, false);
            o.close("}");
        }
        groupDotPass(o, e, 2, k, true);
        groupDotPass(o, e, 1, k, true);
        o.close("}");
        o.open("for (; j < heads; j++) {");
        o.line("dotRows(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * sStride);");
        o.close("}");
        o.close("}");
    }

    /** One pass of {@code rowsPer} rows x 4 heads; with a tail when dim may not be a multiple of L. */
    private static void groupDotPass(Out o, Elem e, int rowsPer, String k, boolean tail) {
        o.open(rowsPer == 1 ? "for (; r < count; r++) {" : "for (; r + " + rowsPer + " <= count; r += " + rowsPer + ") {");
        for (int x = 0; x < rowsPer; x++) {
            o.line("long o" + R4[x] + " = " + (x == 0 ? "base + r * rb" : "o" + R4[x - 1] + " + rb") + ";");
        }
        StringBuilder decl = new StringBuilder("FloatVector a0 = FloatVector.zero(F)");
        for (int x = 0; x < rowsPer; x++) {
            for (String h : H) {
                if (x == 0 && h.equals("0")) {
                    continue;
                }
                decl.append(", ").append(R4[x]).append(h).append(" = a0");
            }
        }
        o.line(decl + ";");
        o.open("for (int i = 0; i < " + (tail ? "bound" : "dim") + "; i += L) {");
        o.line("long e = " + eb(e, "i") + ";");
        for (int x = 0; x < rowsPer; x++) {
            o.lines(e.widen.lines("k" + R4[x], "o" + R4[x] + " + e"));
        }
        for (String h : H) {
            o.line((h.equals("0") ? "FloatVector " : "") + "qv = FloatVector.fromArray(F, q, q" + h + " + i);");
            for (int x = 0; x < rowsPer; x++) {
                o.line(R4[x] + h + " = k" + R4[x] + ".fma(qv, " + R4[x] + h + ");");
            }
        }
        o.close("}");
        for (int x = 0; x < rowsPer; x++) {
            StringBuilder sums = new StringBuilder("float ");
            for (String h : H) {
                sums.append(h.equals("0") ? "" : ", ").append("u").append(R4[x]).append(h).append(" = ")
                        .append(R4[x]).append(h).append(".reduceLanes(ADD)");
            }
            o.line(sums + ";");
        }
        if (tail) {
            o.open("for (int i = bound; i < dim; i++) {");
            o.line("long e = " + eb(e, "i") + ";");
            for (int x = 0; x < rowsPer; x++) {
                o.line("float k" + R4[x] + " = " + e.scalar.expr("o" + R4[x] + " + e") + ";");
            }
            for (String h : H) {
                for (int x = 0; x < rowsPer; x++) {
                    o.line("u" + R4[x] + h + " += q[q" + h + " + i] * k" + R4[x] + ";");
                }
            }
            o.close("}");
        }
        for (int x = 0; x < rowsPer; x++) {
            for (String h : H) {
                o.line("scores[s" + h + " + r" + (x == 0 ? "" : " + " + x) + "] = " + k + " * u" + R4[x] + h + ";");
            }
        }
        o.close("}");
    }

    static void elemAccumulateRowsGroup(Out o, Elem e) {
        o.line("");
        o.line("/*");
        o.line(" * Grouped-query attention: chunk pair outer, rows inner, four heads at a time (the rest through");
        o.line(" * accumulateRows): the 4 heads x 2 chunks of acc stay in registers across all rows, and each V");
        o.line(" * chunk is widened once per row for the four heads instead of once per head.");
        o.line(" */");
        o.open("static void accumulateRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,");
        o.line("        float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {");
        sliceStart(o, e, false);
        o.line("long cb = " + (e.ebytes == 1 ? "L" : e.ebytes + "L * L") + ";");
        o.line("int j = 0;");
        o.open("for (; j + 4 <= heads; j += 4) {");
        o.line("int w0 = wOff + j * wStride, w1 = w0 + wStride, w2 = w1 + wStride, w3 = w2 + wStride;");
        o.line("int c0 = aOff + j * dim, c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;");
        o.line("int i = 0;");
        for (int pass = 2; pass >= 1; pass--) {
            String step = pass == 2 ? "2 * L" : "L";
            o.open("for (; i + " + step + " <= dim; i += " + step + ") {");
            for (String h : H) {
                o.line("FloatVector x" + h + " = FloatVector.fromArray(F, acc, c" + h + " + i)"
                        + (pass == 2 ? ", y" + h + " = FloatVector.fromArray(F, acc, c" + h + " + i + L)" : "") + ";");
            }
            o.line("long o = base + " + eb(e, "i") + ";");
            o.open("for (int r = 0; r < count; r++, o += rb) {");
            o.lines(e.widen.lines("va", "o"));
            if (pass == 2) {
                o.lines(e.widen.lines("vb", "o + cb"));
            }
            for (String h : H) {
                o.line((h.equals("0") ? "FloatVector " : "") + "wv = FloatVector.broadcast(F, " + weight(e, "w" + h + " + r") + ");");
                o.line("x" + h + " = va.fma(wv, x" + h + ");");
                if (pass == 2) {
                    o.line("y" + h + " = vb.fma(wv, y" + h + ");");
                }
            }
            o.close("}");
            for (String h : H) {
                o.line("x" + h + ".intoArray(acc, c" + h + " + i);");
                if (pass == 2) {
                    o.line("y" + h + ".intoArray(acc, c" + h + " + i + L);");
                }
            }
            o.close("}");
        }
        o.open("for (; i < dim; i++) {");
        o.line("float t0 = acc[c0 + i], t1 = acc[c1 + i], t2 = acc[c2 + i], t3 = acc[c3 + i];");
        o.line("long o = base + " + eb(e, "i") + ";");
        o.open("for (int r = 0; r < count; r++, o += rb) {");
        o.line("float v = " + e.scalar.expr("o") + ";");
        for (String h : H) {
            o.line("t" + h + " += " + weight(e, "w" + h + " + r") + " * v;");
        }
        o.close("}");
        for (String h : H) {
            o.line("acc[c" + h + " + i] = t" + h + ";");
        }
        o.close("}");
        o.close("}");
        o.open("for (; j < heads; j++) {");
        o.line("accumulateRows(slice, off, rows, count, dim, w, wOff + j * wStride, acc, aOff + j * dim);");
        o.close("}");
        o.close("}");
    }

    // ================================================================== block formats

    static String blockFile(Block b) {
        Out o = new Out();
        o.sb.append(HEADER);
        String all = b.part0 + b.part1 + (b.unitPre == null ? "" : b.unitPre) + (b.blockPre == null ? "" : b.blockPre);
        o.line("import jdk.incubator.vector.ByteVector;");
        o.line("import jdk.incubator.vector.FloatVector;");
        if (all.contains("IntVector")) {
            o.line("import jdk.incubator.vector.IntVector;");
        }
        if (all.contains("VectorMask")) {
            o.line("import jdk.incubator.vector.VectorMask;");
        }
        o.line("");
        o.line("import java.lang.foreign.MemorySegment;");
        o.line("");
        o.line("import static dev.kvcache.quant.Bits.I16;");
        if (all.contains("I32")) {
            o.line("import static dev.kvcache.quant.Bits.I32;");
        }
        o.line("import static dev.kvcache.quant.VectorProvider.B;");
        o.line("import static dev.kvcache.quant.VectorProvider.F;");
        if (all.contains("(I,") || all.contains(", I,")) {
            o.line("import static dev.kvcache.quant.VectorProvider.I;");
        }
        o.line("import static dev.kvcache.quant.VectorProvider.L;");
        o.line("import static dev.kvcache.quant.VectorProvider.LE_ORDER;");
        o.line("import static jdk.incubator.vector.VectorOperators.ADD;");
        if (all.contains("B2F")) {
            o.line("import static jdk.incubator.vector.VectorOperators.B2F;");
        }
        if (all.contains("B2I")) {
            o.line("import static jdk.incubator.vector.VectorOperators.B2I;");
        }
        if (all.contains("I2F")) {
            o.line("import static jdk.incubator.vector.VectorOperators.I2F;");
        }
        if (all.contains("LSHR")) {
            o.line("import static jdk.incubator.vector.VectorOperators.LSHR;");
        }
        if (all.contains("(OR,")) {
            o.line("import static jdk.incubator.vector.VectorOperators.OR;");
        }
        o.line("");
        o.line("/*");
        o.line(" * Vector API slice kernels of " + b.what + ".");
        o.line(" * Block formats: a row is dim/32 blocks of " + b.blockBytes + " bytes, each an fp16 scale first; a unit of a block");
        o.line(" * yields two chunks of L values; no tails (L divides 16). See KernelGenerator.");
        o.line(" */");
        o.open("final class " + b.cls + " {");
        o.line("");
        o.line("static final int G = 32;");
        o.line("static final long BLOCK = " + b.blockBytes + ";");
        o.line("");
        o.open("private " + b.cls + "() {");
        o.close("}");
        blockDotRow(o, b);
        blockAxpyRow(o, b);
        blockDotRows(o, b);
        blockAccumulateRows(o, b);
        blockDotRowsGroup(o, b);
        blockAccumulateRowsGroup(o, b);
        o.close("}");
        return o.sb.toString();
    }

    private static void pre(Out o, String snippet, String g, String n) {
        if (snippet != null) {
            o.line(sub(snippet, g, n));
        }
    }

    private static String unitLoop(Block b) {
        return "for (int k = 0; k < " + b.unitEnd + "; k += " + b.unitStride + ") {";
    }

    static void blockDotRow(Out o, Block b) {
        o.line("");
        o.line("/** dot(q[qOff ..), the row at byte offset o): per block an FMA chain over the codes, then one scale FMA. */");
        o.open("static float dotRow(MemorySegment slice, long o, int dim, float[] q, int qOff) {");
        o.line("FloatVector acc = FloatVector.zero(F);");
        o.open("for (int b = 0; b < dim / G; b++) {");
        o.line("long g = o + b * BLOCK;");
        o.line("int e = qOff + b * G;");
        pre(o, b.blockPre, "g", "");
        o.line("FloatVector blk = FloatVector.zero(F);");
        o.open(unitLoop(b));
        pre(o, b.unitPre, "g", "");
        o.line("blk = " + sub(b.part0, "g", "") + ".fma(FloatVector.fromArray(F, q, e + " + b.off0 + "), blk);");
        o.line("blk = " + sub(b.part1, "g", "") + ".fma(FloatVector.fromArray(F, q, e + " + b.off1 + "), blk);");
        o.close("}");
        o.line("acc = blk.fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, g))), acc);");
        o.close("}");
        o.line("return acc.reduceLanes(ADD);");
        o.close("}");
    }

    static void blockAxpyRow(Out o, Block b) {
        o.line("");
        o.line("/** acc[aOff ..) += w * the row at byte offset o (the weight times each block's scale, broadcast). */");
        o.open("static void axpyRow(MemorySegment slice, long o, int dim, float w, float[] acc, int aOff) {");
        o.open("for (int b = 0; b < dim / G; b++) {");
        o.line("long g = o + b * BLOCK;");
        o.line("int e = aOff + b * G;");
        o.line("FloatVector c = FloatVector.broadcast(F, w * Bits.fromF16(slice.get(I16, g)));");
        pre(o, b.blockPre, "g", "");
        o.open(unitLoop(b));
        pre(o, b.unitPre, "g", "");
        o.line(sub(b.part0, "g", "") + ".fma(c, FloatVector.fromArray(F, acc, e + " + b.off0 + ")).intoArray(acc, e + " + b.off0 + ");");
        o.line(sub(b.part1, "g", "") + ".fma(c, FloatVector.fromArray(F, acc, e + " + b.off1 + ")).intoArray(acc, e + " + b.off1 + ");");
        o.close("}");
        o.close("}");
        o.close("}");
    }

    static void blockDotRows(Out o, Block b) {
        o.line("");
        o.line("/*");
        o.line(" * Four rows at a time: each query chunk is loaded once for four rows and the four reductions");
        o.line(" * overlap, which matters because a 128-value row is only four blocks long.");
        o.line(" */");
        o.open("static void dotRows(MemorySegment slice, long off, int rows, int count, int dim,");
        o.line("        float[] q, int qOff, float scale, float[] scores, int sOff) {");
        o.line("long rb = (dim / G) * BLOCK;");
        o.line("int r = 0;");
        o.open("for (; r + 4 <= count; r += 4) {");
        o.line("long o0 = off + r * rb;");
        o.line("long o1 = o0 + rb;");
        o.line("long o2 = o1 + rb;");
        o.line("long o3 = o2 + rb;");
        o.line("FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;");
        o.open("for (int b = 0; b < dim / G; b++) {");
        o.line("long bo = b * BLOCK;");
        o.line("int e = qOff + b * G;");
        for (String n : H) {
            o.line("long g" + n + " = o" + n + " + bo;");
            pre(o, b.blockPre, "g" + n, n);
        }
        o.line("FloatVector b0 = FloatVector.zero(F), b1 = b0, b2 = b0, b3 = b0;");
        o.open(unitLoop(b));
        o.line("FloatVector qx = FloatVector.fromArray(F, q, e + " + b.off0 + ");");
        o.line("FloatVector qy = FloatVector.fromArray(F, q, e + " + b.off1 + ");");
        for (String n : H) {
            pre(o, b.unitPre, "g" + n, n);
            o.line("b" + n + " = " + sub(b.part1, "g" + n, n) + ".fma(qy, " + sub(b.part0, "g" + n, n) + ".fma(qx, b" + n + "));");
        }
        o.close("}");
        for (String n : H) {
            o.line("a" + n + " = b" + n + ".fma(FloatVector.broadcast(F, Bits.fromF16(slice.get(I16, g" + n + "))), a" + n + ");");
        }
        o.close("}");
        for (int n = 0; n < 4; n++) {
            o.line("scores[sOff + r" + (n == 0 ? "" : " + " + n) + "] = scale * a" + n + ".reduceLanes(ADD);");
        }
        o.close("}");
        o.open("for (; r < count; r++) {");
        o.line("scores[sOff + r] = scale * dotRow(slice, off + r * rb, dim, q, qOff);");
        o.close("}");
        o.close("}");
    }

    static void blockAccumulateRows(Out o, Block b) {
        o.line("");
        o.line("/*");
        o.line(" * Block and unit outer, rows inner: the unit's two accumulator chunks stay in registers across");
        o.line(" * all rows, so acc is loaded and stored once per slice; each row's weight times its block scale");
        o.line(" * is broadcast once.");
        o.line(" */");
        o.open("static void accumulateRows(MemorySegment slice, long off, int rows, int count, int dim,");
        o.line("        float[] w, int wOff, float[] acc, int aOff) {");
        o.line("long rb = (dim / G) * BLOCK;");
        o.open("for (int b = 0; b < dim / G; b++) {");
        o.line("long bo = off + b * BLOCK;");
        o.open(unitLoop(b));
        o.line("int a = aOff + b * G + k;");
        o.line("FloatVector x = FloatVector.fromArray(F, acc, a);");
        o.line("FloatVector y = FloatVector.fromArray(F, acc, a + " + b.off1.replace("k + ", "") + ");");
        o.line("long o = bo;");
        o.open("for (int r = 0; r < count; r++, o += rb) {");
        o.line("FloatVector c = FloatVector.broadcast(F, w[wOff + r] * Bits.fromF16(slice.get(I16, o)));");
        pre(o, b.blockPre, "o", "");
        pre(o, b.unitPre, "o", "");
        o.line("x = " + sub(b.part0, "o", "") + ".fma(c, x);");
        o.line("y = " + sub(b.part1, "o", "") + ".fma(c, y);");
        o.close("}");
        o.line("x.intoArray(acc, a);");
        o.line("y.intoArray(acc, a + " + b.off1.replace("k + ", "") + ");");
        o.close("}");
        o.close("}");
        o.close("}");
    }

    static void blockDotRowsGroup(Out o, Block b) {
        o.line("");
        o.line("/*");
        o.line(" * Grouped-query attention, four heads at a time (the rest through dotRows), two rows at a time:");
        o.line(" * each unit of a row is widened once and multiplied by its block scale (exact: a small integer");
        o.line(" * code times an fp16 scale), then FMA'd into the four heads' accumulators of that row; the two");
        o.line(" * rows share every query load. Eight independent chains.");
        o.line(" */");
        o.open("static void dotRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,");
        o.line("        float[] q, int qOff, int heads, float scale, float[] scores, int sOff, int sStride) {");
        o.line("long rb = (dim / G) * BLOCK;");
        o.line("int j = 0;");
        o.open("for (; j + 4 <= heads; j += 4) {");
        o.line("int q0 = qOff + j * dim, q1 = q0 + dim, q2 = q1 + dim, q3 = q2 + dim;");
        o.line("int s0 = sOff + j * sStride, s1 = s0 + sStride, s2 = s1 + sStride, s3 = s2 + sStride;");
        o.line("int r = 0;");
        for (int rowsPer = 2; rowsPer >= 1; rowsPer--) {
            o.open(rowsPer == 1 ? "for (; r < count; r++) {" : "for (; r + 2 <= count; r += 2) {");
            o.line("long oa = off + r * rb;");
            if (rowsPer == 2) {
                o.line("long ob = oa + rb;");
            }
            o.line(rowsPer == 2 ? "FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;"
                    : "FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;");
            o.open("for (int b = 0; b < dim / G; b++) {");
            for (int x = 0; x < rowsPer; x++) {
                String n = R4[x];
                o.line("long g" + n + " = o" + n + " + b * BLOCK;");
                o.line("float d" + n + " = Bits.fromF16(slice.get(I16, g" + n + "));");
                pre(o, b.blockPre, "g" + n, n);
            }
            o.open(unitLoop(b));
            o.line("int e = b * G;");
            for (int x = 0; x < rowsPer; x++) {
                String n = R4[x];
                pre(o, b.unitPre, "g" + n, n);
                o.line("FloatVector k" + n + "x = " + sub(b.part0, "g" + n, n) + ".mul(d" + n + ");");
                o.line("FloatVector k" + n + "y = " + sub(b.part1, "g" + n, n) + ".mul(d" + n + ");");
            }
            for (String h : H) {
                o.line((h.equals("0") ? "FloatVector " : "") + "qx = FloatVector.fromArray(F, q, q" + h + " + e + " + b.off0 + ");");
                o.line((h.equals("0") ? "FloatVector " : "") + "qy = FloatVector.fromArray(F, q, q" + h + " + e + " + b.off1 + ");");
                for (int x = 0; x < rowsPer; x++) {
                    String n = R4[x];
                    o.line(n + h + " = k" + n + "y.fma(qy, k" + n + "x.fma(qx, " + n + h + "));");
                }
            }
            o.close("}");
            o.close("}");
            for (int x = 0; x < rowsPer; x++) {
                for (String h : H) {
                    o.line("scores[s" + h + " + r" + (x == 0 ? "" : " + " + x) + "] = scale * " + R4[x] + h + ".reduceLanes(ADD);");
                }
            }
            o.close("}");
        }
        o.close("}");
        o.open("for (; j < heads; j++) {");
        o.line("dotRows(slice, off, rows, count, dim, q, qOff + j * dim, scale, scores, sOff + j * sStride);");
        o.close("}");
        o.close("}");
    }

    static void blockAccumulateRowsGroup(Out o, Block b) {
        o.line("");
        o.line("/*");
        o.line(" * Grouped-query attention: block and unit outer, rows inner, four heads at a time (the rest");
        o.line(" * through accumulateRows): the 4 heads x 2 chunks of acc stay in registers across all rows; per");
        o.line(" * row the block scale is read and the unit widened and multiplied by it once for the four heads");
        o.line(" * (exact: a small integer code times an fp16 scale), and each head's weight is broadcast straight");
        o.line(" * from memory (a load, not a shuffle: scaling each weight first cost a multiply and a register");
        o.line(" * broadcast per head and row on the two vector ports).");
        o.line(" */");
        o.open("static void accumulateRowsGroup(MemorySegment slice, long off, int rows, int count, int dim,");
        o.line("        float[] w, int wOff, int wStride, int heads, float[] acc, int aOff) {");
        o.line("long rb = (dim / G) * BLOCK;");
        o.line("int j = 0;");
        o.open("for (; j + 4 <= heads; j += 4) {");
        o.line("int w0 = wOff + j * wStride, w1 = w0 + wStride, w2 = w1 + wStride, w3 = w2 + wStride;");
        o.line("int c0 = aOff + j * dim, c1 = c0 + dim, c2 = c1 + dim, c3 = c2 + dim;");
        o.open("for (int b = 0; b < dim / G; b++) {");
        o.line("long bo = off + b * BLOCK;");
        o.open(unitLoop(b));
        o.line("int ex = b * G + " + b.off0 + ";");
        o.line("int ey = b * G + " + b.off1 + ";");
        for (String h : H) {
            o.line("FloatVector x" + h + " = FloatVector.fromArray(F, acc, c" + h + " + ex), y" + h
                    + " = FloatVector.fromArray(F, acc, c" + h + " + ey);");
        }
        o.line("long o = bo;");
        o.open("for (int r = 0; r < count; r++, o += rb) {");
        o.line("float d = Bits.fromF16(slice.get(I16, o));");
        pre(o, b.blockPre, "o", "");
        pre(o, b.unitPre, "o", "");
        o.line("FloatVector va = " + sub(b.part0, "o", "") + ".mul(d);");
        o.line("FloatVector vb = " + sub(b.part1, "o", "") + ".mul(d);");
        for (String h : H) {
            o.line((h.equals("0") ? "FloatVector " : "") + "c = FloatVector.broadcast(F, w[w" + h + " + r]);");
            o.line("x" + h + " = va.fma(c, x" + h + ");");
            o.line("y" + h + " = vb.fma(c, y" + h + ");");
        }
        o.close("}");
        for (String h : H) {
            o.line("x" + h + ".intoArray(acc, c" + h + " + ex);");
            o.line("y" + h + ".intoArray(acc, c" + h + " + ey);");
        }
        o.close("}");
        o.close("}");
        o.close("}");
        o.open("for (; j < heads; j++) {");
        o.line("accumulateRows(slice, off, rows, count, dim, w, wOff + j * wStride, acc, aOff + j * dim);");
        o.close("}");
        o.close("}");
    }
}
