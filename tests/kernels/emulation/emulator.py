"""Compile the CUDA sources of :mod:`kernels.cupy_ops` with g++ and run its launch plans on the CPU.

How it works::

    cupy_ops.kernel_source("pack.cu")      the exact text CuPy hands to NVRTC
      + cuda_shim.h (first)                CUDA built-ins for the CPU (what it models: see the header)
      + VSR_EMULATE(name) per kernel       exports emu_<name>(grid[3], block[3], void** args)
      -> g++ -shared -ffp-contract=off -fno-fast-math   cached by content hash
    cupy_ops.plan_*(cpu tensors)           the same plans cupy_ops.run launches on a GPU
      -> run(lib, launches, ftz=...)       every thread of the grid, in sequence, via ctypes;
                                           ftz=True models the -ftz=true that CuPy adds to builds

so the kernels' arithmetic, indexing, launch shapes and argument order are all exercised; only
CuPy's module loading, DLPack hand-over and stream handling are not.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from kernels import cupy_ops

SHIM = Path(__file__).resolve().parent / "cuda_shim.h"
CACHE = Path(os.environ.get("VSR_EMULATION_CACHE", Path(tempfile.gettempdir()) / "vsr-kernel-emulation"))
CXXFLAGS = ("-std=c++17", "-O1", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared",
            "-Wall", "-Wextra", "-Werror")
# Kernels are defined through one macro per family: VSR_PACK(name, ...), VSR_UNPACK(...), VSR_UPSCALE(...).
_KERNEL_DEFINITION = re.compile(r"^VSR_[A-Z]+\((\w+),", re.MULTILINE)


def compiler() -> str | None:
    """The C++ compiler ($CXX or g++), or None when there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


@functools.cache
def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout


def kernel_names(source_text: str) -> list[str]:
    return _KERNEL_DEFINITION.findall(source_text)


def build(source_text: str, *, label: str) -> ctypes.CDLL:
    """Compile ``source_text`` (a kernel source as CuPy would get it) into a shared library that
    exports ``emu_<kernel>`` for every kernel it defines. Builds are cached by content hash."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (set CXX or install g++)")
    names = kernel_names(source_text)
    if not names:
        raise ValueError(f"{label}: no kernels found (expected VSR_<FAMILY>(name, ...) definitions)")
    driver = ('#include "cuda_shim.h"\n' + source_text + "\n"
              + "".join(f"VSR_EMULATE({n})\n" for n in names))
    key = hashlib.sha256("\0".join([driver, SHIM.read_text(), cxx, _compiler_version(cxx), *CXXFLAGS]).encode())
    key = key.hexdigest()[:20]
    lib = CACHE / f"{label}-{key}.so"
    if not lib.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            src = Path(tmp) / f"{label}.cpp"
            src.write_text(driver)
            out = Path(tmp) / "lib.so"
            proc = subprocess.run([cxx, *CXXFLAGS, "-I", str(SHIM.parent), str(src), "-o", str(out)],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"emulation build of {label} failed:\n{proc.stderr}")
            os.replace(out, lib)  # atomic: concurrent test runs never see half a library
    return ctypes.CDLL(str(lib))


def _param(arg) -> ctypes._SimpleCData:
    if isinstance(arg, torch.Tensor):
        if arg.device.type != "cpu":
            raise ValueError(f"the emulation runs on CPU tensors, got {arg.device}")
        return ctypes.c_void_p(arg.data_ptr())
    if type(arg) is np.int32:
        return ctypes.c_int32(int(arg))
    if type(arg) is np.int64:
        return ctypes.c_int64(int(arg))
    raise TypeError(f"kernel argument of unexpected type {type(arg).__name__}: {arg!r}")


def ftz_supported(lib: ctypes.CDLL) -> bool:
    """Whether the flush-to-zero mode (CuPy's -ftz=true) can be emulated on this CPU (x86-64)."""
    return bool(lib.emu_set_ftz(0))


def run(lib: ctypes.CDLL, launches: list[cupy_ops.Launch], *, grid=None, block=None, ftz: bool = False) -> None:
    """Execute ``launches`` with ``lib`` like cupy_ops.run does on a GPU. ``grid``/``block``
    override every launch's shape (to show the kernels are correct for any launch shape); ``ftz``
    flushes subnormal float inputs and results to zero, as a ``-ftz=true`` build does."""
    if ftz and not ftz_supported(lib):
        raise RuntimeError("flush-to-zero emulation needs an x86-64 CPU")
    lib.emu_set_ftz(int(ftz))
    for launch in launches:
        params = [_param(a) for a in launch.args]
        argv = (ctypes.c_void_p * len(params))(*[ctypes.cast(ctypes.pointer(p), ctypes.c_void_p) for p in params])
        g = (ctypes.c_uint * 3)(*(grid or launch.grid))
        b = (ctypes.c_uint * 3)(*(block or launch.block))
        getattr(lib, f"emu_{launch.name}")(g, b, argv)


class GuardedEmpty:
    """An ``empty(shape, dtype=, device=)`` for the planners that surrounds every output with guard
    bytes and prefills it with the same pattern, so writes outside an output are detected by
    :meth:`check` and unwritten outputs show up as mismatches."""

    PAD = 256  # bytes each side
    FILL = 0xA5

    def __init__(self) -> None:
        self._buffers: list[tuple[torch.Tensor, int]] = []

    def __call__(self, shape, *, dtype: torch.dtype, device) -> torch.Tensor:
        size = torch.empty((), dtype=dtype).element_size()
        numel = int(np.prod(shape))
        raw = torch.full((2 * self.PAD + numel * size,), self.FILL, dtype=torch.uint8, device=device)
        self._buffers.append((raw, numel * size))
        return raw[self.PAD:self.PAD + numel * size].view(dtype).view(shape)

    def check(self) -> None:
        for raw, nbytes in self._buffers:
            head, tail = raw[:self.PAD], raw[self.PAD + nbytes:]
            if not (bool((head == self.FILL).all()) and bool((tail == self.FILL).all())):
                raise AssertionError("a kernel wrote outside its output tensor")
