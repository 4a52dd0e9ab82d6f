// The packed-layout ops on the CPU, built at run time by kernels/cpu_ops.py (g++ -O3 -ffp-contract=off
// -fno-fast-math): vsr_cpu_pack (kernels.reference.pack), vsr_cpu_upscale_plane (the upsampler's
// unpack, kernels.reference.unpack_upscale, one output plane per call) and vsr_cpu_resize_rows /
// vsr_cpu_resize_cols (kernels.reference.resize_plane's two passes, exact int64 sums as in resize.cu).
// Bit-identical to the twins.
//
// pack: normalise(code) = float32(2 code - m) / float32(m), one IEEE division, then the output dtype's
// round-to-nearest-even conversion (vsr_common.cuh's store), written channel row by channel row of
// the packed tensor (contiguous, NCHW) from clamped (edge-replicated) plane rows.
//
// unpack_upscale: the arithmetic is upscale.cu's (and the twin's), in the same operations and order:
//   base = float32(exact integer bilinear sum) / float32(4 s^2)      (a multiplication by the exact
//          reciprocal when 4 s^2 is a power of two: the same correctly rounded value)
//   out  = quantize(base + float32(r) * (m / 2))                      multiply, then add: two roundings
// but the loop order suits a CPU: one output row at a time, the two source rows blended vertically
// once into an integer row, the horizontal taps (a plain loop at 2x, per-column tables otherwise), the
// residual row gathered from its cells, then a branch-free pass over the output columns, so the
// compiler can vectorise it. Rows are split
// between `threads` OpenMP threads (each output row is written by exactly one of them). Built with
// -fopenmp, the library uses the libgomp torch has already loaded, so its threads are the ones that
// just ran the network's convolutions: still awake, and not left spinning beside new threads of ours
// (x2-fast bf16 at 960x540 on the 2-core AMX Xeon, end to end: 142.9 fps against 100.9 fps with
// std::threads started per call; docs/results/speed_cpu_kernels_xeon_openmp.md and _stdthreads.md).
// The integer sums are at most 4 s^2 m < 2^24 (the planner checks), so int and float32 hold them.

#include <cstdint>
#include <math.h>
#include <string.h>
#include <omp.h>
#include <algorithm>
#include <vector>

// What vsr_common.cuh needs from CUDA, as plain IEEE binary32 operations (no FMA: -ffp-contract=off).
#define __device__
#define __forceinline__ inline
#define VSR_UNROLL
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline unsigned int __float_as_uint(float x) { unsigned int u; memcpy(&u, &x, sizeof u); return u; }
inline float __uint_as_float(unsigned int u) { float x; memcpy(&x, &u, sizeof x); return x; }

#include "vsr_common.cuh"

