"""CuPy kernels on a real GPU against the torch twins (skipped without a CUDA GPU and cupy).

The reference is the twin run on the same GPU, on the same tensors. That is valid since the twins
divide through ``reference._true_div`` (a 0-dim tensor on the input's device): torch's CUDA division
by a Python scalar multiplies by a rounded reciprocal, which is one float32 ulp off for many codes,
and that path is no longer taken (tests/kernels/test_twin_on_cuda.py checks this without a GPU).
:func:`test_twin_on_cuda_is_the_cpu_twin` keeps one comparison with the CPU twin, on the inputs
where the reciprocal would show, so a torch version that changed this again is caught here rather
than silently moving the reference.

Run on a GPU machine with ``pytest -m cuda tests/kernels`` (or ``python -m kernels.gpu_check``).
"""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import cupy_ops, reference
from tests.conftest import random_planes
from tests.kernels import inputs, parity

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not cupy_ops.available(), reason="needs cupy (pip install cupy-cuda13x)"),
]

FLOATS, SIZES = parity.FLOATS, parity.SIZES


def assert_identical(got, want) -> None:
    assert all(a.is_cuda for a in got) and all(b.is_cuda for b in want)
    parity.assert_identical(got, [b.cpu() for b in want])


def cuda(*tensors):
    return tuple(t.cuda() for t in tensors)


def twin(op: str, *args, **kw) -> list[torch.Tensor]:
    """``reference.<op>`` on the same CUDA tensors the kernel got, as a list of outputs."""
    out = getattr(reference, op)(*args, **kw)
    return [out] if isinstance(out, torch.Tensor) else list(out)


