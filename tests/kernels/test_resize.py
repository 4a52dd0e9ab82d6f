"""kernels.resize: the conventional scaler of the layers that are not a 2x reduction (the 2/3 layer's
Lanczos-3 reduction on the encoder side, the antialiased bicubic after the x2 network on the decoder
side). The twin against PIL and closed-form cases; the CUDA kernel (CPU emulation) against the twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import kernels
from kernels import cpu_ops, cupy_ops, reference
from tests.conftest import random_planes
from tests.kernels.emulation import emulator
from tests.kernels.parity import assert_identical

PIL_KERNELS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
CASES = [(1080 // 8, 1920 // 8, 720 // 8, 1280 // 8), (45, 61, 30, 40), (30, 40, 40, 54), (7, 5, 3, 2), (1, 1, 1, 1),
         (2, 3, 5, 4), (17, 9, 17, 9)]


def smooth(h: int, w: int, bits: int, seed: int) -> np.ndarray:
    """A picture with edges and gradients (random blocks, bilinearly enlarged), as integer codes."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 4 + 2, w // 4 + 2)).astype(np.float32) * ((1 << bits) - 1)
    im = Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.rint(np.asarray(im)).astype(np.uint16 if bits > 8 else np.uint8)


def pil_resize(plane: np.ndarray, height: int, width: int, kernel: str, bits: int) -> np.ndarray:
    im = Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), PIL_KERNELS[kernel])
    return np.clip(np.rint(np.asarray(im)), 0, (1 << bits) - 1)


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("h,w,out_h,out_w", CASES)
def test_twin_is_pils_filter_within_one_code(kernel, bits, h, w, out_h, out_w):
    plane = smooth(h, w, bits, seed=h * w)
    got = reference.resize_plane(torch.from_numpy(plane)[None], out_h, out_w, kernel=kernel, bits=bits)[0]
    assert got.dtype == kernels.plane_dtype(bits) and tuple(got.shape) == (out_h, out_w)
    diff = np.abs(got.numpy().astype(np.int64) - pil_resize(plane, out_h, out_w, kernel, bits).astype(np.int64))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # PIL sums float weights; ties may round the other way


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
def test_same_size_is_the_identity_and_flat_stays_flat(kernel):
    y, u, v = random_planes(2, 13, 18, 10, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(kernels.resize(y, u, v, height=13, width=18, kernel=kernel,
                                                                bits=10), (y, u, v)))
    flat = torch.full((1, 37, 50), 700, dtype=torch.uint16)
    half = torch.full((1, 19, 25), 700, dtype=torch.uint16)
    for out in kernels.resize(flat, half, half, height=24, width=34, kernel=kernel, bits=10):
        assert bool((out == 700).all())


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
@pytest.mark.parametrize("src,dst", [(1920, 1280), (2560, 1920), (5, 9), (1, 4), (33, 1)])
def test_taps_are_integers_summing_to_one(kernel, src, dst):
    indices, weights = reference.resize_taps(src, dst, kernel)
    assert len(indices) == len(weights) == dst
    assert all(sum(w) == 1 << reference.RESIZE_WEIGHT_BITS for w in weights)
    assert all(0 <= i < src for row in indices for i in row)
    assert all(sum(abs(x) for x in w) < 2 << reference.RESIZE_WEIGHT_BITS for w in weights)  # |S| < 2**45


def test_layer_sizes_and_odd_chroma():
    y, u, v = random_planes(1, 1081, 1919, 8, seed=1)
    out = kernels.resize(y, u, v, height=720, width=1280, kernel="lanczos", bits=8)
    assert [tuple(p.shape) for p in out] == [(1, 720, 1280), (1, 360, 640), (1, 360, 640)]
    out = kernels.resize(*out, height=1081, width=1919, kernel="bicubic", bits=8)
    assert [tuple(p.shape) for p in out] == [(1, 1081, 1919), (1, 541, 960), (1, 541, 960)]


def test_sixteen_bit_extremes_clamp_without_overflow():
    m = 65535
    y = torch.zeros((1, 24, 24), dtype=torch.int32)
    y[:, :, 12:] = m  # a hard edge: Lanczos rings above m and below 0
    y = y.to(torch.uint16)
    c = torch.zeros((1, 12, 12), dtype=torch.uint16)
    out = reference.resize_plane(y, 16, 16, kernel="lanczos", bits=16).to(torch.int64)
    assert int(out.min()) == 0 and int(out.max()) == m
    assert bool((out[:, :, :4] == 0).all()) and bool((out[:, :, -4:] == m).all())  # far from the edge
    kernels.resize(y, c, c, height=16, width=16, kernel="lanczos", bits=16)


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
@pytest.mark.parametrize("h,w,out_h,out_w", [(64, 96, 48, 72), (45, 61, 30, 40), (30, 40, 40, 54), (7, 5, 3, 2)])
def test_float_twin_has_the_same_weights_and_their_gradient(kernel, h, w, out_h, out_w):
    """resize_planes_float (training's differentiable reduction of a 2/3 layer's upscale): rounded, the
    integer resize (to one code at float rounding ties); its gradient, the weights' column sums."""
    y, u, v = random_planes(2, h, w, 8, seed=h + w)
    want = kernels.resize(y, u, v, height=out_h, width=out_w, kernel=kernel, bits=8, backend="torch")
    planes = [p.to(torch.float32).requires_grad_() for p in (y, u, v)]
    got = kernels.resize_planes_float(*planes, height=out_h, width=out_w, kernel=kernel)
    for g, t in zip(got, want):
        assert g.dtype == torch.float32 and g.shape == t.shape
        diff = (g.detach().round().clamp(0, 255) - t.to(torch.float32)).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    sum(g.sum() for g in got).backward()
    rows, cols = reference.resize_matrix(h, out_h, kernel, y.device), reference.resize_matrix(w, out_w, kernel, y.device)
    expected = rows.sum(0)[:, None] * cols.sum(0)[None, :]  # d(sum R X C^T)/dX = (R^T 1)(1^T C)
    torch.testing.assert_close(planes[0].grad, expected.expand(2, h, w), rtol=1e-5, atol=1e-6)
    assert torch.allclose(rows.sum(1), torch.ones(out_h))  # every output row's weights sum to one


