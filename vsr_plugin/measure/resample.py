"""Conventional scalers on YUV 4:2:0 planes: the baselines beside the learned networks.

Each plane is resized on its own grid in float with PIL's separable filters (bicubic: Keys
a = -0.5, the MATLAB ``imresize`` kernel; Lanczos-3), antialiased when reducing (the kernel is
stretched by the reduction factor), then rounded and clamped to integer codes.

The 2x pair used by the rate–distortion pipelines follows the packed-grid contract (DESIGN.md):

* :func:`downscale2` maps ``H x W`` to ``ceil(H/2) x ceil(W/2)``; an odd plane is first padded by
  one edge-replicated row/column, so the reduction is exactly 2x with pixel centres aligned.
* :func:`upscale2` maps back with an exact 2x and crops to the original size, undoing the pad.

Chroma planes are resized on the chroma grid with the same centre-aligned convention, so for
left-sited (MPEG-2) chroma the quarter-sample shift of the reduction is undone by the expansion:
down then up lands on the original grid, as the vsr networks' packed layout does.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..yuv import Frame, chroma_shape

KERNELS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def _kernel(name: str) -> Image.Resampling:
    try:
        return KERNELS[name]
    except KeyError:
        raise ValueError(f"unknown scaler {name!r}; choose {', '.join(KERNELS)}") from None


def resize_plane(plane: np.ndarray, height: int, width: int, resample: Image.Resampling, bits: int = 8) -> np.ndarray:
    """Resize one plane in float with PIL's filter, rounded and clamped back to integer codes."""
    im = Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), resample)
    return np.clip(np.rint(np.asarray(im)), 0, (1 << bits) - 1).astype(plane.dtype)


def half_size(height: int, width: int) -> tuple[int, int]:
    """Base-layer size of a ``height x width`` picture: ``(ceil(H/2), ceil(W/2))``."""
    return (height + 1) // 2, (width + 1) // 2


def _pad_even(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    return np.pad(plane, ((0, h % 2), (0, w % 2)), mode="edge") if h % 2 or w % 2 else plane


def downscale2(frame: Frame, kernel: str) -> Frame:
    """Antialiased 2x reduction of every plane (odd planes edge-padded first)."""
    f = _kernel(kernel)
    out = []
    for p in frame.planes:
        p = _pad_even(p)
        out.append(resize_plane(p, p.shape[0] // 2, p.shape[1] // 2, f, frame.bits))
    return frame.with_planes(*out)


def upscale2(frame: Frame, kernel: str, height: int, width: int) -> Frame:
    """Exact 2x expansion of every plane, cropped to a ``height x width`` picture."""
    if half_size(height, width) != (frame.height, frame.width):
        raise ValueError(f"a {frame.width}x{frame.height} base layer does not expand to {width}x{height}")
    f = _kernel(kernel)
    ch, cw = chroma_shape(height, width)
    y = resize_plane(frame.y, 2 * frame.height, 2 * frame.width, f, frame.bits)[:height, :width]
    u, v = (resize_plane(p, 2 * p.shape[0], 2 * p.shape[1], f, frame.bits)[:ch, :cw] for p in (frame.u, frame.v))
    return frame.with_planes(y, u, v)
