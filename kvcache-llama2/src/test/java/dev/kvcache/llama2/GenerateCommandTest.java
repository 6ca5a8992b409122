package dev.kvcache.llama2;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GenerateCommandTest {

    private record Run(int exit, String out, String err) {
    }

    private static Run run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new GenerateCommand());
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int exit = cl.execute(args);
        return new Run(exit, out.toString(), err.toString());
    }

    private static String ids(int[] a) {
        return GenerateCommand.join(a);
    }

    @Test
    void idsPrintsOneLineOfIdsOnStdout() {
        Run r = run("--ids", "--steps", "64");
        assertEquals(0, r.exit(), r.err());
        assertEquals(ids(Llama2ReferenceTest.GOLDEN_64) + System.lineSeparator(), r.out());
        assertTrue(r.err().contains("tokens/s"), r.err());
        assertTrue(r.err().contains("KV bytes"), r.err());

        Run ref = run("--ids", "--steps", "64", "--reference", "--model", TestModels.storiesPath().toString());
        assertEquals(r.out(), ref.out());
    }

    @Test
    void sequencesShareAPrefixAndReportHits() {
        Run r = run("--ids", "--steps", "48", "--sequences", "3", "--kv-format", "f32");
        assertEquals(0, r.exit(), r.err());
        String[] lines = r.out().strip().split("\\R");
        assertEquals(3, lines.length, r.out());
        // sequence 0 takes the greedy branch: it continues the golden stream after the 33-token prefix
        assertEquals(ids(Arrays.copyOfRange(Llama2ReferenceTest.GOLDEN_64, 33, 48)), lines[0]);
        assertTrue(r.err().contains("32 prefix hits"), r.err());
        assertTrue(r.err().contains("prefix cache: 96 of"), r.err());
    }

    @Test
    void badInputExitsWithAOneLineMessage() {
        Run fmt = run("--kv-format", "F12");
        assertEquals(GenerateCommand.EXIT_BAD_INPUT, fmt.exit());
        assertTrue(fmt.err().contains("unknown KV format 'F12'"), fmt.err());
        Run q8 = run("--kv-format", "Q8_0", "--steps", "4");
        assertEquals(GenerateCommand.EXIT_BAD_INPUT, q8.exit());
        assertTrue(q8.err().contains("multiple of 32, got 8"), q8.err());
        Run missing = run("--model", "/nonexistent/model.bin");
        assertEquals(GenerateCommand.EXIT_BAD_INPUT, missing.exit());
        assertTrue(missing.err().contains("/nonexistent/model.bin"), missing.err());
        Run seq = run("--sequences", "0");
        assertTrue(seq.exit() != 0);
        assertTrue(seq.err().contains("--sequences must be >= 1, got 0"), seq.err());
    }
}
