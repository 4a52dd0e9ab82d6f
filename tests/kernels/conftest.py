"""Fixtures for the kernel tests: the CPU emulation libraries of kernels/*.cu."""

from __future__ import annotations

import pytest

from kernels import cupy_ops
from tests.kernels.emulation import emulator


@pytest.fixture(scope="session")
def emulation_libs():
    """``{source: ctypes library}`` for every kernel source, built by g++ through the shim (cached)."""
    if emulator.compiler() is None:
        pytest.skip("no C++ compiler (g++) for the CPU emulation")
    return {src: emulator.build(cupy_ops.kernel_source(src), label=src.removesuffix(".cu")) for src in cupy_ops.SOURCES}
