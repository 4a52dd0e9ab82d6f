// Downsampler unpack: the fused twin of kernels.reference.unpack_downscale, one launch for all three planes.
//
// The residual is the block-2 packed layout of the low-resolution frame, so one residual cell (b, i, j)
// holds every output sample that depends on it: luma (2i + dy, 2j + dx) in channel dy * 2 + dx, U (i, j)
// in channel 4 and V (i, j) in channel 5 (reference.downscale_planes_float). One thread per cell: x covers
// cell columns, y cell rows, z frames, each with a grid-stride loop (any launch shape is correct). No shared
// memory, no synchronisation: threads write disjoint outputs and read only inputs.
//
// For each output sample (Y, X) of a plane with (h, w) input samples:
//   S    = sum over t, k < 8 of T[t] T[k] code[clamp(2Y - 3 + t, 0, h-1), clamp(2X - 3 + k, 0, w-1)]
//          with T = reference.DOWN2_TAPS                               reference.bicubic_downscale2
//   base = float32(S) / 65536                  one round-to-nearest conversion, one IEEE division (exact)
//   out  = quantize(base + float32(r) * (m / 2))                       multiply, then add: two roundings
//
// The sum is evaluated separably per cell: each of the 2 CELL + 6 input rows the cell's CELL x CELL outputs
// read (CELL = 2 for luma, 1 for chroma) is filtered horizontally once per output column, then the row sums
// are combined vertically. Every product and every horizontal sum fits an int (|T[t] * row sum| <=
// 111 * 280 * 65535 < 2^31); the vertical accumulation runs in unsigned int, i.e. modulo 2^32, and is read
// back as a two's complement int32. That is exactly what the twin's int32 tensors compute: S itself, as
// |S| <= 78976 * code < 2^31 for the 8..14-bit planes the planner admits (reference.DOWN_MAX_BITS).
// Integer arithmetic is exact in any order, so the separable order is the twin's value.
// With CELL a template constant the loops unroll fully and the window lives in registers.

#include "vsr_common.cuh"

namespace vsr {

// reference.DOWN2_TAPS: Keys' cubic (a = -0.5) stretched for a 2x reduction, in units of 1/256.
__device__ __forceinline__ int down2_tap(int k)
{
    const int taps[8] = {-3, -9, 29, 111, 111, 29, -9, -3};
    return taps[k];
}

// base[dy][dx] = float32(S) / 65536 for the outputs (y0 + dy, x0 + dx), dy, dx < CELL, of an (h, w) plane
// with row and column element strides (sh, sw).
template <int CELL, class Code>
__device__ __forceinline__ void bicubic_down2(const Code* plane, long long sh, long long sw, int h, int w,
                                              int y0, int x0, float (&base)[CELL][CELL])
{
    constexpr int SPAN = 2 * CELL + 6;  // input rows (and columns) read by CELL consecutive outputs
    const int r0 = 2 * y0 - 3, q0 = 2 * x0 - 3;
    long long col[SPAN];
    VSR_UNROLL
    for (int k = 0; k < SPAN; ++k)
        col[k] = (long long)clampi(q0 + k, 0, w - 1) * sw;
    unsigned int acc[CELL][CELL] = {};
    VSR_UNROLL
    for (int t = 0; t < SPAN; ++t) {
        const Code* row = plane + (long long)clampi(r0 + t, 0, h - 1) * sh;
        VSR_UNROLL
        for (int dx = 0; dx < CELL; ++dx) {
            int across = 0;  // |across| <= 280 * 65535
            VSR_UNROLL
            for (int k = 0; k < 8; ++k)
                across += down2_tap(k) * (int)row[col[2 * dx + k]];
            VSR_UNROLL
            for (int dy = 0; dy < CELL; ++dy)
                if (t >= 2 * dy && t < 2 * dy + 8)  // output row y0 + dy reads rows r0 + 2 dy .. r0 + 2 dy + 7
                    acc[dy][dx] += (unsigned int)(down2_tap(t - 2 * dy) * across);
        }
    }
    VSR_UNROLL
    for (int dy = 0; dy < CELL; ++dy) {
        VSR_UNROLL
        for (int dx = 0; dx < CELL; ++dx)
            base[dy][dx] = __fdiv_rn((float)(int)acc[dy][dx], 65536.0f);
    }
}

// reference.downscale_planes_float then quantize: base + float32(r) * (m/2), two roundings, then quantize.
__device__ __forceinline__ unsigned int finish(float base, float r, float half, float top)
{
    return quantize(__fadd_rn(base, __fmul_rn(r, half)), top);
}

template <class In, class Code>
__device__ void downscale_cells(const typename In::storage* res, const Code* y, const Code* u, const Code* v,
                                Code* out_y, Code* out_u, Code* out_v, int n, int rows, int cols, int out_h,
                                int out_w, int h, int w, int hc, int wc, int m, long long rsn, long long rsc,
                                long long rsh, long long rsw, long long ysn, long long ysh, long long ysw,
                                long long usn, long long ush, long long usw, long long vsn, long long vsh,
                                long long vsw)
{
    const float half = 0.5f * (float)m;  // exact: m < 2^24
    const float top = (float)m;
    for (int b = blockIdx.z * blockDim.z + threadIdx.z; b < n; b += gridDim.z * blockDim.z)
        for (int i = blockIdx.y * blockDim.y + threadIdx.y; i < rows; i += gridDim.y * blockDim.y)
            for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += gridDim.x * blockDim.x) {
                const typename In::storage* cell = res + b * rsn + (long long)i * rsh + (long long)j * rsw;
                float luma[2][2];
                bicubic_down2<2>(y + b * ysn, ysh, ysw, h, w, 2 * i, 2 * j, luma);
                VSR_UNROLL
                for (int dy = 0; dy < 2; ++dy) {
                    VSR_UNROLL
                    for (int dx = 0; dx < 2; ++dx) {
                        const int r = 2 * i + dy, q = 2 * j + dx;
                        if (r < out_h && q < out_w)
                            out_y[((long long)b * out_h + r) * out_w + q] =
                                (Code)finish(luma[dy][dx], In::load(cell[(long long)(dy * 2 + dx) * rsc]), half, top);
                    }
                }
                // the chroma outputs are (rows, cols): exactly one U and one V sample per cell
                const long long at = ((long long)b * rows + i) * cols + j;
                float chroma[1][1];
                bicubic_down2<1>(u + b * usn, ush, usw, hc, wc, i, j, chroma);
                out_u[at] = (Code)finish(chroma[0][0], In::load(cell[4 * rsc]), half, top);
                bicubic_down2<1>(v + b * vsn, vsh, vsw, hc, wc, i, j, chroma);
                out_v[at] = (Code)finish(chroma[0][0], In::load(cell[5 * rsc]), half, top);
            }
}

}  // namespace vsr

