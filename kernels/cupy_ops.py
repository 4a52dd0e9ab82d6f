"""Fused CUDA kernels for the packed-layout ops, launched through CuPy.

This is the only module that imports ``cupy``, and it does so lazily (:func:`load_cupy`), so the
package imports on machines without it. The kernels live in ``pack.cu``, ``upscale.cu`` and
``downscale.cu`` (with ``vsr_common.cuh``); each is bit-identical to its torch twin in
:mod:`kernels.reference`.

Every op is split in two steps::

    plan_*(tensors, params)  ->  outputs (allocated with torch on the inputs' device), [Launch, ...]
    run(launches, device)    ->  CuPy launches on torch's current stream (tensors cross by DLPack)

The planning half is plain torch: it validates like the twin, picks the kernel, computes the launch
shape (:func:`launch_shape`, the only place a grid is computed) and orders the arguments. The
CPU emulation in ``tests/kernels`` executes the *same* plans with the same ``.cu`` sources compiled
by g++, which is how the kernels are checked on machines without a GPU.

Static parameters (the input and output dtypes) select a template instantiation by kernel name;
``bits``, ``block`` and ``scale`` are runtime arguments. Builds are memoised per device and
kernel name (:func:`_kernel`), on top of CuPy's own on-disk cache (keyed by the source text, which
is why :func:`kernel_source` inlines the shared header rather than passing ``-I``). CuPy compiles
with NVRTC and appends ``-ftz=true``; the results do not depend on it (docs/kernels.md).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import reference
from .reference import FLOAT_DTYPES, max_code, packed_channels, plane_dtype

__all__ = ["BackendUnavailable", "COMPILE_OPTIONS", "CUPY_APPENDED_OPTIONS", "HEADER", "KERNEL_DIR", "Launch",
           "SOURCES", "Unsupported", "available", "kernel_source", "launch_shape", "load_cupy", "pack", "plan_pack",
           "plan_resize", "plan_unpack", "plan_unpack_downscale", "plan_unpack_upscale", "resize", "run", "unpack",
           "unpack_downscale", "unpack_upscale"]

KERNEL_DIR = Path(__file__).resolve().parent
SOURCES = ("pack.cu", "upscale.cu", "downscale.cu", "resize.cu")
HEADER = "vsr_common.cuh"
# --fmad=false: no multiply-add contraction anywhere (the sources also use __fmul_rn/__fadd_rn).
# Shared by the NVRTC build below and the nvcc/NVRTC checks in tests/kernels.
COMPILE_OPTIONS = ("--std=c++17", "--fmad=false")
# What cupy.RawModule appends to every build (and NVRTC honours the last occurrence of an option):
# subnormal floats are flushed to zero. The kernels' results do not depend on it (docs/kernels.md);
# the tests compile and emulate with it.
CUPY_APPENDED_OPTIONS = ("-ftz=true",)
THREADS = 256                  # threads per block (x only); small widths use fewer, in whole warps
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535
MAX_EXTENT = 2**30             # coordinates are 32-bit ints in the kernels (2 * Y + 1 must fit)
EXACT_LIMIT = 2**24            # integers below this are exact in float32

_CODE = {torch.uint8: "u8", torch.uint16: "u16"}
_FLOAT = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
_INCLUDE = re.compile(r'^#include "' + re.escape(HEADER) + r'"[ \t]*$', re.MULTILINE)

Alloc = Callable[..., torch.Tensor]


class BackendUnavailable(RuntimeError):
    """An explicit ``backend="cupy"`` request that cannot be honoured (the message says why)."""


class Unsupported(ValueError):
    """Valid input for the torch twin that the fused kernels do not cover (e.g. int32 planes);
    ``backend="auto"`` then runs the twin, ``backend="cupy"`` raises :class:`BackendUnavailable`."""


@functools.cache
def _import_cupy():
    try:
        import cupy
    except ImportError as err:
        return None, err
    return cupy, None


def load_cupy():
    """The ``cupy`` module; raises :class:`BackendUnavailable` with the ImportError as ``__cause__``."""
    cupy, err = _import_cupy()
    if cupy is None:
        raise BackendUnavailable(
            f"cupy cannot be imported ({err}); install it with `pip install cupy-cuda13x` "
            "(or the package's `cuda` extra)") from err
    return cupy


def available() -> bool:
    """Whether ``cupy`` imports (says nothing about a GPU being present)."""
    return _import_cupy()[0] is not None


def kernel_source(source: str) -> str:
    """The text CuPy compiles for ``source`` (one of :data:`SOURCES`): the ``.cu`` file with
    ``#include "vsr_common.cuh"`` replaced by the header's text."""
    if source not in SOURCES:
        raise ValueError(f"unknown kernel source {source!r}; choose one of {', '.join(SOURCES)}")
    text = (KERNEL_DIR / source).read_text()
    header = (KERNEL_DIR / HEADER).read_text()
    inlined, count = _INCLUDE.subn(lambda _: header, text)
    if count != 1:
        raise RuntimeError(f"{source} must include {HEADER} exactly once, found {count}")
    return inlined


