"""``vsr-train --mode gan``: adversarial fine-tuning of an L1-trained upsampler (the perceptual mode).

At the low rates where a 2x layer is used, an L1-trained network returns plausible but soft detail.
This fine-tunes it against discriminators, after the GAN line of SR work (SRGAN; A-SRGAN's spectral
normalisation and flexible self-attention; MSG-GAN / pix2pixHD's judging at several scales)::

    LR planes --Upsampler--> SR planes --pack(2)--> D_1 ; avg-pool 2x --> D_2 ; ... (``gan_scales``)
    HR planes --pack(2)-----------------------> the same discriminators

    D step:  hinge or relativistic-average loss on (HR, SR.detach())           -> discriminators
    G step:  L1 + gan_weight x adversarial + fm_weight x feature matching      -> upsampler

* Every discriminator convolution is spectrally normalised (``torch.nn.utils.parametrizations``);
  its power iteration runs once per optimizer step (:func:`refresh_spectral_norm`) and the
  discriminators are then evaluated with fixed normalisation, so an accumulated step of k
  micro-batches equals one step on a k times larger batch (tested).
* The perceptual term is **feature matching**: L1 between the discriminators' intermediate features
  of SR and HR (no pretrained VGG weights can be downloaded here; none ship with the packages).
* The D step completes before the G step (with accumulation: all micro-batches through D, one D
  update, then all through G with the updated D). Under DDP both are synchronised: each is wrapped
  in DistributedDataParallel and only the last micro-batch of each phase all-reduces.
* The discriminators see the packed layout of the planes (luma 2x2 phases, U, V at chroma
  resolution), the network's own view of a frame, so they judge colour as well as luma.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

import kernels
from vsr_plugin.models import save_upsampler
from vsr_plugin.models.layers import PooledSelfAttention

from .state import load_module, load_optimizer, module_tensors, optimizer_tensors
from .tasks import Planes, SRTask, channels_last, yuv_l1

GAN_LOSSES = ("hinge", "relativistic")


def _sn(module: nn.Module) -> nn.Module:
    """Spectral normalisation on every convolution inside ``module`` (itself included)."""
    for name, child in list(module.named_children()):
        setattr(module, name, _sn(child))
    return spectral_norm(module) if isinstance(module, nn.Conv2d) else module


class Discriminator(nn.Module):
    """A patch discriminator for one scale: conv 3x3, two stride-2 4x4 convs, conv 3x3, a logit map.
    Returns the logits and the feature maps after each activation (for feature matching)."""

    def __init__(self, in_channels: int = 6, channels: int = 32, attention_pool: int = 0) -> None:
        super().__init__()
        c = channels
        self.convs = nn.ModuleList([nn.Conv2d(in_channels, c, 3, padding=1), nn.Conv2d(c, 2 * c, 4, 2, 1),
                                    nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.Conv2d(4 * c, 4 * c, 3, padding=1)])
        # flexible self-attention (A-SRGAN) after the first reduction, where maps are still large
        self.attention = PooledSelfAttention(2 * c, attention_pool) if attention_pool else None
        self.logits = nn.Conv2d(4 * c, 1, 3, padding=1)
        _sn(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for k, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), 0.2)
            if k == 1 and self.attention is not None:
                x = self.attention(x)
            features.append(x)
        return self.logits(x), features


class MultiScaleDiscriminator(nn.Module):
    """One :class:`Discriminator` per scale: the packed frame, then its 2x, 4x, ... average-pooled
    reductions (each judged by its own network, pix2pixHD / MSG-style)."""

    def __init__(self, scales: int = 3, channels: int = 32, attention_pool: int = 0) -> None:
        super().__init__()
        self.heads = nn.ModuleList([Discriminator(6, channels, attention_pool) for _ in range(scales)])

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, features = [], []
        for k, head in enumerate(self.heads):
            if k:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
            lg, fs = head(x)
            logits.append(lg)
            features += fs
        return logits, features


@torch.no_grad()
def refresh_spectral_norm(module: nn.Module, iterations: int = 1) -> None:
    """Run the power iteration of every spectrally normalised weight ``iterations`` times (the
    parametrisation iterates only in training mode, on each access of the weight)."""
    was = module.training
    module.train()
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            for _ in range(iterations):
                m.weight  # noqa: B018 - the access runs one power iteration
    module.train(was)


def d_loss(kind: str, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """The discriminators' loss, averaged over scales."""
    parts = []
    for r, f in zip(real, fake):
        if kind == "hinge":
            parts.append(F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean())
        else:  # relativistic average (ESRGAN): real more realistic than the average fake, and vice versa
            parts.append(F.binary_cross_entropy_with_logits(r - f.mean(), torch.ones_like(r))
                         + F.binary_cross_entropy_with_logits(f - r.mean(), torch.zeros_like(f)))
    return sum(parts) / len(parts)


