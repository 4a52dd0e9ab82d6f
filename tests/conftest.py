"""Shared fixtures: synthetic images and frames (tests never need the shared data sets)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("VSR_DATA", REPO.parent / "shared" / "data"))


def smooth_rgb(h: int, w: int, seed: int) -> np.ndarray:
    """A natural-ish test image: blurred noise plus gradients and an edge, uint8 RGB."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 4 + 2, w // 4 + 2, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = 0.6 * x[0] + 0.3 * torch.stack([yy, xx, 1 - yy]) + 0.1 * (xx > 0.5).float()
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def random_planes(n: int, h: int, w: int, bits: int, seed: int = 0):
    import kernels

    g = torch.Generator().manual_seed(seed)
    m = (1 << bits) - 1
    dt = kernels.plane_dtype(bits)
    y = torch.randint(0, m + 1, (n, h, w), generator=g).to(dt)
    u = torch.randint(0, m + 1, (n, (h + 1) // 2, (w + 1) // 2), generator=g).to(dt)
    v = torch.randint(0, m + 1, (n, (h + 1) // 2, (w + 1) // 2), generator=g).to(dt)
    return y, u, v


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Twelve 96x80 PNGs (one odd-sized) in a folder, like a tiny training set."""
    root = tmp_path / "images"
    root.mkdir()
    for i in range(12):
        h, w = (81, 97) if i == 5 else (80, 96)
        Image.fromarray(smooth_rgb(h, w, seed=i)).save(root / f"img{i:02d}.png")
    return root


@pytest.fixture
def python() -> str:
    return sys.executable