namespace {

using vsr::floor_div;
using vsr::clampi;

struct Plane {
    const void* res;
    const void* src;
    void* out;
    int n, out_h, out_w, src_h, src_w, scale, cell, c0, m;
    int64_t rsn, rsc, rsh, rsw, ssn, ssh, ssw;
};

struct Pack {
    const void *y, *u, *v;
    void* out;
    int n, h, w, hc, wc, rows, cols, block, m;
    int64_t ysn, ysh, ysw, usn, ush, usw, vsn, vsh, vsw;
};

// Source index, weight of the second tap, for output position p: t = 2p + 1 - s, a = floor(t / 2s).
struct Taps {
    int a, b, f;
};

inline Taps taps(int p, int s, int size)
{
    const int two_s = 2 * s;
    const int t = 2 * p + 1 - s;
    const int a = floor_div(t, two_s);
    return {clampi(a, 0, size - 1), clampi(a + 1, 0, size - 1), t - two_s * a};
}

// Scale2Cell: 0 for any scale; 4 (luma) or 2 (chroma) for the 2x fast path, whose horizontal taps
// are fixed: output 2k = 1 x source k-1 + 3 x source k, output 2k+1 = 3 x source k + 1 x source k+1
// (edges clamped), i.e. taps() at s = 2, written without tables so the loop vectorises.
template <class In, class Code, bool Pow2, int Scale2Cell>
void rows(const Plane& p, int first, int last)
{
    // Every field in a local: stores through uint8 pointers may alias anything, and a reloaded bound
    // keeps the compiler from vectorising.
    const int out_h = p.out_h, out_w = p.out_w, src_h = p.src_h, src_w = p.src_w, s = p.scale;
    const int cell = Scale2Cell ? Scale2Cell : p.cell;
    const int64_t rsc = p.rsc, rsw = p.rsw, ssw = p.ssw;
    const int two_s = 2 * s;
    const float norm_f = (float)(two_s * two_s);
    const float inv_norm = 1.0f / norm_f;  // exact when Pow2
    const float half = 0.5f * (float)p.m;
    const float top = (float)p.m;
    std::vector<int> blend(src_w + 2), sum(out_w + 2 * src_w);
    std::vector<float> value(out_w);
    // per-column tables: the horizontal taps (other than the 2x fast path) and the residual offsets
    // (other than a channels-last residual, whose cells are read in runs)
    std::vector<int> ia, ib, wa, wb;
    std::vector<int64_t> roff;
    for (int x = 0; x < out_w; ++x) {
        if (!Scale2Cell) {
            const Taps t = taps(x, s, src_w);
            ia.push_back(t.a);
            ib.push_back(t.b);
            wa.push_back(two_s - t.f);
            wb.push_back(t.f);
        }
        if (rsc != 1)
            roff.push_back((int64_t)(x / cell) * rsw + (int64_t)(x % cell) * rsc);
    }
    const int full_cells = out_w / cell;
    const auto* res = static_cast<const typename In::storage*>(p.res);
    const auto* src = static_cast<const Code*>(p.src);
    auto* out = static_cast<Code*>(p.out);
    for (int row = first; row < last; ++row) {
        const int b = row / out_h, y = row % out_h;
        const Taps ty = taps(y, s, src_h);
        const Code* __restrict ra = src + b * p.ssn + ty.a * p.ssh;
        const Code* __restrict rb = src + b * p.ssn + ty.b * p.ssh;
        const int vy_a = two_s - ty.f, vy_b = ty.f;
        int* __restrict bl = blend.data() + 1;  // bl[-1] and bl[src_w]: the clamped edges
        for (int x = 0; x < src_w; ++x)
            bl[x] = vy_a * (int)ra[x * ssw] + vy_b * (int)rb[x * ssw];
        int* __restrict sm = sum.data();
        if constexpr (Scale2Cell != 0) {
            bl[-1] = bl[0];
            bl[src_w] = bl[src_w - 1];
            for (int k = 0; k < src_w; ++k) {  // 2 src_w >= out_w outputs; the extra one is never read
                sm[2 * k] = bl[k - 1] + 3 * bl[k];
                sm[2 * k + 1] = 3 * bl[k] + bl[k + 1];
            }
        } else {
            const int* __restrict ja = ia.data();
            const int* __restrict jb = ib.data();
            const int* __restrict ka = wa.data();
            const int* __restrict kb = wb.data();
            for (int x = 0; x < out_w; ++x)
                sm[x] = ka[x] * bl[ja[x]] + kb[x] * bl[jb[x]];
        }
        const int i = y / cell, dy = y % cell;
        const auto* __restrict r_row = res + b * p.rsn + (int64_t)(p.c0 + dy * cell) * rsc + (int64_t)i * p.rsh;
        float* __restrict val = value.data();
        if (rsc == 1) {  // channels-last residual: each cell's samples of this row are contiguous
            for (int j = 0; j < full_cells; ++j)
                for (int dx = 0; dx < cell; ++dx)
                    val[j * cell + dx] = In::load(r_row[j * rsw + dx]);
            for (int x = full_cells * cell; x < out_w; ++x)
                val[x] = In::load(r_row[full_cells * rsw + (x - full_cells * cell)]);
        } else {
            const int64_t* __restrict off = roff.data();
            for (int x = 0; x < out_w; ++x)
                val[x] = In::load(r_row[off[x]]);
        }
        Code* __restrict o = out + ((int64_t)b * out_h + y) * out_w;
        for (int x = 0; x < out_w; ++x) {
            const float base = Pow2 ? (float)sm[x] * inv_norm : (float)sm[x] / norm_f;
            float v = rintf(val[x] * half + base);  // half to even (the default rounding mode)
            // quantize's NaN -> 0 and clamp to 0..m, written as x86 max/min semantics (the second operand
            // when either is NaN), so the loop vectorises: NaN -> 0, inf -> m, -inf -> 0
            v = v > 0.0f ? v : 0.0f;
            v = v < top ? v : top;
            o[x] = (Code)(int)v;
        }
    }
}

template <class In, class Code>
void run(const Plane& p, int first, int last)
{
    const int norm = 4 * p.scale * p.scale;
    if (p.scale == 2 && p.cell == 4)
        rows<In, Code, true, 4>(p, first, last);
    else if (p.scale == 2 && p.cell == 2)
        rows<In, Code, true, 2>(p, first, last);
    else if ((norm & (norm - 1)) == 0)
        rows<In, Code, true, 0>(p, first, last);
    else
        rows<In, Code, false, 0>(p, first, last);
}

// Calls f(Float{}, Code{}) with the float storage tag of `kind` (0 = float32, 1 = float16,
// 2 = bfloat16) and the code type of `code_bytes` (1: uint8, 2: uint16): the one place the run-time
// dtypes become template arguments.
template <class F>
void with_types(int kind, int code_bytes, const F& f)
{
    const auto with_code = [&](auto tag) {
        if (code_bytes == 1)
            f(tag, vsr::u8{});
        else
            f(tag, vsr::u16{});
    };
    if (kind == 0)
        with_code(vsr::F32{});
    else if (kind == 1)
        with_code(vsr::F16{});
    else
        with_code(vsr::BF16{});
}

// Rows [first, last) of the work list: (frame, cell row, channel) triples, one packed channel row each.
template <class Code, class Out>
void pack_rows(const Pack& p, int first, int last)
{
    const int block = p.block, cb = block / 2, cols = p.cols, m = p.m;
    const int channels = block * block + 2 * cb * cb;
    const float m_f = (float)m;
    auto* out = static_cast<typename Out::storage*>(p.out);
    for (int item = first; item < last; ++item) {
        const int c = item % channels, i = (item / channels) % p.rows, b = item / channels / p.rows;
        const void* plane;
        int h, w, r, q0, step;
        int64_t sn, sh, sw;
        if (c < block * block) {
            plane = p.y, h = p.h, w = p.w, sn = p.ysn, sh = p.ysh, sw = p.ysw;
            r = block * i + c / block, q0 = c % block, step = block;
        } else {
            const int k = (c - block * block) % (cb * cb);
            const bool is_v = c >= block * block + cb * cb;
            plane = is_v ? p.v : p.u, h = p.hc, w = p.wc;
            sn = is_v ? p.vsn : p.usn, sh = is_v ? p.vsh : p.ush, sw = is_v ? p.vsw : p.usw;
            r = cb * i + k / cb, q0 = k % cb, step = cb;
        }
        const Code* __restrict row = static_cast<const Code*>(plane) + b * sn + (int64_t)(r < h ? r : h - 1) * sh;
        typename Out::storage* __restrict o = out + (((int64_t)b * channels + c) * p.rows + i) * cols;
        // columns whose source sample lies inside the plane, then the clamped (replicated) tail
        const int inside = q0 < w ? (w - 1 - q0) / step + 1 : 0;
        const int full = inside < cols ? inside : cols;
        for (int j = 0; j < full; ++j)
            o[j] = Out::store((float)(2 * (int)row[(int64_t)(q0 + step * j) * sw] - m) / m_f);
        const typename Out::storage edge = Out::store((float)(2 * (int)row[(int64_t)(w - 1) * sw] - m) / m_f);
        for (int j = full; j < cols; ++j)
            o[j] = edge;
    }
}

// Runs work(first, last) over [0, total) split between `threads` threads (the caller's one of them;
// fewer where OpenMP grants fewer).
template <class Work>
void parallel(int total, int threads, const Work& work)
{
    threads = threads < 1 ? 1 : (threads > total ? total : threads);
#pragma omp parallel num_threads(threads)
    {
        const int k = omp_get_thread_num(), n = omp_get_num_threads();
        work((int)((int64_t)total * k / n), (int)((int64_t)total * (k + 1) / n));
    }
}

// reference.resize_plane, rows pass: across[b, r, j] = sum_k weight[j, k] * src[b, r, index[j, k]] for the
// input rows [first, last) of all frames (b * h + r).
template <class Code>
void resize_rows(const Code* src, int64_t* across, int h, int out_w, int taps, const int64_t* index,
                 const int64_t* weight, int64_t sn, int64_t sh, int64_t sw, int first, int last)
{
    for (int row = first; row < last; ++row) {
        const Code* in = src + (int64_t)(row / h) * sn + (int64_t)(row % h) * sh;
        int64_t* out = across + (int64_t)row * out_w;
        for (int j = 0; j < out_w; ++j) {
            const int64_t* ix = index + (int64_t)j * taps;
            const int64_t* wx = weight + (int64_t)j * taps;
            int64_t sum = 0;
            for (int k = 0; k < taps; ++k)
                sum += wx[k] * (int64_t)in[ix[k] * sw];
            out[j] = sum;
        }
    }
}

// Columns pass for the output rows [first, last) of all frames (b * out_h + i): S over the taps, whole rows at a
// time (vectorisable), then S < 0 ? 0 : min((S + 2^27) >> 28, m).
template <class Code>
void resize_cols(const int64_t* across, Code* out, int h, int out_h, int out_w, int taps, const int64_t* index,
                 const int64_t* weight, int m, int first, int last)
{
    std::vector<int64_t> acc(out_w);
    for (int row = first; row < last; ++row) {
        const int b = row / out_h, i = row % out_h;
        std::fill(acc.begin(), acc.end(), 0);
        for (int t = 0; t < taps; ++t) {
            const int64_t w = weight[(int64_t)i * taps + t];
            const int64_t* in = across + ((int64_t)b * h + index[(int64_t)i * taps + t]) * out_w;
            for (int j = 0; j < out_w; ++j)
                acc[j] += w * in[j];
        }
        Code* o = out + (int64_t)row * out_w;
        for (int j = 0; j < out_w; ++j) {
            const int64_t code = acc[j] < 0 ? 0 : (acc[j] + (1ll << 27)) >> 28;
            o[j] = (Code)(code > m ? m : code);
        }
    }
}

}  // namespace