def launch_shape(cols: int, rows: int, depth: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(grid, block)`` for a kernel whose x, y, z grid-stride loops cover ``cols``, ``rows``
    and ``depth`` (all >= 1). x gets up to :data:`THREADS` threads per block, y and z one; grids
    are capped at the hardware limits (the loops cover the rest)."""
    for name, extent in (("cols", cols), ("rows", rows), ("depth", depth)):
        if not 1 <= extent < MAX_EXTENT:
            raise ValueError(f"launch extent {name}={extent} is outside 1..{MAX_EXTENT - 1}")
    threads = min(THREADS, 32 * -(-cols // 32))
    grid = (min(-(-cols // threads), MAX_GRID_X), min(rows, MAX_GRID_YZ), min(depth, MAX_GRID_YZ))
    return grid, (threads, 1, 1)


@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``args`` are torch tensors (passed as device pointers) and numpy scalars
    (``np.int32`` for an ``int`` parameter, ``np.int64`` for ``long long``), in parameter order."""

    source: str
    name: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: tuple


def _raw(t: torch.Tensor) -> torch.Tensor:
    """The tensor as the kernel reads it: detached (DLPack refuses tensors that require grad, which
    may reach here under no_grad), 16-bit floats and uint16 as int16 bit patterns with the same
    strides (DLPack consumers without bfloat16/uint16 support accept them)."""
    t = t.detach()
    return t.view(torch.int16) if t.dtype in (torch.float16, torch.bfloat16, torch.uint16) else t


def _i32(*values: int) -> tuple:
    return tuple(np.int32(v) for v in values)


def _i64(*values: int) -> tuple:
    return tuple(np.int64(v) for v in values)


def _one_device(*tensors: torch.Tensor) -> torch.device:
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    return devices.pop()


def _code_name(bits: int, planes: tuple[torch.Tensor, ...], *, exact: bool) -> str:
    dtypes = {p.dtype for p in planes}
    dt = dtypes.pop() if len(dtypes) == 1 else None
    if dt not in _CODE or (exact and dt != plane_dtype(bits)):
        want = plane_dtype(bits) if exact else "uint8 or uint16"
        raise Unsupported(f"the fused kernels read {want} planes, got {sorted(map(str, {p.dtype for p in planes}))}")
    return _CODE[dt]


def _float_name(t: torch.Tensor, what: str) -> str:
    if t.dtype not in _FLOAT:
        raise Unsupported(f"the fused kernels read float32/float16/bfloat16 {what}, got {t.dtype}")
    return _FLOAT[t.dtype]


def plan_pack(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, block: int = 2,
              dtype: torch.dtype = torch.float32, empty: Alloc = torch.empty) -> tuple[torch.Tensor, list[Launch]]:
    """Plan :func:`pack`. ``empty(shape, dtype=, device=)`` allocates the output (tests pass a
    guarded allocator). Returns the output tensor (written by the launches) and the launches."""
    reference._check_planes(y, u, v)
    if block < 2 or block % 2:
        raise ValueError(f"block must be an even number >= 2, got {block}")
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype}")
    m = max_code(bits)
    device = _one_device(y, u, v)
    code = _code_name(bits, (y, u, v), exact=False)
    n, h, w = y.shape
    hc, wc = u.shape[1:]
    rows, cols = -(-h // block), -(-w // block)
    out = empty((n, packed_channels(block), rows, cols), dtype=dtype, device=device)
    if out.numel() == 0:
        return out, []
    grid, threads = launch_shape(cols, rows, n)
    args = ((_raw(y), _raw(u), _raw(v), _raw(out)) + _i32(n, h, w, hc, wc, rows, cols, block, m)
            + _i64(*y.stride(), *u.stride(), *v.stride()))
    return out, [Launch("pack.cu", f"pack_{code}_{_FLOAT[dtype]}", grid, threads, args)]


def plan_unpack(packed: torch.Tensor, *, bits: int, block: int, height: int, width: int,
                empty: Alloc = torch.empty) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[Launch]]:
    """Plan :func:`unpack`; returns ``(y, u, v)`` and the launches."""
    if packed.dim() != 4:
        raise ValueError(f"a packed tensor is (N, C, rows, cols), got shape {tuple(packed.shape)}")
    n, c, rows, cols = packed.shape
    if c != packed_channels(block):
        raise ValueError(f"a block-{block} packed tensor has {packed_channels(block)} channels, got {c}")
    if height > block * rows or width > block * cols:
        raise ValueError(f"packed grid {rows}x{cols} is too small for {width}x{height} at block {block}")
    if block < 2 or block % 2 or height < 0 or width < 0:
        raise Unsupported(f"the fused unpack needs an even block >= 2 and a non-negative size, got block {block}, "
                          f"{width}x{height}")
    m = max_code(bits)
    src = _float_name(packed, "packed tensors")
    out_dt = plane_dtype(bits)
    ch, cw = (height + 1) // 2, (width + 1) // 2
    y = empty((n, height, width), dtype=out_dt, device=packed.device)
    u = empty((n, ch, cw), dtype=out_dt, device=packed.device)
    v = empty((n, ch, cw), dtype=out_dt, device=packed.device)
    if y.numel() == 0 or packed.numel() == 0:
        return (y, u, v), []
    grid, threads = launch_shape(cols, rows, n)
    args = ((_raw(packed), _raw(y), _raw(u), _raw(v)) + _i32(n, rows, cols, block, height, width, ch, cw, m)
            + _i64(*packed.stride()))
    return (y, u, v), [Launch("pack.cu", f"unpack_{src}_{_CODE[out_dt]}", grid, threads, args)]


