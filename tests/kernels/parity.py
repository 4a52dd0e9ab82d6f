"""Bit-exact comparison of kernel outputs with the twin, and the parity cases' sizes (shared by the
emulation, compiled-CPU and GPU tests)."""

from __future__ import annotations

import torch

FLOATS = [torch.float32, torch.float16, torch.bfloat16]
SIZES = [(1, 1), (3, 5), (7, 4), (8, 8), (64, 48), (333, 199)]


def frames(h: int, w: int) -> int:
    """Frames per parity case: two (batch indexing exercised) except for the large sizes."""
    return 1 if h * w > 10_000 else 2


def bits_of(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns of ``t`` (so NaNs compare equal to themselves and -0.0 differs from 0.0)."""
    if t.dtype.is_floating_point:
        return t.view({4: torch.int32, 2: torch.int16}[t.element_size()])
    return t


def assert_identical(got, want) -> None:
    """Each tensor of ``got`` (any device) has the dtype, shape and bits of its ``want`` (CPU)."""
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        diff = bits_of(a.cpu()) != bits_of(b)
        if bool(diff.any()):
            first = diff.nonzero()[0].tolist()
            raise AssertionError(f"{int(diff.sum())} of {a.numel()} samples differ, first at {first}")
