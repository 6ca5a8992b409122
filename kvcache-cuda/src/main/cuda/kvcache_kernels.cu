// kvcache CUDA kernels: quantize-on-write, reads, residual-window open/seal, batched block copy and
// paged decode attention over the block layout of dev.kvcache.offheap.StoreLayout:
//
//   store   = block[blocks]                      blockBytes = layout.bytesPerBlock()
//   block   = layer[layers]                      layerBytes = kvHeads * (K + V)
//   layer   = K-slice[kvHeads] then V-slice[kvHeads]
//   slice   = blockTokens rows x headDim values of one head, encoded by the format
//
// Row formats (F32, F16, BF16, Q8_0, Q4_0) put row r at r * rowBytes(headDim). FP8 slices hold
// blockTokens*headDim one-byte codes and one float32 scale per slice (before the codes when
// scaleFirst != 0, after them otherwise): code = fp8(x / scale), scale = amax(slice) / fp8max,
// all codes 0 when amax == 0. FP8 slices are only written whole ("seal") from a float32 staging
// slot (the residual window) laid out [K|V][head][row][dim].
//
// The host (CudaKvStore) validates every index before launching, so kernels do no bounds checks
// beyond their loop limits; it also rejects non-finite input and Q8_0/Q4_0 groups whose fp16
// scale would overflow, exactly as kvcache-quant does, so the kernels never see them. F16 and
// BF16 saturate to their largest finite value. Every float operation whose rounding matters for byte-identical
// output (Q8_0/Q4_0 against llama.cpp's reference quantizers) uses the explicit _rn intrinsics so
// nvcc cannot contract it into an FMA.
//
// Regenerate the committed fatbin with build-kernels.sh after editing this file.

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#define FMT_F32 0
#define FMT_F16 1
#define FMT_BF16 2
#define FMT_FP8_E4M3 3
#define FMT_FP8_E5M2 4
#define FMT_Q8_0 5
#define FMT_Q4_0 6

// Dynamic shared memory; the CPU emulator used by the tests (src/test/cuda/kvemu.cpp) redefines it.
#ifndef KV_DYNAMIC_SHARED
#define KV_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

#define QK 32
#define F16_MAX 65504.0f
#define BF16_MAX __uint_as_float(0x7F7F0000u)  // largest finite bfloat16
#define MAX_LANE_VALUES 16  // paged_decode: headDim <= 32 * 16 = 512

// ---------------------------------------------------------------- scalar helpers

__device__ __forceinline__ float load_f32_unaligned(const uint8_t* p) {
    uint32_t b = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    return __uint_as_float(b);
}

__device__ __forceinline__ void store_f32_unaligned(uint8_t* p, float f) {
    uint32_t b = __float_as_uint(f);
    p[0] = (uint8_t)b; p[1] = (uint8_t)(b >> 8); p[2] = (uint8_t)(b >> 16); p[3] = (uint8_t)(b >> 24);
}

__device__ __forceinline__ uint16_t load_u16(const uint8_t* p) {
    return (uint16_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8));
}

__device__ __forceinline__ void store_u16(uint8_t* p, uint16_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
}

__device__ __forceinline__ float half_bits_to_float(uint16_t bits) {
    return __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ uint16_t float_to_half_bits(float f) {
    return __half_as_ushort(__float2half_rn(f));
}

__device__ __forceinline__ float fp8_to_float(uint8_t code, int fmt) {
    __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)code,
                                           fmt == FMT_FP8_E4M3 ? __NV_E4M3 : __NV_E5M2);
    return __half2float(__half(h));
}

__device__ __forceinline__ uint8_t float_to_fp8(float x, int fmt) {
    return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, fmt == FMT_FP8_E4M3 ? __NV_E4M3 : __NV_E5M2);
}

__device__ __forceinline__ float fp8_max(int fmt) {
    return fmt == FMT_FP8_E4M3 ? 448.0f : 57344.0f;
}

// Bytes of one encoded row of a row format.
__device__ __forceinline__ long long row_bytes(int fmt, int headDim) {
    switch (fmt) {
        case FMT_F32: return 4LL * headDim;
        case FMT_F16:
        case FMT_BF16: return 2LL * headDim;
        case FMT_Q8_0: return (long long)(headDim / QK) * 34;
        case FMT_Q4_0: return (long long)(headDim / QK) * 18;
        default: return 0;
    }
}

