package dev.kvcache.policy;

/**
 * Several doubly linked lists of block ids kept in three {@code int[]}s, so that eviction queues
 * cost no object per block and no allocation per operation (the layout Netty and Agrona use for
 * pooled memory).
 *
 * <pre>
 *   prev[b], next[b]  neighbours of block b in its list, NIL at the ends
 *   list[b]           which list holds b, or NIL when b is in none
 *   head[l], tail[l]  first and last block of list l
 * </pre>
 *
 * Every operation is O(1). Appending puts a block at the tail; {@link #pollHead(int)} takes the
 * oldest.
 */
public final class BlockLists {

    /** Marks "no block" and "in no list". */
    public static final int NIL = -1;

    private final int[] prev;
    private final int[] next;
    private final int[] list;
    private final int[] head;
    private final int[] tail;
    private final int[] sizes;
    private int size;

    /**
     * Empty lists over block ids 0 to {@code blocks - 1}.
     *
     * @param blocks how many block ids, >= 0
     * @param lists  how many lists, >= 0
     */
    public BlockLists(int blocks, int lists) {
        if (blocks < 0) {
            throw new IllegalArgumentException("blocks must be >= 0, got " + blocks);
        }
        if (lists <= 0) {
            throw new IllegalArgumentException("lists must be > 0, got " + lists);
        }
        prev = new int[blocks];
        next = new int[blocks];
        list = new int[blocks];
        java.util.Arrays.fill(list, NIL);
        head = new int[lists];
        tail = new int[lists];
        sizes = new int[lists];
        java.util.Arrays.fill(head, NIL);
        java.util.Arrays.fill(tail, NIL);
    }

    /**
     * Appends {@code block} at the tail of list {@code l}.
     *
     * @param l a list
     * @param block a block in no list
     */
    public void append(int l, int block) {
        if (list[block] != NIL) {
            throw new IllegalStateException("block " + block + " is already in list " + list[block]);
        }
        int t = tail[l];
        prev[block] = t;
        next[block] = NIL;
        if (t == NIL) {
            head[l] = block;
        } else {
            next[t] = block;
        }
        tail[l] = block;
        list[block] = l;
        sizes[l]++;
        size++;
    }

    /**
     * Unlinks {@code block} from whichever list holds it; returns that list, or NIL if none did.
     *
     * @param block a block id
     * @return the list that held it, or NIL if none did
     */
    public int remove(int block) {
        int l = list[block];
        if (l == NIL) {
            return NIL;
        }
        int p = prev[block];
        int n = next[block];
        if (p == NIL) {
            head[l] = n;
        } else {
            next[p] = n;
        }
        if (n == NIL) {
            tail[l] = p;
        } else {
            prev[n] = p;
        }
        list[block] = NIL;
        sizes[l]--;
        size--;
        return l;
    }

    /**
     * Removes and returns the head of list {@code l}, or NIL when it is empty.
     *
     * @param l a list
     * @return the former head of list {@code l}, or NIL when it was empty
     */
    public int pollHead(int l) {
        int h = head[l];
        if (h != NIL) {
            remove(h);
        }
        return h;
    }

    /**
     * The list holding {@code block}, or NIL.
     *
     * @param block a block id
     * @return the list holding {@code block}, or NIL
     */
    public int listOf(int block) {
        return list[block];
    }

    /**
     * Blocks in list {@code l}.
     *
     * @param l a list
     * @return blocks in list {@code l}
     */
    public int size(int l) {
        return sizes[l];
    }

    /**
     * Blocks in all lists.
     *
     * @return blocks in all lists
     */
    public int size() {
        return size;
    }
}