def g_adversarial(kind: str, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """The generator's adversarial loss, averaged over scales (``real`` carries no gradient)."""
    parts = []
    for r, f in zip(real, fake):
        if kind == "hinge":
            parts.append(-f.mean())
        else:
            parts.append(F.binary_cross_entropy_with_logits(f - r.mean(), torch.ones_like(f))
                         + F.binary_cross_entropy_with_logits(r - f.mean(), torch.zeros_like(r)))
    return sum(parts) / len(parts)


def feature_matching(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between the discriminators' features of SR and of HR (HR's carry no gradient)."""
    return sum((f - r.detach()).abs().mean() for r, f in zip(real, fake)) / len(real)


def _packed(planes: Planes) -> torch.Tensor:
    """HR planes (codes, float or integer) in the packed layout, normalised: what the discriminators see."""
    return kernels.pack_float(*(p.to(torch.float32) for p in planes), bits=8, block=2)


class GANTask(SRTask):
    """The upsampler (from ``--init``) against multi-scale spectrally normalised discriminators."""

    name = "gan"
    selects_by_psnr = False  # PSNR falls as detail is synthesised: every epoch's weights are exported (export)

    def __init__(self, cfg, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.disc_module = MultiScaleDiscriminator(cfg.gan_scales, cfg.gan_channels, cfg.gan_attention_pool)
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.disc_module.to(device, memory_format=layout).train()
        self.disc: nn.Module = self.disc_module
        self.d_opt = torch.optim.Adam(self.disc_module.parameters(), lr=cfg.lr * cfg.gan_lr_scale, betas=(0.5, 0.99))
        self.last_terms: dict[str, float] = {}

    def describe(self) -> str:
        c = self.cfg
        attention = f", attention pool {c.gan_attention_pool}" if c.gan_attention_pool else ""
        return (f"{super().describe()}, against {c.gan_scales} spectrally normalised discriminators "
                f"({c.gan_channels} channels{attention}; {c.gan_loss} loss x {c.gan_weight:g}, "
                f"feature matching x {c.fm_weight:g})")

    def export(self, net: nn.Module, out: Path, training: dict) -> None:
        """``best.*`` (the latest weights) and ``step-NNNNNN.*`` for this epoch: validation PSNR does
        not say which epoch looks best, so every one is kept for ``vsr-bench rd`` / ``sr`` to choose."""
        super().export(net, out, training)
        save_upsampler(out / f"step-{training['steps']:06d}", net, training=training)

    def distribute(self) -> None:
        """Wrap the discriminators for DDP (called once the process group exists)."""
        self.disc = DistributedDataParallel(self.disc_module)

    def _judge(self, disc: nn.Module, packed: torch.Tensor, autocast: Callable[[], AbstractContextManager]):
        with autocast():
            logits, features = disc(channels_last(packed, self.cfg))
        return [x.float() for x in logits], [x.float() for x in features]

    def train_step(self, model: nn.Module, micro: list[tuple[Planes, Planes]], d_lr: float,
                   autocast: Callable[[], AbstractContextManager]) -> float:
        """One optimizer step of both players over the micro-batches ``micro``: the D step (applied
        here), then the G step's gradients (accumulated into ``model``; the caller applies them).
        Returns the generator's loss (the sum of the micro-batches' shares)."""
        cfg, k = self.cfg, len(micro)
        ddp = isinstance(self.disc, DistributedDataParallel)
        plain_g = model.module if isinstance(model, DistributedDataParallel) else model
        # D step: the fakes of the current generator, without its gradients
        refresh_spectral_norm(self.disc_module)
        self.disc_module.eval()  # fixed normalisation for every micro-batch of the step
        for group in self.d_opt.param_groups:
            group["lr"] = d_lr
        self.d_opt.zero_grad(set_to_none=True)
        d_total = 0.0
        reals = [_packed(hr) for _, hr in micro]  # what the discriminators see of the originals, both phases
        for i, ((lr, hr), real) in enumerate(zip(micro, reals)):
            with torch.no_grad():
                fake = _packed(self.restore(plain_g, lr, autocast()))
            both = torch.cat([real, fake])  # one forward: DDP sees one call per backward
            sync = self.disc.no_sync() if ddp and i < k - 1 else nullcontext()
            with sync:
                logits, _ = self._judge(self.disc, both, autocast)
                n = hr[0].shape[0]
                loss = d_loss(cfg.gan_loss, [x[:n] for x in logits], [x[n:] for x in logits]) / k
                loss.backward()
            d_total += float(loss.detach())
        self.d_opt.step()
        # G step against the updated discriminators (their weights frozen, called without DDP)
        self.disc_module.requires_grad_(False)
        g_total, terms = 0.0, {"l1": 0.0, "adversarial": 0.0, "feature_matching": 0.0}
        try:
            for i, ((lr, hr), real) in enumerate(zip(micro, reals)):
                sync = model.no_sync() if isinstance(model, DistributedDataParallel) and i < k - 1 else nullcontext()
                with sync:
                    sr = self.restore(model, lr, autocast())
                    with torch.no_grad():
                        real_logits, real_features = self._judge(self.disc_module, real, autocast)
                    fake_logits, fake_features = self._judge(self.disc_module, _packed(sr), autocast)
                    l1 = yuv_l1(sr, hr, bits=8, luma_weight=cfg.luma_weight)
                    adv = g_adversarial(cfg.gan_loss, real_logits, fake_logits)
                    fm = feature_matching(real_features, fake_features)
                    loss = (l1 + cfg.gan_weight * adv + cfg.fm_weight * fm) / k
                    loss.backward()
                g_total += float(loss.detach())
                for name, value in (("l1", l1), ("adversarial", adv), ("feature_matching", fm)):
                    terms[name] += float(value.detach()) / k
        finally:
            self.disc_module.requires_grad_(True)
            self.disc_module.train()
        self.last_terms = {**terms, "discriminator": d_total}
        return g_total

    # --- resumable state: the discriminators and their optimizer ---------------------------------

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        opt_tensors, groups = optimizer_tensors(self.d_opt, "dopt")
        return {**module_tensors(self.disc_module, "disc"), **opt_tensors}, {"disc_param_groups": groups}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if not any(k.startswith("disc.") for k in tensors):
            raise ValueError("the saved state has no discriminator: it was not written by --mode gan")
        load_module(self.disc_module, tensors, "disc")
        load_optimizer(self.d_opt, tensors, "dopt", meta["disc_param_groups"])


def check_gan_config(cfg) -> None:
    """The gan settings' one-line errors (``cfg``: a TrainConfig in gan mode)."""
    for name, value in (("--gan-weight", cfg.gan_weight), ("--fm-weight", cfg.fm_weight)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if cfg.gan_weight == 0:
        raise ValueError("--mode gan needs --gan-weight > 0 (with 0 it is sr mode with extra work)")
    if cfg.gan_loss not in GAN_LOSSES:
        raise ValueError(f"gan_loss must be one of {', '.join(GAN_LOSSES)}, got {cfg.gan_loss!r}")
    if not 1 <= cfg.gan_scales <= 4:
        raise ValueError(f"gan_scales must be 1 to 4, got {cfg.gan_scales}")
    if cfg.gan_channels < 8:
        raise ValueError(f"gan_channels must be >= 8, got {cfg.gan_channels}")
    if cfg.gan_attention_pool < 0:
        raise ValueError(f"gan_attention_pool must be >= 0 (0: no attention), got {cfg.gan_attention_pool}")
    if cfg.gan_lr_scale <= 0:
        raise ValueError(f"gan_lr_scale must be positive, got {cfg.gan_lr_scale}")
    if not cfg.init or cfg.init == "random":
        raise ValueError("--mode gan fine-tunes an L1-trained upsampler: give it with --init "
                         "(a shipped name or weights path)")
    if cfg.amp == "fp16":
        raise ValueError("--mode gan trains in bf16 or fp32: adversarial losses overflow fp16")
    if cfg.patience:
        raise ValueError("--patience stops on validation PSNR, which a gan run lowers on purpose; "
                         "leave it at 0 and choose among the step-* exports")
