"""The CUDA kernels, compiled for the CPU through the emulation shim, against the torch twins: bit for bit.

What runs here is the text CuPy compiles (``cupy_ops.kernel_source``) and the launch plans
``cupy_ops.run`` launches (``cupy_ops.plan_*``): kernel arithmetic, indexing, launch shapes and
argument order. See tests/kernels/emulation/ for how, and what the emulation does not model.
"""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest
import torch

import kernels
from kernels import cupy_ops, reference
from tests.conftest import random_planes
from tests.kernels import inputs
from tests.kernels.parity import FLOATS, SIZES, assert_identical, bits_of, frames
from tests.kernels.emulation import emulator

pytestmark = pytest.mark.skipif(emulator.compiler() is None, reason="no C++ compiler (g++) for the CPU emulation")

FTZ = platform.machine().lower() in ("x86_64", "amd64")  # where the shim can flush subnormals


@pytest.fixture
def libs(emulation_libs):
    return emulation_libs


def emulate(libs, plan, *args, shape=None, **kw):
    """Plan with guarded outputs and run every launch in the emulation (with its own launch shape,
    or ``shape = (grid, block)``), once with IEEE subnormals and once flushing them to zero as
    CuPy's ``-ftz=true`` build does; both runs must agree. Returns the outputs."""
    grid, block = shape or (None, None)
    results = []
    for ftz in (False, True) if FTZ else (False,):
        guard = emulator.GuardedEmpty()
        outs, launches = plan(*args, empty=guard, **kw)
        for launch in launches:
            emulator.run(libs[launch.source], [launch], grid=grid, block=block, ftz=ftz)
        guard.check()
        results.append(outs if isinstance(outs, tuple) else (outs,))
    if len(results) == 2:
        for ieee, flushed in zip(*results):
            assert torch.equal(bits_of(ieee), bits_of(flushed)), "results depend on flush-to-zero"
    return results[0] if isinstance(outs, tuple) else results[0][0]