def plan_unpack_upscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                        bits: int, scale: int, empty: Alloc = torch.empty
                        ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[Launch]]:
    """Plan :func:`unpack_upscale`: one launch per output plane; returns ``(Y, U, V)`` and the launches."""
    code = _code_name(bits, (y, u, v), exact=True)  # first: the twin also takes float32 code planes
    reference._check_planes(y, u, v)
    m = max_code(bits)
    s = scale
    n, h, w = y.shape
    if residual.dim() != 4 or residual.shape[0] != n or residual.shape[2:] != u.shape[1:]:
        raise ValueError(f"residual {tuple(residual.shape)} does not match planes with chroma {tuple(u.shape)}")
    if residual.shape[1] != 6 * s * s:
        raise ValueError(f"an x{s} residual has {6 * s * s} channels, got {residual.shape[1]}")
    if s < 1 or 4 * s * s * m >= EXACT_LIMIT:
        raise Unsupported(f"the fused upscale needs 1 <= scale and 4 scale^2 (2^bits - 1) < 2^24 (exact float32 "
                          f"sums), got scale {s} at {bits} bits")
    device = _one_device(residual, y, u, v)
    res = _float_name(residual, "residuals")
    out_h, out_w = s * h, s * w
    ch, cw = (out_h + 1) // 2, (out_w + 1) // 2
    planes = (empty((n, out_h, out_w), dtype=y.dtype, device=device),
              empty((n, ch, cw), dtype=y.dtype, device=device), empty((n, ch, cw), dtype=y.dtype, device=device))
    rows, cols = residual.shape[2:]
    launches = []
    for src, out, cell, c0 in ((y, planes[0], 2 * s, 0), (u, planes[1], s, 4 * s * s), (v, planes[2], s, 5 * s * s)):
        if out.numel() == 0:
            continue
        grid, threads = launch_shape(cols, rows, n)  # one thread per residual cell
        args = ((_raw(residual), _raw(src), _raw(out))
                + _i32(n, rows, cols, out.shape[1], out.shape[2], src.shape[1], src.shape[2], s, cell, c0, m)
                + _i64(*residual.stride(), *src.stride()))
        launches.append(Launch("upscale.cu", f"upscale_{res}_{code}", grid, threads, args))
    return planes, launches


