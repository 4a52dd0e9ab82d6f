// Upsampler unpack: the fused twin of kernels.reference.unpack_upscale, one output plane per launch.
//
// One thread per residual cell (b, i, j): x covers cell columns, y cell rows, z frames, with
// grid-stride loops (any launch shape is correct). A cell holds the B x B output samples
// (B = cell: 2s for luma, s for chroma) at rows B i + dy, columns B j + dx; for each of them
//   base = float32(exact integer bilinear sum) / float32(4 s^2)      reference.bilinear_upscale
//   r    = residual channel c0 + dy * B + dx of cell (i, j)          reference.residual_to_planes
//   out  = quantize(base + float32(r) * (m / 2))                      multiply, then add: two roundings
// Bilinear taps (half-pixel centres, clamped edges): t = 2Y + 1 - s, a = floor(t / 2s),
// f = t - 2s a, source rows clamp(a) and clamp(a + 1) with weights 2s - f and f; columns likewise.
// Within a cell (t, a, f) advance incrementally (t grows by 2 per sample), so the inner loops
// divide nothing. When 4 s^2 is a power of two the division is a multiplication by its exact
// reciprocal, which is the same correctly rounded result.
// The integer sum is at most 4 s^2 m < 2^24 (the launcher checks), so int and float32 hold it exactly.

#include "vsr_common.cuh"

namespace vsr {

template <class In, class Code>
__device__ void upscale_plane(const typename In::storage* res, const Code* src, Code* out,
                              int n, int rows, int cols, int out_h, int out_w, int src_h, int src_w, int scale,
                              int cell, int c0, int m, long long rsn, long long rsc, long long rsh, long long rsw,
                              long long ssn, long long ssh, long long ssw)
{
    const int two_s = 2 * scale;
    const int step = cell / scale;                   // source samples per cell: 2 (luma) or 1 (chroma)
    const int o0 = 1 - scale;                        // t of a cell's first sample, less 2s * step * index
    const int a0 = floor_div(o0, two_s);
    const int f0 = o0 - two_s * a0;
    const int norm = two_s * two_s;
    const bool pow2 = (norm & (norm - 1)) == 0;
    const float norm_f = (float)norm;
    const float inv_norm = __fdiv_rn(1.0f, norm_f);  // exact when pow2
    const float half = 0.5f * (float)m;              // exact: m < 2^24
    const float top = (float)m;
    for (int b = blockIdx.z * blockDim.z + threadIdx.z; b < n; b += gridDim.z * blockDim.z)
        for (int i = blockIdx.y * blockDim.y + threadIdx.y; i < rows; i += gridDim.y * blockDim.y)
            for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += gridDim.x * blockDim.x) {
                const typename In::storage* r_cell = res + b * rsn + (long long)c0 * rsc + (long long)i * rsh
                                                     + (long long)j * rsw;
                const Code* plane = src + b * ssn;
                int ay = step * i + a0, fy = f0;
                for (int dy = 0; dy < cell && cell * i + dy < out_h; ++dy) {
                    const Code* row_a = plane + (long long)clampi(ay, 0, src_h - 1) * ssh;
                    const Code* row_b = plane + (long long)clampi(ay + 1, 0, src_h - 1) * ssh;
                    Code* out_row = out + ((long long)b * out_h + cell * i + dy) * out_w + (long long)cell * j;
                    int ax = step * j + a0, fx = f0;
                    for (int dx = 0; dx < cell && cell * j + dx < out_w; ++dx) {
                        const long long ca = (long long)clampi(ax, 0, src_w - 1) * ssw;
                        const long long cb = (long long)clampi(ax + 1, 0, src_w - 1) * ssw;
                        const int sum = (two_s - fy) * ((two_s - fx) * (int)row_a[ca] + fx * (int)row_a[cb])
                                        + fy * ((two_s - fx) * (int)row_b[ca] + fx * (int)row_b[cb]);
                        const float base = pow2 ? __fmul_rn((float)sum, inv_norm) : __fdiv_rn((float)sum, norm_f);
                        const float r = In::load(r_cell[(long long)(dy * cell + dx) * rsc]);
                        out_row[dx] = (Code)quantize(__fadd_rn(__fmul_rn(r, half), base), top);
                        fx += 2;
                        if (fx >= two_s) { fx -= two_s; ++ax; }
                    }
                    fy += 2;
                    if (fy >= two_s) { fy -= two_s; ++ay; }
                }
            }
}

}  // namespace vsr

// upscale_<in>_<code>(res, src, out, n, rows, cols, out_h, out_w, src_h, src_w, scale, cell, c0, m,
//                     4 residual strides, 3 source strides)
//   res (n, 6 s^2, rows, cols) any element strides; src (n, src_h, src_w) any element strides;
//   out (n, out_h, out_w) contiguous, out_h <= cell * rows, out_w <= cell * cols.
//   Luma: cell = 2s, c0 = 0; U: cell = s, c0 = 4 s^2; V: cell = s, c0 = 5 s^2.
#define VSR_UPSCALE(NAME, IN, CODE)                                                                       \
    extern "C" __global__ void NAME(const IN::storage* res, const CODE* src, CODE* out, int n, int rows,  \
                                    int cols, int out_h, int out_w, int src_h, int src_w, int scale,      \
                                    int cell, int c0, int m, long long rsn, long long rsc, long long rsh, \
                                    long long rsw, long long ssn, long long ssh, long long ssw)           \
    {                                                                                                     \
        vsr::upscale_plane<IN, CODE>(res, src, out, n, rows, cols, out_h, out_w, src_h, src_w, scale,     \
                                     cell, c0, m, rsn, rsc, rsh, rsw, ssn, ssh, ssw);                     \
    }

VSR_UPSCALE(upscale_f32_u8, vsr::F32, vsr::u8)
VSR_UPSCALE(upscale_f16_u8, vsr::F16, vsr::u8)
VSR_UPSCALE(upscale_bf16_u8, vsr::BF16, vsr::u8)
VSR_UPSCALE(upscale_f32_u16, vsr::F32, vsr::u16)
VSR_UPSCALE(upscale_f16_u16, vsr::F16, vsr::u16)
VSR_UPSCALE(upscale_bf16_u16, vsr::BF16, vsr::u16)