# ---- parity -------------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("block", [2, 4])
@pytest.mark.parametrize("bits", [8, 10])
def test_pack_matches_twin(libs, bits, block, dtype, h, w):
    y, u, v = random_planes(frames(h, w), h, w, bits, seed=h * w + block)
    got = emulate(libs, cupy_ops.plan_pack, y, u, v, bits=bits, block=block, dtype=dtype)
    assert_identical([got], [reference.pack(y, u, v, bits=bits, block=block, dtype=dtype)])


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("block", [2, 4])
@pytest.mark.parametrize("bits", [8, 10])
def test_unpack_matches_twin(libs, bits, block, dtype, h, w):
    rows, cols = -(-h // block), -(-w // block)
    x, witnesses = inputs.packed(frames(h, w), block, rows, cols, bits=bits, dtype=dtype, seed=h + w)
    assert witnesses > 0 or dtype != torch.float32
    got = emulate(libs, cupy_ops.plan_unpack, x, bits=bits, block=block, height=h, width=w)
    assert_identical(got, reference.unpack(x, bits=bits, block=block, height=h, width=w))


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("bits", [8, 10])
def test_unpack_upscale_matches_twin(libs, bits, scale, dtype, h, w):
    y, u, v = random_planes(frames(h, w), h, w, bits, seed=h * 7 + w)
    r, witnesses = inputs.residual(y, u, v, bits=bits, scale=scale, dtype=dtype, seed=bits + scale)
    assert witnesses > 0 or dtype != torch.float32 or h * w == 1
    got = emulate(libs, cupy_ops.plan_unpack_upscale, r, y, u, v, bits=bits, scale=scale)
    assert_identical(got, reference.unpack_upscale(r, y, u, v, bits=bits, scale=scale))


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bits", [8, 10])
def test_unpack_downscale_matches_twin(libs, bits, dtype, h, w):
    y, u, v = random_planes(frames(h, w), h, w, bits, seed=h * 5 + w)
    r, fma, ties = inputs.downscale_residual(y, u, v, bits=bits, dtype=dtype, seed=bits + h)
    assert fma > 0 or dtype != torch.float32
    assert ties > 0 or h * w < 64 or (dtype == torch.bfloat16 and h * w <= 64)  # bf16: ~1 in 128 samples
    got = emulate(libs, cupy_ops.plan_unpack_downscale, r, y, u, v, bits=bits)
    assert_identical(got, reference.unpack_downscale(r, y, u, v, bits=bits))


@pytest.mark.parametrize("bits", [12, 14])
def test_unpack_downscale_deep_planes(libs, bits):
    """Up to 14 bits the int32 sum is exact (|S| <= 78976 m < 2**31), bright planes included."""
    y, u, v = random_planes(2, 21, 18, bits, seed=bits)
    y[0, :10], u[0] = (1 << bits) - 1, (1 << bits) - 2
    r, _, _ = inputs.downscale_residual(y, u, v, bits=bits, dtype=torch.float32, seed=bits)
    got = emulate(libs, cupy_ops.plan_unpack_downscale, r, y, u, v, bits=bits)
    assert_identical(got, reference.unpack_downscale(r, y, u, v, bits=bits))
    assert float(reference.bicubic_downscale2(y, 11, 9)[0, 0, 0]) == (1 << bits) - 1  # flat stays flat


def test_unpack_downscale_refuses_planes_its_sum_cannot_hold():
    y, u, v = random_planes(1, 8, 8, 16)
    r = torch.zeros(1, 6, 2, 2)
    for fn in (reference.unpack_downscale, lambda *a, **k: cupy_ops.plan_unpack_downscale(*a, **k)):
        with pytest.raises(ValueError, match="takes 8..14-bit planes"):
            fn(r, y, u, v, bits=16)


def test_downscale_ties_are_ties():
    """The crafted residuals make the twin's unrounded output an exact k + 0.5 (every dtype), and the
    numpy oracle of bicubic_downscale2 that places them equals the twin everywhere."""
    y, u, v = random_planes(2, 37, 30, 10, seed=4)
    (lh, lw), (ch, cw) = kernels.downscale_shapes(37, 30)
    for plane, (ph, pw) in ((y, (lh, lw)), (u, (ch, cw))):
        b, oy, ox = (a.ravel() for a in np.meshgrid(np.arange(2), np.arange(ph), np.arange(pw), indexing="ij"))
        assert np.array_equal(inputs.bicubic_down2_at(plane.numpy(), b, oy, ox),
                              kernels.bicubic_downscale2(plane, ph, pw).numpy().ravel())
    for dtype in FLOATS:
        r, _, ties = inputs.downscale_residual(y, u, v, bits=10, dtype=dtype, seed=1)
        halves = sum(int((p.frac().abs() == 0.5).sum()) for p in reference.downscale_planes_float(r, y, u, v, bits=10))
        assert ties > 10 and halves >= ties, (dtype, ties, halves)


@pytest.mark.parametrize("scale,bits", [(1, 10), (4, 10), (8, 16)])
def test_unpack_upscale_other_scales(libs, scale, bits):
    y, u, v = random_planes(2, 9, 6, bits, seed=scale)
    r, _ = inputs.residual(y, u, v, bits=bits, scale=scale, dtype=torch.float32)
    got = emulate(libs, cupy_ops.plan_unpack_upscale, r, y, u, v, bits=bits, scale=scale)
    assert_identical(got, reference.unpack_upscale(r, y, u, v, bits=bits, scale=scale))


def test_pack_reads_uint16_planes_at_8_bits_and_out_of_range_codes(libs):
    # the twin does not clamp codes above m; neither does the kernel
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 1 << 16, (1, 5, 6), generator=g).to(torch.uint16)
    u = torch.randint(0, 256, (1, 3, 3), generator=g).to(torch.uint16)
    v = torch.randint(0, 256, (1, 3, 3), generator=g).to(torch.uint16)
    got = emulate(libs, cupy_ops.plan_pack, y, u, v, bits=8, block=2, dtype=torch.float32)
    assert_identical([got], [reference.pack(y, u, v, bits=8, block=2)])


