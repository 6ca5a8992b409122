package dev.kvcache.retention;

import java.util.Arrays;

/**
 * Attention mass accumulated per position of one sequence: the sum, over decode steps, layers and
 * query heads, of the softmax probability each position received. The attention kernel adds into
 * {@link #array()} (the cheap hook: one add per position it already touched), and
 * {@link HeavyHitterRetention} ranks positions by it.
 *
 * <p>Not thread-safe: one sequence is decoded by one thread at a time.
 */
public final class AttentionMass {

    private float[] mass;

    /**
     * An empty record of attention mass.
     *
     * @param expectedTokens positions to make room for up front (it grows past them), >= 0
     */
    public AttentionMass(int expectedTokens) {
        if (expectedTokens < 0) {
            throw new IllegalArgumentException("expectedTokens must be >= 0, got " + expectedTokens);
        }
        mass = new float[Math.max(16, expectedTokens)];
    }

    /**
     * The backing array, at least {@code length} long, for a kernel to add into; grown (copied) if shorter.
     *
     * @param length the positions the kernel will add into
     * @return the backing array, at least {@code length} long, for a kernel to add into; grown (copied) if shorter
     */
    public float[] array(int length) {
        if (mass.length < length) {
            mass = Arrays.copyOf(mass, Math.max(length, mass.length * 2));
        }
        return mass;
    }

    /**
     * The backing array as it is.
     *
     * @return the backing array as it is
     */
    public float[] array() {
        return mass;
    }

    /**
     * Adds {@code p} to position {@code position}.
     *
     * @param position a token position, >= 0
     * @param p the attention probability to add
     */
    public void add(int position, float p) {
        array(position + 1)[position] += p;
    }

    /**
     * Mass of {@code position} (0 beyond what was recorded).
     *
     * @param position a token position, >= 0
     * @return mass of {@code position} (0 beyond what was recorded)
     */
    public float get(int position) {
        return position < mass.length ? mass[position] : 0f;
    }

    /** Forgets everything (a new sequence). */
    public void clear() {
        Arrays.fill(mass, 0f);
    }
}
