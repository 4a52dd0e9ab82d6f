"""Encoder-side refinement of a base layer through the decoder's upsampler (analysis by synthesis).

A downsampler, learned or bicubic, is one feed-forward guess shared by all content. The encoder
holds what the decoder lacks — the full-resolution frame — and knows the decoder's network, so it
can do better for each frame: a few steps of gradient descent (Adam) on the downsampler's
residual, minimising the error of the picture the upsampler will restore from that base layer::

    r  <-  r - Adam( d/dr  [ MSE(up(base(r)), HR) + base_weight * mean(r^2) ] )
    base(r) = clamp(bicubic 2x reduction of HR + r)              (float while optimising)

The base layer is rounded only at the end: in a Set5 trial a straight-through rounding inside the
loop gained less than the float relaxation (docs/benchmarks.md). The squared ``base_weight`` term
reins in departures from the bicubic reduction (keeps the base layer watchable), as in joint
training.

Measured (docs/benchmarks.md, "Encoder-side refinement"): +1.2 dB PSNR-Y over bicubic down on a
lossless base layer; a codec between the two sides is not modelled, and under x264 (one clip) it
bought PSNR-Y and cost VMAF, so ``vsr-transcode`` does not refine. Each step is one forward and
backward pass of the upsampler on the whole frame, in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import kernels

from .models import Upsampler


@dataclass(frozen=True, kw_only=True)
class RefineOptions:
    """How the base layer is refined.

    Args:
        steps: Adam steps per batch of frames (0: no refinement).
        lr: Adam step size, in normalised residual units (1 = half the code range).
        base_weight: weight of the mean squared residual against the bicubic reduction.
        luma_weight: share of the luma error in the restoration loss (the rest split over U and V).
    """

    steps: int = 100
    lr: float = 2e-3
    base_weight: float = 0.01
    luma_weight: float = 2 / 3

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refinement steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"refinement lr must be > 0, got {self.lr}")
        if self.base_weight < 0:
            raise ValueError(f"refinement base_weight must be >= 0, got {self.base_weight}")
        if not 0 <= self.luma_weight <= 1:
            raise ValueError(f"refinement luma_weight must be in [0, 1], got {self.luma_weight}")


def restoration_loss(residual: torch.Tensor, hr: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                     up: Upsampler, *, bits: int, options: RefineOptions) -> torch.Tensor:
    """The refinement objective for a downscale ``residual`` of the integer planes ``hr`` (float32 scalar)."""
    m = kernels.max_code(bits)
    # the differentiable twins joint training uses (encoder/training/tasks.py, JointModel)
    base = tuple(p.clamp(0, m) for p in kernels.downscale_planes_float(residual, *hr, bits=bits))
    restored = kernels.upscale_planes_float(up(kernels.pack_float(*base, bits=bits, block=2)).float(), *base,
                                            bits=bits, scale=up.scale)
    # an odd-sized frame's base layer restores one row or column larger: compare the frame's own area
    mse = [((r[:, :t.shape[1], :t.shape[2]] - t.to(torch.float32)) / m).square().mean() for r, t in zip(restored, hr)]
    lw = options.luma_weight
    return lw * mse[0] + (1 - lw) / 2 * (mse[1] + mse[2]) + options.base_weight * residual.square().mean()


def refine_residual(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, up: Upsampler, *,
                    bits: int, options: RefineOptions) -> torch.Tensor:
    """A downscale ``residual`` ``(N, 6, ceil(H/4), ceil(W/4))`` refined for the upsampler ``up``.

    ``y, u, v`` are the full-resolution integer planes; ``up`` is used in float32 on their device
    and is not changed. Returns a float32 residual of the same shape for
    :func:`kernels.unpack_downscale`. Works inside ``torch.inference_mode`` (leaves it for the loop).
    """
    with torch.inference_mode(False), torch.enable_grad():
        hr = tuple(p.clone() for p in (y, u, v))  # ordinary tensors: inference tensors cannot be saved for backward
        r = residual.detach().clone().to(torch.float32).requires_grad_(True)
        params = [p.requires_grad for p in up.parameters()]
        up.requires_grad_(False)
        try:
            opt = torch.optim.Adam([r], lr=options.lr)
            for _ in range(options.steps):
                loss = restoration_loss(r, hr, up, bits=bits, options=options)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        finally:
            for p, g in zip(up.parameters(), params):
                p.requires_grad_(g)
    return r.detach()
