// Packed layout <-> 4:2:0 planes: the fused twins of kernels.reference.pack and .unpack.
//
// One thread per packed cell (b, i, j): x covers cell columns, y cell rows, z frames, each with a
// grid-stride loop, so any launch shape covers the whole tensor (kernels/cupy_ops.launch_shape
// picks one). No shared memory, no synchronisation. Offsets are 64-bit; coordinates are 32-bit
// (the launcher refuses sizes of 2^31 and above).
//
// Cell (i, j) of a block-b packing holds, channel by channel (reference.pack's docstring):
//   c = dy * b + dx                  (dy, dx < b)    luma  (min(b i + dy, H - 1), min(b j + dx, W - 1))
//   b^2 + dy * cb + dx               (dy, dx < cb)   U     (min(cb i + dy, Hc - 1), min(cb j + dx, Wc - 1))
//   b^2 + cb^2 + dy * cb + dx                        V     likewise,             with cb = b / 2.

#include "vsr_common.cuh"

namespace vsr {

// Plane (h, w) with element strides (sn, sh, sw), read at clamped (edge-replicated) coordinates.
template <class Code>
__device__ __forceinline__ int read_clamped(const Code* p, long long sn, long long sh, long long sw, int b,
                                            int r, int q, int h, int w)
{
    return (int)p[b * sn + (long long)imin(r, h - 1) * sh + (long long)imin(q, w - 1) * sw];
}

template <class Code, class Out>
__device__ void pack_cells(const Code* y, const Code* u, const Code* v, typename Out::storage* out,
                           int n, int h, int w, int hc, int wc, int rows, int cols, int block, int m,
                           long long ysn, long long ysh, long long ysw, long long usn, long long ush, long long usw,
                           long long vsn, long long vsh, long long vsw)
{
    const int cb = block / 2;
    const int channels = block * block + 2 * cb * cb;
    const long long plane = (long long)rows * cols;  // one channel of one frame
    for (int b = blockIdx.z * blockDim.z + threadIdx.z; b < n; b += gridDim.z * blockDim.z)
        for (int i = blockIdx.y * blockDim.y + threadIdx.y; i < rows; i += gridDim.y * blockDim.y)
            for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += gridDim.x * blockDim.x) {
                typename Out::storage* cell = out + (long long)b * channels * plane + (long long)i * cols + j;
                long long c = 0;
                for (int dy = 0; dy < block; ++dy)
                    for (int dx = 0; dx < block; ++dx, ++c)
                        cell[c * plane] = Out::store(normalise(
                            read_clamped(y, ysn, ysh, ysw, b, block * i + dy, block * j + dx, h, w), m));
                for (int dy = 0; dy < cb; ++dy)
                    for (int dx = 0; dx < cb; ++dx, ++c) {
                        const int r = cb * i + dy, q = cb * j + dx;
                        cell[c * plane] = Out::store(normalise(read_clamped(u, usn, ush, usw, b, r, q, hc, wc), m));
                        cell[(c + (long long)cb * cb) * plane] =
                            Out::store(normalise(read_clamped(v, vsn, vsh, vsw, b, r, q, hc, wc), m));
                    }
            }
}