// downscale_<in>_<code>(res, y, u, v, out_y, out_u, out_v, n, rows, cols, out_h, out_w, h, w, hc, wc, m,
//                       4 residual strides, 3 strides each of y, u, v)
//   res (n, 6, rows, cols) any element strides; y (n, h, w), u/v (n, hc, wc) any element strides;
//   out_y (n, out_h, out_w) with out_h <= 2 rows, out_w <= 2 cols, out_u/out_v (n, rows, cols), contiguous.
#define VSR_DOWNSCALE(NAME, IN, CODE)                                                                            \
    extern "C" __global__ void NAME(const IN::storage* res, const CODE* y, const CODE* u, const CODE* v,         \
                                    CODE* out_y, CODE* out_u, CODE* out_v, int n, int rows, int cols, int out_h, \
                                    int out_w, int h, int w, int hc, int wc, int m, long long rsn, long long rsc, \
                                    long long rsh, long long rsw, long long ysn, long long ysh, long long ysw,   \
                                    long long usn, long long ush, long long usw, long long vsn, long long vsh,   \
                                    long long vsw)                                                               \
    {                                                                                                            \
        vsr::downscale_cells<IN, CODE>(res, y, u, v, out_y, out_u, out_v, n, rows, cols, out_h, out_w, h, w, hc, \
                                       wc, m, rsn, rsc, rsh, rsw, ysn, ysh, ysw, usn, ush, usw, vsn, vsh, vsw);  \
    }

VSR_DOWNSCALE(downscale_f32_u8, vsr::F32, vsr::u8)
VSR_DOWNSCALE(downscale_f16_u8, vsr::F16, vsr::u8)
VSR_DOWNSCALE(downscale_bf16_u8, vsr::BF16, vsr::u8)
VSR_DOWNSCALE(downscale_f32_u16, vsr::F32, vsr::u16)
VSR_DOWNSCALE(downscale_f16_u16, vsr::F16, vsr::u16)
VSR_DOWNSCALE(downscale_bf16_u16, vsr::BF16, vsr::u16)
