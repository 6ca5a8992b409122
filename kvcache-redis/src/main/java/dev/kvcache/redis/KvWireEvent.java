package dev.kvcache.redis;

import dev.kvcache.PrefixKey;

import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * One entry of an instance's KV-event stream, as {@link KvEventPublisher} writes it and
 * {@link PrefixRouter} reads it. The fields follow vLLM's KV events ({@code BlockStored},
 * {@code BlockRemoved}, {@code AllBlocksCleared}); the stream schema, field by field, is in the
 * module's README and in {@link #toFields()}.
 *
 * @param type        what happened
 * @param epoch       the publisher's start time (ms since 1970): a new epoch is a new process
 * @param seq         the entry's number within its epoch, from 0, without gaps
 * @param timeMillis  when the publisher wrote it (ms since 1970)
 * @param blockHashes the blocks' {@link PrefixKey}s, a chain in order for {@code BLOCK_STORED}
 *                    (empty for {@code ALL_BLOCKS_CLEARED})
 * @param parentHash  the key of the block before the first one (null for a first block, and for
 *                    the other types)
 * @param tokenIds    the blocks' token ids, {@code blockSize} per block ({@code BLOCK_STORED}
 *                    only; empty otherwise)
 * @param blockSize   tokens per block
 * @param medium      where the blocks are: {@code "GPU"} for the engine's store (vLLM's name for
 *                    it, whatever the device), a tier's name ({@code "host"}, {@code "disk"}), or
 *                    {@code "ALL"} on the {@code ALL_BLOCKS_CLEARED} that starts every epoch
 */
public record KvWireEvent(Type type, long epoch, long seq, long timeMillis, List<PrefixKey> blockHashes,
                          PrefixKey parentHash, int[] tokenIds, int blockSize, String medium) {

    /** The three event types of vLLM's KV events. */
    public enum Type {
        /** Blocks were published (their KV exists) on {@code medium}. */
        BlockStored,
        /** Blocks are no longer held on {@code medium}. */
        BlockRemoved,
        /** Nothing is held on {@code medium} any more ({@code "ALL"}: on any medium). */
        AllBlocksCleared
    }

    /** The medium of the engine's own store. */
    public static final String GPU = "GPU";
    /** The medium of the clear that starts an epoch: everything. */
    public static final String ALL = "ALL";

    /** Checks the fields and copies the hash list. */
    public KvWireEvent {
        Objects.requireNonNull(type, "type");
        blockHashes = List.copyOf(blockHashes);
        Objects.requireNonNull(tokenIds, "tokenIds");
        Objects.requireNonNull(medium, "medium");
    }

    /**
     * The stream entry's fields, in order (all values are ASCII text).
     *
     * @return a fresh ordered map of the fields {@code type}, {@code epoch}, {@code seq}, {@code ts},
     *         {@code block_hashes}, {@code parent_block_hash}, {@code token_ids}, {@code block_size}
     *         and {@code medium}
     */
    public Map<String, String> toFields() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("type", type.name());
        m.put("epoch", Long.toString(epoch));
        m.put("seq", Long.toString(seq));
        m.put("ts", Long.toString(timeMillis));
        StringBuilder b = new StringBuilder(blockHashes.size() * 33);
        for (PrefixKey k : blockHashes) {
            if (!b.isEmpty()) {
                b.append(' ');
            }
            b.append(k.toHex());
        }
        m.put("block_hashes", b.toString());
        m.put("parent_block_hash", parentHash == null ? "" : parentHash.toHex());
        StringBuilder t = new StringBuilder(tokenIds.length * 6);
        for (int i = 0; i < tokenIds.length; i++) {
            if (i > 0) {
                t.append(' ');
            }
            t.append(tokenIds[i]);
        }
        m.put("token_ids", t.toString());
        m.put("block_size", Integer.toString(blockSize));
        m.put("medium", medium);
        return m;
    }

    /**
     * Parses a stream entry's fields.
     *
     * @param f the entry's fields by name, as {@link #toFields} writes them
     * @return the event they describe
     * @throws IllegalArgumentException a field missing or malformed (named in the message)
     */
    public static KvWireEvent fromFields(Map<String, String> f) {
        Type type;
        try {
            type = Type.valueOf(field(f, "type"));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown event type '" + f.get("type") + "'");
        }
        String hashes = field(f, "block_hashes");
        List<PrefixKey> keys = new java.util.ArrayList<>();
        if (!hashes.isEmpty()) {
            for (String h : hashes.split(" ")) {
                keys.add(key(h, "block_hashes"));
            }
        }
        String parent = field(f, "parent_block_hash");
        String tokens = field(f, "token_ids");
        int[] ids;
        if (tokens.isEmpty()) {
            ids = new int[0];
        } else {
            String[] p = tokens.split(" ");
            ids = new int[p.length];
            for (int i = 0; i < p.length; i++) {
                ids[i] = (int) number(p[i], "token_ids");
            }
        }
        return new KvWireEvent(type, number(field(f, "epoch"), "epoch"), number(field(f, "seq"), "seq"),
                number(field(f, "ts"), "ts"), keys, parent.isEmpty() ? null : key(parent, "parent_block_hash"), ids,
                (int) number(field(f, "block_size"), "block_size"), field(f, "medium"));
    }

    private static String field(Map<String, String> f, String name) {
        String v = f.get(name);
        if (v == null) {
            throw new IllegalArgumentException("event field '" + name + "' is missing");
        }
        return v;
    }

    private static long number(String s, String name) {
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("event field '" + name + "' holds '" + s + "', not an integer");
        }
    }

    private static PrefixKey key(String h, String name) {
        if (h.length() != 32) {
            throw new IllegalArgumentException("event field '" + name + "' holds '" + h + "', not 32 hex digits");
        }
        try {
            return new PrefixKey(HexFormat.fromHexDigitsToLong(h, 0, 16), HexFormat.fromHexDigitsToLong(h, 16, 32));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("event field '" + name + "' holds '" + h + "', not 32 hex digits");
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof KvWireEvent e && type == e.type && epoch == e.epoch && seq == e.seq
                && timeMillis == e.timeMillis && blockHashes.equals(e.blockHashes) && Objects.equals(parentHash, e.parentHash)
                && java.util.Arrays.equals(tokenIds, e.tokenIds) && blockSize == e.blockSize && medium.equals(e.medium);
    }

    @Override
    public int hashCode() {
        return Objects.hash(type, epoch, seq, blockHashes);
    }

    @Override
    public String toString() {
        return type + "[epoch=" + epoch + ", seq=" + seq + ", blocks=" + blockHashes.size() + ", parent=" + parentHash
                + ", tokens=" + tokenIds.length + ", blockSize=" + blockSize + ", medium=" + medium + "]";
    }
}
