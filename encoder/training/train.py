"""``vsr-train``: train the upsampler alone (``--mode sr``), fine-tune it against discriminators
(``--mode gan``, :mod:`encoder.training.gan`) or train the down/upsampler pair (``--mode joint``).

One script for one GPU, the CPU, or many processes under ``torchrun`` (DDP; gloo on CPU, nccl
on CUDA). Everything is configured by :class:`TrainConfig`: CLI flags mirror its fields, and
``--config FILE`` (JSON or TOML) supplies defaults that flags override.

Per step (``sr`` mode; ``joint`` is described in :mod:`encoder.training.tasks`)::

    HR crop --bicubic AA--> LR RGB --8 bit, BT.601 4:2:0--> LR planes --pack--> Upsampler
        --residual + bilinear base--> SR planes   vs  HR planes:  L1 (luma weighted over chroma)

Output folder ``--out``: shippable weights of the best validation epoch with a training summary
(``best.*`` in sr mode; ``best-down.*`` and ``best-up.*`` in joint mode), ``state.*`` (everything
needed to ``--resume``), ``tb/`` (TensorBoard scalars and sample images) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import importlib
import json
import math
import os
import sys
import time
import tomllib
import types
import typing
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

import kernels
from vsr_plugin.atomic import atomic_output, write_bytes_atomic
from vsr_plugin.baselayer import RESOLUTIONS
from vsr_plugin.cpu_features import has_native_bf16
from vsr_plugin.models import DOWN_PRESETS, PRESETS

from .codec_data import LAYERS, DegradeSpec, codec_pairs
from .data import BatchPrefetcher, CropSampler, list_images, load_pairs, split_validation
from .gan import GANTask, check_gan_config
from .state import load_module, load_optimizer, module_tensors, optimizer_tensors
from .tasks import JointTask, SRTask

MODES = ("sr", "gan", "joint")
DEGRADATIONS = ("bicubic", "x264", "x265", "x264+x265")
AMP = ("auto", "none", "bf16", "fp16")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Training run configuration (every field is also a ``--flag``)."""

    mode: str = "sr"                 # sr: upsampler alone on bicubic-degraded images; gan: sr fine-tuned against
                                     # discriminators (needs --init); joint: down + up
    model: str = "default"           # upsampler architecture preset: fast | default
    scale: int = 2
    attention: bool = False          # add the pooled self-attention block to the preset
    reparam: bool = False            # sr: train re-parameterisable blocks (collapsed to the plain preset on export)
    data: str = "../shared/data/train"  # image folder(s), comma-separated
    exclude: str = ""                # file stems kept out of training and validation (comma-separated),
                                     # e.g. the photos a benchmark clip is made of
    degradation: str = "bicubic"     # sr: what the upsampler's input went through: bicubic (the clean SR
                                     # protocol) | x264 | x265 | x264+x265 (the product's base layer, through
                                     # one codec or each codec in turn, same photos: codec_data.py)
    degrade_crf: str = "12,38"       # sr with a codec: CRF range drawn per sequence
    degrade_preset: str = "medium"   # sr with a codec: encoder preset
    train_crf: str = ""              # sr with a codec: train and validate only on the sequences coded at a CRF
                                     # in LOW,HIGH (and the uncoded ones): a model for part of the ladder
    degrade_window: int = 0          # sr with a codec: HR window edge of the coded sequences; 0: 2 x crop
    layer: str = "half"              # sr/gan with a codec: the base layer restored: half (the x2 output is the
                                     # picture) | two-thirds (a Lanczos-3 2/3 reduction, restored as vsr-transcode
                                     # does: the x2 output reduced to the picture by antialiased bicubic)
    cache: str = "runs/cache"        # sr with a codec: where the coded sequences are cached
    val_count: int = 10              # images held out (every k-th file) for validation
    rescales: str = ""               # extra downscaled copies of each image, e.g. "0.8,0.6"
    out: str = "runs/sr"
    crop: int = 128                  # HR crop edge, a multiple of 2 x scale
    batch: int = 16                  # crops per process and micro-step
    accum: int = 1                   # micro-steps per optimizer step
    steps: int = 20000               # optimizer steps in all (sets the LR schedule)
    stop_at: int = 0                 # end this session at this step (resume later); 0 runs to --steps
    max_time: float = 0.0            # end this session after this many seconds of training (validated and
                                     # saved there, resumable); 0: no limit
    epoch_steps: int = 500           # steps between validations/checkpoints
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup: int = 200
    weight_decay: float = 1e-4
    grad_clip: float = 0.0           # max gradient norm; 0 disables
    ema: float = 0.999               # EMA decay of the evaluated/exported weights; 0 disables
    luma_weight: float = 0.8         # share of the loss on Y; U and V share the rest
    amp: str = "auto"                # auto (bf16 on CUDA, and in sr mode on native-BF16 CPUs; else none)
                                     # | none | bf16 | fp16
    patience: int = 0                # stop after this many epochs without improvement; 0 never
    seed: int = 0
    resume: bool = False             # continue from OUT/state.* if present
    init: str = ""                   # start the upsampler from these weights (joint: default = the shipped
                                     # SR weights of --model; "random" for none)
    down_model: str = ""             # joint: downsampler preset: fast | default | large; "" = default, or
                                     # --init-down's own architecture
    init_down: str = ""              # joint: start the downsampler from these weights (grown to --down-model
                                     # when that preset is wider or deeper: Downsampler.grown)
    proxy_noise: float = 2.0         # joint: largest Gaussian noise sigma (8-bit codes); 0 off
    proxy_codec: str = "x264"        # joint: real codec round trips: none | x264 | jpeg
    proxy_codec_fraction: float = 0.5  # joint: share of batches through the real codec
    proxy_quality: str = "20,40"     # joint: x264 CRF / JPEG quantiser range, drawn per batch
    base_weight: float = 1.0         # joint: weight of the squared base layer - bicubic reduction
    down_lr_scale: float = 1.0       # joint: the downsampler's learning rate relative to --lr
    rate_weight: float = 0.0         # joint: weight of the rate term (encoder/training/rate.py): the learned base layer's
                                     # proxy bits over the bicubic base's, above --rate-target; 0 off
    rate_target: float = 1.0         # joint: the share of the bicubic base layer's bits the learned one may use
    rate_step: float = 12.0          # joint: the rate proxy's quantiser step, in 8-bit code values
    gan_weight: float = 5e-3         # gan: weight of the adversarial term (L1 has weight 1)
    fm_weight: float = 1.0           # gan: weight of discriminator feature matching (the perceptual term)
    gan_loss: str = "hinge"          # gan: hinge | relativistic (average, as ESRGAN)
    gan_scales: int = 3              # gan: discriminators, on the output and its 2x, 4x, ... reductions
    gan_channels: int = 32           # gan: discriminator width
    gan_attention_pool: int = 0      # gan: pooled self-attention in each discriminator with this pool; 0 none
    gan_lr_scale: float = 1.0        # gan: the discriminators' learning rate relative to --lr
    samples: int = 3                 # validation images written to TensorBoard per epoch
    threads: int = 0                 # torch CPU threads per process; 0 leaves torch's default
    channels_last: bool = True       # NHWC activations and weights (faster convolutions on CPU and GPU)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.model not in PRESETS:
            raise ValueError(f"model must be one of {', '.join(PRESETS)}, got {self.model!r}")
        if self.crop % (2 * self.scale):
            raise ValueError(f"crop must be a multiple of 2 x scale = {2 * self.scale}, got {self.crop}")
        if self.amp not in AMP:
            raise ValueError(f"amp must be one of {', '.join(AMP)}, got {self.amp!r}")
        if not 0.0 < self.luma_weight <= 1.0:
            raise ValueError(f"luma_weight must be in (0, 1], got {self.luma_weight}")
        if self.rate_weight < 0 or self.rate_target <= 0 or self.rate_step <= 0:
            raise ValueError("rate_weight must be >= 0, rate_target and rate_step > 0")
        if self.down_lr_scale <= 0:
            raise ValueError(f"down_lr_scale must be positive, got {self.down_lr_scale}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.max_time < 0:
            raise ValueError(f"max_time must be >= 0 seconds, got {self.max_time}")
        for name in ("batch", "accum", "steps", "epoch_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.rescale_factors  # validates
        if self.train_crf_range and self.degradation == "bicubic":
            raise ValueError("--train-crf selects coded training pairs; it needs --degradation x264, x265 or x264+x265")
        self.proxy_quality_range
        if self.reparam and self.mode != "sr":  # (gan: the generator stays the plain shipped stack)
            raise ValueError("--reparam applies to sr mode")
        if self.degradation not in DEGRADATIONS:
            raise ValueError(f"degradation must be one of {', '.join(DEGRADATIONS)}, got {self.degradation!r}")
        if self.mode == "gan":
            check_gan_config(self)
        if self.degradation != "bicubic":
            if self.mode == "joint":
                raise ValueError("--degradation applies to sr and gan modes; joint training has its own codec proxy")
            if self.degrade_specs()[0].size < self.crop:
                raise ValueError(f"degrade_window {self.degrade_window} is smaller than the crop {self.crop}")
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got {self.layer!r}")
        if self.layer != "half":
            if self.degradation == "bicubic" or self.scale != 2:
                raise ValueError(f"--layer {self.layer} restores coded base layers with an x2 upsampler; it needs "
                                 "--degradation x264, x265 or x264+x265 and --scale 2")
            if self.crop % (2 * self.layer_ratio.numerator):
                raise ValueError(f"a {self.layer} layer needs a crop that is a multiple of "
                                 f"{2 * self.layer_ratio.numerator}, got {self.crop}")
        if self.mode == "joint" and self.down_model and self.down_model not in DOWN_PRESETS:
            raise ValueError(f"down_model must be one of {', '.join(DOWN_PRESETS)}, got {self.down_model!r}")
        if self.mode == "joint" and self.crop % 8:
            raise ValueError(f"joint training needs a crop that is a multiple of 8, got {self.crop}")

    @property
    def proxy_quality_range(self) -> tuple[int, int]:
        return _int_range("proxy_quality", self.proxy_quality)

    @property
    def train_crf_range(self) -> tuple[int, int] | None:
        return _int_range("train_crf", self.train_crf) if self.train_crf else None

    @property
    def layer_ratio(self) -> Fraction:
        """The picture's side over the training input's: ``scale``, or 3/2 for the two-thirds layer."""
        return Fraction(self.scale) if self.layer == "half" else RESOLUTIONS[self.layer]

    def degrade_specs(self) -> list[DegradeSpec]:
        """The coded-base-layer specs of ``--degradation`` (training pairs): one per codec."""
        crf = _int_range("degrade_crf", self.degrade_crf, check_order=False)  # DegradeSpec says what is wrong
        return [DegradeSpec(codec=codec, preset=self.degrade_preset, crf=crf, layer=self.layer,
                            size=self.degrade_window or 2 * self.crop, rescales=self.rescale_factors, seed=self.seed)
                for codec in self.degradation.split("+")]

    @property
    def rescale_factors(self) -> tuple[float, ...]:
        try:
            factors = tuple(float(f) for f in self.rescales.split(",") if f.strip())
        except ValueError:
            raise ValueError(f"rescales must be comma-separated numbers, got {self.rescales!r}") from None
        if any(not 0.1 <= f < 1.0 for f in factors):
            raise ValueError(f"rescales must lie in [0.1, 1), got {self.rescales!r}")
        return factors

    def architecture(self):
        return dataclasses.replace(PRESETS[self.model], scale=self.scale, attention=self.attention)


# --- configuration from flags and files -----------------------------------------------------

def _int_range(name: str, text: str, *, check_order: bool = True) -> tuple[int, int]:
    """``"LOW,HIGH"`` -> ``(LOW, HIGH)``, or a ValueError naming the setting."""
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{name} must be 'LOW,HIGH', got {text!r}") from None
    if check_order and lo > hi:
        raise ValueError(f"{name} range {text!r} is empty")
    return lo, hi


def _field_type(f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(TrainConfig)
    t = hints[f.name]
    if isinstance(t, types.UnionType):
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def _read_config_file(path: str) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ValueError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"config file {path} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {e}") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"config file {path}: unknown keys {', '.join(unknown)}")
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsr-train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="JSON or TOML file of defaults (flags override it)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        t = _field_type(f)
        if t is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, dest=f.name, type=t, default=None, metavar=t.__name__.upper())
    return parser


