package dev.kvcache.llama2;

import java.util.Arrays;
import java.util.Objects;

/** run.c's {@code generate} loop at temperature 0, shared by the reference and the engine. */
final class Greedy {

    private Greedy() {
    }

    /** Logits after {@code token} at {@code pos}. */
    @FunctionalInterface
    interface Step {
        float[] forward(int token, int pos);
    }

    /** Clamps steps like run.c: 0 or more than seq_len means seq_len. */
    static int clampSteps(Llama2Model.Config c, int steps) {
        if (steps < 0) {
            throw new IllegalArgumentException("steps must be >= 0, got " + steps);
        }
        return steps == 0 || steps > c.seqLen() ? c.seqLen() : steps;
    }

    static void checkPrompt(Llama2Model.Config c, int[] prompt) {
        Objects.requireNonNull(prompt, "prompt");
        if (prompt.length == 0) {
            throw new IllegalArgumentException("prompt must hold at least one token (BOS = 1)");
        }
        if (prompt.length > c.seqLen()) {
            throw new IllegalArgumentException("prompt of " + prompt.length
                    + " tokens exceeds seq_len " + c.seqLen());
        }
        for (int i = 0; i < prompt.length; i++) {
            if (prompt[i] < 0 || prompt[i] >= c.vocabSize()) {
                throw new IllegalArgumentException("prompt token " + prompt[i] + " at index " + i
                        + " outside 0.." + (c.vocabSize() - 1));
            }
        }
    }

    static int[] generate(Llama2Model.Config c, int[] prompt, int steps, Step step) {
        checkPrompt(c, prompt);
        int max = clampSteps(c, steps);
        int[] out = new int[max];
        int n = 0;
        int token = prompt[0];
        for (int pos = 0; pos < max; pos++) {
            float[] logits = step.forward(token, pos);
            int next = pos < prompt.length - 1 ? prompt[pos + 1] : Llama2Forward.argmax(logits);
            if (next == Llama2Reference.BOS) {
                break;
            }
            if (pos >= prompt.length - 1) {
                out[n++] = next;
            }
            token = next;
        }
        return Arrays.copyOf(out, n);
    }
}
