"""Building blocks shared by the networks."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn


class ConfigDict:
    """JSON round trip for the frozen architecture dataclasses (checkpoint metadata)."""

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class PooledSelfAttention(nn.Module):
    """Self-attention on a max-pooled feature map ("flexible self attention", FSA).

    From A-SRGAN (Wei et al., 2021, "A-SRGAN: ... Flexible Self-Attention"): SAGAN-style
    attention is costly on large maps, so queries, keys and values are computed on the map
    max-pooled by ``pool`` (ceil mode, so any size works), attention mixes all pooled positions,
    and the result is upsampled bilinearly back and added with a learned gain ``gamma``.
    ``gamma`` starts at 0, so a fresh block is the identity::

        x --maxpool(p)--> xp --1x1--> q, k (C/8), v (C/2)
              softmax(q^T k / sqrt(C/8)) . v --1x1--> o --bilinear up--> x + gamma * o

    Attention is global: with this block a network's output depends on the whole frame, so
    spatial tiling changes results (the engine says so).

    Args:
        channels: feature channels ``C`` (at least 8).
        pool: pooling window and stride ``p``.
    """

    def __init__(self, channels: int, pool: int = 8) -> None:
        super().__init__()
        if channels < 8:
            raise ValueError(f"pooled self-attention needs at least 8 channels, got {channels}")
        if pool < 1:
            raise ValueError(f"attention pool must be >= 1, got {pool}")
        self.pool = pool
        self.key_channels = channels // 8
        self.query = nn.Conv2d(channels, self.key_channels, 1)
        self.key = nn.Conv2d(channels, self.key_channels, 1)
        self.value = nn.Conv2d(channels, channels // 2, 1)
        self.out = nn.Conv2d(channels // 2, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        xp = F.max_pool2d(x, self.pool, ceil_mode=True) if self.pool > 1 else x
        q = self.query(xp).flatten(2).transpose(1, 2)  # (N, P, C/8)
        k = self.key(xp).flatten(2).transpose(1, 2)
        v = self.value(xp).flatten(2).transpose(1, 2)  # (N, P, C/2)
        o = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        o = o.transpose(1, 2).reshape(n, -1, *xp.shape[2:])
        o = self.out(o)
        if o.shape[2:] != x.shape[2:]:
            o = F.interpolate(o, size=(h, w), mode="bilinear", align_corners=False)
        return x + self.gamma.to(x.dtype) * o
