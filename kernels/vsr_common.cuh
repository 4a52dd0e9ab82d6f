// Device helpers shared by the packed-layout kernels (pack.cu, upscale.cu, downscale.cu).
//
// The arithmetic here is the arithmetic of kernels/reference.py, operation by operation:
//   normalise    float32(2 code - m) / float32(m)            one IEEE division (__fdiv_rn)
//   denormalise  float32(x) * (m/2), then + (m/2)            two roundings (__fmul_rn, __fadd_rn)
//   quantize     NaN -> 0, rint (half to even), clamp 0..m   (+inf -> m, -inf -> 0 through the clamp)
// Float products and sums go through the _rn intrinsics so that nvcc/NVRTC can never contract
// them into a fused multiply-add (the build also passes --fmad=false).
//
// fp16 and bf16 are handled as raw 16-bit patterns with integer code, so the sources need no CUDA
// header (NVRTC compiles them without a toolkit include path, and g++ compiles them for the CPU
// emulation in tests/kernels/emulation). Conversions to 16 bits round to nearest even, like torch's
// `.to(torch.float16 / torch.bfloat16)`; conversions from 16 bits are exact.
//
// Built-ins used (all provided by tests/kernels/emulation/cuda_shim.h on the CPU):
//   threadIdx, blockIdx, blockDim, gridDim, __fdiv_rn, __fmul_rn, __fadd_rn,
//   __float_as_uint, __uint_as_float, rintf, fminf, fmaxf.

#ifndef VSR_COMMON_CUH
#define VSR_COMMON_CUH

// Full unrolling of a loop with a constant trip count (so small local arrays live in registers). The CPU
// emulation's shim defines it as nothing (g++ would warn about an unknown pragma); results cannot depend on it.
#ifndef VSR_UNROLL
#define VSR_UNROLL _Pragma("unroll")
#endif

namespace vsr {

typedef unsigned char u8;
typedef unsigned short u16;

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ int clampi(int x, int lo, int hi) { return imin(imax(x, lo), hi); }

// floor(a / b) for b > 0 and any sign of a (C division truncates towards zero).
__device__ __forceinline__ int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// ---- 16-bit float patterns ---------------------------------------------------------------------

__device__ __forceinline__ float f16_bits_to_float(u16 h)
{
    const unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
    const unsigned int e = (h >> 10) & 0x1fu;
    const unsigned int f = h & 0x3ffu;
    if (e == 0x1fu)  // inf / NaN (payload kept)
        return __uint_as_float(sign | 0x7f800000u | (f << 13));
    if (e != 0u)     // normal: rebias the exponent 15 -> 127
        return __uint_as_float(sign | ((e + 112u) << 23) | (f << 13));
    // zero or subnormal: f * 2^-24, exact in float32 (f < 2^10, scaling by a power of two)
    const float mag = __fmul_rn((float)f, 5.9604644775390625e-8f);
    return __uint_as_float(__float_as_uint(mag) | sign);
}

__device__ __forceinline__ u16 float_to_f16_bits(float x)
{
    const unsigned int u = __float_as_uint(x);
    const unsigned int sign = (u >> 16) & 0x8000u;
    const unsigned int a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (u16)(sign | 0x7e00u);   // NaN -> quiet NaN (as torch on the CPU)
    if (a >= 0x477ff000u) return (u16)(sign | 0x7c00u);  // >= 65520 rounds to infinity (inf too)
    if (a >= 0x38800000u) {                              // normal half: |x| >= 2^-14
        unsigned int r = a - 0x38000000u;                // rebias the exponent 127 -> 15
        r += 0x0fffu + ((r >> 13) & 1u);                 // round to nearest, ties to even
        return (u16)(sign | (r >> 13));
    }
    if (a < 0x33000000u) return (u16)sign;               // below 2^-25: rounds to zero
    // subnormal half: k * 2^-24 with k = significand >> (126 - exponent), rounded to nearest even
    const unsigned int e = a >> 23;
    const unsigned int sig = (a & 0x7fffffu) | 0x800000u;
    const unsigned int shift = 126u - e;                 // 14 .. 24
    unsigned int k = sig >> shift;
    const unsigned int rem = sig & ((1u << shift) - 1u);
    const unsigned int halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (k & 1u))) k += 1u;  // k == 0x400 is the smallest normal
    return (u16)(sign | k);
}

__device__ __forceinline__ float bf16_bits_to_float(u16 b) { return __uint_as_float((unsigned int)b << 16); }

__device__ __forceinline__ u16 float_to_bf16_bits(float x)
{
    const unsigned int u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)0x7fc0u;  // NaN -> canonical NaN (as torch)
    return (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);       // round to nearest, ties to even
}

// Storage tags: `storage` is what memory holds, load/store convert to and from float32.
struct F32 {
    typedef float storage;
    static __device__ __forceinline__ float load(float x) { return x; }
    static __device__ __forceinline__ float store(float x) { return x; }
};
struct F16 {
    typedef u16 storage;
    static __device__ __forceinline__ float load(u16 x) { return f16_bits_to_float(x); }
    static __device__ __forceinline__ u16 store(float x) { return float_to_f16_bits(x); }
};
struct BF16 {
    typedef u16 storage;
    static __device__ __forceinline__ float load(u16 x) { return bf16_bits_to_float(x); }
    static __device__ __forceinline__ u16 store(float x) { return float_to_bf16_bits(x); }
};

// ---- code <-> normalised value -----------------------------------------------------------------

// reference.normalise: float32(2 code - m) / float32(m); 2 code - m is an exact small integer.
__device__ __forceinline__ float normalise(int code, int m) { return __fdiv_rn((float)(2 * code - m), (float)m); }

// reference.denormalise: float32(x) * (m/2) + (m/2), two separately rounded operations.
__device__ __forceinline__ float denormalise(float x, float half) { return __fadd_rn(__fmul_rn(x, half), half); }

// reference.quantize: NaN -> 0, round half to even, clamp to 0..m (inf -> m, -inf -> 0).
__device__ __forceinline__ unsigned int quantize(float x, float m)
{
    if (x != x) return 0u;
    const float r = fminf(fmaxf(rintf(x), 0.0f), m);
    return (unsigned int)r;
}

}  // namespace vsr

#endif  // VSR_COMMON_CUH
