// Conventional resize of one plane: the fused twin of kernels.reference.resize_plane, in two launches.
//
//   rows pass  R[b, r, j] = sum_k Wx[j, k] * code[b, r, Ix[j, k]]                 one thread per (b, r, j)
//   cols pass  S[b, i, j] = sum_t Wy[i, t] * R[b, Iy[i, t], j]                    one thread per (b, i, j)
//              out        = S < 0 ? 0 : min((S + 2^27) >> 28, m)
//
// The tables (reference.resize_taps: indices and integer weights summing to 2^14, `taps` per output
// sample, row-major) are int64 tensors. All arithmetic is in 64-bit integers, exact, so the kernels equal
// the twin whatever the order of the sums. R is an int64 scratch tensor (n, h, out_w), contiguous.
// Grid-stride loops in x (columns), y (rows) and z (frames): any launch shape is correct.

#include "vsr_common.cuh"

namespace vsr {

template <class Code>
__device__ __forceinline__ void resize_rows(const Code* src, long long* across, int n, int h, int out_w, int taps,
                                            const long long* index, const long long* weight, long long ssn,
                                            long long ssh, long long ssw)
{
    for (int b = blockIdx.z * blockDim.z + threadIdx.z; b < n; b += gridDim.z * blockDim.z)
        for (int r = blockIdx.y * blockDim.y + threadIdx.y; r < h; r += gridDim.y * blockDim.y)
            for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < out_w; j += gridDim.x * blockDim.x) {
                const Code* row = src + b * ssn + (long long)r * ssh;
                long long sum = 0;
                for (int k = 0; k < taps; ++k) {
                    const long long t = (long long)j * taps + k;
                    sum += weight[t] * (long long)row[index[t] * ssw];
                }
                across[((long long)b * h + r) * out_w + j] = sum;
            }
}

template <class Code>
__device__ __forceinline__ void resize_cols(const long long* across, Code* out, int n, int h, int out_h, int out_w,
                                            int taps, const long long* index, const long long* weight, int m)
{
    for (int b = blockIdx.z * blockDim.z + threadIdx.z; b < n; b += gridDim.z * blockDim.z)
        for (int i = blockIdx.y * blockDim.y + threadIdx.y; i < out_h; i += gridDim.y * blockDim.y)
            for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < out_w; j += gridDim.x * blockDim.x) {
                long long sum = 0;
                for (int k = 0; k < taps; ++k) {
                    const long long t = (long long)i * taps + k;
                    sum += weight[t] * across[((long long)b * h + index[t]) * out_w + j];
                }
                long long code = sum < 0 ? 0 : (sum + (1ll << 27)) >> 28;
                out[((long long)b * out_h + i) * out_w + j] = (Code)(code > m ? m : code);
            }
}

}  // namespace vsr

// resize_rows_<code>(src, across, n, h, out_w, taps, index, weight, 3 source strides)
//   src (n, h, w) any element strides; across (n, h, out_w) int64 contiguous; index/weight (out_w, taps).
#define VSR_HRESIZE(NAME, CODE)                                                                          \
    extern "C" __global__ void NAME(const CODE* src, long long* across, int n, int h, int out_w, int taps,   \
                                    const long long* index, const long long* weight, long long ssn,          \
                                    long long ssh, long long ssw)                                            \
    {                                                                                                        \
        vsr::resize_rows<CODE>(src, across, n, h, out_w, taps, index, weight, ssn, ssh, ssw);                \
    }

// resize_cols_<code>(across, out, n, h, out_h, out_w, taps, index, weight, m)
//   across (n, h, out_w) int64 contiguous; out (n, out_h, out_w) contiguous; index/weight (out_h, taps).
#define VSR_VRESIZE(NAME, CODE)                                                                          \
    extern "C" __global__ void NAME(const long long* across, CODE* out, int n, int h, int out_h, int out_w,  \
                                    int taps, const long long* index, const long long* weight, int m)        \
    {                                                                                                        \
        vsr::resize_cols<CODE>(across, out, n, h, out_h, out_w, taps, index, weight, m);                     \
    }

VSR_HRESIZE(resize_rows_u8, vsr::u8)
VSR_HRESIZE(resize_rows_u16, vsr::u16)
VSR_VRESIZE(resize_cols_u8, vsr::u8)
VSR_VRESIZE(resize_cols_u16, vsr::u16)