def test_strided_inputs(libs):
    """Planes cut out of larger frames, a channels-last residual and a permuted packed tensor: the
    kernels take element strides, so nothing is copied and results stay identical."""
    big = random_planes(2, 40, 30, 10, seed=11)
    y, u, v = big[0][:, 3:36:2, 1:30:3], big[1][:, 2:11, 4:14:2], big[2][:, 5:14, 1:6]
    assert not y.is_contiguous() and u.shape == v.shape == (2, 9, 5) and y.shape == (2, 17, 10)
    got = emulate(libs, cupy_ops.plan_pack, y, u, v, bits=10, block=2, dtype=torch.float16)
    assert_identical([got], [reference.pack(y, u, v, bits=10, block=2, dtype=torch.float16)])

    r, _ = inputs.residual(y, u, v, bits=10, scale=2, dtype=torch.float32)
    r = r.contiguous(memory_format=torch.channels_last)
    assert not r.is_contiguous()
    got = emulate(libs, cupy_ops.plan_unpack_upscale, r, y, u, v, bits=10, scale=2)
    assert_identical(got, reference.unpack_upscale(r, y, u, v, bits=10, scale=2))

    x, _ = inputs.packed(2, 4, 5, 3, bits=8, dtype=torch.bfloat16)
    x = x.permute(3, 1, 0, 2).contiguous().permute(2, 1, 3, 0)
    assert not x.is_contiguous()
    got = emulate(libs, cupy_ops.plan_unpack, x, bits=8, block=4, height=17, width=10)
    assert_identical(got, reference.unpack(x, bits=8, block=4, height=17, width=10))

    r, _, _ = inputs.downscale_residual(y, u, v, bits=10, dtype=torch.float16)
    r = r.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last
    assert not r.is_contiguous()
    got = emulate(libs, cupy_ops.plan_unpack_downscale, r, y, u, v, bits=10)
    assert_identical(got, reference.unpack_downscale(r, y, u, v, bits=10))


@pytest.mark.parametrize("grid,block", [((1, 1, 1), (1, 1, 1)), ((2, 3, 1), (32, 1, 1)), ((1, 2, 2), (7, 3, 2)),
                                        ((5, 200, 3), (64, 1, 1))])
def test_any_launch_shape_gives_the_same_result(libs, grid, block):
    """Grid-stride loops in x, y and z: a capped grid (as launch_shape makes for huge frames) or an
    oversized one covers every sample exactly once."""
    y, u, v = random_planes(3, 13, 11, 10, seed=5)
    got = emulate(libs, cupy_ops.plan_pack, y, u, v, bits=10, block=4, dtype=torch.float32, shape=(grid, block))
    assert_identical([got], [reference.pack(y, u, v, bits=10, block=4)])
    x, _ = inputs.packed(3, 2, 7, 6, bits=10, dtype=torch.float16)
    got = emulate(libs, cupy_ops.plan_unpack, x, bits=10, block=2, height=13, width=11, shape=(grid, block))
    assert_identical(got, reference.unpack(x, bits=10, block=2, height=13, width=11))
    r, _ = inputs.residual(y, u, v, bits=10, scale=3, dtype=torch.float32)
    got = emulate(libs, cupy_ops.plan_unpack_upscale, r, y, u, v, bits=10, scale=3, shape=(grid, block))
    assert_identical(got, reference.unpack_upscale(r, y, u, v, bits=10, scale=3))
    r, _, _ = inputs.downscale_residual(y, u, v, bits=10, dtype=torch.bfloat16)
    got = emulate(libs, cupy_ops.plan_unpack_downscale, r, y, u, v, bits=10, shape=(grid, block))
    assert_identical(got, reference.unpack_downscale(r, y, u, v, bits=10))


