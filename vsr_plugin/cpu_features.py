"""What this CPU can do that changes the fast path (read once from /proc/cpuinfo), and the CPU
process's allocator setting."""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

# oneDNN runs bf16 convolutions natively with either of these; without them torch emulates bf16
# with fp32 arithmetic plus conversions, which is slower than plain fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes in bf16 natively (AVX-512 BF16 or AMX), so bf16 is the fast path."""
    return bool(NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags))


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


@functools.cache
def retain_freed_memory() -> bool:
    """Keep freed heap memory for reuse instead of handing it back to the OS after every frame.

    glibc serves each allocation above 128 KiB-32 MiB (a feature map, an output plane) with a fresh
    ``mmap`` and unmaps it when freed, so every frame page-faults its whole working set in again; on the
    2-core Xeon that cost x2-fast about 2 ms a frame at 960x540 (docs/results/cpu_allocator_xeon.md).
    Raising the mmap and trim thresholds keeps that memory in the heap, where the next frame
    reuses it; the process then holds on to its peak working set. Process-wide, applied once, by the
    engines on the CPU; ``VSR_MALLOC_TUNING=0`` leaves malloc alone. Returns whether it was applied
    (False off glibc)."""
    if os.environ.get("VSR_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 256 << 20) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 512 << 20) == 1
    ok &= mallopt(_M_TOP_PAD, 16 << 20) == 1
    return bool(ok)
