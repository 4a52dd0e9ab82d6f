// CPU stand-in for the CUDA built-ins used by kernels/*.cu, so that g++ compiles the same source.
//
// What it models
//   * __global__ / __device__ / __forceinline__: plain (inline) C++ functions; VSR_UNROLL (#pragma unroll
//     on the GPU) is empty.
//   * threadIdx, blockIdx, blockDim, gridDim: globals set by vsr_emu::launch, which runs every
//     thread of every block of the grid one after another (blocks in z, y, x order, threads likewise).
//   * The float built-ins with their CUDA meaning: __fdiv_rn, __fmul_rn, __fadd_rn and __fmaf_rn are
//     single IEEE-754 binary32 operations rounded to nearest even (x86-64 SSE arithmetic; build with
//     -ffp-contract=off -fno-fast-math so g++ neither fuses nor reorders them); rintf, fminf, fmaxf
//     come from the C library (rintf in the default round-to-nearest-even mode); __float_as_uint and
//     __uint_as_float reinterpret bits.
//   * Kernel arguments arrive as CUDA's launch API passes them: an array of pointers to the values
//     (cuLaunchKernel's kernelParams), unpacked into the kernel's parameter types.
//   * nvcc/NVRTC's -ftz=true (which CuPy appends to every build): emu_set_ftz(1) runs launches with
//     the x86 MXCSR flush-to-zero and denormals-are-zero bits set, so every float operation flushes
//     subnormal inputs and results to (signed) zero, as .ftz PTX instructions do.
//
// What it does NOT model
//   * Concurrency: no warps, no lockstep execution, no races, no memory ordering or fences, no
//     atomics. Sequential threads are a faithful model only for kernels whose threads write disjoint
//     outputs and read nothing another thread writes, which is what the vsr kernels are.
//   * Shared memory, __syncthreads, warp shuffles/votes, cooperative groups: not provided, so a kernel
//     that uses them fails to compile here (on purpose).
//   * Memory spaces, caches, alignment faults, coalescing, occupancy, timing: host memory only.
//     Out-of-bounds accesses are not trapped (tests guard outputs with canaries instead).
//   * Fast-math (-use_fast_math, --prec-div=false), approximate intrinsics (__fdividef, __expf, ...)
//     and the NaN payloads hardware instructions produce: none is provided, and the kernels are
//     built without them (tests/kernels/test_cuda_compile.py checks the PTX). Flush-to-zero is
//     modelled only on x86-64 (emu_set_ftz returns 0 elsewhere).
//   * Launch limits (1024 threads per block, grid y/z <= 65535) are not enforced here;
//     kernels/cupy_ops.launch_shape enforces them and the tests exercise it.

#ifndef VSR_CUDA_SHIM_H
#define VSR_CUDA_SHIM_H

#include <math.h>
#include <string.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define VSR_EMU_HAS_FTZ 1
#else
#define VSR_EMU_HAS_FTZ 0
#endif

#include <cstddef>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define VSR_UNROLL  // kernels/vsr_common.cuh: `#pragma unroll` on the GPU, a hint that changes no result
#define __host__
#define __forceinline__ inline

struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;

inline uint3 threadIdx, blockIdx, blockDim, gridDim;

inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }

inline unsigned int __float_as_uint(float x)
{
    unsigned int u;
    memcpy(&u, &x, sizeof u);
    return u;
}

inline float __uint_as_float(unsigned int u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

namespace vsr_emu {

inline bool ftz = false;  // set through emu_set_ftz

// Flush-to-zero + denormals-are-zero for the duration of a launch (x86 MXCSR bits 15 and 6).
struct FtzScope {
#if VSR_EMU_HAS_FTZ
    unsigned int saved = _mm_getcsr();
    FtzScope() { if (ftz) _mm_setcsr(saved | 0x8040u); }
    ~FtzScope() { _mm_setcsr(saved); }
#endif
};

template <class... P, std::size_t... I>
void call(void (*kernel)(P...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(args[I])...);
}

// Runs `kernel` over grid[3] x block[3] with kernelParams-style `args`.
template <class... P>
void launch(void (*kernel)(P...), const unsigned int* grid, const unsigned int* block, void** args)
{
    const FtzScope scope;
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    for (unsigned int bz = 0; bz < grid[2]; ++bz)
        for (unsigned int by = 0; by < grid[1]; ++by)
            for (unsigned int bx = 0; bx < grid[0]; ++bx)
                for (unsigned int tz = 0; tz < block[2]; ++tz)
                    for (unsigned int ty = 0; ty < block[1]; ++ty)
                        for (unsigned int tx = 0; tx < block[0]; ++tx) {
                            blockIdx = {bx, by, bz};
                            threadIdx = {tx, ty, tz};
                            call(kernel, args, std::index_sequence_for<P...>{});
                        }
}

}  // namespace vsr_emu

// Returns whether the flush-to-zero mode is available (x86-64) and, if so, switches it.
extern "C" int emu_set_ftz(int on)
{
    vsr_emu::ftz = VSR_EMU_HAS_FTZ && on;
    return VSR_EMU_HAS_FTZ;
}

// Exports `emu_<NAME>(grid, block, args)` for ctypes.
#define VSR_EMULATE(NAME)                                                                       \
    extern "C" void emu_##NAME(const unsigned int* grid, const unsigned int* block, void** args) \
    {                                                                                           \
        vsr_emu::launch(NAME, grid, block, args);                                               \
    }

#endif  // VSR_CUDA_SHIM_H
