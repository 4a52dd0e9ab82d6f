"""Image quality metrics on single planes (PSNR, SSIM), as the SR literature computes them."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _as_float(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.to(torch.float64)


def shave(x: np.ndarray, border: int) -> np.ndarray:
    return x[border:-border, border:-border] if border > 0 else x


def mse(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float(((a - b) ** 2).mean())


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *, peak: float = 255.0) -> float:
    """PSNR in dB; identical inputs give ``inf``."""
    e = mse(a, b)
    return math.inf if e == 0 else 10.0 * math.log10(peak * peak / e)


def psnr_from_mse(e: float, peak: float = 255.0) -> float:
    return math.inf if e == 0 else 10.0 * math.log10(peak * peak / e)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    g /= g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *, peak: float = 255.0) -> float:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, mean over
    the valid region — the implementation SR papers use for SSIM-Y."""
    x, y = _as_float(a)[None, None], _as_float(b)[None, None]
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    w = _gaussian_window()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mx * mx
    syy = F.conv2d(y * y, w) - my * my
    sxy = F.conv2d(x * y, w) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float((num / den).mean())