// Resize, rows pass (resize.cu's resize_rows): src (n, h, w) codes of code_bytes 1 or 2 with element strides;
// across (n, h, out_w) int64, contiguous; index/weight (out_w, taps) int64. Returns 0, or -1 for arguments it
// does not take.
extern "C" int vsr_cpu_resize_rows(int code_bytes, const void* src, void* across, int n, int h, int out_w, int taps,
                                   const void* index, const void* weight, int64_t sn, int64_t sh, int64_t sw,
                                   int threads)
{
    if ((code_bytes != 1 && code_bytes != 2) || n < 0 || h < 0 || out_w < 0 || taps < 1)
        return -1;
    if (n * h == 0 || out_w == 0)
        return 0;
    const auto* ix = static_cast<const int64_t*>(index);
    const auto* wx = static_cast<const int64_t*>(weight);
    auto* acc = static_cast<int64_t*>(across);
    parallel(n * h, threads, [&](int first, int last) {
        if (code_bytes == 1)
            resize_rows(static_cast<const uint8_t*>(src), acc, h, out_w, taps, ix, wx, sn, sh, sw, first, last);
        else
            resize_rows(static_cast<const uint16_t*>(src), acc, h, out_w, taps, ix, wx, sn, sh, sw, first, last);
    });
    return 0;
}