@pytest.mark.parametrize("h,w", SIZES + [(1080, 1920)])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("block", [2, 4])
@pytest.mark.parametrize("bits", [8, 10])
def test_pack_and_unpack(bits, block, dtype, h, w):
    planes = cuda(*random_planes(2, h, w, bits, seed=h + w))
    got = kernels.pack(*planes, bits=bits, block=block, dtype=dtype, backend="cupy")
    assert_identical([got], twin("pack", *planes, bits=bits, block=block, dtype=dtype))
    x, _ = inputs.packed(2, block, -(-h // block), -(-w // block), bits=bits, dtype=dtype, seed=h)
    got = kernels.unpack(x.cuda(), bits=bits, block=block, height=h, width=w, backend="cupy")
    assert_identical(got, twin("unpack", x.cuda(), bits=bits, block=block, height=h, width=w))


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("bits", [8, 10])
def test_unpack_upscale(bits, scale, dtype, h, w):
    y, u, v = random_planes(1, h, w, bits, seed=h * w)
    r, _ = inputs.residual(y, u, v, bits=bits, scale=scale, dtype=dtype, seed=bits)
    args = cuda(r, y, u, v)
    got = kernels.unpack_upscale(*args, bits=bits, scale=scale, backend="cupy")
    assert_identical(got, twin("unpack_upscale", *args, bits=bits, scale=scale))


@pytest.mark.parametrize("bits", [8, 10])
def test_unpack_upscale_1080p_to_2160p(bits):
    y, u, v = random_planes(1, 1080, 1920, bits, seed=bits)
    r, _ = inputs.residual(y, u, v, bits=bits, scale=2, dtype=torch.float16)
    args = cuda(r, y, u, v)
    got = kernels.unpack_upscale(*args, bits=bits, scale=2, backend="cupy")
    assert_identical(got, twin("unpack_upscale", *args, bits=bits, scale=2))


@pytest.mark.parametrize("h,w", SIZES + [(1080, 1920)])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bits", [8, 10])
def test_unpack_downscale(bits, dtype, h, w):
    y, u, v = random_planes(1, h, w, bits, seed=h * 3 + w)
    r, _, _ = inputs.downscale_residual(y, u, v, bits=bits, dtype=dtype, seed=bits)
    args = cuda(r, y, u, v)
    got = kernels.unpack_downscale(*args, bits=bits, backend="cupy")
    assert_identical(got, twin("unpack_downscale", *args, bits=bits))


@pytest.mark.parametrize("bits", [12, 14])
def test_unpack_downscale_deep_planes(bits):
    y, u, v = random_planes(2, 45, 38, bits, seed=bits)
    y[0, :12] = (1 << bits) - 1  # the brightest window the exact int32 sum holds
    r, _, _ = inputs.downscale_residual(y, u, v, bits=bits, dtype=torch.float32)
    args = cuda(r, y, u, v)
    assert_identical(kernels.unpack_downscale(*args, bits=bits, backend="cupy"),
                     twin("unpack_downscale", *args, bits=bits))


def test_twin_on_cuda_is_the_cpu_twin():
    """The twins on CUDA tensors equal the twins on the CPU where a reciprocal multiplication would
    differ from the specified division: float32 packing of every code (126 of the 256 8-bit codes)
    and a 3x bilinear base (/ 36); and for the downscale, whose sums are integer."""
    for bits in (8, 10):
        m = (1 << bits) - 1
        codes = torch.arange(m + 1).to(reference.plane_dtype(bits))
        y = codes.repeat(2).reshape(1, 2, m + 1)
        u = codes[: (m + 2) // 2].reshape(1, 1, -1)
        for block in (2, 4):
            parity.assert_identical([reference.pack(*cuda(y, u, u), bits=bits, block=block).cpu()],
                                    [reference.pack(y, u, u, bits=bits, block=block)])
        y, u, v = random_planes(1, 33, 27, bits, seed=bits)
        for scale in (2, 3):
            r, _ = inputs.residual(y, u, v, bits=bits, scale=scale, dtype=torch.float32)
            parity.assert_identical([t.cpu() for t in reference.upscale_planes_float(*cuda(r, y, u, v), bits=bits,
                                                                                     scale=scale)],
                                    reference.upscale_planes_float(r, y, u, v, bits=bits, scale=scale))
        r, _, _ = inputs.downscale_residual(y, u, v, bits=bits, dtype=torch.float32)
        parity.assert_identical([t.cpu() for t in reference.downscale_planes_float(*cuda(r, y, u, v), bits=bits)],
                                reference.downscale_planes_float(r, y, u, v, bits=bits))


def test_strided_inputs():
    big = random_planes(2, 40, 30, 10, seed=11)

    def cut(planes):
        return planes[0][:, 3:36:2, 1:30:3], planes[1][:, 2:11, 4:14:2], planes[2][:, 5:14, 1:6]

    y, u, v = cut(big)
    yc, uc, vc = cut(cuda(*big))
    assert not yc.is_contiguous()
    got = kernels.pack(yc, uc, vc, bits=10, block=2, backend="cupy")
    assert_identical([got], twin("pack", yc, uc, vc, bits=10, block=2))
    r, _ = inputs.residual(y, u, v, bits=10, scale=2, dtype=torch.float16)
    r_cl = r.cuda().contiguous(memory_format=torch.channels_last)
    got = kernels.unpack_upscale(r_cl, yc, uc, vc, bits=10, scale=2, backend="cupy")
    assert_identical(got, twin("unpack_upscale", r_cl, yc, uc, vc, bits=10, scale=2))
    x, _ = inputs.packed(2, 4, 5, 3, bits=8, dtype=torch.bfloat16)
    xc = x.cuda().permute(3, 1, 0, 2).contiguous().permute(2, 1, 3, 0)
    got = kernels.unpack(xc, bits=8, block=4, height=17, width=10, backend="cupy")
    assert_identical(got, twin("unpack", xc, bits=8, block=4, height=17, width=10))
    r, _, _ = inputs.downscale_residual(y, u, v, bits=10, dtype=torch.float32)
    r_cl = r.cuda().contiguous(memory_format=torch.channels_last)
    got = kernels.unpack_downscale(r_cl, yc, uc, vc, bits=10, backend="cupy")
    assert_identical(got, twin("unpack_downscale", r_cl, yc, uc, vc, bits=10))


def test_auto_picks_the_fused_kernels_for_cuda_tensors_without_grad(monkeypatch):
    calls = []
    real_run = cupy_ops.run

    def run(launches, device):
        calls.append(len(launches))
        real_run(launches, device)

    monkeypatch.setattr(cupy_ops, "run", run)
    y, u, v = cuda(*random_planes(1, 9, 7, 8))
    r = torch.randn(1, 24, 5, 4, device="cuda")
    kernels.pack(y, u, v, bits=8)
    kernels.unpack_upscale(r, y, u, v, bits=8, scale=2)
    assert calls == [1, 3]
    r.requires_grad_(True)
    kernels.unpack_upscale(r, y, u, v, bits=8, scale=2)  # a gradient could be needed: the twin
    assert calls == [1, 3]
    with torch.no_grad():
        kernels.unpack_upscale(r, y, u, v, bits=8, scale=2)
    assert calls == [1, 3, 3]
    d = torch.randn(1, 6, 3, 2, device="cuda")
    kernels.unpack_downscale(d, y, u, v, bits=8)
    assert calls == [1, 3, 3, 1]
    kernels.unpack_downscale(d.requires_grad_(True), y, u, v, bits=8)
    assert calls == [1, 3, 3, 1]


def test_runs_on_the_current_stream_without_synchronising():
    """Inputs written on a side stream after a long GPU sleep: the kernels must queue behind them
    on that stream (else they read stale zeros) and return before the stream is done."""
    y, u, v = random_planes(2, 270, 480, 10, seed=3)
    want = [reference.pack(y, u, v, bits=10, block=2, dtype=torch.float16).cuda()]
    src = cuda(y, u, v)
    dst = tuple(torch.zeros_like(p) for p in src)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # a few tens of milliseconds of GPU time
        for d, s in zip(dst, src):
            d.copy_(s)
        got = kernels.pack(*dst, bits=10, block=2, dtype=torch.float16, backend="cupy")
        returned_while_busy = not side.query()
    side.synchronize()
    assert returned_while_busy, "the call waited for the GPU (a hidden synchronisation)"
    assert_identical([got], want)


def test_second_device_if_present():
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    y, u, v = random_planes(1, 17, 9, 8)
    planes = tuple(p.to("cuda:1") for p in (y, u, v))
    got = kernels.pack(*planes, bits=8, backend="cupy")
    assert got.device == torch.device("cuda:1")
    assert_identical([got], twin("pack", *planes, bits=8))
    r, _, _ = inputs.downscale_residual(y, u, v, bits=8, dtype=torch.float16)
    got = kernels.unpack_downscale(r.to("cuda:1"), *planes, bits=8, backend="cupy")
    assert all(t.device == torch.device("cuda:1") for t in got)
    assert_identical(got, twin("unpack_downscale", r.to("cuda:1"), *planes, bits=8))
