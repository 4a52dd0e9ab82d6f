"""The CUDA sources compile cleanly for the GPUs we target, and their PTX keeps the exactness rules.

* ``nvcc -c`` of every ``kernels/*.cu`` for sm_80 and sm_90, warnings as errors (device and host).
* The PTX of the text CuPy compiles (``cupy_ops.kernel_source``, with ``cupy_ops.COMPILE_OPTIONS``
  and the ``-ftz=true`` CuPy appends) holds no fused multiply-add and no approximate float
  instruction: the float operations left are the correctly rounded ones the twins specify (div.rn,
  mul.rn, add.rn, cvt.rni). Flush-to-zero is allowed: the CPU emulation shows it changes nothing.
* The same text through NVRTC (what ``cupy.RawModule`` uses), when libnvrtc can be found.

None of this needs a GPU; nvcc is on every CI machine (the tests skip, saying so, where it is not).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernels import cupy_ops

ARCHS = (80, 90)
CUPY_OPTIONS = cupy_ops.COMPILE_OPTIONS + cupy_ops.CUPY_APPENDED_OPTIONS  # what NVRTC gets from cupy.RawModule
# fused multiply-adds (any float type), approximate division/transcendentals
FORBIDDEN_PTX = re.compile(r"^\s*(?:@!?%p\d+\s+)?((?:fma|mad)\.\S*f(?:16|32|64)\S*|\S+\.approx\S*|div\.full\S*)",
                           re.MULTILINE)


def find_nvcc() -> str | None:
    for candidate in (shutil.which("nvcc"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"),
                      "/usr/local/cuda/bin/nvcc"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin")


def forbidden_ptx(ptx: str) -> list[str]:
    """The PTX instructions that would break bit-exactness with the torch twins."""
    return sorted(set(FORBIDDEN_PTX.findall(ptx)))


def nvcc_ptx(text: str, arch: int, tmp_path: Path, options=CUPY_OPTIONS) -> str:
    src = tmp_path / f"kernel_{arch}.cu"
    src.write_text(text)
    out = tmp_path / f"kernel_{arch}.ptx"
    proc = subprocess.run([NVCC, "-ptx", f"-arch=compute_{arch}", *options, "-Werror", "all-warnings",
                           str(src), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


def test_every_cu_file_is_a_kernel_source():
    on_disk = sorted(p.name for p in cupy_ops.KERNEL_DIR.glob("*.cu"))
    assert on_disk == sorted(cupy_ops.SOURCES)


@needs_nvcc
@pytest.mark.parametrize("source", sorted(p.name for p in cupy_ops.KERNEL_DIR.glob("*.cu")))
def test_nvcc_compiles_for_sm80_and_sm90_without_warnings(source, tmp_path):
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    proc = subprocess.run([NVCC, "-c", *gencode, *CUPY_OPTIONS, "-I", str(cupy_ops.KERNEL_DIR),
                           "-Werror", "all-warnings", "-Xcompiler=-Wall,-Wextra,-Werror",
                           str(cupy_ops.KERNEL_DIR / source), "-o", str(tmp_path / "kernel.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"nvcc failed on {source}:\n{proc.stderr}"
    assert "warning" not in proc.stderr.lower(), proc.stderr
    assert (tmp_path / "kernel.o").stat().st_size > 0


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", cupy_ops.SOURCES)
def test_ptx_keeps_ieee_float_operations(source, arch, tmp_path):
    ptx = nvcc_ptx(cupy_ops.kernel_source(source), arch, tmp_path)
    assert forbidden_ptx(ptx) == []
    if source == "resize.cu":  # integer arithmetic only: 2 passes x 2 code types, no float operation at all
        assert ptx.count(".entry") == 4
        assert not re.search(r"\.f32\b", ptx) and ".local" not in ptx
        return
    assert ptx.count(".entry") == 6 * (2 if source == "pack.cu" else 1)
    assert re.search(r"\bdiv\.rn(\.ftz)?\.f32\b", ptx)  # normalise, bilinear base: one correctly rounded division
    assert re.search(r"\bcvt\.rni(\.ftz)?\.f32\.f32\b", ptx)  # rintf: round half to even
    # no local memory: downscale's unrolled bicubic window lives in registers (a performance property
    # the emulation cannot see)
    assert ".local" not in ptx
    if source == "downscale.cu":
        assert re.search(r"\bcvt\.rn\.f32\.s32\b", ptx)  # float32(S): one round-to-nearest conversion


@needs_nvcc
def test_ptx_check_catches_a_fused_multiply_add(tmp_path):
    text = cupy_ops.kernel_source("upscale.cu")
    assert forbidden_ptx(nvcc_ptx(text.replace("__fadd_rn(__fmul_rn(r, half), base)", "__fmaf_rn(r, half, base)"),
                                  80, tmp_path))
    # a plain `r * half + base` is contracted unless --fmad=false, which COMPILE_OPTIONS passes
    plain = text.replace("__fadd_rn(__fmul_rn(r, half), base)", "r * half + base")
    contracting = [o for o in CUPY_OPTIONS if o != "--fmad=false"] + ["--fmad=true"]
    assert any(f.startswith("fma.rn") for f in forbidden_ptx(nvcc_ptx(plain, 80, tmp_path, contracting)))
    assert forbidden_ptx(nvcc_ptx(plain, 80, tmp_path)) == []


# ---- NVRTC, as cupy.RawModule compiles ---------------------------------------------------------

def find_nvrtc() -> str | None:
    found = ctypes.util.find_library("nvrtc")
    if found:
        return found
    roots = [os.environ.get("CUDA_HOME", "/usr/local/cuda")] + [os.path.join(p, "nvidia") for p in sys.path]
    for pattern in ("lib64/libnvrtc.so*", "lib/libnvrtc.so*", "*/lib/libnvrtc.so*"):
        for root in roots:
            hits = sorted(h for h in glob.glob(os.path.join(root, pattern)) if "builtins" not in h)
            if hits:
                return hits[0]
    return None


NVRTC = find_nvrtc()


def nvrtc_ptx(text: str, name: str, options: tuple[str, ...]) -> tuple[int, str, str]:
    lib = ctypes.CDLL(NVRTC)
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), text.encode(), name.encode(), 0, None, None) == 0
    try:
        opts = [o.encode() for o in options]
        status = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        ptx = ""
        if status == 0:
            lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetPTX(prog, buf)
            ptx = buf.value.decode()
        return status, log.value.decode(errors="replace"), ptx
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


@pytest.mark.skipif(NVRTC is None, reason="libnvrtc not found (CUDA toolkit or the nvidia-cuda-nvrtc wheel)")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", cupy_ops.SOURCES)
def test_nvrtc_compiles_without_headers_or_warnings(source, arch):
    status, log, ptx = nvrtc_ptx(cupy_ops.kernel_source(source), source, CUPY_OPTIONS + (f"-arch=compute_{arch}",))
    assert status == 0, log
    assert "warning" not in log.lower(), log
    assert forbidden_ptx(ptx) == []
    for name in re.findall(r"^VSR_[A-Z]+\((\w+),", cupy_ops.kernel_source(source), re.MULTILINE):
        assert f".entry {name}(" in ptx  # extern "C": the names cupy_ops asks get_function for
    assert ".local" not in ptx  # VSR_UNROLL is honoured by NVRTC too