// Resize, columns pass (resize.cu's resize_cols): out (n, out_h, out_w) contiguous codes.
extern "C" int vsr_cpu_resize_cols(int code_bytes, const void* across, void* out, int n, int h, int out_h, int out_w,
                                   int taps, const void* index, const void* weight, int m, int threads)
{
    if ((code_bytes != 1 && code_bytes != 2) || n < 0 || h < 1 || out_h < 0 || out_w < 0 || taps < 1)
        return -1;
    if (n * out_h == 0 || out_w == 0)
        return 0;
    const auto* iy = static_cast<const int64_t*>(index);
    const auto* wy = static_cast<const int64_t*>(weight);
    const auto* acc = static_cast<const int64_t*>(across);
    parallel(n * out_h, threads, [&](int first, int last) {
        if (code_bytes == 1)
            resize_cols(acc, static_cast<uint8_t*>(out), h, out_h, out_w, taps, iy, wy, m, first, last);
        else
            resize_cols(acc, static_cast<uint16_t*>(out), h, out_h, out_w, taps, iy, wy, m, first, last);
    });
    return 0;
}

// One output plane. kind: residual storage 0 = float32, 1 = float16, 2 = bfloat16; code_bytes: 1 or 2.
// Strides are in elements. Returns 0, or -1 for arguments it does not take.
extern "C" int vsr_cpu_upscale_plane(int kind, int code_bytes, const void* res, const void* src, void* out,
                                     int n, int out_h, int out_w, int src_h, int src_w, int scale, int cell, int c0,
                                     int m, int64_t rsn, int64_t rsc, int64_t rsh, int64_t rsw, int64_t ssn,
                                     int64_t ssh, int64_t ssw, int threads)
{
    if (kind < 0 || kind > 2 || (code_bytes != 1 && code_bytes != 2) || scale < 1 || n < 0 || out_h < 0
        || out_w < 0 || src_h < 1 || src_w < 1)
        return -1;
    const Plane p{res, src, out, n, out_h, out_w, src_h, src_w, scale, cell, c0, m, rsn, rsc, rsh, rsw, ssn, ssh, ssw};
    const int total = n * out_h;
    if (total == 0 || out_w == 0)
        return 0;
    parallel(total, threads, [&](int first, int last) {
        with_types(kind, code_bytes, [&](auto in, auto code) { run<decltype(in), decltype(code)>(p, first, last); });
    });
    return 0;
}

