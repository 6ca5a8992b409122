package dev.kvcache.llama2;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/** The checkpoint every test uses, loaded once. */
final class TestModels {

    private TestModels() {
    }

    private static Llama2Model stories;

    static Path storiesPath() {
        return GenerateCommand.defaultModel();
    }

    static synchronized Llama2Model stories() {
        if (stories == null) {
            try {
                stories = Llama2Model.load(storiesPath());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return stories;
    }

    /** How many leading ids of a and b agree. */
    static int agreement(int[] a, int[] b) {
        int n = 0;
        while (n < a.length && n < b.length && a[n] == b[n]) {
            n++;
        }
        return n;
    }
}
