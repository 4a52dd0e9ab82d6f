"""The one dispatch point for the packed-layout ops.

Every op has a torch reference twin in :mod:`kernels.reference` (the specification, used on CPU and
wherever a gradient is needed). ``backend`` is ``"auto"`` or ``"torch"``; fused CUDA kernels for
CUDA tensors arrive with the CuPy backend.
"""

from __future__ import annotations

import torch

from . import reference
from .reference import (bilinear_upscale, denormalise, max_code, normalise, packed_channels, plane_dtype, quantize,
                        residual_to_planes, unpack, upscale_planes_float)

BACKENDS = ("auto", "torch")

__all__ = ["BACKENDS", "pack", "unpack", "unpack_upscale", "bilinear_upscale", "denormalise", "max_code", "normalise",
           "packed_channels", "plane_dtype", "quantize", "residual_to_planes", "upscale_planes_float"]


def _resolve(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return "torch"


def pack(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, block: int = 2,
         dtype: torch.dtype = torch.float32, backend: str = "auto") -> torch.Tensor:
    """Planes -> normalised packed tensor. Contract: :func:`kernels.reference.pack`."""
    _resolve(backend)
    return reference.pack(y, u, v, bits=bits, block=block, dtype=dtype)


def unpack_upscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                   bits: int, scale: int, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual + bilinear base -> upscaled planes. Contract: :func:`kernels.reference.unpack_upscale`."""
    _resolve(backend)
    return reference.unpack_upscale(residual, y, u, v, bits=bits, scale=scale)
