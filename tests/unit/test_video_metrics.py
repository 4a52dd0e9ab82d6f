"""Video metrics and the conventional 2x scalers on planes: closed-form and reference cases."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsr_plugin.measure import metrics
from vsr_plugin.measure.resample import downscale2, half_size, upscale2
from vsr_plugin.measure.video import pad_even, read_clip, write_y4m
from tests.conftest import smooth_rgb
from vsr_plugin.yuv import Colorimetry, Frame, rgb_to_frame


def _ssim_2d(a, b, peak=255.0):
    """The textbook 2-D Gaussian-window SSIM, written out directly (the reference for the separable one)."""
    x = torch.as_tensor(a, dtype=torch.float64)[None, None]
    y = torch.as_tensor(b, dtype=torch.float64)[None, None]
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-r * r / (2 * 1.5 ** 2))
    g /= g.sum()
    w = (g[:, None] * g[None, :])[None, None]
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx, syy, sxy = F.conv2d(x * x, w) - mx * mx, F.conv2d(y * y, w) - my * my, F.conv2d(x * y, w) - mx * my
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    return float(((2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2))).mean())


def test_separable_ssim_equals_the_2d_window():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (37, 53)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(a, b) == pytest.approx(_ssim_2d(a, b), abs=1e-12)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("dtype,high", [(np.uint8, 256), (np.uint16, 1024), (np.uint16, 65536), (np.int16, 600)])
def test_integer_mse_is_the_exact_float64_mean(dtype, high):
    rng = np.random.default_rng(high)
    a, b = (rng.integers(0, high, (67, 45)).astype(dtype) for _ in range(2))
    exact = sum(int(x) ** 2 for x in (a.astype(np.int64) - b).ravel()) / a.size
    as_float = float(((torch.from_numpy(a).double() - torch.from_numpy(b).double()) ** 2).mean())
    assert metrics.mse(a, b) == exact == as_float
    assert metrics.mse(torch.from_numpy(a), torch.from_numpy(b)) == exact
    assert metrics.mse(a.astype(np.float32), b) == pytest.approx(exact, rel=1e-12)  # the float path
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.mse(a, b[:, :-1])


def test_frame_quality_of_identical_frames_is_capped():
    f = rgb_to_frame(smooth_rgb(48, 64, seed=1))
    q = metrics.frame_quality(f, f)
    assert q["psnr_y"] == q["psnr_u"] == q["psnr_v"] == q["psnr_yuv"] == metrics.PSNR_CAP_DB
    assert q["ssim_y"] == pytest.approx(1.0)


def test_psnr_yuv_is_6_1_1_weighted():
    f = rgb_to_frame(smooth_rgb(48, 64, seed=2))
    g = f.with_planes(f.y, (f.u.astype(int) + 4).clip(0, 255).astype(np.uint8), f.v)  # U off by 4: MSE 16
    q = metrics.frame_quality(f, g)
    assert q["psnr_y"] == metrics.PSNR_CAP_DB and q["psnr_v"] == metrics.PSNR_CAP_DB
    want_u = 10 * math.log10(255 ** 2 / np.mean((g.u.astype(float) - f.u) ** 2))
    assert q["psnr_u"] == pytest.approx(want_u)
    assert q["psnr_yuv"] == pytest.approx((6 * 100 + want_u + 100) / 8)


@pytest.mark.parametrize("h,w", [(48, 64), (49, 65), (21, 37)])
@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
def test_conventional_2x_geometry_and_constant_planes(h, w, kernel):
    y = np.full((h, w), 100, np.uint8)
    u = np.full(((h + 1) // 2, (w + 1) // 2), 90, np.uint8)
    f = Frame(y=y, u=u, v=u.copy(), bits=8, colorimetry=Colorimetry.bt709())
    small = downscale2(f, kernel)
    assert (small.height, small.width) == half_size(h, w) == ((h + 1) // 2, (w + 1) // 2)
    back = upscale2(small, kernel, h, w)
    assert (back.height, back.width) == (h, w) and back.u.shape == f.u.shape
    assert all(np.array_equal(a, b) for a, b in zip(back.planes, f.planes))  # a flat picture survives exactly


def test_conventional_2x_keeps_10_bit_codes():
    f = rgb_to_frame(smooth_rgb(40, 56, seed=3), bits=10)
    back = upscale2(downscale2(f, "bicubic"), "bicubic", 40, 56)
    assert back.y.dtype == np.uint16 and back.y.max() <= 1023
    assert metrics.psnr(back.y, f.y, peak=1023) > 25


def test_pad_even_and_crop_round_trip():
    f = rgb_to_frame(smooth_rgb(49, 65, seed=4))
    p = pad_even(f)
    assert (p.height, p.width) == (50, 66) and p.u.shape == f.u.shape
    assert np.array_equal(p.y[49], p.y[48]) and np.array_equal(p.y[:, 65], p.y[:, 64])
    assert p.cropped(49, 65).equals(f)


@pytest.mark.parametrize("bits", [8, 10])
def test_y4m_files_are_exact_and_deterministic(tmp_path, bits):
    frames = [rgb_to_frame(smooth_rgb(5, 7, seed=s), bits=bits) for s in range(3)]
    a, b = tmp_path / "a.y4m", tmp_path / "b.y4m"
    assert write_y4m(a, frames, Fraction(25)) == 3
    write_y4m(b, frames, Fraction(25))
    data = a.read_bytes()
    assert data == b.read_bytes()
    assert data.startswith(b"YUV4MPEG2 W7 H5 F25:1 ") and (b"C420p10" in data[:80]) == (bits == 10)
    header = data.index(b"\n") + 1
    assert len(data) == header + 3 * (6 + (35 + 2 * 12) * (1 if bits == 8 else 2))
    back = read_clip(a).frames
    assert len(back) == 3
    assert all(np.array_equal(p, q) for x, y in zip(back, frames) for p, q in zip(x.planes, y.planes))