def test_fma_witnesses_really_need_two_roundings():
    """The crafted float32 witnesses used above do separate a fused multiply-add from mul + add
    (and are placed on the bilinear base the twin computes)."""
    y = random_planes(2, 9, 7, 10, seed=9)[0]
    b, oy, ox = np.meshgrid(np.arange(2), np.arange(27), np.arange(21), indexing="ij")
    assert np.array_equal(inputs.bilinear_at(y.numpy(), 3, b.ravel(), oy.ravel(), ox.ravel()),
                          kernels.bilinear_upscale(y, 3, 27, 21).numpy().ravel())
    base = np.array([100.25, 37.0, 511.5, 800.0625], np.float32)
    r = inputs.fma_sensitive(base, 1023 / 2)
    assert not np.isnan(r).any()
    prod = r.astype(np.float64) * (1023 / 2)
    two = np.rint((prod.astype(np.float32) + base).astype(np.float32))
    fused = np.rint((prod + base).astype(np.float32))
    assert (two != fused).all()


# ---- 16-bit float conversions, exhaustively ---------------------------------------------------

CONVERT_SOURCE = (cupy_ops.KERNEL_DIR / cupy_ops.HEADER).read_text() + r"""
namespace vsr {
__device__ __forceinline__ float times_two(float x) { return __fmul_rn(x, 2.0f); }
}  // namespace vsr
#define VSR_CONVERT(NAME, IN, OUT, FN)                                                                  \
    extern "C" __global__ void NAME(const IN* x, OUT* y, long long n)                                   \
    {                                                                                                   \
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;                     \
             i += (long long)gridDim.x * blockDim.x)                                                    \
            y[i] = vsr::FN(x[i]);                                                                       \
    }
VSR_CONVERT(f16_to_f32, vsr::u16, float, f16_bits_to_float)
VSR_CONVERT(bf16_to_f32, vsr::u16, float, bf16_bits_to_float)
VSR_CONVERT(f32_to_f16, float, vsr::u16, float_to_f16_bits)
VSR_CONVERT(f32_to_bf16, float, vsr::u16, float_to_bf16_bits)
VSR_CONVERT(f32_times_two, float, float, times_two)
"""


