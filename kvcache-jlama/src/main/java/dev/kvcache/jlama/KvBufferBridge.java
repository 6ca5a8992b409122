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

    /**
     * {@code getKeyTensorForPosition}: a writable [1, kvLength] row for one token's keys.
     *
     * @param layer the transformer layer
     * @param position the token position in the context
     * @return the writable key row for that layer and position
     */
    AbstractTensor key(int layer, int position);

    /**
     * {@code getValTensorForPosition}: a writable [1, kvLength] row for one token's values.
     *
     * @param layer the transformer layer
     * @param position the token position in the context
     * @return the writable value row for that layer and position
     */
    AbstractTensor value(int layer, int position);

    /**
     * {@code getKeyTensorsUptoPosition}: pages of equal length covering positions 0..position, in order.
     *
     * @param layer the transformer layer
     * @param position the last token position to cover
     * @return the key pages covering positions 0..position, in order
     */
    AbstractTensor[] keysUpTo(int layer, int position);

    /**
     * {@code getValTensorsUptoPosition}: as {@link #keysUpTo}, for values.
     *
     * @param layer the transformer layer
     * @param position the last token position to cover
     * @return the value pages covering positions 0..position, in order
     */
    AbstractTensor[] valuesUpTo(int layer, int position);

    /**
     * {@code getCurrentContextPosition}.
     *
     * @return the current context position
     */
    int position();

    /**
     * {@code setCurrentContextPosition}.
     *
     * @param position the new current context position
     */
    void setPosition(int position);

    /** {@code incrementContextPosition}. */
    void incrementPosition();

    /** {@code close}. */
    void close();
}