// Value i of row `row` of a slice (any format). FP8 reads its slice scale.
__device__ __forceinline__ float load_elem(const uint8_t* slice, int fmt, int row, int i,
                                           int headDim, int blockTokens, int scaleFirst) {
    switch (fmt) {
        case FMT_F32: {
            const uint8_t* p = slice + ((long long)row * headDim + i) * 4;
            return *reinterpret_cast<const float*>(p);  // F32 slices are 4-byte aligned
        }
        case FMT_F16: return half_bits_to_float(load_u16(slice + ((long long)row * headDim + i) * 2));
        case FMT_BF16: {
            uint32_t b = (uint32_t)load_u16(slice + ((long long)row * headDim + i) * 2) << 16;
            return __uint_as_float(b);
        }
        case FMT_FP8_E4M3:
        case FMT_FP8_E5M2: {
            long long codes = (long long)blockTokens * headDim;
            const uint8_t* c = slice + (scaleFirst ? 4 : 0);
            float scale = load_f32_unaligned(scaleFirst ? slice : slice + codes);
            return fp8_to_float(c[(long long)row * headDim + i], fmt) * scale;
        }
        case FMT_Q8_0: {
            const uint8_t* g = slice + (long long)row * (headDim / QK) * 34 + (i / QK) * 34;
            float d = half_bits_to_float(load_u16(g));
            return (float)(int8_t)g[2 + (i % QK)] * d;
        }
        case FMT_Q4_0: {
            const uint8_t* g = slice + (long long)row * (headDim / QK) * 18 + (i / QK) * 18;
            float d = half_bits_to_float(load_u16(g));
            int j = i % QK;
            int q = j < 16 ? (g[2 + j] & 0x0F) : (g[2 + j - 16] >> 4);
            return (float)(q - 8) * d;
        }
        default: return 0.0f;
    }
}

// llama.cpp quantize_row_q8_0_ref for one group of 32 values.
__device__ void encode_q8_0_group(const float* x, uint8_t* g) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = __fdiv_rn(amax, 127.0f);
    const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    store_u16(g, float_to_half_bits(d));
    for (int j = 0; j < QK; j++) {
        g[2 + j] = (uint8_t)(int8_t)roundf(__fmul_rn(x[j], id));
    }
}

// llama.cpp quantize_row_q4_0_ref for one group of 32 values.
__device__ void encode_q4_0_group(const float* x, uint8_t* g) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
    }
    const float d = __fdiv_rn(max, -8.0f);
    const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    store_u16(g, float_to_half_bits(d));
    for (int j = 0; j < QK / 2; j++) {
        int xi0 = (int)(int8_t)__fadd_rn(__fmul_rn(x[j], id), 8.5f);
        int xi1 = (int)(int8_t)__fadd_rn(__fmul_rn(x[QK / 2 + j], id), 8.5f);
        xi0 = min(15, xi0);
        xi1 = min(15, xi1);
        g[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
    }
}

// ---------------------------------------------------------------- writes and reads