def _convert(lib, name: str, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    y = torch.empty(x.shape, dtype=out_dtype)
    grid, block = cupy_ops.launch_shape(min(x.numel(), 1 << 20), 1, 1)
    emulator.run(lib, [cupy_ops.Launch("convert", name, grid, block, (x, y, np.int64(x.numel())))])
    return y


def _float_probe() -> torch.Tensor:
    """float32 values around every fp16/bf16 rounding boundary (both signs), in [-1, 1] (what pack
    produces) and random bit patterns (NaNs and infinities included)."""
    g = torch.Generator().manual_seed(0)
    edges = torch.tensor([0x00000000, 0x33000000, 0x33800000, 0x387fc000, 0x38800000, 0x38000000, 0x3f800000,
                          0x477fe000, 0x477ff000, 0x47800000, 0x7f7fffff, 0x7f800000, 0x7fc00000, 0x3f7fffff])
    near = (edges[:, None] + torch.arange(-4100, 4100)[None, :]).reshape(-1).clamp(0, 0x7FFFFFFF)
    unit = torch.randint(0x30000000, 0x3F800001, (200_000,), generator=g)
    rand = torch.randint(0, 0x80000000, (400_000,), generator=g)
    mag = torch.cat([near, unit, rand])
    negative = torch.randint(0, 2, mag.shape, generator=g).bool()
    patterns = torch.where(negative, mag - (1 << 31), mag)  # sign bit set, as a two's complement int32
    return patterns.to(torch.int32).view(torch.float32)


def test_16_bit_float_conversions_match_torch():
    lib = emulator.build(CONVERT_SOURCE, label="convert")
    every = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    for name, dt in (("f16_to_f32", torch.float16), ("bf16_to_f32", torch.bfloat16)):
        got = _convert(lib, name, every, torch.float32)
        want = every.view(dt).float()
        nan = torch.isnan(want)
        assert torch.equal(torch.isnan(got), nan)
        assert torch.equal(got[~nan].view(torch.int32), want[~nan].view(torch.int32)), name  # -0.0 and subnormals too
    x = _float_probe()
    for name, dt in (("f32_to_f16", torch.float16), ("f32_to_bf16", torch.bfloat16)):
        got = _convert(lib, name, x, torch.int16).view(dt)
        want = x.to(dt)
        nan = torch.isnan(want)
        assert torch.equal(torch.isnan(got), nan), name
        diff = got[~nan].view(torch.int16) != want[~nan].view(torch.int16)
        assert not bool(diff.any()), f"{name}: {int(diff.sum())} differ, e.g. {x[~nan][diff][:5].tolist()}"


@pytest.mark.skipif(not FTZ, reason="flush-to-zero emulation needs an x86-64 CPU")
def test_flush_to_zero_mode_flushes():
    lib = emulator.build(CONVERT_SOURCE, label="convert")
    x = torch.tensor([1e-40, -3e-39, 1.5e-38, 1.0], dtype=torch.float32)
    y = torch.empty_like(x)
    launch = cupy_ops.Launch("convert", "f32_times_two", (1, 1, 1), (32, 1, 1), (x, y, np.int64(4)))
    emulator.run(lib, [launch])
    assert torch.equal(y, x * 2)
    emulator.run(lib, [launch], ftz=True)
    assert y.tolist() == [0.0, -0.0, (x[2] * 2).item(), 2.0] and torch.signbit(y[1])


# ---- a broken kernel is caught --------------------------------------------------------------------

def _case_pack(bits, dtype, block=2):
    def run(lib):
        y, u, v = random_planes(2, 33, 19, bits, seed=1)
        got = emulate({"pack.cu": lib}, cupy_ops.plan_pack, y, u, v, bits=bits, block=block, dtype=dtype)
        return [got], [reference.pack(y, u, v, bits=bits, block=block, dtype=dtype)]
    return "pack.cu", run


def _case_unpack(bits, dtype):
    def run(lib):
        x, _ = inputs.packed(2, 2, 9, 7, bits=bits, dtype=dtype, seed=2)
        got = emulate({"pack.cu": lib}, cupy_ops.plan_unpack, x, bits=bits, block=2, height=17, width=13)
        return got, reference.unpack(x, bits=bits, block=2, height=17, width=13)
    return "pack.cu", run


def _case_upscale(bits, dtype, scale=2):
    def run(lib):
        y, u, v = random_planes(2, 17, 13, bits, seed=3)
        r, _ = inputs.residual(y, u, v, bits=bits, scale=scale, dtype=dtype, seed=4)
        got = emulate({"upscale.cu": lib}, cupy_ops.plan_unpack_upscale, r, y, u, v, bits=bits, scale=scale)
        return got, reference.unpack_upscale(r, y, u, v, bits=bits, scale=scale)
    return "upscale.cu", run


def _case_downscale(bits, dtype, h=23, w=18):
    def run(lib):
        y, u, v = random_planes(2, h, w, bits, seed=5)
        r, _, _ = inputs.downscale_residual(y, u, v, bits=bits, dtype=dtype, seed=6)
        got = emulate({"downscale.cu": lib}, cupy_ops.plan_unpack_downscale, r, y, u, v, bits=bits)
        return got, reference.unpack_downscale(r, y, u, v, bits=bits)
    return "downscale.cu", run


# name: (original text, mutated text, a case that must catch it). The mutation is applied to the
# source the case runs (vsr_common.cuh is inlined into each source, so header mutations work too).
MUTATIONS = {
    "fused multiply-add in unpack_upscale": (
        "__fadd_rn(__fmul_rn(r, half), base)", "__fmaf_rn(r, half, base)", _case_upscale(10, torch.float32)),
    "fused multiply-add in denormalise": (
        "__fadd_rn(__fmul_rn(x, half), half)", "__fmaf_rn(x, half, half)", _case_unpack(8, torch.float32)),
    "division by reciprocal multiplication": (
        "__fdiv_rn((float)(2 * code - m), (float)m)", "__fmul_rn((float)(2 * code - m), 1.0f / (float)m)",
        _case_pack(8, torch.float32)),
    "luma phases swapped in pack": (
        "block * i + dy, block * j + dx", "block * i + dx, block * j + dy", _case_pack(10, torch.float16)),
    "luma phases swapped in unpack_upscale": (
        "r_cell[(long long)(dy * cell + dx) * rsc]", "r_cell[(long long)(dx * cell + dy) * rsc]",
        _case_upscale(8, torch.float16)),
    "bilinear half-pixel offset dropped": (
        "const int o0 = 1 - scale;", "const int o0 = -scale;", _case_upscale(8, torch.bfloat16, 3)),
    "power-of-two shortcut taken for 3x": (
        "const bool pow2 = (norm & (norm - 1)) == 0;", "const bool pow2 = true;", _case_upscale(10, torch.float32, 3)),
    "round half away from zero": ("rintf(x)", "roundf(x)", _case_upscale(8, torch.float16)),
    "bf16 truncated instead of rounded": (
        "(u + 0x7fffu + ((u >> 16) & 1u)) >> 16", "u >> 16", _case_pack(10, torch.bfloat16)),
    "fp16 subnormals flushed to zero": ("5.9604644775390625e-8f", "0.0f", _case_upscale(8, torch.float16)),
    "chroma edge clamped one sample short": (
        "read_clamped(u, usn, ush, usw, b, r, q, hc, wc)", "read_clamped(u, usn, ush, usw, b, r, q, hc, wc - (wc > 1))",
        _case_pack(8, torch.float32, block=4)),
    "fused multiply-add in unpack_downscale": (
        "__fadd_rn(base, __fmul_rn(r, half))", "__fmaf_rn(r, half, base)", _case_downscale(10, torch.float32)),
    "bicubic window one row low": (
        "const int r0 = 2 * y0 - 3,", "const int r0 = 2 * y0 - 2,", _case_downscale(8, torch.float16)),
    "bicubic bottom edge clamped one row short": (
        "clampi(r0 + t, 0, h - 1)", "clampi(r0 + t, 0, h - 1 - (h > 1))", _case_downscale(10, torch.bfloat16)),
    "bicubic left edge not clamped (mirrored)": (
        "clampi(q0 + k, 0, w - 1)", "clampi(q0 + k < 0 ? -q0 - k : q0 + k, 0, w - 1)",
        _case_downscale(8, torch.float32)),
    "luma phases swapped in unpack_downscale": (
        "cell[(long long)(dy * 2 + dx) * rsc]", "cell[(long long)(dx * 2 + dy) * rsc]",
        _case_downscale(10, torch.float16)),
    "round half away from zero in unpack_downscale": ("rintf(x)", "roundf(x)", _case_downscale(10, torch.bfloat16)),
    "downscale base rounded to 2^-15": (
        "__fdiv_rn((float)(int)acc[dy][dx], 65536.0f)", "__fdiv_rn((float)((int)acc[dy][dx] & ~1), 65536.0f)",
        _case_downscale(8, torch.float16)),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_broken_kernel_is_caught(libs, name):
    old, new, (source, case) = MUTATIONS[name]
    text = cupy_ops.kernel_source(source)
    assert text.count(old) == 1, f"mutation {name!r} no longer matches {source} exactly once"
    assert_identical(*case(libs[source]))  # the real kernel passes the very same case
    broken = emulator.build(text.replace(old, new), label="mutant-" + re.sub(r"\W+", "-", name))
    with pytest.raises(AssertionError, match="differ"):
        assert_identical(*case(broken))
