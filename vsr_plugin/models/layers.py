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


@torch.no_grad()
def make_identity_(conv: nn.Conv2d) -> None:
    """Set a square convolution to the identity (centre tap 1 on its own channel, zero bias): after a
    ReLU, conv + ReLU then returns its input exactly, which is how a network is deepened without
    changing what it computes (Net2DeeperNet, Chen et al., 2016)."""
    nn.init.dirac_(conv.weight)
    conv.bias.zero_()


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


class RepConv3x3(nn.Module):
    """A 3x3 convolution trained as parallel linear branches and collapsed into one for inference.

    Structural re-parameterisation (RepVGG, Ding et al. 2021; the expand-squeeze branch of ECBSR,
    Zhang et al. 2021): more parameters and a better-conditioned optimisation while training, the
    cost of one plain 3x3 convolution after :meth:`fuse`::

        x --conv3x3-------------------------+
        x --conv1x1-------------------------+--> sum
        x --conv1x1 (C -> E) --conv3x3------+        (E = expand x C_out)
        x --identity (C_in == C_out only)---+

    Every branch is linear, so their sum is one 3x3 convolution with zero padding. The
    expand-squeeze branch pads its 1x1 output with that conv's bias rather than zeros, which is
    what a 1x1 convolution of the zero-padded input gives, so the collapse is exact at the borders.

    Args:
        c_in, c_out: channels.
        expand: width factor of the expand-squeeze branch.
    """

    def __init__(self, c_in: int, c_out: int, expand: int = 2) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.conv3 = conv3x3(c_in, c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 1)
        self.expand = nn.Conv2d(c_in, expand * c_out, 1)
        self.squeeze = nn.Conv2d(expand * c_out, c_out, 3)
        for m in (self.conv1, self.squeeze):  # start as the plain 3x3 branch alone
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.identity = c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.expand(x)
        bias = self.expand.bias.to(e.dtype).view(1, -1, 1, 1)
        e = F.pad(e - bias, (1, 1, 1, 1)) + bias  # pad with the bias: the value a padded input gives
        out = self.conv3(x) + self.conv1(x) + self.squeeze(e)
        return out + x if self.identity else out

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The single 3x3 convolution equal to this block (float32 weights)."""
        w = self.conv3.weight.float().clone()
        b = self.conv3.bias.float().clone()
        w[:, :, 1, 1] += self.conv1.weight.float()[:, :, 0, 0]
        b += self.conv1.bias.float()
        w1 = self.expand.weight.float()[:, :, 0, 0]           # (E, C_in)
        w3 = self.squeeze.weight.float()                      # (C_out, E, 3, 3)
        w += torch.einsum("oekl,ei->oikl", w3, w1)
        b += self.squeeze.bias.float() + torch.einsum("oekl,e->o", w3, self.expand.bias.float())
        if self.identity:
            w[torch.arange(self.c_out), torch.arange(self.c_in), 1, 1] += 1.0
        conv = conv3x3(self.c_in, self.c_out).to(w.device)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        return conv

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, expand: int = 2) -> "RepConv3x3":
        """A block equal to ``conv`` (a trained plain 3x3 layer), ready to train further."""
        block = cls(conv.in_channels, conv.out_channels, expand)
        with torch.no_grad():
            block.conv3.weight.copy_(conv.weight)
            block.conv3.bias.copy_(conv.bias)
            if block.identity:
                block.conv3.weight[torch.arange(block.c_out), torch.arange(block.c_in), 1, 1] -= 1.0
        return block.to(conv.weight.device)
