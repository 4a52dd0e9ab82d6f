"""The one dispatch point for the packed-layout ops.

Every op has a torch reference twin in :mod:`kernels.reference` (the specification, used wherever a
gradient is needed), a fused CUDA kernel in :mod:`kernels.cupy_ops`, and ``pack``, the upsampler's
unpack and ``resize`` also a compiled CPU kernel in :mod:`kernels.cpu_ops`. ``backend``:

* ``"auto"``: the fused kernel when every tensor is a CUDA tensor, no gradient is needed (grad mode
  is off or no input requires grad), cupy imports and the kernels cover the dtypes; on CPU tensors,
  under the same conditions, the compiled CPU kernel where the op has one and it builds; else the twin.
* ``"torch"``: always the twin.
* ``"cupy"``: always the fused kernel; if that is impossible (cupy missing, CPU tensors, an input
  requiring grad, dtypes the kernels do not cover) :class:`BackendUnavailable` says why, with the
  underlying error as ``__cause__``. Never a silent fallback.
* ``"cpu"``: always the compiled CPU kernel, with the same rule (:class:`BackendUnavailable` for an op
  that has none, CUDA tensors, a gradient, no compiler).

All paths give bit-identical results (docs/kernels.md).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

from . import cpu_ops, cupy_ops, reference
from .cupy_ops import BackendUnavailable
from .reference import (bicubic_downscale2, bilinear_upscale, denormalise, downscale_planes_float, downscale_shapes,
                        max_code, normalise, pack_float, packed_channels, plane_dtype, quantize, resize_planes_float,
                        residual_to_planes, upscale_planes_float)

BACKENDS = ("auto", "torch", "cupy", "cpu")

__all__ = ["BACKENDS", "BackendUnavailable", "pack", "resize", "unpack", "unpack_upscale", "unpack_downscale",
           "bicubic_downscale2", "bilinear_upscale", "denormalise", "downscale_planes_float", "downscale_shapes",
           "max_code", "normalise", "pack_float", "packed_channels", "plane_dtype", "quantize", "resize_planes_float",
           "residual_to_planes", "upscale_planes_float"]

T = TypeVar("T")


def _cupy_obstacle(tensors: tuple[torch.Tensor, ...], *, first_only: bool = False
                   ) -> tuple[str, BaseException | None] | None:
    """Why the fused kernels cannot take these tensors as ``(reasons, cause)``, or None if they can.
    ``first_only`` stops at the first reason (``auto`` needs no more; CPU tensors then never look
    for cupy)."""
    reasons, cause = [], None
    if not all(t.is_cuda for t in tensors):
        devices = sorted({str(t.device) for t in tensors})
        reasons.append(f"the fused kernels need CUDA tensors, got tensors on {', '.join(devices)}")
        if first_only:
            return reasons[0], None
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        reasons.append("an input requires grad and grad mode is on, and the fused kernels are not differentiable "
                       "(use backend='torch', or torch.no_grad())")
    try:
        cupy_ops.load_cupy()
    except BackendUnavailable as err:
        reasons.append(str(err))
        cause = err.__cause__
    return ("; ".join(reasons), cause) if reasons else None


def _cpu_obstacle(tensors: tuple[torch.Tensor, ...], has_kernel: bool) -> str | None:
    """Why the compiled CPU kernel cannot take this call, or None if it can."""
    if not has_kernel:
        return "this op has no compiled CPU kernel (pack, unpack_upscale and resize have)"
    if any(t.device.type != "cpu" for t in tensors):
        return f"the compiled CPU kernels need CPU tensors, got {', '.join(sorted({str(t.device) for t in tensors}))}"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "an input requires grad and grad mode is on, and the compiled kernels are not differentiable"
    try:
        cpu_ops.load()
    except BackendUnavailable as err:
        return str(err)
    return None


def _dispatch(backend: str, tensors: tuple[torch.Tensor, ...], fused: Callable[[], T], twin: Callable[[], T],
              cpu: Callable[[], T] | None = None) -> T:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return twin()
    if backend == "cpu" or (backend == "auto" and all(t.device.type == "cpu" for t in tensors)):
        obstacle = _cpu_obstacle(tensors, cpu is not None)
        if obstacle is None:
            try:
                return cpu()
            except cupy_ops.Unsupported as err:  # raised while planning, before anything runs
                if backend == "cpu":
                    raise BackendUnavailable(f"backend='cpu' cannot run this call: {err}") from err
                return twin()
        if backend == "cpu":
            raise BackendUnavailable(f"backend='cpu' cannot run this call: {obstacle}")
    obstacle = _cupy_obstacle(tensors, first_only=backend == "auto")
    if obstacle is not None:
        if backend == "auto":
            return twin()
        reason, cause = obstacle
        raise BackendUnavailable(f"backend='cupy' cannot run this call: {reason}") from cause
    try:
        return fused()
    except cupy_ops.Unsupported as err:  # raised while planning, before anything is launched
        if backend == "auto":
            return twin()
        raise BackendUnavailable(f"backend='cupy' cannot run this call: {err}") from err


def pack(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, block: int = 2,
         dtype: torch.dtype = torch.float32, backend: str = "auto") -> torch.Tensor:
    """Planes -> normalised packed tensor. Contract: :func:`kernels.reference.pack`."""
    return _dispatch(backend, (y, u, v),
                     lambda: cupy_ops.pack(y, u, v, bits=bits, block=block, dtype=dtype),
                     lambda: reference.pack(y, u, v, bits=bits, block=block, dtype=dtype),
                     lambda: cpu_ops.pack(y, u, v, bits=bits, block=block, dtype=dtype))


def unpack(packed: torch.Tensor, *, bits: int, block: int, height: int, width: int, backend: str = "auto"
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed tensor -> planes. Contract: :func:`kernels.reference.unpack`."""
    return _dispatch(backend, (packed,),
                     lambda: cupy_ops.unpack(packed, bits=bits, block=block, height=height, width=width),
                     lambda: reference.unpack(packed, bits=bits, block=block, height=height, width=width))


def unpack_upscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                   bits: int, scale: int, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual + bilinear base -> upscaled planes. Contract: :func:`kernels.reference.unpack_upscale`."""
    return _dispatch(backend, (residual, y, u, v),
                     lambda: cupy_ops.unpack_upscale(residual, y, u, v, bits=bits, scale=scale),
                     lambda: reference.unpack_upscale(residual, y, u, v, bits=bits, scale=scale),
                     lambda: cpu_ops.unpack_upscale(residual, y, u, v, bits=bits, scale=scale))


def unpack_downscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                     bits: int, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual + bicubic 2x reduction -> base-layer planes. Contract: :func:`kernels.reference.unpack_downscale`."""
    return _dispatch(backend, (residual, y, u, v),
                     lambda: cupy_ops.unpack_downscale(residual, y, u, v, bits=bits),
                     lambda: reference.unpack_downscale(residual, y, u, v, bits=bits))


def resize(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, height: int, width: int, kernel: str, bits: int,
           backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4:2:0 planes -> the same pictures resized to ``height x width`` (antialiased bicubic or
    Lanczos-3). Contract: :func:`kernels.reference.resize`."""
    return _dispatch(backend, (y, u, v),
                     lambda: cupy_ops.resize(y, u, v, height=height, width=width, kernel=kernel, bits=bits),
                     lambda: reference.resize(y, u, v, height=height, width=width, kernel=kernel, bits=bits),
                     lambda: cpu_ops.resize(y, u, v, height=height, width=width, kernel=kernel, bits=bits))
