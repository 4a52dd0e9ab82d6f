"""The learned 2x downsampler: the upsampler's mirror image, run before the base codec."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import ConfigDict, conv3x3, make_identity_


@dataclass(frozen=True, kw_only=True)
class DownsamplerConfig(ConfigDict):
    """Architecture of a :class:`Downsampler`.

    Args:
        scale: reduction factor (2).
        channels: feature width at the packed grid (a sixteenth of the input area).
        blocks: ``channels -> channels`` 3x3 convolutions between head and tail.
    """

    scale: int = 2
    channels: int = 32
    blocks: int = 3

    def __post_init__(self) -> None:
        if self.scale != 2:
            raise ValueError(f"the downsampler supports scale 2 only, got {self.scale}")
        if self.channels < 8:
            raise ValueError(f"channels must be >= 8, got {self.channels}")
        if self.blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {self.blocks}")


DOWN_PRESETS = {
    "fast": DownsamplerConfig(channels=32, blocks=2),
    "default": DownsamplerConfig(channels=48, blocks=4),
    # about 3.3x default's convolution work, still about 0.7x the default upsampler's per output pixel
    "large": DownsamplerConfig(channels=64, blocks=8),
}


class Downsampler(nn.Module):
    """Residual YUV 4:2:0 2x reduction at the packed grid.

    Input is the full-resolution frame packed with ``block=4`` (``kernels.pack``): 24 channels
    (16 luma phases, 4 U, 4 V) at ``(ceil(H/4), ceil(W/4))``. Output is a 6-channel residual on the
    same grid — the block-2 packed layout of the half-resolution frame — that
    ``kernels.unpack_downscale`` adds to an antialiased bicubic reduction before rounding::

        packed HR (24) -> conv3x3 -> ReLU -> [conv3x3 -> ReLU] x blocks -> conv3x3 -> residual (6)

    The tail starts at zero: an untrained downsampler is the conventional bicubic downscale, and
    the base layer it makes plays on any player.
    """

    def __init__(self, config: DownsamplerConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        layers: list[nn.Module] = [conv3x3(24, c), nn.ReLU(inplace=True)]
        for _ in range(config.blocks):
            layers += [conv3x3(c, c), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.tail = conv3x3(c, 6)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def receptive_radius(self) -> int:
        return self.config.blocks + 2

    @classmethod
    @torch.no_grad()
    def grown(cls, net: Downsampler, config: DownsamplerConfig, *,
              generator: torch.Generator | None = None) -> Downsampler:
        """``net`` as a wider and deeper network that computes the same function (Net2WiderNet and
        Net2DeeperNet, Chen et al., 2016).

        New channels get small random input weights and zero output weights (they start silent
        but receive gradient); new blocks, appended before the tail, start as identity
        convolutions (their input is a ReLU output, so ReLU(identity) changes nothing). Training a
        larger downsampler from a trained smaller one avoids the zero-tail start, from which joint
        bf16 training leaves the base layer at the bicubic reduction (docs/benchmarks.md).
        """
        old = net.config
        if config.scale != old.scale or config.channels < old.channels or config.blocks < old.blocks:
            raise ValueError(f"cannot grow {old} into {config}: width and depth may only increase")
        new = cls(config)
        c = old.channels
        src = [m for m in net.body if isinstance(m, nn.Conv2d)] + [net.tail]
        dst = [m for m in new.body if isinstance(m, nn.Conv2d)]
        # the old convolutions map onto the first ones of the new body and the tail; the rest are new blocks
        pairs = list(zip(src[:-1], dst)) + [(src[-1], new.tail)]
        for k, (a, b) in enumerate(pairs):
            w_new = torch.zeros_like(b.weight)
            if k < len(pairs) - 1:  # a body conv: random incoming weights for the new output channels
                w_new[c:].normal_(0.0, 1e-3, generator=generator)
            w_new[:a.out_channels, :a.in_channels] = a.weight
            b.weight.copy_(w_new)
            b.bias.zero_()
            b.bias[:a.out_channels] = a.bias
        for b in dst[len(src) - 1:]:
            make_identity_(b)
        return new.to(net.tail.weight.device, net.tail.weight.dtype).train(net.training)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        """``(N, 24, h, w)`` packed full-resolution frame -> ``(N, 6, h, w)`` residual."""
        return self.tail(self.body(packed))
