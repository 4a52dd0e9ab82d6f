"""Quality metrics: PSNR and SSIM of single planes (as the SR literature computes them) and the
per-frame quality of 4:2:0 video frames (PSNR per plane, PSNR-YUV 6:1:1, SSIM-Y)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from ..yuv import Frame


def _as_float(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.to(torch.float64)


def shave(x: np.ndarray, border: int) -> np.ndarray:
    return x[border:-border, border:-border] if border > 0 else x


def mse(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    if _is_integer(a) and _is_integer(b):
        # Integer codes (up to 16 bits): the exact int64 sum of squared differences, which is what
        # the float64 mean below computes too (every partial sum is an integer below 2**53), in a
        # quarter of the time (the metrics of every probe and benchmark point, per frame).
        d = np.subtract(np.asarray(a), np.asarray(b), dtype=np.int32).ravel()
        return float(np.einsum("i,i->", d, d, dtype=np.int64)) / d.size if d.size else math.nan
    a, b = _as_float(a), _as_float(b)
    return float(((a - b) ** 2).mean())


def _is_integer(x: np.ndarray | torch.Tensor) -> bool:
    """8- or 16-bit integer samples on the CPU (whose differences fit int32 and squares int64 sums)."""
    if isinstance(x, torch.Tensor):
        return x.device.type == "cpu" and x.dtype in (torch.uint8, torch.int8, torch.uint16, torch.int16)
    return np.asarray(x).dtype in (np.uint8, np.int8, np.uint16, np.int16)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *, peak: float = 255.0) -> float:
    """PSNR in dB; identical inputs give ``inf``."""
    e = mse(a, b)
    return math.inf if e == 0 else 10.0 * math.log10(peak * peak / e)


def psnr_from_mse(e: float, peak: float = 255.0) -> float:
    return math.inf if e == 0 else 10.0 * math.log10(peak * peak / e)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _blur_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation with ``g`` along both axes, keeping the valid region only."""
    r = len(g) // 2
    x = ndimage.correlate1d(x, g, axis=1, mode="constant")[:, r:-r]
    return ndimage.correlate1d(x, g, axis=0, mode="constant")[r:-r]


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *, peak: float = 255.0) -> float:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, mean over
    the valid region — the implementation SR papers use for SSIM-Y. The Gaussian window is
    separable, so it runs as two 1-D passes in float64 (same values as the 2-D window)."""
    x, y = _as_float(a).numpy(), _as_float(b).numpy()
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim != 2 or min(x.shape) < 11:
        raise ValueError(f"SSIM needs a 2-D plane of at least 11x11, got {tuple(x.shape)}")
    g = _gaussian_1d()
    mx, my = _blur_valid(x, g), _blur_valid(y, g)
    sxx = _blur_valid(x * x, g) - mx * mx
    syy = _blur_valid(y * y, g) - my * my
    sxy = _blur_valid(x * y, g) - mx * my
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float((num / den).mean())


# --- video: per-frame quality of 4:2:0 frames ------------------------------------------------------

PSNR_CAP_DB = 100.0  # per-frame PSNR of identical planes (MSE 0), so that averages stay finite


def peak_of(bits: int) -> float:
    """Peak code value of a ``bits``-deep plane (255 at 8 bits, 1023 at 10)."""
    return float((1 << bits) - 1)


def frame_quality(ref: Frame, dist: Frame, *, ssim_y: bool = True) -> dict[str, float]:
    """PSNR of each plane (capped at :data:`PSNR_CAP_DB`), PSNR-YUV with the 6:1:1 weighting of the
    JVET common test conditions, and SSIM-Y, of one distorted frame against its reference."""
    if ref.bits != dist.bits or ref.y.shape != dist.y.shape:
        raise ValueError(f"frames differ in size or depth: {ref.width}x{ref.height}/{ref.bits} bit vs "
                         f"{dist.width}x{dist.height}/{dist.bits} bit")
    peak = peak_of(ref.bits)
    out = {}
    for name, a, b in zip(("y", "u", "v"), ref.planes, dist.planes):
        out[f"psnr_{name}"] = min(psnr_from_mse(mse(a, b), peak), PSNR_CAP_DB)
    out["psnr_yuv"] = (6 * out["psnr_y"] + out["psnr_u"] + out["psnr_v"]) / 8
    if ssim_y:
        out["ssim_y"] = ssim(ref.y, dist.y, peak=peak)
    return out


def mean_quality(per_frame: list[dict[str, float]]) -> dict[str, float]:
    """Average of per-frame values (the codec-testing convention for PSNR: mean of frame PSNRs)."""
    return {k: float(np.mean([f[k] for f in per_frame])) for k in per_frame[0]}
