"""Compiled CPU kernels for the packed-layout ops (``backend="cpu"``), built on first use.

``cpu_kernels.cpp`` holds :func:`kernels.reference.pack`, the upsampler's unpack
(:func:`kernels.reference.unpack_upscale`) and :func:`kernels.reference.resize` written for a CPU: row by row, vectorisable, split over
OpenMP threads (torch's own: the library binds to the libgomp torch has loaded), with the twins' arithmetic operation for operation (no FMA, IEEE division, round half to even), so its output is bit-identical to the twin's
(tests/kernels/test_cpu_ops.py). It is compiled with the system C++ compiler (``$CXX`` or ``g++``)
for this CPU (``-march=native``) the first time a process needs it, and cached by a hash of the
source, compiler, flags and CPU under ``$VSR_KERNEL_CACHE`` (default ``~/.cache/vsr/cpu-kernels``;
an atomic rename, so concurrent first uses are safe). It is loaded with ctypes, which releases the
GIL while it runs.

No compiler, a failed build, or ``VSR_CPU_KERNELS=0`` in the environment: :func:`load` raises
:class:`BackendUnavailable` saying why, and ``backend="auto"`` runs the torch twin instead.
Validation and output allocation are the CUDA kernels' planners' (:func:`kernels.cupy_ops.plan_pack`,
:func:`~kernels.cupy_ops.plan_unpack_upscale`, :func:`~kernels.cupy_ops.plan_resize`), so all three paths accept and refuse the same inputs with the same messages.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from . import cupy_ops
from .cupy_ops import BackendUnavailable

KERNEL_DIR = Path(__file__).resolve().parent
SOURCE = "cpu_kernels.cpp"
CXXFLAGS = ("-std=c++17", "-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared",
            "-fopenmp", "-Wall", "-Wextra")
BUILD_TIMEOUT_S = 300  # a build takes about 3 s; a hung compiler must not hang the first frame
_KIND = {"f32": 0, "f16": 1, "bf16": 2}
_UPSCALE_ARGS = ([ctypes.c_int] * 2 + [ctypes.c_void_p] * 3 + [ctypes.c_int] * 9 + [ctypes.c_int64] * 7
                 + [ctypes.c_int])
_PACK_ARGS = [ctypes.c_int] * 2 + [ctypes.c_void_p] * 4 + [ctypes.c_int] * 9 + [ctypes.c_int64] * 9 + [ctypes.c_int]
_ROWS_ARGS = ([ctypes.c_int] + [ctypes.c_void_p] * 2 + [ctypes.c_int] * 4 + [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 3
              + [ctypes.c_int])
_COLS_ARGS = [ctypes.c_int] + [ctypes.c_void_p] * 2 + [ctypes.c_int] * 5 + [ctypes.c_void_p] * 2 + [ctypes.c_int] * 2


def cache_dir() -> Path:
    """``$VSR_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/vsr/cpu-kernels``, else ``~/.cache/vsr/cpu-kernels``
    (a per-user folder in the temporary directory where there is no home)."""
    env = os.environ.get("VSR_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = Path.home() / ".cache"
        except (RuntimeError, KeyError):  # no HOME and no passwd entry (some containers)
            return Path(tempfile.gettempdir()) / f"vsr-cpu-kernels-{os.getuid()}"
    return Path(base) / "vsr" / "cpu-kernels"


def _cpu_identity() -> str:
    """What -march=native compiles for: the CPU model and its flags (a cache built on another CPU
    is never loaded here)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    keep = [line for line in info.splitlines() if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(sorted(set(keep)))


def build(source_text: str, *, cache: Path | None = None) -> ctypes.CDLL:
    """Compile ``source_text`` (a version of cpu_kernels.cpp; tests pass mutated ones) into the
    kernel cache and load it. Raises :class:`BackendUnavailable` saying why it cannot."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise BackendUnavailable("no C++ compiler to build them (set CXX or install g++)")
    header = (KERNEL_DIR / cupy_ops.HEADER).read_text()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([source_text, header, cxx, version, *CXXFLAGS, _cpu_identity()]).encode())
    lib_path = (cache or cache_dir()) / f"cpu_kernels-{key.hexdigest()[:20]}.so"
    if not lib_path.exists():
        try:
            lib_path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=lib_path.parent) as tmp:
                src, out = Path(tmp) / SOURCE, Path(tmp) / "lib.so"
                src.write_text(source_text)
                try:
                    proc = subprocess.run([cxx, *CXXFLAGS, "-I", str(KERNEL_DIR), str(src), "-o", str(out)],
                                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
                except subprocess.TimeoutExpired as err:
                    raise BackendUnavailable(f"building {SOURCE} with {cxx} took over {BUILD_TIMEOUT_S} s") from err
                if proc.returncode:
                    lines = proc.stderr.strip().splitlines() or ["(no message)"]
                    first_error = next((ln for ln in lines if "error" in ln), lines[-1])
                    raise BackendUnavailable(f"building {SOURCE} with {cxx} failed: {first_error.strip()}")
                os.replace(out, lib_path)  # atomic: a concurrent process never loads half a library
        except OSError as err:
            raise BackendUnavailable(f"cannot write the kernel cache {lib_path.parent}: {err}") from err
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError as err:  # e.g. a cache on a noexec mount
        raise BackendUnavailable(f"cannot load {lib_path}: {err}") from err
    for name, argtypes in (("vsr_cpu_upscale_plane", _UPSCALE_ARGS), ("vsr_cpu_pack", _PACK_ARGS),
                           ("vsr_cpu_resize_rows", _ROWS_ARGS), ("vsr_cpu_resize_cols", _COLS_ARGS)):
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = ctypes.c_int
    return lib


@functools.cache
def _library() -> tuple[ctypes.CDLL | None, str]:
    """``(library, "")`` or ``(None, why not)``, once per process."""
    if os.environ.get("VSR_CPU_KERNELS", "1") == "0":
        return None, "disabled by VSR_CPU_KERNELS=0"
    try:
        return build((KERNEL_DIR / SOURCE).read_text()), ""
    except BackendUnavailable as err:
        return None, str(err)


def load() -> ctypes.CDLL:
    """The compiled library; raises :class:`BackendUnavailable` saying why it cannot be had."""
    lib, why = _library()
    if lib is None:
        raise BackendUnavailable(f"the compiled CPU kernels are unavailable: {why}")
    return lib


def available() -> bool:
    return _library()[0] is not None


def _threads(threads: int | None) -> int:
    return threads or torch.get_num_threads()


def _cpu_only(t: torch.Tensor) -> None:
    if t.device.type != "cpu":
        raise BackendUnavailable(f"the compiled CPU kernels take CPU tensors, got {t.device}")


def pack(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, block: int = 2,
         dtype: torch.dtype = torch.float32, threads: int | None = None, lib: ctypes.CDLL | None = None
         ) -> torch.Tensor:
    """:func:`kernels.reference.pack` on CPU tensors, bit-identical (a contiguous output)."""
    lib = lib or load()
    out, launches = cupy_ops.plan_pack(y, u, v, bits=bits, block=block, dtype=dtype)
    _cpu_only(y)
    for launch in launches:
        planes, dims, strides = launch.args[:3], launch.args[4:13], launch.args[13:]
        code, kind = launch.name.split("_")[1:]
        rc = lib.vsr_cpu_pack(_KIND[kind], 1 if code == "u8" else 2, *(p.data_ptr() for p in planes), out.data_ptr(),
                              *(int(d) for d in dims), *(int(s) for s in strides), _threads(threads))
        if rc:
            raise RuntimeError(f"vsr_cpu_pack refused its arguments ({launch.name})")
    return out


def unpack_upscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                   bits: int, scale: int, threads: int | None = None, lib: ctypes.CDLL | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`kernels.reference.unpack_upscale` on CPU tensors, bit-identical. ``threads``: worker
    threads (default: torch's intra-op thread count); ``lib``: a library from :func:`build`
    (default: this package's, :func:`load`)."""
    lib = lib or load()
    planes, launches = cupy_ops.plan_unpack_upscale(residual, y, u, v, bits=bits, scale=scale)
    _cpu_only(residual)
    for launch in launches:
        res, src, out, n, _rows, _cols, out_h, out_w, src_h, src_w, s, cell, c0, m, *strides = launch.args
        _, kind, code = launch.name.split("_")
        rc = lib.vsr_cpu_upscale_plane(_KIND[kind], 1 if code == "u8" else 2, res.data_ptr(), src.data_ptr(),
                                       out.data_ptr(), int(n), int(out_h), int(out_w), int(src_h), int(src_w), int(s),
                                       int(cell), int(c0), int(m), *(int(x) for x in strides), _threads(threads))
        if rc:
            raise RuntimeError(f"vsr_cpu_upscale_plane refused its arguments ({launch.name})")
    return planes


def resize(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, height: int, width: int, kernel: str, bits: int,
           threads: int | None = None, lib: ctypes.CDLL | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`kernels.reference.resize` on CPU tensors, bit-identical: the CUDA kernel's plan (two passes a
    plane through an int64 scratch tensor) run by the compiled rows and columns passes."""
    lib = lib or load()
    planes, launches = cupy_ops.plan_resize(y, u, v, height=height, width=width, kernel=kernel, bits=bits)
    _cpu_only(y)
    for launch in launches:
        code = 1 if launch.name.endswith("_u8") else 2
        if launch.name.startswith("resize_rows"):
            src, across, n, h, out_w, taps, index, weight, *strides = launch.args
            rc = lib.vsr_cpu_resize_rows(code, src.data_ptr(), across.data_ptr(), int(n), int(h), int(out_w),
                                         int(taps), index.data_ptr(), weight.data_ptr(), *(int(s) for s in strides),
                                         _threads(threads))
        else:
            across, out, n, h, out_h, out_w, taps, index, weight, m = launch.args
            rc = lib.vsr_cpu_resize_cols(code, across.data_ptr(), out.data_ptr(), int(n), int(h), int(out_h),
                                         int(out_w), int(taps), index.data_ptr(), weight.data_ptr(), int(m),
                                         _threads(threads))
        if rc:
            raise RuntimeError(f"{launch.name} (CPU) refused its arguments")
    return planes
