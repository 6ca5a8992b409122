// A CPU emulator for kvcache_kernels.cu, for tests on machines without a GPU.
//
// The kernel source is compiled unchanged by a host C++20 compiler against the CUDA headers' host
// implementations of the fp16/bf16/fp8 conversions (for FP8 that is the software path the device
// takes below sm_89). CUDA's execution model is reproduced closely enough for these kernels:
//   - blocks run one after another; __shared__ variables become function statics (one block's
//     threads share them, and the next block starts only after every thread finished);
//   - kernels without barriers or shuffles run their threads one after another on the caller's
//     thread; the others (kv_seal_fp8, paged_decode) run every thread of a block on its own OS
//     thread, with std::barrier for __syncthreads and a per-warp exchange for __shfl_xor_sync;
//   - float intrinsics with explicit rounding (__fdiv_rn, __fmul_rn, __fadd_rn) are plain IEEE
//     operations (compiled with -ffp-contract=off, so no FMA contraction either).
// It checks logic (indexing, formats, the online softmax, split merging), not timing, memory
// coalescing or the driver. Device pointers are host pointers.
//
// Build: g++ -std=c++20 -O2 -ffp-contract=off -fPIC -shared -pthread -I<cuda>/include
//            -I<module>/src/main/cuda kvemu.cpp -o libkvemu.so

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <vector_types.h>

#include <algorithm>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct EmuDim {
    unsigned x = 0, y = 0, z = 0;
};

static thread_local EmuDim threadIdx;
static thread_local EmuDim blockIdx;
static EmuDim blockDim;
static EmuDim gridDim;

// the CUDA headers define these for host compilers; here they mean plain C++
#undef __global__
#undef __device__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static

using std::max;
using std::min;

static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
static inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }

// ---- block-level synchronisation for the threaded kernels
static std::barrier<>* g_block_barrier = nullptr;

struct EmuWarp {
    float vals[32];
    std::barrier<> bar{32};
};
static EmuWarp* g_warps = nullptr;
static std::vector<float> g_dynamic;

static inline void __syncthreads() { g_block_barrier->arrive_and_wait(); }

static inline float __shfl_xor_sync(unsigned, float v, int laneMask) {
    EmuWarp& w = g_warps[threadIdx.x / 32];
    const unsigned lane = threadIdx.x % 32;
    w.vals[lane] = v;
    w.bar.arrive_and_wait();
    const float r = w.vals[lane ^ laneMask];
    w.bar.arrive_and_wait();
    return r;
}

#define KV_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(g_dynamic.data())

#include "kvcache_kernels.cu"

// ---- launching

template <class... P, std::size_t... I>
static void call(void (*f)(P...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cvref_t<P>*>(args[I])...);
}

template <class... P>
static void launch(void (*f)(P...), bool threaded, int gx, int gy, int bx, int shared, void** args) {
    gridDim = {(unsigned)gx, (unsigned)gy, 1};
    blockDim = {(unsigned)bx, 1, 1};
    g_dynamic.assign((shared + 3) / 4 + 1, 0.0f);
    const auto seq = std::index_sequence_for<P...>{};
    if (!threaded) {
        for (int y = 0; y < gy; y++) {
            for (int x = 0; x < gx; x++) {
                blockIdx = {(unsigned)x, (unsigned)y, 0};
                for (int t = 0; t < bx; t++) {
                    threadIdx = {(unsigned)t, 0, 0};
                    call(f, args, seq);
                }
            }
        }
        return;
    }
    std::barrier<> block(bx);   // __syncthreads inside the kernel
    std::barrier<> done(bx);    // end of a block: nobody starts the next one early (shared statics)
    std::unique_ptr<EmuWarp[]> warps(new EmuWarp[(bx + 31) / 32]);
    g_block_barrier = &block;
    g_warps = warps.get();
    std::vector<std::thread> threads;
    threads.reserve(bx);
    for (int t = 0; t < bx; t++) {
        threads.emplace_back([=, &done] {
            threadIdx = {(unsigned)t, 0, 0};
            for (int y = 0; y < gy; y++) {
                for (int x = 0; x < gx; x++) {
                    blockIdx = {(unsigned)x, (unsigned)y, 0};
                    call(f, args, seq);
                    done.arrive_and_wait();
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    g_block_barrier = nullptr;
    g_warps = nullptr;
}

// Kernel ids as in dev.kvcache.cuda.CudaDriver. Returns 0, or 1 for an unknown id.
extern "C" int kvemu_launch(int kernel, int gx, int gy, int bx, int shared, void** args) {
    switch (kernel) {
        case 0: launch(kv_write_row, false, gx, gy, bx, shared, args); return 0;
        case 1: launch(kv_read_row, false, gx, gy, bx, shared, args); return 0;
        case 2: launch(kv_open, false, gx, gy, bx, shared, args); return 0;
        case 3: launch(kv_seal_fp8, true, gx, gy, bx, shared, args); return 0;
        case 4: launch(kv_copy_blocks, false, gx, gy, bx, shared, args); return 0;
        case 5: launch(paged_decode, true, gx, gy, bx, shared, args); return 0;
        case 6: launch(paged_decode_combine, false, gx, gy, bx, shared, args); return 0;
        default: return 1;
    }
}