def plan_unpack_downscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                          bits: int, empty: Alloc = torch.empty
                          ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[Launch]]:
    """Plan :func:`unpack_downscale`: one launch for all three planes (one thread per residual cell,
    which holds 2x2 luma samples and one U and one V sample); returns ``(Y, U, V)`` and the launches."""
    reference._check_planes(y, u, v)  # the twin's checks and messages, in the twin's order
    reference.check_down_bits(bits)
    m = max_code(bits)
    n, h, w = y.shape
    (lh, lw), (ch, cw) = reference.downscale_shapes(h, w)
    rows, cols = -(-h // 4), -(-w // 4)
    if residual.shape[:2] != (n, 6) or tuple(residual.shape[2:]) != (rows, cols):
        raise ValueError(f"a downscale residual for {w}x{h} is ({n}, 6, {rows}, {cols}), got {tuple(residual.shape)}")
    code = _code_name(bits, (y, u, v), exact=True)
    res = _float_name(residual, "residuals")
    for name, extent in (("height", h), ("width", w)):
        if extent >= MAX_EXTENT:  # 2 Y + 6 and 2 X + 6 must fit the kernel's 32-bit coordinates
            raise Unsupported(f"the fused downscale takes frames below {MAX_EXTENT} samples a side, "
                              f"got {name} {extent}")
    device = _one_device(residual, y, u, v)
    assert (ch, cw) == (rows, cols)  # ceil(ceil(H/2)/2) == ceil(H/4): one chroma sample per residual cell
    planes = (empty((n, lh, lw), dtype=y.dtype, device=device), empty((n, ch, cw), dtype=y.dtype, device=device),
              empty((n, ch, cw), dtype=y.dtype, device=device))
    if planes[0].numel() == 0:
        return planes, []
    grid, threads = launch_shape(cols, rows, n)
    args = ((_raw(residual), _raw(y), _raw(u), _raw(v), *(_raw(p) for p in planes))
            + _i32(n, rows, cols, lh, lw, h, w, u.shape[1], u.shape[2], m)
            + _i64(*residual.stride(), *y.stride(), *u.stride(), *v.stride()))
    return planes, [Launch("downscale.cu", f"downscale_{res}_{code}", grid, threads, args)]


def plan_resize(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, height: int, width: int, kernel: str,
                bits: int, empty: Alloc = torch.empty
                ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[Launch]]:
    """Plan :func:`resize`: two launches per plane (rows into an int64 scratch tensor, then columns);
    returns ``(Y, U, V)`` and the launches."""
    reference._check_planes(y, u, v)
    m = max_code(bits)
    code = _code_name(bits, (y, u, v), exact=False)
    if plane_dtype(bits) != y.dtype:
        raise Unsupported(f"the fused resize writes the planes' own dtype, which must be {plane_dtype(bits)} at "
                          f"{bits} bits, got {y.dtype}")
    if min(height, width) < 1 or max(height, width, *y.shape[1:]) >= MAX_EXTENT:
        raise ValueError(f"cannot resize {tuple(y.shape[1:])} planes to {height}x{width}")
    device = _one_device(y, u, v)
    n = y.shape[0]
    ch, cw = (height + 1) // 2, (width + 1) // 2
    planes = (empty((n, height, width), dtype=y.dtype, device=device),
              empty((n, ch, cw), dtype=y.dtype, device=device), empty((n, ch, cw), dtype=y.dtype, device=device))
    launches = []
    for src, out in zip((y, u, v), planes):
        if out.numel() == 0:
            continue
        h, w = src.shape[1:]
        out_h, out_w = out.shape[1:]
        ix, wx = reference.resize_tables(w, out_w, kernel, device)
        iy, wy = reference.resize_tables(h, out_h, kernel, device)
        across = empty((n, h, out_w), dtype=torch.int64, device=device)
        grid, threads = launch_shape(out_w, h, n)
        launches.append(Launch("resize.cu", f"resize_rows_{code}", grid, threads,
                               (_raw(src), across) + _i32(n, h, out_w, ix.shape[1]) + (ix, wx) + _i64(*src.stride())))
        grid, threads = launch_shape(out_w, out_h, n)
        launches.append(Launch("resize.cu", f"resize_cols_{code}", grid, threads,
                               (across, _raw(out)) + _i32(n, h, out_h, out_w, iy.shape[1]) + (iy, wy) + _i32(m)))
    return planes, launches


# ---- CuPy execution ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _module(device_id: int, source: str):
    cupy = load_cupy()
    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=kernel_source(source), options=COMPILE_OPTIONS)