// reference.pack into `out`, a contiguous (n, b^2 + 2 (b/2)^2, rows, cols) tensor. kind: the output
// dtype, 0 = float32, 1 = float16, 2 = bfloat16; code_bytes: 1 (uint8 planes) or 2 (uint16).
extern "C" int vsr_cpu_pack(int kind, int code_bytes, const void* y, const void* u, const void* v, void* out, int n,
                            int h, int w, int hc, int wc, int rows, int cols, int block, int m, int64_t ysn,
                            int64_t ysh, int64_t ysw, int64_t usn, int64_t ush, int64_t usw, int64_t vsn, int64_t vsh,
                            int64_t vsw, int threads)
{
    if (kind < 0 || kind > 2 || (code_bytes != 1 && code_bytes != 2) || block < 2 || block % 2 || n < 0 || h < 1
        || w < 1 || hc < 1 || wc < 1 || rows < 1 || cols < 1)
        return -1;
    const Pack p{y, u, v, out, n, h, w, hc, wc, rows, cols, block, m, ysn, ysh, ysw, usn, ush, usw, vsn, vsh, vsw};
    const int channels = block * block + 2 * (block / 2) * (block / 2);
    parallel(n * rows * channels, threads, [&](int first, int last) {
        with_types(kind, code_bytes,
                   [&](auto out, auto code) { pack_rows<decltype(code), decltype(out)>(p, first, last); });
    });
    return 0;
}
