"""What ``vsr-train`` optimises in each mode: the networks, the per-batch loss, validation, export.

``sr``    — the upsampler alone, on bicubic-degraded images (shipped SR weights).
``joint`` — downsampler + upsampler around a codec proxy, trained together (the encoder side)::

    HR crop --pack(4)--> Downsampler --+ bicubic 2x base--> LR (float) --round (straight-through)-->
        --codec proxy (identity | noise | x264/JPEG round trip, straight-through)-->
        --pack(2)--> Upsampler --+ bilinear base--> SR   vs HR: L1 (luma-weighted)
    + base_weight x (LR - bicubic base)^2 (keeps the base layer watchable on any player)

The networks define ``forward`` only; everything here is the training wrapper around them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
from torch import nn

import kernels
from vsr_plugin.engine import REDUCTION_KERNEL
from vsr_plugin.models import (DOWN_PRESETS, Downsampler, Upsampler, load_downsampler, load_upsampler,
                               save_downsampler, save_upsampler, shipped_models)
from vsr_plugin.yuv import Frame, frame_to_rgb

from vsr_plugin.measure import metrics

from . import rate
from .codec import ProxyConfig, apply_proxy, quantize_st
from .data import SRPair

Planes = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def yuv_l1(pred: Planes, target: Planes, *, bits: int, luma_weight: float) -> torch.Tensor:
    """L1 in normalised units (a full-range step is 2), luma weighted ``luma_weight``, each chroma
    plane ``(1 - luma_weight) / 2``."""
    scale = 2.0 / kernels.max_code(bits)
    losses = [(p - t.to(torch.float32)).abs().mean() * scale for p, t in zip(pred, target)]
    cw = (1.0 - luma_weight) / 2.0
    return luma_weight * losses[0] + cw * (losses[1] + losses[2])


def _psnr_y(test: np.ndarray, ref: np.ndarray, shave: int) -> tuple[float, int]:
    a = metrics.shave(test, shave).astype(np.float64)
    b = metrics.shave(ref, shave).astype(np.float64)
    return float(((a - b) ** 2).sum()), a.size


def _crop_rgb(frame: Frame, size: int = 192) -> np.ndarray:
    rgb = frame_to_rgb(frame)
    h, w = rgb.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return rgb[top:top + size, left:left + size]


def _side_by_side(*frames: Frame) -> np.ndarray:
    views = [_crop_rgb(f) for f in frames]
    hmin = min(v.shape[0] for v in views)
    return np.concatenate([v[:hmin] for v in views], axis=1).transpose(2, 0, 1)


def _upscale(up: Upsampler, lr: Planes, scale: int) -> Planes:
    return kernels.unpack_upscale(up(kernels.pack(*lr, bits=8, block=2)), *lr, bits=8, scale=scale)


def channels_last(x: torch.Tensor, cfg) -> torch.Tensor:
    """``x`` in the memory layout the networks train in (``--channels-last``)."""
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def _to_planes(frame: Frame, device: torch.device) -> Planes:
    return tuple(torch.from_numpy(p)[None].to(device) for p in frame.planes)


def _frame(like: Frame, planes: Planes) -> Frame:
    return like.with_planes(*[p[0].cpu().numpy() for p in planes])


class SRTask:
    """The upsampler alone, on pairs made by the bicubic degradation."""

    name = "sr"

    def __init__(self, cfg, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.grown_from = 0
        if cfg.init and cfg.init != "random":
            net, _ = load_upsampler(cfg.init, scale=cfg.scale)
            arch = cfg.architecture()
            if net.config == dataclasses.replace(arch, blocks=net.config.blocks) and net.config.blocks < arch.blocks:
                self.grown_from = net.config.blocks
                net = Upsampler.deepened(net, arch.blocks)  # the same function, with room to learn more
            elif net.config != arch:
                raise ValueError(f"--init weights are {net.config}, not the {cfg.model!r} architecture")
        else:
            net = Upsampler(cfg.architecture())
        if cfg.reparam:
            net = Upsampler.reparameterised(net)
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = net.to(device, memory_format=layout).train()

    def describe(self) -> str:
        c = self.cfg
        crf = c.train_crf or c.degrade_crf
        seen = "bicubic" if c.degradation == "bicubic" else f"{c.degradation} {c.degrade_preset} CRF {crf}"
        if c.layer != "half":
            seen += f" {c.layer} layer"
        grown = f" (deepened from {self.grown_from} blocks)" if self.grown_from else ""
        return (f"{c.model} x{c.scale} upsampler{' (re-parameterised blocks)' if c.reparam else ''}{grown} "
                f"on {seen} inputs")

    def picture_size(self, lr: Planes) -> tuple[int, int] | None:
        """The picture's size for LR planes of a two-thirds layer (``None``: the upscale is the picture)."""
        if self.cfg.layer == "half":
            return None
        ratio = self.cfg.layer_ratio
        return int(lr[0].shape[1] * ratio), int(lr[0].shape[2] * ratio)

    def restore(self, model: nn.Module, lr: Planes, autocast: AbstractContextManager) -> Planes:
        """The network's output planes (float code values, differentiable) for LR planes; for a
        two-thirds layer reduced to the picture's size as the product restores it (unrounded)."""
        with autocast:
            residual = model(channels_last(kernels.pack(*lr, bits=8, block=2), self.cfg))
        sr = kernels.upscale_planes_float(residual.float(), *lr, bits=8, scale=self.cfg.scale)
        size = self.picture_size(lr)
        return sr if size is None else kernels.resize_planes_float(*sr, height=size[0], width=size[1],
                                                                   kernel=REDUCTION_KERNEL)

    def to_picture(self, planes: Planes, lr: Planes) -> Planes:
        """Upscaled code planes as the picture (the product's rounded reduction for a two-thirds layer)."""
        size = self.picture_size(lr)
        return planes if size is None else kernels.resize(*planes, height=size[0], width=size[1],
                                                          kernel=REDUCTION_KERNEL, bits=8)

    def loss(self, model: nn.Module, lr: Planes, hr: Planes, autocast: AbstractContextManager) -> torch.Tensor:
        return yuv_l1(self.restore(model, lr, autocast), hr, bits=8, luma_weight=self.cfg.luma_weight)

    @torch.no_grad()
    def validate(self, net: Upsampler, pairs: list[SRPair]) -> tuple[list[float], list[np.ndarray]]:
        """Summed squared error and sample count of SR Y (``scale`` px shaved), and sample images
        (``bilinear | network | HR``)."""
        net.eval()
        s = self.cfg.scale
        sse, count, images = 0.0, 0, []
        for pair in pairs:
            lr = _to_planes(pair.lr, self.device)
            sr = _frame(pair.hr, self.to_picture(_upscale(net, lr, s), lr))
            e, n = _psnr_y(sr.y, pair.hr.y, s)
            sse, count = sse + e, count + n
            if len(images) < self.cfg.samples:
                zero = torch.zeros(1, 6 * s * s, *lr[1].shape[1:], device=self.device)
                base = _frame(pair.hr, self.to_picture(kernels.unpack_upscale(zero, *lr, bits=8, scale=s), lr))
                images.append(_side_by_side(base, sr, pair.hr))
        return [sse, float(count)], images

    @staticmethod
    def score(sums: list[float]) -> dict[str, float]:
        return {"val_psnr_y": metrics.psnr_from_mse(sums[0] / max(sums[1], 1.0))}

    def export(self, net: Upsampler, out: Path, training: dict) -> None:
        save_upsampler(out / "best", net.collapsed(), training=training)


