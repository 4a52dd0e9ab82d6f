"""Inference engine: YUV planes in, upscaled YUV planes out.

Runs pack -> network -> unpack on a chosen device and dtype, batches frames, and tiles large
frames spatially with an overlap wide enough that tiled and untiled outputs agree.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import kernels

from . import runtimes
from .cpu_features import has_native_bf16, retain_freed_memory
from .models import CheckpointInfo, Downsampler, Upsampler, load_downsampler, load_upsampler, paired_upsampler
from .refine import RefineOptions, refine_residual
from .yuv import Frame

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
REDUCTION_KERNEL = "bicubic"  # how an x2 upscale is reduced to a 2/3 layer's picture size (training does the same)
Planes = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
PlanesFn = Callable[..., Planes]
_PACKAGE_DIR = str(Path(__file__).parent)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev


def default_dtype(device: torch.device, runtime: str = "torch") -> str:
    """fp16 on CUDA; on the CPU bf16 where it computes bf16 natively (AVX-512 BF16, AMX: 1.5-2x the
    fp32 speed here, 0.003 dB PSNR-Y at most on Set5/Set14, README) and the runtime runs bf16, fp32
    elsewhere."""
    if device.type == "cuda":
        return "fp16"
    bf16_ok = has_native_bf16() and runtimes.unsupported(runtime, device, torch.bfloat16) is None
    return "bf16" if bf16_ok else "fp32"


def default_batch(device: torch.device) -> int:
    """Frames per network call: 4 on CUDA (fewer launches); 1 on the CPU, where pack, unpack and the
    bicubic reduction are memory-bound passes whose data stays in cache for one frame and not for
    four (README, Performance: x2-default 37.0 against 19.6 fps at 960x540 on the AMX Xeon)."""
    return 4 if device.type == "cuda" else 1


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """How the network runs.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``fp32``, ``fp16`` or ``bf16``; ``None`` means :func:`default_dtype` (fp16 on CUDA;
            bf16 on CPUs with native BF16, fp32 on other CPUs).
        batch: frames per network call; ``None`` means :func:`default_batch` (1 on the CPU, 4 on CUDA).
        tile: tile edge in input luma pixels (even, >= 16), or ``None`` for whole frames.
        tile_overlap: context around each tile, in packed cells (2 input pixels each for the
            upscaler, 4 for the downscaler); ``None``
            uses the network's receptive radius, which makes tiling exact up to float rounding.
        backend: kernel backend for pack/unpack (see :mod:`kernels`).
        runtime: where the network runs: ``torch``, ``onnxruntime``, ``openvino`` (CPU, through
            the ONNX export; :mod:`vsr_plugin.runtimes`) or ``auto`` (the fastest installed one,
            measured on the first frame size; torch on CUDA).
    """

    device: str = "auto"
    dtype: str | None = None
    batch: int | None = None
    tile: int | None = None
    tile_overlap: int | None = None
    backend: str = "auto"
    runtime: str = "torch"

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.tile is not None and (self.tile < 16 or self.tile % 2):
            raise ValueError(f"tile must be an even number of pixels >= 16, got {self.tile}")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {self.tile_overlap}")
        if self.backend not in kernels.BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(kernels.BACKENDS)}, got {self.backend!r}")
        if self.runtime != "auto":
            runtimes.require(self.runtime)


class _Engine:
    """Shared machinery: network placement (device, dtype, channels-last), spatial tiling with
    overlap at the packed grid, and batching of :class:`Frame` lists."""

    block = 2  # input pixels per packed cell along each axis
    network: type[torch.nn.Module]  # the module class a subclass runs, and the loader of its weights
    load: Callable[..., tuple[torch.nn.Module, CheckpointInfo]]

    def __init__(self, model: str | Path | torch.nn.Module, *, scale: int = 2, **options) -> None:
        options = EngineOptions(**options)
        self.device = resolve_device(options.device)  # fails on a bad device before anything is loaded
        if self.device.type == "cpu":
            retain_freed_memory()  # every frame would page-fault its feature maps in again (cpu_features)
        if options.batch is None:
            options = dataclasses.replace(options, batch=default_batch(self.device))
        self.options = options
        if isinstance(model, self.network):
            net, info = copy.deepcopy(model), None
        else:
            net, info = self.load(model, scale=scale)
        self.dtype = DTYPES[options.dtype or default_dtype(self.device, options.runtime)]
        self.info = info
        self.scale = net.scale
        self.net = net.eval().to(self.device, self.dtype, memory_format=torch.channels_last)
        for p in self.net.parameters():
            p.requires_grad_(False)
        radius = net.receptive_radius
        if options.tile is not None and radius is None and options.tile_overlap is None:
            warnings.warn("this model uses global attention: tiled output differs from whole-frame output",
                          skip_file_prefixes=(_PACKAGE_DIR,))  # blame the caller outside vsr_plugin
        self.overlap = options.tile_overlap if options.tile_overlap is not None else (radius or 8)
        self.runtime = options.runtime  # "auto" until measured on the first call
        self._run = None if self.runtime == "auto" else runtimes.network(self.net, self.runtime, device=self.device,
                                                                          dtype=self.dtype)

    def _choose_runtime(self, example: torch.Tensor) -> None:
        """``auto``: time each installed runtime that can run this device and dtype on ``example``."""
        candidates: dict[str, Callable] = {
            name: runtimes.network(self.net, name, device=self.device, dtype=self.dtype)
            for name in ("torch", "onnxruntime", "openvino")
            if runtimes.installed(name) and runtimes.unsupported(name, self.device, self.dtype) is None}
        self.runtime = runtimes.fastest(candidates, example) if len(candidates) > 1 else "torch"
        self._run = candidates[self.runtime]

    @property
    def model_info(self) -> CheckpointInfo | None:
        return self.info

    def __repr__(self) -> str:
        name = self.info.name if self.info else "custom"
        runtime = "" if self.runtime == "torch" else f", {self.runtime}"
        return (f"{type(self).__name__}({name}, x{self.scale}, {self.device}, "
                f"{str(self.dtype).removeprefix('torch.')}{runtime})")

    def run_network(self, packed: torch.Tensor) -> torch.Tensor:
        """The network (on the chosen runtime, tiled when asked) on a packed tensor."""
        packed = packed.contiguous(memory_format=torch.channels_last)
        tile = self.options.tile
        _, _, h, w = packed.shape
        cells = max(1, tile // self.block) if tile else None
        if self._run is None:
            self._choose_runtime(packed[:, :, :cells, :cells] if cells else packed)
        if cells is None or (h <= cells and w <= cells):
            return self._run(packed)
        o = self.overlap
        out = None
        for i0 in range(0, h, cells):
            for j0 in range(0, w, cells):
                i1, j1 = min(i0 + cells, h), min(j0 + cells, w)
                a0, b0 = max(i0 - o, 0), max(j0 - o, 0)
                part = self._run(packed[:, :, a0:min(i1 + o, h), b0:min(j1 + o, w)])
                if out is None:
                    out = packed.new_empty((packed.shape[0], part.shape[1], h, w))
                out[:, :, i0:i1, j0:j1] = part[:, :, i0 - a0:i1 - a0, j0 - b0:j1 - b0]
        return out

    def _frames(self, frames: Iterable[Frame], planes_fn: PlanesFn) -> list[Frame]:
        """Apply ``planes_fn`` to frames, ``batch`` at a time (consecutive frames of one size
        and depth share a batch)."""
        out: list[Frame] = []
        pending: list[Frame] = []
        for frame in frames:
            if pending and (frame.y.shape != pending[0].y.shape or frame.bits != pending[0].bits):
                out += self._run_batch(pending, planes_fn)
                pending = []
            pending.append(frame)
            if len(pending) == self.options.batch:
                out += self._run_batch(pending, planes_fn)
                pending = []
        if pending:
            out += self._run_batch(pending, planes_fn)
        return out

    @staticmethod
    def _run_batch(frames: Sequence[Frame], planes_fn: PlanesFn) -> list[Frame]:
        bits = frames[0].bits
        planes = [torch.from_numpy(np.stack([f.planes[k] for f in frames])) for k in range(3)]
        y, u, v = (p.cpu().numpy() for p in planes_fn(*planes, bits=bits))
        return [f.with_planes(y[i], u[i], v[i]) for i, f in enumerate(frames)]


class Upscaler(_Engine):
    """Upscale YUV 4:2:0 frames with a trained :class:`~vsr_plugin.models.Upsampler`.

    >>> up = Upscaler("fast", device="cpu")
    >>> big = up.upscale(frame)          # Frame -> Frame, 2x in each dimension

    Args:
        model: shipped model name (``"default"``, ``"fast"``), a weights path, or an
            :class:`Upsampler` instance (copied, so the caller's module is left as it was).
        scale: upscale factor of the weights to load.
        **options: fields of :class:`EngineOptions`.
    """

    block = 2
    network = Upsampler
    load = staticmethod(load_upsampler)

    def __init__(self, model: str | Path | Upsampler = "default", *, scale: int = 2, **options) -> None:
        super().__init__(model, scale=scale, **options)

    @torch.inference_mode()
    def upscale_planes(self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched planes ``(N, H, W)``/``(N, ceil(H/2), ceil(W/2))`` -> upscaled planes (on the
        engine's device; integer dtype per :func:`kernels.plane_dtype`)."""
        y, u, v = (p.to(self.device, non_blocking=True) for p in (y, u, v))
        packed = kernels.pack(y, u, v, bits=bits, block=2, dtype=self.dtype, backend=self.options.backend)
        residual = self.run_network(packed)
        return kernels.unpack_upscale(residual, y, u, v, bits=bits, scale=self.scale, backend=self.options.backend)

    def upscale_frames(self, frames: Iterable[Frame]) -> list[Frame]:
        return self._frames(frames, self.upscale_planes)

    @torch.inference_mode()
    def upscale_planes_to(self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, height: int,
                          width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network's upscale, then an antialiased bicubic resize (:func:`kernels.resize`, on the
        engine's device) to ``height x width`` pictures: how a 2/3 layer is restored (720p -> 1440p -> 1080p)."""
        big = self.upscale_planes(y, u, v, bits=bits)
        return kernels.resize(*big, height=height, width=width, kernel=REDUCTION_KERNEL, bits=bits,
                              backend=self.options.backend)

    def upscale_frames_to(self, frames: Iterable[Frame], height: int, width: int) -> list[Frame]:
        return self._frames(frames, functools.partial(self.upscale_planes_to, height=height, width=width))

    def upscale(self, frame: Frame) -> Frame:
        return self._run_batch([frame], self.upscale_planes)[0]


class Downscaler(_Engine):
    """Reduce YUV 4:2:0 frames 2x with a trained :class:`~vsr_plugin.models.Downsampler` (the
    encoder side's base layer). Same options as :class:`Upscaler`; tiles are in input pixels.

    ``refine`` adds encoder-side refinement (:mod:`vsr_plugin.refine`): the network's residual is
    then optimised, per batch of frames, for the upsampler ``refine_with`` (default: the one paired
    with ``model`` by name), run in float32 on the engine's device. Refinement sees whole frames
    (``tile`` bounds only the downsampler's own pass).
    """

    block = 4
    network = Downsampler
    load = staticmethod(load_downsampler)

    def __init__(self, model: str | Path | Downsampler, *, scale: int = 2, refine: RefineOptions | None = None,
                 refine_with: str | Path | Upsampler | None = None, **options) -> None:
        super().__init__(model, scale=scale, **options)
        self.refine = refine if refine is not None and refine.steps > 0 else None
        self.refiner: Upsampler | None = None
        if self.refine is not None:
            target = refine_with or (paired_upsampler(model) if isinstance(model, (str, Path)) else None)
            if target is None:
                raise ValueError(f"refinement needs the decoder's upsampler: no '-up' weights pair with {model!r}; "
                                 "name one (refine_with)")
            net = copy.deepcopy(target) if isinstance(target, Upsampler) else load_upsampler(target, scale=scale)[0]
            if net.scale != self.scale:
                raise ValueError(f"refinement upsampler is x{net.scale}, the downsampler x{self.scale}")
            self.refiner = net.eval().to(self.device, torch.float32)
            self.refiner.requires_grad_(False)

    def __repr__(self) -> str:
        text = super().__repr__()
        return text if self.refine is None else f"{text[:-1]}, refined {self.refine.steps} steps)"

    @functools.cached_property
    def zero_residual(self) -> bool:
        """Whether the network's output is zero for every input (its last layer is all zeros, as in
        the shipped pairs whose downsampler is the bicubic reduction): then the network is skipped.
        Read once: the engine's copy of the weights does not change."""
        tail = self.net.tail
        return not (tail.weight.any() or (tail.bias is not None and tail.bias.any()))

    @torch.inference_mode()
    def downscale_planes(self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched full-resolution planes -> base-layer planes ``(N, ceil(H/2), ceil(W/2))`` etc."""
        y, u, v = (p.to(self.device, non_blocking=True) for p in (y, u, v))
        if self.zero_residual:  # the same planes, without packing and running a network that adds 0
            n, h, w = y.shape
            residual = torch.zeros((n, 6, -(-h // 4), -(-w // 4)), dtype=self.dtype, device=self.device)
        else:
            packed = kernels.pack(y, u, v, bits=bits, block=4, dtype=self.dtype, backend=self.options.backend)
            residual = self.run_network(packed)
        if self.refiner is not None:
            residual = refine_residual(residual, y, u, v, self.refiner, bits=bits, options=self.refine)
        return kernels.unpack_downscale(residual, y, u, v, bits=bits, backend=self.options.backend)

    def downscale_frames(self, frames: Iterable[Frame]) -> list[Frame]:
        return self._frames(frames, self.downscale_planes)

    def downscale(self, frame: Frame) -> Frame:
        return self._run_batch([frame], self.downscale_planes)[0]


class Resizer:
    """A conventional antialiased resize of YUV 4:2:0 frames to one size (:func:`kernels.resize`;
    ``lanczos``: Lanczos-3, ``bicubic``: Keys a = -0.5) on a device: the encoder side of a 2/3 layer.
    Same ``device``/``batch``/``backend`` options as the engines; no network."""

    def __init__(self, height: int, width: int, *, kernel: str = "lanczos", device: str = "auto",
                 batch: int | None = None, backend: str = "auto") -> None:
        if kernel not in kernels.reference.RESIZE_KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(kernels.reference.RESIZE_KERNELS)}, got {kernel!r}")
        self.height, self.width, self.kernel, self.backend = height, width, kernel, backend
        self.device = resolve_device(device)
        self.batch = batch or default_batch(self.device)

    @classmethod
    def two_thirds_layer(cls, height: int, width: int, *, device: str = "auto") -> "Resizer":
        """The 2/3 layer's reduction of a ``height x width`` picture: Lanczos-3 to
        :func:`~vsr_plugin.baselayer.base_size` at scale 3/2 (each side 2/3, rounded to even)."""
        from .baselayer import RESOLUTIONS, base_size

        scale = RESOLUTIONS["two-thirds"]
        return cls(base_size(height, scale), base_size(width, scale), kernel="lanczos", device=device)

    def __repr__(self) -> str:
        label = {"lanczos": "Lanczos-3", "bicubic": "bicubic"}[self.kernel]
        return f"Resizer({label}, {self.width}x{self.height}, {self.device})"

    @torch.inference_mode()
    def resize_planes(self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y, u, v = (p.to(self.device, non_blocking=True) for p in (y, u, v))
        return kernels.resize(y, u, v, height=self.height, width=self.width, kernel=self.kernel, bits=bits,
                              backend=self.backend)

    def resize_frames(self, frames: Iterable[Frame]) -> list[Frame]:
        frames = list(frames)
        return [out for i in range(0, len(frames), self.batch)
                for out in _Engine._run_batch(frames[i:i + self.batch], self.resize_planes)]