// One token of one layer: row `row` of every head's K and V slice. grid = (kvHeads, 2), any block size.
// Head h's slice starts at base + h * headStride (base = kBase for blockIdx.y == 0, vBase otherwise).
// Row formats only (FP8 rows go to staging as F32 and are sealed later).
extern "C" __global__ void kv_write_row(uint8_t* kBase, uint8_t* vBase, long long headStride, int row,
                                        const float* k, const float* v, int headDim, int fmt) {
    const int h = blockIdx.x;
    const bool isV = blockIdx.y != 0;
    const float* src = (isV ? v : k) + (long long)h * headDim;
    uint8_t* dst = (isV ? vBase : kBase) + (long long)h * headStride + (long long)row * row_bytes(fmt, headDim);
    switch (fmt) {
        case FMT_F32:
            for (int i = threadIdx.x; i < headDim; i += blockDim.x) reinterpret_cast<float*>(dst)[i] = src[i];
            break;
        case FMT_F16:  // saturating: finite input never becomes infinity (as kvcache-quant)
            for (int i = threadIdx.x; i < headDim; i += blockDim.x)
                store_u16(dst + 2 * i, float_to_half_bits(fminf(fmaxf(src[i], -F16_MAX), F16_MAX)));
            break;
        case FMT_BF16:
            for (int i = threadIdx.x; i < headDim; i += blockDim.x)
                store_u16(dst + 2 * i, __bfloat16_as_ushort(__float2bfloat16_rn(fminf(fmaxf(src[i], -BF16_MAX), BF16_MAX))));
            break;
        case FMT_Q8_0:
            for (int gi = threadIdx.x; gi < headDim / QK; gi += blockDim.x) encode_q8_0_group(src + gi * QK, dst + gi * 34);
            break;
        case FMT_Q4_0:
            for (int gi = threadIdx.x; gi < headDim / QK; gi += blockDim.x) encode_q4_0_group(src + gi * QK, dst + gi * 18);
            break;
        default:
            break;
    }
}

// Dequantizes row `row` of every head's slice into out[h * headDim + i]. grid = kvHeads.
extern "C" __global__ void kv_read_row(const uint8_t* base, long long headStride, int row, float* out,
                                       int headDim, int blockTokens, int fmt, int scaleFirst) {
    const int h = blockIdx.x;
    const uint8_t* slice = base + (long long)h * headStride;
    for (int i = threadIdx.x; i < headDim; i += blockDim.x) {
        out[(long long)h * headDim + i] = load_elem(slice, fmt, row, i, headDim, blockTokens, scaleFirst);
    }
}

// Opens a (block, layer) of a block format: decodes every K and V slice into the float32 staging
// slot [K|V][head][row][dim]. grid = (kvHeads, 2).
extern "C" __global__ void kv_open(const uint8_t* kBase, const uint8_t* vBase, long long sliceStride,
                                   float* stage, int headDim, int blockTokens, int fmt, int scaleFirst) {
    const int h = blockIdx.x;
    const int kvHeads = gridDim.x;
    const bool isV = blockIdx.y != 0;
    const uint8_t* slice = (isV ? vBase : kBase) + (long long)h * sliceStride;
    float* dst = stage + ((long long)(isV ? kvHeads : 0) + h) * blockTokens * headDim;
    const int n = blockTokens * headDim;
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        dst[e] = load_elem(slice, fmt, e / headDim, e % headDim, headDim, blockTokens, scaleFirst);
    }
}

// Seals a (block, layer) of an FP8 format: encodes every head's staged K and V rows into its slice
// with one scale per slice. grid = (kvHeads, 2), blockDim a power of two <= 1024.
extern "C" __global__ void kv_seal_fp8(const float* stage, uint8_t* kBase, uint8_t* vBase, long long sliceStride,
                                       int headDim, int blockTokens, int fmt, int scaleFirst) {
    __shared__ float red[1024];
    const int h = blockIdx.x;
    const int kvHeads = gridDim.x;
    const bool isV = blockIdx.y != 0;
    const float* src = stage + ((long long)(isV ? kvHeads : 0) + h) * blockTokens * headDim;
    uint8_t* slice = (isV ? vBase : kBase) + (long long)h * sliceStride;
    const int n = blockTokens * headDim;
    float amax = 0.0f;
    for (int e = threadIdx.x; e < n; e += blockDim.x) amax = fmaxf(amax, fabsf(src[e]));
    red[threadIdx.x] = amax;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    const float scale = __fdiv_rn(red[0], fp8_max(fmt));
    uint8_t* codes = slice + (scaleFirst ? 4 : 0);
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        codes[e] = scale != 0.0f ? float_to_fp8(__fdiv_rn(src[e], scale), fmt) : (uint8_t)0;
    }
    if (threadIdx.x == 0) store_f32_unaligned(scaleFirst ? slice : slice + n, scale);
}

// ---------------------------------------------------------------- block copies

