"""The torch twins against per-sample oracles and closed-form cases."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kernels
from tests.conftest import random_planes
from tests.kernels import naive

SIZES = [(1, 1), (2, 2), (3, 5), (7, 4), (9, 11)]


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("block", [2, 4])
@pytest.mark.parametrize("h,w", SIZES)
def test_pack_matches_oracle(bits, block, h, w):
    y, u, v = random_planes(2, h, w, bits, seed=h * 31 + w)
    got = kernels.pack(y, u, v, bits=bits, block=block)
    want = naive.pack(y.numpy(), u.numpy(), v.numpy(), bits, block)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert np.array_equal(got.numpy(), want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pack_low_precision_is_cast_of_float32(dtype):
    y, u, v = random_planes(1, 9, 11, 10)
    assert torch.equal(kernels.pack(y, u, v, bits=10, dtype=dtype), kernels.pack(y, u, v, bits=10).to(dtype))


def test_pack_layout_closed_form():
    # 8-bit 2x4 luma with codes 0..7: block 2 gives 2 cells, channel c = dy * 2 + dx.
    y = torch.arange(8, dtype=torch.uint8).reshape(1, 2, 4)
    u = torch.tensor([[[255, 0]]], dtype=torch.uint8)
    v = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    p = kernels.pack(y, u, v, bits=8)
    codes = torch.round((p + 1) * 255 / 2).to(torch.int64)
    assert codes[0, :, 0, 0].tolist() == [0, 1, 4, 5, 255, 0]
    assert codes[0, :, 0, 1].tolist() == [2, 3, 6, 7, 0, 255]
    assert p.min() == -1 and p.max() == 1


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("block", [2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (333, 199), (64, 48)])
def test_pack_unpack_round_trip_is_lossless(bits, block, dtype, h, w):
    y, u, v = random_planes(2, h, w, bits, seed=7)
    back = kernels.unpack(kernels.pack(y, u, v, bits=bits, block=block, dtype=dtype),
                          bits=bits, block=block, height=h, width=w)
    for a, b in zip(back, (y, u, v)):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_bfloat16_keeps_8_bit_but_not_10_bit_codes():
    y, u, v = random_planes(1, 32, 32, 8)
    back = kernels.unpack(kernels.pack(y, u, v, bits=8, dtype=torch.bfloat16), bits=8, block=2, height=32, width=32)
    assert torch.equal(back[0], y)
    y, u, v = random_planes(1, 32, 32, 10)
    back = kernels.unpack(kernels.pack(y, u, v, bits=10, dtype=torch.bfloat16), bits=10, block=2, height=32, width=32)
    assert not torch.equal(back[0], y)


@pytest.mark.parametrize("s", [1, 2, 3, 4])
@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (6, 4)])
def test_bilinear_matches_oracle(s, h, w):
    p = random_planes(2, h, w, 10, seed=s)[0]
    got = kernels.bilinear_upscale(p, s, s * h, s * w)
    assert np.array_equal(got.numpy(), naive.bilinear(p.numpy(), s, s * h, s * w))


@pytest.mark.parametrize("s", [2, 4])
def test_bilinear_equals_torch_interpolate_for_power_of_two_scales(s):
    p = random_planes(1, 37, 23, 10)[0]
    want = F.interpolate(p[None].float(), scale_factor=s, mode="bilinear", align_corners=False)[0]
    assert torch.equal(kernels.bilinear_upscale(p, s, 37 * s, 23 * s), want)


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("s", [2, 3])
@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (4, 6), (5, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_unpack_upscale_matches_oracle(bits, s, h, w, dtype):
    y, u, v = random_planes(2, h, w, bits, seed=bits + s)
    g = torch.Generator().manual_seed(h * w)
    residual = (torch.randn(2, 6 * s * s, (h + 1) // 2, (w + 1) // 2, generator=g) * 0.3).to(dtype)
    residual[0, 0, 0, 0] = float("nan")
    residual[1, -1, -1, -1] = float("inf")
    got = kernels.unpack_upscale(residual, y, u, v, bits=bits, scale=s)
    want = naive.unpack_upscale(residual.float().numpy(), y.numpy(), u.numpy(), v.numpy(), bits, s)
    for a, b in zip(got, want):
        assert a.dtype == kernels.plane_dtype(bits)
        assert a.shape == b.shape
        assert np.array_equal(a.to(torch.int64).numpy(), b)


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("h,w", [(1, 1), (5, 3), (333, 199)])
def test_zero_residual_reproduces_bilinear_base(bits, h, w):
    y, u, v = random_planes(1, h, w, bits)
    zero = torch.zeros(1, 24, (h + 1) // 2, (w + 1) // 2)
    out = kernels.unpack_upscale(zero, y, u, v, bits=bits, scale=2)
    assert out[0].shape == (1, 2 * h, 2 * w) and out[1].shape == (1, h, w) == out[2].shape
    for o, p, (oh, ow) in zip(out, (y, u, v), ((2 * h, 2 * w), (h, w), (h, w))):
        assert torch.equal(o, kernels.quantize(kernels.bilinear_upscale(p, 2, oh, ow), bits))


def test_residual_lands_on_the_documented_pixel():
    y, u, v = (torch.full((1, 4, 4), 100, dtype=torch.uint8), torch.full((1, 2, 2), 100, dtype=torch.uint8),
               torch.full((1, 2, 2), 100, dtype=torch.uint8))
    r = torch.zeros(1, 24, 2, 2)
    r[0, 2 * 4 + 3, 1, 0] = 0.1  # luma channel dy=2, dx=3 of cell (1, 0) -> pixel (6, 3)
    r[0, 16 + 1 * 2 + 0, 0, 1] = -0.2  # U channel dy=1, dx=0 of cell (0, 1) -> chroma (1, 2)
    ys, us, vs = kernels.unpack_upscale(r, y, u, v, bits=8, scale=2)
    diff = ys.to(torch.int32) - 100
    assert diff[0, 6, 3] == 13 and diff.abs().sum() == 13  # round(0.1 * 127.5) = 13
    du = us.to(torch.int32) - 100
    assert du[0, 1, 2] == -26 and du.abs().sum() == 26
    assert torch.equal(vs, torch.full_like(vs, 100))


def test_grad_and_no_grad_paths_agree_exactly():
    y, u, v = random_planes(2, 9, 7, 10)
    r = torch.randn(2, 24, 5, 4)
    a = kernels.upscale_planes_float(r, y, u, v, bits=10, scale=2)
    rg = r.clone().requires_grad_(True)
    b = kernels.upscale_planes_float(rg, y, u, v, bits=10, scale=2)
    for x, z in zip(a, b):
        assert torch.equal(x, z.detach())
    # on an even size nothing is cropped: every residual sample reaches one output sample
    y, u, v = random_planes(2, 10, 8, 10)
    rg = torch.randn(2, 24, 5, 4, requires_grad=True)
    sum(t.sum() for t in kernels.upscale_planes_float(rg, y, u, v, bits=10, scale=2)).backward()
    assert torch.equal(rg.grad, torch.full_like(rg, 1023 / 2))


def test_quantize_nan_inf_round_half_even():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 2.5, 3.5, -0.4, 300.0])
    assert kernels.quantize(x, 8).tolist() == [0, 255, 0, 2, 4, 0, 255]


def test_bad_arguments_are_refused():
    y, u, v = random_planes(1, 4, 4, 8)
    with pytest.raises(ValueError, match="4:2:0 chroma"):
        kernels.pack(y, u[:, :1], v, bits=8)
    with pytest.raises(ValueError, match="integer codes"):
        kernels.pack(y.float(), u, v, bits=8)
    with pytest.raises(ValueError, match="even number"):
        kernels.pack(y, u, v, bits=8, block=3)
    with pytest.raises(ValueError, match="unknown kernel backend"):
        kernels.pack(y, u, v, bits=8, backend="opencl")
    with pytest.raises(ValueError, match="has 24 channels"):
        kernels.unpack_upscale(torch.zeros(1, 6, 2, 2), y, u, v, bits=8, scale=2)
