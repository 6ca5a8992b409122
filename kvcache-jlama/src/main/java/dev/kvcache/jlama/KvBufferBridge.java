package dev.kvcache.jlama;

import com.github.tjake.jlama.tensor.AbstractTensor;

/**
 * What a Jlama {@code KvBufferCache.KvBuffer} is asked, as an interface kvcache can implement.
 *
 * <p>{@code KvBuffer}'s only constructor is package-private, so no class outside
 * {@code com.github.tjake.jlama.tensor} can extend it at compile time. {@link KvBufferSubclass}
 * defines, at run time, a subclass in that package whose every overridden method calls the bridge
 * given to its constructor. This interface is public only because that generated class (which lives
 * in Jlama's package) must be able to call it; engines use {@link PagedKvBufferCache}.
 */
public interface KvBufferBridge {

    /** {@code getKeyTensorForPosition}: a writable [1, kvLength] row for one token's keys. */
    AbstractTensor key(int layer, int position);

    /** {@code getValTensorForPosition}: a writable [1, kvLength] row for one token's values. */
    AbstractTensor value(int layer, int position);

    /** {@code getKeyTensorsUptoPosition}: pages of equal length covering positions 0..position, in order. */
    AbstractTensor[] keysUpTo(int layer, int position);

    /** {@code getValTensorsUptoPosition}: as {@link #keysUpTo}, for values. */
    AbstractTensor[] valuesUpTo(int layer, int position);

    /** {@code getCurrentContextPosition}. */
    int position();

    /** {@code setCurrentContextPosition}. */
    void setPosition(int position);

    /** {@code incrementContextPosition}. */
    void incrementPosition();

    /** {@code close}. */
    void close();
}