template <class In, class Code>
__device__ void unpack_cells(const typename In::storage* packed, Code* y, Code* u, Code* v,
                             int n, int rows, int cols, int block, int height, int width, int ch, int cw, int m,
                             long long psn, long long psc, long long psh, long long psw)
{
    const int cb = block / 2;
    const float half = 0.5f * (float)m;  // exact: m < 2^24
    const float top = (float)m;
    for (int b = blockIdx.z * blockDim.z + threadIdx.z; b < n; b += gridDim.z * blockDim.z)
        for (int i = blockIdx.y * blockDim.y + threadIdx.y; i < rows; i += gridDim.y * blockDim.y)
            for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += gridDim.x * blockDim.x) {
                const typename In::storage* cell = packed + b * psn + (long long)i * psh + (long long)j * psw;
                long long c = 0;
                for (int dy = 0; dy < block; ++dy)
                    for (int dx = 0; dx < block; ++dx, ++c) {
                        const int r = block * i + dy, q = block * j + dx;
                        if (r < height && q < width)
                            y[((long long)b * height + r) * width + q] =
                                (Code)quantize(denormalise(In::load(cell[c * psc]), half), top);
                    }
                for (int dy = 0; dy < cb; ++dy)
                    for (int dx = 0; dx < cb; ++dx, ++c) {
                        const int r = cb * i + dy, q = cb * j + dx;
                        if (r < ch && q < cw) {
                            const long long at = ((long long)b * ch + r) * cw + q;
                            const long long cv = c + (long long)cb * cb;  // the V channel of this U channel
                            u[at] = (Code)quantize(denormalise(In::load(cell[c * psc]), half), top);
                            v[at] = (Code)quantize(denormalise(In::load(cell[cv * psc]), half), top);
                        }
                    }
            }
}

}  // namespace vsr

// pack_<code>_<out>(y, u, v, out, n, h, w, hc, wc, rows, cols, block, m, 9 plane strides)
//   y (n, h, w), u/v (n, hc, wc): integer codes, any element strides; out (n, C, rows, cols) contiguous.
#define VSR_PACK(NAME, CODE, OUT)                                                                        \
    extern "C" __global__ void NAME(const CODE* y, const CODE* u, const CODE* v, OUT::storage* out,     \
                                    int n, int h, int w, int hc, int wc, int rows, int cols, int block, \
                                    int m, long long ysn, long long ysh, long long ysw, long long usn,  \
                                    long long ush, long long usw, long long vsn, long long vsh,         \
                                    long long vsw)                                                      \
    {                                                                                                   \
        vsr::pack_cells<CODE, OUT>(y, u, v, out, n, h, w, hc, wc, rows, cols, block, m, ysn, ysh, ysw,  \
                                   usn, ush, usw, vsn, vsh, vsw);                                       \
    }

VSR_PACK(pack_u8_f32, vsr::u8, vsr::F32)
VSR_PACK(pack_u8_f16, vsr::u8, vsr::F16)
VSR_PACK(pack_u8_bf16, vsr::u8, vsr::BF16)
VSR_PACK(pack_u16_f32, vsr::u16, vsr::F32)
VSR_PACK(pack_u16_f16, vsr::u16, vsr::F16)
VSR_PACK(pack_u16_bf16, vsr::u16, vsr::BF16)

// unpack_<in>_<code>(packed, y, u, v, n, rows, cols, block, height, width, ch, cw, m, 4 packed strides)
//   packed (n, C, rows, cols) any element strides; y (n, height, width), u/v (n, ch, cw) contiguous.
#define VSR_UNPACK(NAME, IN, CODE)                                                                       \
    extern "C" __global__ void NAME(const IN::storage* packed, CODE* y, CODE* u, CODE* v, int n,         \
                                    int rows, int cols, int block, int height, int width, int ch,        \
                                    int cw, int m, long long psn, long long psc, long long psh,          \
                                    long long psw)                                                       \
    {                                                                                                    \
        vsr::unpack_cells<IN, CODE>(packed, y, u, v, n, rows, cols, block, height, width, ch, cw, m,     \
                                    psn, psc, psh, psw);                                                 \
    }

VSR_UNPACK(unpack_f32_u8, vsr::F32, vsr::u8)
VSR_UNPACK(unpack_f16_u8, vsr::F16, vsr::u8)
VSR_UNPACK(unpack_bf16_u8, vsr::BF16, vsr::u8)
VSR_UNPACK(unpack_f32_u16, vsr::F32, vsr::u16)
VSR_UNPACK(unpack_f16_u16, vsr::F16, vsr::u16)
VSR_UNPACK(unpack_bf16_u16, vsr::BF16, vsr::u16)