// Copies pairs[2i] -> pairs[2i+1] (whole blocks) for i < n. grid = (n, chunks); each chunk of a
// block copies a contiguous part, with 16-byte accesses when blockBytes is a multiple of 16 (the
// allocation itself is 256-byte aligned by cuMemAlloc).
extern "C" __global__ void kv_copy_blocks(uint8_t* mem, const int* pairs, int n, long long blockBytes) {
    const int i = blockIdx.x;
    if (i >= n) return;
    const uint8_t* src = mem + (long long)pairs[2 * i] * blockBytes;
    uint8_t* dst = mem + (long long)pairs[2 * i + 1] * blockBytes;
    // chunks are multiples of 16 bytes, so with blockBytes % 16 == 0 every chunk is whole uint4s
    const long long chunk = ((blockBytes + gridDim.y - 1) / gridDim.y + 15) & ~15LL;
    const long long lo = chunk * blockIdx.y;
    const long long hi = min(blockBytes, lo + chunk);
    if (lo >= hi) return;
    if ((blockBytes & 15) == 0) {
        const uint4* s4 = reinterpret_cast<const uint4*>(src);
        uint4* d4 = reinterpret_cast<uint4*>(dst);
        for (long long e = lo / 16 + threadIdx.x; e < hi / 16; e += blockDim.x) d4[e] = s4[e];
    } else {
        for (long long e = lo + threadIdx.x; e < hi; e += blockDim.x) dst[e] = src[e];
    }
}

// ---------------------------------------------------------------- paged decode attention