def config_from_args(argv: list[str] | None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    values = _read_config_file(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    return TrainConfig(**values)


def training_images(cfg: TrainConfig) -> list[Path]:
    """The images of every ``--data`` folder, less the ``--exclude`` stems (all of which must exist)."""
    files = [f for root in cfg.data.split(",") if root.strip() for f in list_images(root.strip())]
    excluded = {s.strip() for s in cfg.exclude.split(",") if s.strip()}
    missing = excluded - {f.stem for f in files}
    if missing:
        raise ValueError(f"--exclude names images that are not in --data: {', '.join(sorted(missing))}")
    return [f for f in files if f.stem not in excluded]


# --- distributed context --------------------------------------------------------------------

@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup_distributed(device: str) -> Dist:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world > 1:
        # Imported before the process group exists, on purpose: torch._dynamo (which DDP and the
        # optimizers import on first use) keeps a reference to a process group that exists when it
        # is first imported, so destroy_process_group could not end it. Its gloo threads then lived
        # until interpreter exit, where freeing tensors from them needs the GIL, which aborts the
        # process now and then ("terminate called without an active exception", seen on rank 1).
        importlib.import_module("torch._dynamo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
        return Dist(dist.get_rank(), world, dev)
    if device not in ("auto", "cpu", "cuda"):
        dev = torch.device(device)
    else:
        dev = torch.device("cuda" if use_cuda else "cpu")
    return Dist(0, 1, dev)


def _agree(flag: bool, ctx: Dist) -> bool:
    """Rank 0's answer on every rank (clocks differ; all ranks must stop at the same step)."""
    if not ctx.active:
        return flag
    t = torch.tensor([float(flag)], device=ctx.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def _all_sum(values: list[float], ctx: Dist) -> list[float]:
    if not ctx.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


# --- training pieces ------------------------------------------------------------------------

def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * t))


def params_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)


def resolve_amp(amp: str, device: torch.device, mode: str = "sr") -> str:
    """``--amp auto``: bf16 on CUDA, and for the upsampler alone (``sr``) on CPUs that compute bf16
    natively (AVX-512 BF16, AMX), where it trains at the same quality several times faster (README,
    training speed); none elsewhere, where torch would emulate bf16 more slowly than fp32. Joint
    training stays fp32 on the CPU: in bf16 the downsampler hardly moved from its start (base layer
    64 dB from bicubic after 1,000 steps, against 56 dB in fp32, same run otherwise; README)."""
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16"
    return "bf16" if device.type == "cpu" and mode in ("sr", "gan") and has_native_bf16() else "none"


def _autocast(cfg: TrainConfig, device: torch.device):
    """A factory of autocast contexts for the networks (kernels stay in float32), and its name."""
    amp = resolve_amp(cfg.amp, device, cfg.mode)
    if amp == "none":
        return nullcontext, amp
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs CUDA; use --amp bf16 or none on CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda: torch.autocast(device.type, dtype=dtype)), amp


