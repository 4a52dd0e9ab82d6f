"""The YUV-native residual super-resolution network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .layers import ConfigDict, PooledSelfAttention, RepConv3x3, conv3x3, make_identity_


@dataclass(frozen=True, kw_only=True)
class UpsamplerConfig(ConfigDict):
    """Architecture of an :class:`Upsampler`.

    Args:
        scale: upscale factor ``s`` (2 is trained and shipped; 3 and 4 construct and run).
        channels: feature width at the packed grid.
        blocks: number of ``channels -> channels`` 3x3 convolutions between head and tail.
        attention: insert a :class:`PooledSelfAttention` block in the middle of the body.
        attention_pool: its pooling window ``p``.
    """

    scale: int = 2
    channels: int = 48
    blocks: int = 5
    attention: bool = False
    attention_pool: int = 8

    def __post_init__(self) -> None:
        if not 2 <= self.scale <= 8:
            raise ValueError(f"scale must be 2..8, got {self.scale}")
        if self.channels < 8:
            raise ValueError(f"channels must be >= 8, got {self.channels}")
        if self.blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {self.blocks}")
        if self.attention_pool < 1:
            raise ValueError(f"attention_pool must be >= 1, got {self.attention_pool}")


PRESETS = {
    "fast": UpsamplerConfig(channels=32, blocks=3),
    "default": UpsamplerConfig(channels=48, blocks=5),
    "quality": UpsamplerConfig(channels=48, blocks=10),  # about 1.9x default's convolution work
}


class Upsampler(nn.Module):
    """Residual YUV 4:2:0 super-resolution at the packed (quarter-area) grid.

    Input is the packed low-resolution frame (``kernels.pack`` with ``block=2``): 6 channels
    (four luma phases, U, V) at ``(ceil(H/2), ceil(W/2))``, normalised to [-1, 1]. Output is the
    residual, ``6 s^2`` channels on the same grid (``4 s^2`` luma, ``s^2`` U, ``s^2`` V), which
    ``kernels.unpack_upscale`` adds to a bilinear base. All convolutions run at the packed grid,
    a quarter of the low-resolution luma area, so each 3x3 kernel sees a 6x6 luma window::

        packed (6) -> conv3x3 -> ReLU -> [conv3x3 -> ReLU] x blocks (+ attention) -> conv3x3 -> residual (6 s^2)

    The tail starts at zero, so an untrained network returns the bilinear base exactly.
    No batch norm: the network is fully convolutional and any frame size works.

    ``reparam=True`` builds the training form: head and body convolutions are
    :class:`RepConv3x3` blocks, and :meth:`collapsed` returns the plain network they equal (what
    is shipped and run), so the inference cost is that of the plain stack.
    """

    def __init__(self, config: UpsamplerConfig, *, reparam: bool = False) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        conv = RepConv3x3 if reparam else conv3x3
        layers: list[nn.Module] = [conv(6, c), nn.ReLU(inplace=True)]
        for i in range(config.blocks):
            if config.attention and i == config.blocks // 2:
                layers.append(PooledSelfAttention(c, config.attention_pool))
            layers += [conv(c, c), nn.ReLU(inplace=True)]
        if config.attention and config.blocks == 0:
            layers.append(PooledSelfAttention(c, config.attention_pool))
        self.body = nn.Sequential(*layers)
        self.tail = conv3x3(c, 6 * config.scale ** 2)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def receptive_radius(self) -> int | None:
        """Cells of context each output cell depends on, or None when attention makes it global."""
        if self.config.attention:
            return None
        return self.config.blocks + 2

    @property
    def reparam(self) -> bool:
        return any(isinstance(m, RepConv3x3) for m in self.body)

    def collapsed(self) -> Upsampler:
        """The plain network equal to this one (itself when it has no re-parameterised blocks)."""
        if not self.reparam:
            return self
        plain = Upsampler(self.config).to(self.tail.weight.device)
        with torch.no_grad():
            for mine, theirs in zip(self.body, plain.body):
                if isinstance(mine, RepConv3x3):
                    fused = mine.fuse()
                    theirs.weight.copy_(fused.weight)
                    theirs.bias.copy_(fused.bias)
                elif list(mine.parameters()):
                    theirs.load_state_dict(mine.state_dict())
            plain.tail.load_state_dict(self.tail.state_dict())
        return plain.train(self.training)

    @classmethod
    def reparameterised(cls, plain: Upsampler) -> Upsampler:
        """The training form of a plain network, equal to it (to continue training with more capacity)."""
        rep = cls(plain.config, reparam=True).to(plain.tail.weight.device)
        with torch.no_grad():
            for k, (theirs, mine) in enumerate(zip(plain.body, rep.body)):
                if isinstance(mine, RepConv3x3):
                    rep.body[k] = RepConv3x3.from_conv(theirs)
                elif list(mine.parameters()):
                    mine.load_state_dict(theirs.state_dict())
            rep.tail.load_state_dict(plain.tail.state_dict())
        return rep.train(plain.training)

    @classmethod
    def deepened(cls, net: Upsampler, blocks: int) -> Upsampler:
        """``net`` with ``blocks`` body blocks in all, equal to it: each added block is an identity
        convolution followed by ReLU, which returns its input exactly because the features it
        receives are already non-negative (they leave a ReLU). Training then starts from what
        ``net`` learned with the capacity of the deeper network (Net2DeeperNet, Chen et al., 2016).
        The added blocks follow the old ones, before the tail."""
        if net.reparam or net.config.attention:
            raise ValueError("only a plain network without attention can be deepened")
        if blocks < net.config.blocks:
            raise ValueError(f"cannot deepen {net.config.blocks} blocks to {blocks}")
        deep = cls(dataclasses.replace(net.config, blocks=blocks)).to(net.tail.weight.device)
        with torch.no_grad():
            for mine, theirs in zip(net.body, deep.body):  # head and the old blocks
                theirs.load_state_dict(mine.state_dict())
            for layer in list(deep.body)[len(net.body):]:
                if isinstance(layer, nn.Conv2d):
                    make_identity_(layer)
            deep.tail.load_state_dict(net.tail.state_dict())
        return deep.train(net.training)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        """``(N, 6, h, w)`` packed input -> ``(N, 6 s^2, h, w)`` residual, same dtype."""
        return self.tail(self.body(packed))