class JointModel(nn.Module):
    """Training wrapper: downsampler -> rounding -> codec proxy -> upsampler, end to end.

    ``forward`` takes full-resolution 8-bit planes and returns the restored planes (float code
    values, differentiable), the downsampler's residual (for the base-layer term), the rounded base
    layer before the codec proxy (for the rate term) and which proxy was applied.
    """

    def __init__(self, down: Downsampler, up: Upsampler, proxy: ProxyConfig, generator: torch.Generator,
                 autocast: Callable[[], AbstractContextManager], cfg) -> None:
        super().__init__()
        self.down, self.up = down, up
        self.proxy, self.generator, self.autocast, self.cfg = proxy, generator, autocast, cfg

    def forward(self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[Planes, torch.Tensor, Planes, str]:
        with self.autocast():
            res_down = self.down(channels_last(kernels.pack(y, u, v, bits=8, block=4), self.cfg))
        base = kernels.downscale_planes_float(res_down.float(), y, u, v, bits=8)
        base = tuple(quantize_st(p, 8) for p in base)
        lr, applied = apply_proxy(base, self.proxy, self.generator)
        with self.autocast():
            res_up = self.up(channels_last(kernels.pack_float(*lr, bits=8, block=2), self.cfg))
        sr = kernels.upscale_planes_float(res_up.float(), *lr, bits=8, scale=self.up.scale)
        return sr, res_down.float(), base, applied


class JointTask:
    """Downsampler + upsampler trained together with the codec in the loop."""

    name = "joint"

    def __init__(self, cfg, device: torch.device, generator: torch.Generator,
                 autocast: Callable[[], AbstractContextManager]) -> None:
        self.cfg, self.device = cfg, device
        # the upsampler starts from the shipped SR weights of its preset unless told otherwise
        shipped = f"x{cfg.scale}-{cfg.model}" if f"x{cfg.scale}-{cfg.model}" in shipped_models() else "random"
        init_up = cfg.init or shipped
        if init_up != "random":
            up, _ = load_upsampler(init_up, scale=cfg.scale)
            if up.config != cfg.architecture():
                raise ValueError(f"--init weights are {up.config}, not the {cfg.model!r} architecture")
        else:
            up = Upsampler(cfg.architecture())
        if cfg.init_down:
            down, _ = load_downsampler(cfg.init_down, scale=cfg.scale)
            if cfg.down_model and down.config != DOWN_PRESETS[cfg.down_model]:
                down = Downsampler.grown(down, DOWN_PRESETS[cfg.down_model],
                                         generator=torch.Generator().manual_seed(cfg.seed))
        else:
            down = Downsampler(DOWN_PRESETS[cfg.down_model or "default"])
        lo, hi = cfg.proxy_quality_range
        proxy = ProxyConfig(noise=cfg.proxy_noise, codec=cfg.proxy_codec, codec_fraction=cfg.proxy_codec_fraction,
                            quality=(lo, hi))
        self.init_up = init_up
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = JointModel(down, up, proxy, generator, autocast, cfg).to(device, memory_format=layout).train()
        self.baseline: list[float] | None = None

    def describe(self) -> str:
        p = self.model.proxy
        codec = f"{p.codec} on {p.codec_fraction:.0%} of batches" if p.codec != "none" else "no codec"
        noise = f"noise sigma <= {p.noise:g}" if p.noise > 0 else "no noise"
        down = self.model.down.config
        return (f"joint {down.channels}x{down.blocks} downsampler + upsampler (from {self.init_up}), "
                f"proxy: {codec}, {noise}")

    def loss(self, model: nn.Module, lr: Planes, hr: Planes, autocast: AbstractContextManager) -> torch.Tensor:
        sr, res_down, base_layer, _ = model(*hr)
        restore = yuv_l1(sr, hr, bits=8, luma_weight=self.cfg.luma_weight)
        # (LR - bicubic base) in normalised units is the residual: luma phases 0..3, chroma 4, 5.
        # Squared, not absolute: an L1 term's constant pull would hold the residual at exactly zero
        # (measured: the base layer drifted back to pure bicubic); a quadratic one only reins in
        # large departures, which is what keeps the base layer watchable.
        lw = self.cfg.luma_weight
        sq = res_down.square()
        base = lw * sq[:, :4].mean() + (1 - lw) / 2 * (sq[:, 4].mean() + sq[:, 5].mean())
        loss = restore + self.cfg.base_weight * base
        if self.cfg.rate_weight > 0:
            # matched rate: the learned base layer may cost (by the proxy) up to rate_target times
            # the bits of the conventional bicubic base of the same crop, and pays for any excess
            with torch.no_grad():
                conventional = kernels.downscale_planes_float(torch.zeros_like(res_down), *hr, bits=8)
                conventional = tuple(quantize_st(p, 8) for p in conventional)  # rounded like the learned one
                reference = rate.bits(conventional, self.cfg.rate_step).clamp_min(1.0)
            ratio = rate.bits(base_layer, self.cfg.rate_step) / reference
            loss = loss + self.cfg.rate_weight * torch.relu(ratio - self.cfg.rate_target).mean()
        return loss

    @torch.no_grad()
    def validate(self, model: JointModel, pairs: list[SRPair]) -> tuple[list[float], list[np.ndarray]]:
        """Sums for: restored Y (lossless base layer), the base layer's Y vs the conventional
        bicubic reduction, and the reference "bicubic down + this upsampler"; the rate proxy's bits of
        the learned and the conventional base layers; sample images (``restored | HR``)."""
        model.eval()
        s = self.cfg.scale
        sums = [0.0] * 8
        images = []
        for pair in pairs:
            hr = _to_planes(pair.hr, self.device)
            res = model.down(kernels.pack(*hr, bits=8, block=4))
            lr = kernels.unpack_downscale(res, *hr, bits=8)
            conventional = kernels.unpack_downscale(torch.zeros_like(res), *hr, bits=8)
            restored = _frame(pair.hr, _upscale(model.up, lr, s))
            reference = _frame(pair.hr, _upscale(model.up, conventional, s))
            for k, (test, ref, shave) in enumerate(((restored.y, pair.hr.y, s), (lr[0][0].cpu().numpy(),
                                                    conventional[0][0].cpu().numpy(), 1), (reference.y, pair.hr.y, s))):
                e, n = _psnr_y(test, ref, shave)
                sums[2 * k] += e
                sums[2 * k + 1] += n
            sums[6] += float(rate.bits(lr, self.cfg.rate_step).sum())  # integer planes: rate.bits promotes
            sums[7] += float(rate.bits(conventional, self.cfg.rate_step).sum())
            if len(images) < self.cfg.samples:
                images.append(_side_by_side(restored, pair.hr))
        return sums, images

    @staticmethod
    def score(sums: list[float]) -> dict[str, float]:
        p = [metrics.psnr_from_mse(sums[i] / max(sums[i + 1], 1.0)) for i in (0, 2, 4)]
        return {"val_psnr_y": p[0], "val_base_psnr_y": p[1], "val_bicubic_down_psnr_y": p[2],
                "val_rate_ratio": sums[6] / max(sums[7], 1.0)}

    def export(self, model: JointModel, out: Path, training: dict) -> None:
        save_downsampler(out / "best-down", model.down, training=training)
        save_upsampler(out / "best-up", model.up, training=training)