// One decode step for one sequence and one layer, split-K ("flash decoding").
// grid = (queryHeads, splits), block = 32 * WARPS threads, dynamic shared memory WARPS * headDim floats.
//
// Query head qh reads KV head qh / (queryHeads / kvHeads). CTA (qh, s) covers positions
// [s * chunk, min(length, (s + 1) * chunk)); inside it warp w walks positions w, w + WARPS, ...;
// lane l holds dims l, l + 32, ... of the query, of its running output and of each K/V row it
// reads, so every row read is coalesced. Each warp keeps an online softmax (running max m,
// running sum l, output rescaled whenever m grows); the warps are merged in shared memory. With
// one split the CTA writes the normalised output; with several it writes its unnormalised
// (acc[headDim], m, l) to partials[(qh * splits + s) * (headDim + 2)] and paged_decode_combine
// merges the splits the same way. Splitting the positions is what keeps all SMs busy when
// queryHeads alone would not.
//
// Positions whose block-table entry is negative (released by a sliding window) are skipped. A
// block whose (block, layer) has a staging slot (an FP8 block not yet sealed) is read from
// stagePtrs[logicalBlock] in float32 instead of its encoded bytes. Splits or warps that see no
// position contribute nothing (l = 0); with no position at all the output is zero.
#define WARPS 4
extern "C" __global__ void __launch_bounds__(32 * WARPS)
paged_decode(const uint8_t* mem, long long blockBytes, long long layerOffK, long long layerOffV,
             long long sliceBytes, const int* table, const unsigned long long* stagePtrs, int length,
             const float* q, float* out, int queryHeads, int kvHeads, int headDim, int blockTokens,
             int fmt, int scaleFirst, float scale, int chunk, float* partials) {
    __shared__ float sm_m[WARPS];
    __shared__ float sm_l[WARPS];
    KV_DYNAMIC_SHARED(float, sm_acc);  // WARPS * headDim

    const int qh = blockIdx.x;
    const int split = blockIdx.y;
    const int splits = gridDim.y;
    const int kvh = qh / (queryHeads / kvHeads);
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int per = (headDim + 31) / 32;
    const long long stageSlice = (long long)blockTokens * headDim * 4;
    const int p0 = split * chunk;
    const int p1 = min(length, p0 + chunk);

    float qr[MAX_LANE_VALUES];
    float acc[MAX_LANE_VALUES];
#pragma unroll
    for (int j = 0; j < MAX_LANE_VALUES; j++) {
        int d = lane + 32 * j;
        qr[j] = (j < per && d < headDim) ? q[(long long)qh * headDim + d] : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY;
    float l = 0.0f;

    for (int p = p0 + warp; p < p1; p += WARPS) {
        const int lb = p / blockTokens;
        const int blk = table[lb];
        if (blk < 0) continue;
        const int row = p % blockTokens;
        const unsigned long long st = stagePtrs != nullptr ? stagePtrs[lb] : 0ULL;
        const uint8_t* ks;
        const uint8_t* vs;
        int f;
        if (st != 0ULL) {
            ks = reinterpret_cast<const uint8_t*>(st) + (long long)kvh * stageSlice;
            vs = reinterpret_cast<const uint8_t*>(st) + (long long)(kvHeads + kvh) * stageSlice;
            f = FMT_F32;
        } else {
            const uint8_t* b = mem + (long long)blk * blockBytes;
            ks = b + layerOffK + (long long)kvh * sliceBytes;
            vs = b + layerOffV + (long long)kvh * sliceBytes;
            f = fmt;
        }
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < MAX_LANE_VALUES; j++) {
            int d = lane + 32 * j;
            if (j < per && d < headDim) dot += qr[j] * load_elem(ks, f, row, d, headDim, blockTokens, scaleFirst);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        const float s = dot * scale;
        const float mNew = fmaxf(m, s);
        const float corr = expf(m - mNew);  // m == -inf on the first position: corr = 0
        const float pw = expf(s - mNew);
        l = l * corr + pw;
#pragma unroll
        for (int j = 0; j < MAX_LANE_VALUES; j++) {
            int d = lane + 32 * j;
            float vv = (j < per && d < headDim) ? load_elem(vs, f, row, d, headDim, blockTokens, scaleFirst) : 0.0f;
            acc[j] = acc[j] * corr + pw * vv;
        }
        m = mNew;
    }

    if (lane == 0) { sm_m[warp] = m; sm_l[warp] = l; }
#pragma unroll
    for (int j = 0; j < MAX_LANE_VALUES; j++) {
        int d = lane + 32 * j;
        if (j < per && d < headDim) sm_acc[warp * headDim + d] = acc[j];
    }
    __syncthreads();

    float mAll = -INFINITY;
    for (int w = 0; w < WARPS; w++) if (sm_l[w] > 0.0f) mAll = fmaxf(mAll, sm_m[w]);
    float lAll = 0.0f;
    float wt[WARPS];
    for (int w = 0; w < WARPS; w++) {
        wt[w] = sm_l[w] > 0.0f ? expf(sm_m[w] - mAll) : 0.0f;
        lAll += sm_l[w] * wt[w];
    }
    if (splits == 1) {
        for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
            float o = 0.0f;
            for (int w = 0; w < WARPS; w++) o += sm_acc[w * headDim + d] * wt[w];
            out[(long long)qh * headDim + d] = lAll > 0.0f ? o / lAll : 0.0f;
        }
        return;
    }
    float* part = partials + ((long long)qh * splits + split) * (headDim + 2);
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < WARPS; w++) o += sm_acc[w * headDim + d] * wt[w];
        part[d] = o;
    }
    if (threadIdx.x == 0) {
        part[headDim] = mAll;
        part[headDim + 1] = lAll;
    }
}

// Merges the splits of paged_decode: out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M),
// M = max of m_s over splits with l_s > 0. grid = queryHeads.
extern "C" __global__ void paged_decode_combine(const float* partials, float* out, int splits, int headDim) {
    const int qh = blockIdx.x;
    const float* base = partials + (long long)qh * splits * (headDim + 2);
    float mAll = -INFINITY;
    for (int s = 0; s < splits; s++) {
        const float* p = base + (long long)s * (headDim + 2);
        if (p[headDim + 1] > 0.0f) mAll = fmaxf(mAll, p[headDim]);
    }
    float lAll = 0.0f;
    for (int s = 0; s < splits; s++) {
        const float* p = base + (long long)s * (headDim + 2);
        if (p[headDim + 1] > 0.0f) lAll += p[headDim + 1] * expf(p[headDim] - mAll);
    }
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < splits; s++) {
            const float* p = base + (long long)s * (headDim + 2);
            if (p[headDim + 1] > 0.0f) o += p[d] * expf(p[headDim] - mAll);
        }
        out[(long long)qh * headDim + d] = lAll > 0.0f ? o / lAll : 0.0f;
    }
}
