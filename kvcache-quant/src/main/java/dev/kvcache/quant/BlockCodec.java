package dev.kvcache.quant;

import dev.kvcache.KvFormat;

import java.lang.foreign.MemorySegment;

/*
 * A block format: metadata spans the slice's rows (FP8's per-slice scale, KIVI's per-channel key
 * groups), so a slice is encoded whole and the single-row entry points do not exist.
 */
abstract class BlockCodec extends Codec {

    BlockCodec(KvFormat format, boolean keys) {
        super(format, keys);
    }

    @Override
    public final boolean rowIndependent() {
        return false;
    }

    @Override
    public final long rowBytes(int dim) {
        throw new UnsupportedOperationException(format().name() + (keys() ? " keys" : " values")
                + " is a block format: rows are not encoded on their own; use sliceBytes(rows, dim)");
    }

    @Override
    public final void encodeRow(float[] src, int srcOff, int dim, MemorySegment dst, long dstOff) {
        throw new UnsupportedOperationException(format().name() + (keys() ? " keys" : " values")
                + " is a block format: encode whole slices with encode(src, srcOff, rows, dim, dst, dstOff)");
    }

    @Override
    void decode0(MemorySegment src, long off, int rows, int dim, float[] dst, int dstOff) {
        for (int r = 0; r < rows; r++) {
            decodeRow0(src, off, rows, r, dim, dst, dstOff + r * dim);
        }
    }
}
