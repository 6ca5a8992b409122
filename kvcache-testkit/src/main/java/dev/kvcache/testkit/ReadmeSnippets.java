package dev.kvcache.testkit;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Compiles (and runs) the {@code ```java} blocks of a Markdown file as they stand, so that a
 * README and the code cannot drift apart: a test reads the blocks, compiles each one in-process
 * with the JDK's javac against the test's own class path, and fails with javac's diagnostics
 * pointing at README lines.
 *
 * <p>A block is either a <b>compilation unit</b> (it declares a top-level class, record, interface
 * or enum at column 0; its imports may be its own) or <b>statements</b>, which are wrapped in
 * {@code public static void run() throws Exception} of a generated class (or, given a result
 * expression, {@code public static Object call() throws Exception} that ends with
 * {@code return <expression>;}, so a test can check a value the block computed). Both get
 * {@code package readme;} and the imports the test passes (what a README leaves out, e.g.
 * {@code "dev.kvcache.*"}) in front; nothing else is added or changed. javac is reached through
 * {@link java.util.spi.ToolProvider}, which needs no {@code java.compiler} module: a test compiled
 * into a module may use it. Typical use, in a module's test:
 *
 * <pre>{@code
 * @Test
 * void everyJavaBlockOfTheReadmeCompilesAndRuns(@TempDir Path tmp) throws Exception {
 *     List<ReadmeSnippets.Snippet> blocks = ReadmeSnippets.javaBlocks(Path.of("README.md"));
 *     assertFalse(blocks.isEmpty());
 *     for (ReadmeSnippets.Snippet s : blocks) {
 *         try (ReadmeSnippets.Compiled c = ReadmeSnippets.compile(s, List.of("dev.kvcache.*"), tmp)) {
 *             if (!s.isCompilationUnit()) {
 *                 c.run();
 *             }
 *         }
 *     }
 * }
 * }</pre>
 * Maven runs a module's tests in the module's directory, so {@code Path.of("README.md")} is that
 * module's README.
 */
public final class ReadmeSnippets {

    private static final Pattern TYPE = Pattern.compile(
            "^(?:public\\s+|final\\s+|abstract\\s+|sealed\\s+|non-sealed\\s+)*(?:class|record|interface|enum)\\s+(\\w+)",
            Pattern.MULTILINE);
    private static final String GENERATED = "Snippet";

    private ReadmeSnippets() {
    }

    /**
     * One {@code ```java} block of a Markdown file.
     *
     * @param file    the Markdown file
     * @param line    the 1-based line of the block's first line of code
     * @param section the nearest heading above it ({@code "## ..."} as written), or "" if none
     * @param code    the block's lines, joined with {@code \n}
     */
    public record Snippet(Path file, int line, String section, String code) {

        /** Checks the arguments. */
        public Snippet {
            Objects.requireNonNull(file, "file");
            Objects.requireNonNull(section, "section");
            Objects.requireNonNull(code, "code");
        }

        /**
         * Whether the block declares a top-level type (then it is compiled as it is) rather than
         * being statements (then it is wrapped in a method).
         *
         * @return true for a compilation unit
         */
        public boolean isCompilationUnit() {
            return TYPE.matcher(code).find();
        }

        @Override
        public String toString() {
            return file + ":" + line + " (under '" + section + "')";
        }
    }

    /**
     * The {@code ```java} blocks of {@code markdown}, in order.
     *
     * @param markdown a Markdown file
     * @return its Java blocks (empty if it has none)
     * @throws UncheckedIOException   the file cannot be read
     * @throws IllegalStateException a block is not closed (the message names its line)
     */
    public static List<Snippet> javaBlocks(Path markdown) {
        List<String> lines;
        try {
            lines = Files.readAllLines(markdown, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + markdown.toAbsolutePath(), e);
        }
        List<Snippet> out = new ArrayList<>();
        String section = "";
        for (int i = 0; i < lines.size(); i++) {
            String l = lines.get(i);
            if (l.startsWith("#")) {
                section = l;
            } else if (l.strip().equals("```java")) {
                int j = i + 1;
                while (j < lines.size() && !lines.get(j).strip().equals("```")) {
                    j++;
                }
                if (j == lines.size()) {
                    throw new IllegalStateException(markdown + ":" + (i + 1) + ": the ```java block is not closed");
                }
                out.add(new Snippet(markdown, i + 2, section, String.join("\n", lines.subList(i + 1, j))));
                i = j;
            }
        }
        return out;
    }

    /**
     * A compiled snippet: its class loader (close it when done) and its main class.
     *
     * @param loader    loads the snippet's classes, parent the caller's context class loader
     * @param mainClass the generated class of a statements block, or the first type a compilation
     *                  unit declares
     * @param snippet   what was compiled
     */
    public record Compiled(URLClassLoader loader, Class<?> mainClass, Snippet snippet) implements AutoCloseable {

        /**
         * Runs a statements block (its generated {@code run()} or {@code call()}); what it prints
         * goes where {@code System.out} goes.
         *
         * @throws Exception             whatever the block threw
         * @throws IllegalStateException the block is a compilation unit (run its types yourself,
         *                               through {@link #mainClass()})
         */
        public void run() throws Exception {
            call();
        }

        /**
         * Runs a statements block and returns the value of the result expression it was compiled
         * with (null without one).
         *
         * @return the value of the result expression, boxed
         * @throws Exception             whatever the block threw
         * @throws IllegalStateException the block is a compilation unit
         */
        public Object call() throws Exception {
            if (snippet.isCompilationUnit()) {
                throw new IllegalStateException(snippet + " is a compilation unit; it has no generated run()");
            }
            Method m;
            try {
                m = mainClass.getMethod("call");
            } catch (NoSuchMethodException e) {
                m = mainClass.getMethod("run");
            }
            try {
                return m.invoke(null);
            } catch (InvocationTargetException e) {
                if (e.getCause() instanceof Exception x) {
                    throw x;
                }
                if (e.getCause() instanceof Error x) {
                    throw x;
                }
                throw e;
            }
        }

        /** Closes the class loader. */
        @Override
        public void close() throws IOException {
            loader.close();
        }
    }

    /**
     * Compiles {@code snippet} with {@code package readme;} and {@code imports} in front into a
     * fresh directory under {@code workDir}, against the running test's class path.
     *
     * @param snippet the block
     * @param imports what to import, e.g. {@code "dev.kvcache.*"} or {@code "static java.lang.Math.max"}
     * @param workDir a scratch directory (a JUnit {@code @TempDir})
     * @return the compiled snippet, loaded
     * @throws AssertionError the block does not compile: javac's diagnostics, each line given as
     *                        a line of the Markdown file
     * @throws IOException    the scratch directory cannot be written
     */
    public static Compiled compile(Snippet snippet, List<String> imports, Path workDir) throws IOException {
        return compile(snippet, imports, null, workDir);
    }

    /**
     * Compiles every Java block of {@code markdown} as it stands (not run): what a module whose
     * README names a server or a model directory this machine lacks can check.
     *
     * @param markdown the README
     * @param expected how many Java blocks it must have (so a block that stops being one is noticed)
     * @param imports  what to import
     * @param workDir  a scratch directory
     * @return the number of blocks compiled, {@code expected}
     * @throws AssertionError the README has another number of Java blocks, or one does not compile
     * @throws IOException    the README cannot be read or the scratch directory written
     */
    public static int compileAll(Path markdown, int expected, List<String> imports, Path workDir) throws IOException {
        List<Snippet> blocks = javaBlocks(markdown);
        if (blocks.size() != expected) {
            throw new AssertionError(markdown + " has " + blocks.size() + " Java blocks; expected " + expected);
        }
        for (Snippet s : blocks) {
            try (Compiled c = compile(s, imports, workDir)) {
                if (!s.equals(c.snippet())) {
                    throw new AssertionError("compiled " + c.snippet() + " for " + s);
                }
            }
        }
        return blocks.size();
    }

    /**
     * {@link #compile(Snippet, List, Path)} for a statements block whose generated method returns
     * {@code resultExpression} (evaluated after the block, in its scope), for {@link Compiled#call()}.
     *
     * @param snippet          the block (statements)
     * @param imports          what to import
     * @param resultExpression a Java expression over the block's variables, e.g. {@code "out"}; null
     *                         for none
     * @param workDir          a scratch directory
     * @return the compiled snippet, loaded
     * @throws AssertionError the block does not compile (README lines in the message)
     * @throws IOException    the scratch directory cannot be written
     */
    public static Compiled compile(Snippet snippet, List<String> imports, String resultExpression, Path workDir)
            throws IOException {
        Objects.requireNonNull(snippet, "snippet");
        if (resultExpression != null && snippet.isCompilationUnit()) {
            throw new IllegalArgumentException(snippet + " is a compilation unit; a result expression needs statements");
        }
        StringBuilder src = new StringBuilder("package readme;\n");
        for (String imp : imports) {
            src.append("import ").append(imp).append(";\n");
        }
        String mainName;
        int offset;
        if (snippet.isCompilationUnit()) {
            // a block with imports of its own: they must come before any type, so ours go first
            Matcher m = TYPE.matcher(snippet.code());
            m.find();
            mainName = m.group(1);
            offset = snippet.line() - 1 - (imports.size() + 1);
            src.append(snippet.code()).append('\n');
        } else {
            mainName = GENERATED;
            src.append("public final class ").append(GENERATED).append(" {\n")
                    .append(resultExpression == null ? "public static void run() throws Exception {\n"
                            : "public static Object call() throws Exception {\n");
            offset = snippet.line() - 1 - (imports.size() + 3);
            src.append(snippet.code()).append('\n');
            if (resultExpression != null) {
                src.append("return ").append(resultExpression).append(";\n");
            }
            src.append("}\n}\n");
        }
        Path dir = Files.createTempDirectory(workDir, "snippet-" + snippet.line() + "-");
        Path srcDir = Files.createDirectories(dir.resolve("src/readme"));
        Path file = Files.writeString(srcDir.resolve(mainName + ".java"), src);
        Path classes = Files.createDirectories(dir.resolve("classes"));
        javac(file, classes, offset, snippet);
        URLClassLoader loader;
        try {
            loader = new URLClassLoader(new URL[] {classes.toUri().toURL()},
                    Thread.currentThread().getContextClassLoader());
        } catch (MalformedURLException e) {
            throw new IllegalStateException(classes.toString(), e);
        }
        try {
            return new Compiled(loader, loader.loadClass("readme." + mainName), snippet);
        } catch (ClassNotFoundException e) {
            loader.close();
            throw new AssertionError(snippet + ": javac wrote no readme." + mainName, e);
        }
    }

    private static void javac(Path file, Path classes, int lineOffset, Snippet snippet) {
        java.util.spi.ToolProvider javac = java.util.spi.ToolProvider.findFirst("javac")
                .orElseThrow(() -> new AssertionError("no javac in this runtime (a JRE, not a JDK?)"));
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        List<String> args = new ArrayList<>(List.of("-classpath", cp, "-d", classes.toString(),
                "-proc:none", "-implicit:none", "-encoding", "UTF-8", "-Xlint:none"));
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent()) {
            args.addAll(List.of("--add-modules", "jdk.incubator.vector"));
        }
        args.add(file.toString());
        StringWriter diagnostics = new StringWriter();
        int rc;
        try (PrintWriter w = new PrintWriter(diagnostics)) {
            rc = javac.run(w, w, args.toArray(String[]::new));
        }
        if (rc != 0) {
            Matcher m = Pattern.compile(Pattern.quote(file.toString()) + ":(\\d+):").matcher(diagnostics.toString());
            StringBuilder msg = new StringBuilder();
            while (m.find()) {
                int line = Integer.parseInt(m.group(1));
                m.appendReplacement(msg, Matcher.quoteReplacement(
                        snippet.file() + ":" + (line + lineOffset) + " (generated line " + line + "):"));
            }
            m.appendTail(msg);
            throw new AssertionError(snippet + " does not compile (javac exit " + rc + "):\n" + msg);
        }
    }
}