def _planes_to(planes: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(p.to(device, non_blocking=True) for p in planes)


# --- resumable state --------------------------------------------------------------------------

def save_state(out: Path, step: int, net: torch.nn.Module, ema: torch.nn.Module | None,
               opt: torch.optim.Optimizer, gen: torch.Generator, task, extra: dict) -> None:
    """Everything ``--resume`` needs; a task with more to keep (gan: the discriminators and their
    optimizer) adds it through ``state_tensors``."""
    tensors = module_tensors(net, "model")
    if hasattr(task, "state_tensors"):
        more, more_meta = task.state_tensors()
        tensors.update(more)
        extra = {**extra, **more_meta}
    if ema is not None:
        tensors.update(module_tensors(ema, "ema"))
    opt_tensors, param_groups = optimizer_tensors(opt, "opt")
    tensors.update(opt_tensors)
    tensors["rng.data"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": step, "param_groups": param_groups, **extra}
    with atomic_output(out / "state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_bytes_atomic(out / "state.json", json.dumps(meta, indent=2).encode())


def load_state(out: Path, net: torch.nn.Module, ema: torch.nn.Module | None, opt: torch.optim.Optimizer,
               gen: torch.Generator, task=None) -> dict:
    tensors = load_file(str(out / "state.safetensors"))
    meta = json.loads((out / "state.json").read_text())
    if hasattr(task, "load_state_tensors"):
        task.load_state_tensors(tensors, meta)
    load_module(net, tensors, "model")
    if ema is not None:
        load_module(ema, tensors, "ema")
    load_optimizer(opt, tensors, "opt", meta["param_groups"])
    gen.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta


# --- the loop -----------------------------------------------------------------------------------

@dataclass
class TrainResult:
    model: torch.nn.Module    # the evaluated weights (EMA when enabled) at the end
    best_psnr: float
    step: int
    stopped_early: bool
    summary: dict

    @property
    def net(self) -> torch.nn.Module:
        return self.model


def _log(ctx: Dist, msg: str) -> None:
    if ctx.main:
        print(msg, file=sys.stderr, flush=True)


def train(cfg: TrainConfig) -> TrainResult:
    ctx = setup_distributed(cfg.device)
    try:
        return _train(cfg, ctx)
    finally:
        if ctx.active:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, ctx: Dist) -> TrainResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank

    train_files, val_files = split_validation(training_images(cfg), cfg.val_count)
    if ctx.main:  # only once the data is there: a bad --data leaves no empty output folder behind
        out.mkdir(parents=True, exist_ok=True)
    if cfg.degradation == "bicubic":
        pairs = load_pairs(train_files, cfg.scale, rescales=cfg.rescale_factors, min_side=cfg.crop)
        val_pairs = load_pairs(val_files, cfg.scale)
    else:
        # every rank builds the same deterministic shards (atomic writes), then reads them
        pairs, val_pairs = [], []
        for spec in cfg.degrade_specs():
            crf = cfg.train_crf_range
            pairs += codec_pairs(train_files, spec, cfg.cache, crf=crf, quiet=not ctx.main)
            val_spec = dataclasses.replace(spec, rescales=(), seed=spec.seed + 1)
            val_pairs += codec_pairs(val_files, val_spec, cfg.cache, crf=crf, quiet=not ctx.main)[::3]
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)  # the task's draws (joint: codec proxy)
    sampler = CropSampler(pairs, scale=cfg.layer_ratio, crop=cfg.crop)
    autocast, amp = _autocast(cfg, ctx.device)
    if cfg.mode == "joint":
        task = JointTask(cfg, ctx.device, gen, autocast)
    else:
        task = GANTask(cfg, ctx.device) if cfg.mode == "gan" else SRTask(cfg, ctx.device)
    net = task.model
    ema = copy.deepcopy(net).eval() if cfg.ema > 0 else None
    groups: dict[tuple[float, float], list] = {}  # (lr scale, weight decay) -> parameters
    for name, p in net.named_parameters():
        scale = cfg.down_lr_scale if name.startswith("down.") else 1.0
        groups.setdefault((scale, 0.0 if p.ndim <= 1 else cfg.weight_decay), []).append(p)
    opt = torch.optim.AdamW([{"params": ps, "lr_scale": sc, "weight_decay": wd} for (sc, wd), ps in groups.items()],
                            lr=cfg.lr, betas=(0.9, 0.99))

    step, best, stale, history, elapsed = 0, -math.inf, 0, [], 0.0
    if cfg.resume and (out / "state.json").is_file():
        meta = load_state(out, net, ema, opt, gen, task)
        step, best, stale, history = meta["step"], meta["best_psnr"], meta["stale_epochs"], meta["history"]
        elapsed = meta["elapsed_s"]
        _log(ctx, f"resumed from {out / 'state.json'} at step {step}")

    model = DistributedDataParallel(net) if ctx.active else net
    if ctx.active and isinstance(task, GANTask):
        task.distribute()
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=(amp == "fp16"))
    writer = None
    if ctx.main:
        from torch.utils.tensorboard import SummaryWriter  # imported late: heavy and optional at inference
        writer = SummaryWriter(str(out / "tb"), purge_step=step if step else None)
    _log(ctx, f"training {task.describe()}: {sum(p.numel() for p in net.parameters())} parameters, "
              f"{len(sampler.pairs)} training images, {len(val_pairs)} validation, {ctx.world} process(es) on "
              f"{ctx.device}, amp {amp}")

    eval_net = ema if ema is not None else net
    stopped_early = False
    t0, seen, running = time.perf_counter(), 0, 0.0
    session_start = t0
    end = min(cfg.stop_at, cfg.steps) if cfg.stop_at else cfg.steps
    # each rank its own crops; batch k depends on (seed, rank, k) only, so resuming is exact
    with BatchPrefetcher(sampler, batch=cfg.batch, seed=cfg.seed * 1000 + ctx.rank,
                         start=step * cfg.accum) as batches:
        while step < end:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg) * group.get("lr_scale", 1.0)
            opt.zero_grad(set_to_none=True)
            micro_batches = [tuple(_planes_to(p, ctx.device) for p in batches.next()) for _ in range(cfg.accum)]
            if isinstance(task, GANTask):  # the discriminators' step, then the generator's gradients
                loss_sum = task.train_step(model, micro_batches, lr_at(step, cfg) * cfg.gan_lr_scale, autocast)
            else:
                loss_sum = 0.0
                for micro, (lr_planes, hr_planes) in enumerate(micro_batches):
                    sync = nullcontext() if (not ctx.active or micro == cfg.accum - 1) else model.no_sync()
                    with sync:
                        loss = task.loss(model, lr_planes, hr_planes, autocast()) / cfg.accum
                        scaler.scale(loss).backward()
                    loss_sum += float(loss.detach())
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema_update(ema, net, cfg.ema if step >= cfg.warmup else 0.0)
            step += 1
            seen += 1
            running += loss_sum
            if writer is not None and step % 50 == 0:
                writer.add_scalar("train/loss", loss_sum, step)
                writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
                for name, value in getattr(task, "last_terms", {}).items():
                    writer.add_scalar(f"train/{name}", value, step)

            out_of_time = cfg.max_time > 0 and _agree(time.perf_counter() - session_start >= cfg.max_time, ctx)
            if step % cfg.epoch_steps == 0 or step == end or out_of_time:
                epoch_time = time.perf_counter() - t0
                elapsed += epoch_time
                rate = seen / epoch_time
                sums, images = task.validate(eval_net, val_pairs[ctx.rank::ctx.world])
                scores = task.score(_all_sum(sums, ctx))
                net.train()
                val_psnr = scores["val_psnr_y"]
                improved = val_psnr > best
                best, stale = (val_psnr, 0) if improved else (best, stale + 1)
                history.append({"step": step, "train_loss": running / seen, **scores})
                extra = "".join(f"  {k.removeprefix('val_')} {v:.3f}" for k, v in scores.items() if k != "val_psnr_y")
                _log(ctx, f"step {step}/{cfg.steps}  loss {running / seen:.5f}  val PSNR-Y {val_psnr:.3f} dB"
                          f"{' (best)' if improved else ''}{extra}  lr {opt.param_groups[0]['lr']:.2e}"
                          f"  {rate:.2f} steps/s")
                if writer is not None:
                    for k, v in scores.items():
                        writer.add_scalar(f"val/{k.removeprefix('val_')}", v, step)
                    for k, (image, pair) in enumerate(zip(images, val_pairs[ctx.rank::ctx.world])):
                        writer.add_image(f"val/{pair.name}", image, step)
                    writer.flush()
                if ctx.main:
                    summary = _summary(cfg, step, best, history, ctx, elapsed)
                    if improved or not getattr(task, "selects_by_psnr", True):
                        task.export(eval_net, out, summary)
                    save_state(out, step, net, ema, opt, gen, task,
                               {"best_psnr": best, "stale_epochs": stale, "history": history, "elapsed_s": elapsed,
                                "config": dataclasses.asdict(cfg)})
                if ctx.active:
                    dist.barrier()
                t0, seen, running = time.perf_counter(), 0, 0.0
                if cfg.patience and stale >= cfg.patience:
                    stopped_early = True
                    _log(ctx, f"early stop: no validation improvement for {stale} epochs")
                    break
                if out_of_time:
                    _log(ctx, f"time budget of {cfg.max_time:g} s spent at step {step}; continue with --resume")
                    break

    digest = params_digest(eval_net)
    if isinstance(task, GANTask):  # the discriminators must agree across ranks as well
        digest += "/" + params_digest(task.disc_module)
    digests = [digest]
    if ctx.active:
        digests = [None] * ctx.world
        dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise RuntimeError(f"DDP ranks ended with different weights: {digests}")
    summary = _summary(cfg, step, best, history, ctx, elapsed)
    summary["rank_digests"] = digests
    summary["stopped_early"] = stopped_early
    if ctx.main:
        write_bytes_atomic(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        writer.close()
        _log(ctx, f"done at step {step}: best val PSNR-Y {best:.3f} dB; weights in {out}")
    return TrainResult(model=eval_net, best_psnr=best, step=step, stopped_early=stopped_early, summary=summary)


def _summary(cfg: TrainConfig, step: int, best: float, history: list, ctx: Dist, elapsed_s: float) -> dict:
    return {
        "mode": cfg.mode,
        "preset": (f"{cfg.down_model or cfg.init_down or 'default'} down / {cfg.model} up" if cfg.mode == "joint"
                   else cfg.model),
        "data": cfg.data,
        "steps": step,
        "batch": cfg.batch * cfg.accum * ctx.world,
        "crop": cfg.crop,
        "best_val_psnr_y": best,
        "train_time_s": round(elapsed_s, 1),
        "processes": ctx.world,
        "device": str(ctx.device),
        "config": dataclasses.asdict(cfg),
        "history": history[-5:],
    }


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config_from_args(argv)
        train(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"vsr-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vsr-train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