@functools.lru_cache(maxsize=None)
def _kernel(device_id: int, source: str, name: str):
    """The compiled kernel ``name`` of ``source`` on CUDA device ``device_id`` (memoised)."""
    cupy = load_cupy()
    with cupy.cuda.Device(device_id):
        return _module(device_id, source).get_function(name)


def run(launches: list[Launch], device: torch.device) -> None:
    """Launch ``launches`` in order on torch's current stream of CUDA ``device``; asynchronous
    like any torch op (no synchronisation). The one place a kernel is called with (grid, block)."""
    if not launches:
        return
    if device.type != "cuda":
        raise BackendUnavailable(f"the fused kernels run on CUDA tensors, these are on {device}")
    cupy = load_cupy()
    index = device.index if device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(index):
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(index).cuda_stream, index)
        with stream:  # from_dlpack below then hands tensors over on this same stream: no sync
            for launch in launches:
                args = tuple(cupy.from_dlpack(a) if isinstance(a, torch.Tensor) else a for a in launch.args)
                _kernel(index, launch.source, launch.name)(launch.grid, launch.block, args)


def pack(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, block: int = 2,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fused :func:`kernels.reference.pack` for CUDA tensors (same contract, bit-identical).

    Args:
        y: ``(N, H, W)`` uint8/uint16 codes ``0 .. 2**bits - 1``, any strides; u, v:
            ``(N, ceil(H/2), ceil(W/2))``, same dtype. bits: 8..16. block: even >= 2.
        dtype: float32, float16 or bfloat16.

    Returns:
        ``(N, block^2 + 2 (block/2)^2, ceil(H/block), ceil(W/block))`` contiguous, values in [-1, 1].
    """
    out, launches = plan_pack(y, u, v, bits=bits, block=block, dtype=dtype)
    run(launches, out.device)
    return out


def unpack(packed: torch.Tensor, *, bits: int, block: int, height: int, width: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused :func:`kernels.reference.unpack`: ``(N, C, rows, cols)`` float32/float16/bfloat16
    (any strides) -> contiguous Y ``(N, height, width)``, U/V ``(N, ceil(height/2), ceil(width/2))``
    of dtype :func:`kernels.reference.plane_dtype`."""
    planes, launches = plan_unpack(packed, bits=bits, block=block, height=height, width=width)
    run(launches, packed.device)
    return planes


def unpack_upscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                   bits: int, scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused :func:`kernels.reference.unpack_upscale`.

    Args:
        residual: ``(N, 6 s^2, ceil(H/2), ceil(W/2))`` float32/float16/bfloat16, any strides.
        y, u, v: ``(N, H, W)`` and ``(N, ceil(H/2), ceil(W/2))`` of dtype ``plane_dtype(bits)``.
        bits: 8..16, with ``4 s^2 (2**bits - 1) < 2**24``. scale: ``s >= 1``.

    Returns:
        Contiguous Y ``(N, sH, sW)`` and U, V ``(N, ceil(sH/2), ceil(sW/2))``, dtype of the planes.
    """
    planes, launches = plan_unpack_upscale(residual, y, u, v, bits=bits, scale=scale)
    run(launches, residual.device)
    return planes


def unpack_downscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                     bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused :func:`kernels.reference.unpack_downscale` (the downsampler's unpack), one launch.

    Args:
        residual: ``(N, 6, ceil(H/4), ceil(W/4))`` float32/float16/bfloat16, any strides.
        y, u, v: the full-resolution planes ``(N, H, W)`` and ``(N, ceil(H/2), ceil(W/2))`` of dtype
            ``plane_dtype(bits)``, any strides. bits: 8..16.

    Returns:
        Contiguous Y ``(N, ceil(H/2), ceil(W/2))`` and U, V ``(N, ceil(H/4), ceil(W/4))``, dtype of the planes.
    """
    planes, launches = plan_unpack_downscale(residual, y, u, v, bits=bits)
    run(launches, residual.device)
    return planes


def resize(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, height: int, width: int, kernel: str, bits: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused :func:`kernels.reference.resize`: planes of dtype ``plane_dtype(bits)`` (any strides) ->
    contiguous Y ``(N, height, width)`` and U, V ``(N, ceil(height/2), ceil(width/2))``."""
    planes, launches = plan_resize(y, u, v, height=height, width=width, kernel=kernel, bits=bits)
    run(launches, y.device)
    return planes
