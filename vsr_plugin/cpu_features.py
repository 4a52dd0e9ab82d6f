"""What this CPU can do that changes the fast path (read once from /proc/cpuinfo)."""

from __future__ import annotations

import functools
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