def test_bad_arguments_say_what_is_wrong():
    y, u, v = random_planes(1, 8, 8, 8)
    with pytest.raises(ValueError, match="unknown resize kernel"):
        kernels.resize(y, u, v, height=4, width=4, kernel="box", bits=8)
    with pytest.raises(ValueError, match="cannot resize"):
        kernels.resize(y, u, v, height=0, width=4, kernel="bicubic", bits=8)


# ---- the CUDA kernel, compiled for the CPU (tests/kernels/emulation) ------------------------------

needs_compiler = pytest.mark.skipif(emulator.compiler() is None, reason="no C++ compiler (g++) for the CPU emulation")


def emulate_resize(lib, *planes, shape=(None, None), **kw):
    guard = emulator.GuardedEmpty()
    outs, launches = cupy_ops.plan_resize(*planes, empty=guard, **kw)
    for launch in launches:
        emulator.run(lib, [launch], grid=shape[0], block=shape[1])
    guard.check()
    return outs


@needs_compiler
@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
@pytest.mark.parametrize("bits", [8, 10, 16])
@pytest.mark.parametrize("h,w,out_h,out_w", CASES)
def test_cuda_kernel_matches_twin(emulation_libs, kernel, bits, h, w, out_h, out_w):
    planes = random_planes(2, h, w, bits, seed=h + w)
    got = emulate_resize(emulation_libs["resize.cu"], *planes, height=out_h, width=out_w, kernel=kernel, bits=bits)
    assert_identical(got, reference.resize(*planes, height=out_h, width=out_w, kernel=kernel, bits=bits))


@needs_compiler
@pytest.mark.parametrize("grid,block", [((1, 1, 1), (1, 1, 1)), ((3, 2, 1), (32, 1, 1)), ((64, 64, 4), (64, 1, 1))])
def test_cuda_kernel_any_launch_shape_and_strided_input(emulation_libs, grid, block):
    y, u, v = random_planes(2, 40, 58, 10, seed=9)
    y = y.transpose(1, 2).contiguous().transpose(1, 2)  # column-major luma
    got = emulate_resize(emulation_libs["resize.cu"], y, u, v, shape=(grid, block), height=27, width=39,
                         kernel="lanczos", bits=10)
    assert_identical(got, reference.resize(y, u, v, height=27, width=39, kernel="lanczos", bits=10))


def test_fused_resize_refuses_planes_of_another_depth():
    y, u, v = random_planes(1, 8, 8, 10)  # uint16 planes said to hold 8-bit codes
    with pytest.raises(cupy_ops.Unsupported, match="uint8"):
        cupy_ops.plan_resize(y, u, v, height=4, width=4, kernel="bicubic", bits=8)


# ---- the compiled CPU kernel (kernels/cpu_kernels.cpp) ---------------------------------------------

needs_cpu_kernels = pytest.mark.skipif(not cpu_ops.available(), reason="the compiled CPU kernels cannot be built here")


@needs_cpu_kernels
@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
@pytest.mark.parametrize("bits", [8, 10, 16])
@pytest.mark.parametrize("h,w,out_h,out_w", CASES)
def test_cpu_kernel_matches_twin(kernel, bits, h, w, out_h, out_w):
    planes = random_planes(2, h, w, bits, seed=h * 3 + w)
    want = reference.resize(*planes, height=out_h, width=out_w, kernel=kernel, bits=bits)
    for threads in (1, 2, 5):
        got = cpu_ops.resize(*planes, height=out_h, width=out_w, kernel=kernel, bits=bits, threads=threads)
        assert_identical(got, want)


@needs_cpu_kernels
def test_cpu_kernel_takes_strided_planes_and_auto_picks_it(monkeypatch):
    y, u, v = random_planes(2, 40, 58, 10, seed=9)
    y = y.transpose(1, 2).contiguous().transpose(1, 2)
    want = reference.resize(y, u, v, height=27, width=39, kernel="lanczos", bits=10)
    assert_identical(cpu_ops.resize(y, u, v, height=27, width=39, kernel="lanczos", bits=10), want)
    calls = []
    monkeypatch.setattr(cpu_ops, "resize", lambda *a, **k: calls.append(1) or want)
    kernels.resize(y, u, v, height=27, width=39, kernel="lanczos", bits=10)
    assert calls == [1]


# ---- on a real GPU (skipped without a CUDA GPU and cupy) -------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(not cupy_ops.available(), reason="needs cupy (pip install cupy-cuda13x)")
@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("h,w,out_h,out_w", CASES + [(1440, 2560, 1080, 1920), (1080, 1920, 720, 1280)])
def test_fused_kernel_on_cuda_matches_twin(kernel, bits, h, w, out_h, out_w):
    planes = random_planes(2, h, w, bits, seed=h + 7 * w)
    want = reference.resize(*planes, height=out_h, width=out_w, kernel=kernel, bits=bits)
    got = kernels.resize(*(p.cuda() for p in planes), height=out_h, width=out_w, kernel=kernel, bits=bits,
                         backend="cupy")
    assert_identical(got, want)
