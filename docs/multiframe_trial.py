"""Trial for #10: does the decoder restore a coded base layer better when it also sees the frames
before and after it, or the CRF the layer was coded at? A measurement to plan by, not a product path
(no surface runs such a model).

The arms start from the same trained single-frame upsampler and train the same steps on the same
batches of the codec-aware cache (12-frame x264 sequences of training photos panning at up to 4 HR
pixels a frame, CRF 16-40; docs/val_by_crf.py's settings):

* ``single``: the upsampler as shipped, fine-tuned (so extra training alone is accounted for);
* ``temporal``: the same network whose first convolution also takes the packed frames t-1 and t+1
  (early fusion: 18 input channels instead of 6, the neighbours' weights starting at zero, so it
  starts as the single-frame network; about 4% more work for x2-default);
* ``crf``: the same network whose first convolution also takes one constant plane, the sequence's CRF
  as ``(crf - 28) / 12`` (uncoded sequences as CRF 0), its weights starting at zero (a decoder told
  the base layer's rate, as the file's tags could tell it);
* ``crfbias``: the same condition ``c`` moves every convolution's output instead, ``+ c * shift``
  (one vector per layer, from zero), and ``crffilm`` also scales it, ``* (1 + c * gain)``: for one
  ``c`` both fold into the plain convolutions (weights and biases), so a decoder told the rate would
  run at exactly the cost of today's.

Validation: every frame of every sequence of the validation photos' cache (frames at the ends of a
sequence see themselves as the missing neighbour), PSNR-Y of the restored frame, by CRF band.

    PYTHONPATH=. .venv/bin/python docs/multiframe_trial.py --steps 2000 --out runs/multiframe-trial

writes ``<out>/report.json`` and ``report.md``; ``--arms`` picks among single, temporal and crf (a stopped trial
starts over: it is short).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import kernels
from encoder.training.tasks import yuv_l1
from encoder.benchmarks.report import write_report
from vsr_plugin.measure import metrics
from vsr_plugin.models import load_upsampler
from vsr_plugin.models.layers import conv3x3

BANDS = ((-1, 24), (25, 32), (33, 40))  # CRF bands of the report (-1: the uncoded sequences)
PLANES = ("y", "u", "v")


def load_shards(folder: Path, skip: set[str] = frozenset()) -> dict[str, np.ndarray]:
    """Every sequence of the cache folder's shards (except those named in ``skip``), stacked."""
    parts: dict[str, list[np.ndarray]] = {}
    for shard in sorted(folder.glob("*.npz")):
        if shard.stem in skip:
            continue
        with np.load(shard) as z:
            if not len(z["crf"]):
                continue
            for k in ("hr_y", "hr_u", "hr_v", "lr_y", "lr_u", "lr_v", "crf"):
                parts.setdefault(k, []).append(z[k])
    return {k: np.concatenate(v) for k, v in parts.items()}


class WiderHead(nn.Module):
    """An upsampler whose first convolution takes ``inputs`` channels: the packed frame's 6 at
    ``slot``, the others (neighbouring frames, a condition) with weights starting at zero, so it
    starts as the single-frame network."""

    def __init__(self, single: nn.Module, inputs: int, slot: int) -> None:
        super().__init__()
        head = single.body[0]
        fused = conv3x3(inputs, head.out_channels)
        with torch.no_grad():
            fused.weight.zero_()
            fused.weight[:, slot:slot + 6] = head.weight
            fused.bias.copy_(head.bias)
        self.body = nn.Sequential(fused, *list(single.body)[1:])
        self.tail = single.tail

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(packed))


class Conditioned(nn.Module):
    """The upsampler with every convolution's output moved by a per-sample condition ``c``:
    ``out * (1 + c * gain) + c * shift`` (``film``; else the shift alone), the vectors starting at
    zero, so it starts as the unconditioned network. Set :attr:`condition` (shape ``(N,)``) before
    each call."""

    def __init__(self, single: nn.Module, film: bool) -> None:
        super().__init__()
        self.net = single
        convs = [m for m in list(single.body) + [single.tail] if isinstance(m, nn.Conv2d)]
        self.shift = nn.ParameterList([nn.Parameter(torch.zeros(c.out_channels)) for c in convs])
        self.gain = nn.ParameterList([nn.Parameter(torch.zeros(c.out_channels)) for c in convs]) if film else None
        self.condition: torch.Tensor | None = None
        for k, conv in enumerate(convs):
            conv.register_forward_hook(lambda module, args, out, k=k: self._move(out, k))

    def _move(self, out: torch.Tensor, k: int) -> torch.Tensor:
        c = self.condition.to(out.device).view(-1, 1, 1, 1)
        moved = out + c * self.shift[k].view(1, -1, 1, 1)
        if self.gain is not None:
            moved = moved + c * self.gain[k].view(1, -1, 1, 1) * out
        return moved

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.net(packed)


def _window(data: dict[str, np.ndarray], s: int, t: int, frames: int, crop: tuple[int, int, int]) -> tuple:
    """LR planes of frames t-1, t, t+1 (clamped to the sequence) and HR planes of t, cropped."""
    top, left, size = crop  # in LR luma pixels (even)
    last = data["lr_y"].shape[1] - 1
    lr = []
    for k in (max(t - 1, 0), t, min(t + 1, last)) if frames == 3 else (t,):
        lr.append(tuple(data[f"lr_{p}"][s, k, top // d: (top + size) // d, left // d: (left + size) // d]
                        for p, d in zip(PLANES, (1, 2, 2))))
    hr = tuple(data[f"hr_{p}"][s, t, 2 * top // d: 2 * (top + size) // d, 2 * left // d: 2 * (left + size) // d]
               for p, d in zip(PLANES, (1, 2, 2)))
    return lr, hr


def _augment(plane: np.ndarray, op: int) -> np.ndarray:
    plane = np.rot90(plane, op % 4)
    return np.ascontiguousarray(plane[:, ::-1] if op >= 4 else plane)


def batch(data: dict[str, np.ndarray], rng: np.random.Generator, size: int, crop: int, frames: int):
    """``size`` random crops: (list over frames of LR plane batches, HR plane batches, their CRFs)."""
    n, t_len, h, w = data["lr_y"].shape
    lrs = [[[] for _ in PLANES] for _ in range(frames)]
    hrs = [[] for _ in PLANES]
    crfs = []
    for _ in range(size):
        s, t = int(rng.integers(n)), int(rng.integers(t_len))
        crfs.append(int(data["crf"][s]))
        top, left = (2 * int(rng.integers((e - crop) // 2 + 1)) for e in (h, w))
        op = int(rng.integers(8))
        lr, hr = _window(data, s, t, frames, (top, left, crop))
        for f, planes in enumerate(lr):
            for k, p in enumerate(planes):
                lrs[f][k].append(_augment(p, op))
        for k, p in enumerate(hr):
            hrs[k].append(_augment(p, op))
    stack = lambda ps: torch.from_numpy(np.stack(ps))  # noqa: E731
    return [tuple(stack(ps) for ps in f) for f in lrs], tuple(stack(ps) for ps in hrs), crfs


def crf_values(crfs: list[int]) -> torch.Tensor:
    """The condition of each sample: ``(crf - 28) / 12``, uncoded (-1) as CRF 0."""
    return torch.tensor([(max(c, 0) - 28) / 12 for c in crfs])


def crf_plane(crfs: list[int], like: torch.Tensor) -> torch.Tensor:
    """One constant channel per sample, the condition of :func:`crf_values`."""
    return crf_values(crfs).to(like.dtype).view(-1, 1, 1, 1).expand(-1, 1, *like.shape[2:])


def restore(net: nn.Module, lrs: list, *, train: bool, crfs: list[int] | None = None) -> tuple[torch.Tensor, ...]:
    """The centre frame restored (float code values); ``crfs``: the condition plane of the ``crf`` arm."""
    packed = torch.cat([kernels.pack(*lr, bits=8, block=2) for lr in lrs], dim=1)
    if crfs is not None and isinstance(net, Conditioned):
        net.condition = crf_values(crfs)
    elif crfs is not None:
        packed = torch.cat([packed, crf_plane(crfs, packed)], dim=1)
    packed = packed.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        residual = net(packed)
    centre = lrs[len(lrs) // 2]
    if train:
        return kernels.upscale_planes_float(residual.float(), *centre, bits=8, scale=2)
    return kernels.unpack_upscale(residual.float(), *centre, bits=8, scale=2)


@torch.no_grad()
def validate(net: nn.Module, val: dict[str, np.ndarray], frames: int, conditioned: bool = False) -> dict[str, float]:
    """PSNR-Y (2 px shaved) over every frame of every validation sequence, per CRF band and overall."""
    net.eval()
    n, t_len, h, w = val["lr_y"].shape
    sums: dict[str, list[float]] = {}
    for s in range(n):
        crf = int(val["crf"][s])
        band = next(f"{lo}-{hi}" for lo, hi in BANDS if lo <= crf <= hi)
        for t in range(t_len):
            lr, hr = _window(val, s, t, frames, (0, 0, min(h, w)))
            y = restore(net, [tuple(torch.from_numpy(p)[None] for p in planes) for planes in lr], train=False,
                        crfs=[crf] if conditioned else None)[0]
            diff = metrics.shave(y[0].numpy().astype(np.float64) - hr[0].astype(np.float64), 2)
            for key in (band, "all"):
                acc = sums.setdefault(key, [0.0, 0])
                acc[0] += float((diff ** 2).sum())
                acc[1] += diff.size
    net.train()
    return {k: metrics.psnr_from_mse(se / count) for k, (se, count) in sums.items()}


def run_arm(arm: str, init: str, train: dict, val: dict, args: argparse.Namespace, say) -> dict:
    single, _ = load_upsampler(init)
    net = {"temporal": lambda: WiderHead(single, 18, 6), "crf": lambda: WiderHead(single, 7, 0),
           "crfbias": lambda: Conditioned(single, film=False), "crffilm": lambda: Conditioned(single, film=True),
           "single": lambda: single}[arm]()
    frames, conditioned = (3 if arm == "temporal" else 1), arm.startswith("crf")
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)  # the same batches in every arm
    history = [{"step": 0, **validate(net, val, frames, conditioned)}]
    say(f"{arm}: step 0 {history[-1]}")
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        lr_now = args.lr * min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = max(lr_now, 1e-6)
        lrs, hr, crfs = batch(train, rng, args.batch, args.crop, 3)
        lrs = lrs if frames == 3 else lrs[1:2]
        loss = yuv_l1(restore(net, lrs, train=True, crfs=crfs if conditioned else None), hr, bits=8, luma_weight=0.8)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.val_every == 0 or step == args.steps:
            history.append({"step": step, "seconds": round(time.perf_counter() - t0, 1), **validate(net, val, frames, conditioned)})
            say(f"{arm}: step {step} loss {loss.item():.5f} {history[-1]}")
    return {"arm": arm, "frames": frames, "params": sum(p.numel() for p in net.parameters()), "history": history}


def render(report: dict) -> str:
    keys = ["all"] + [f"{lo}-{hi}" for lo, hi in BANDS]
    lines = ["# Decoder trial (docs/multiframe_trial.py)", "",
             f"`{report['command']}`", "",
             f"Init `{report['init']}`; train cache `{report['train_cache']}` ({report['train_sequences']} sequences), "
             f"validation `{report['val_cache']}` ({report['val_sequences']} sequences of "
             f"{report['val_frames']} frames); {report['steps']} steps, batch {report['batch']}, LR crop "
             f"{report['crop']}, lr {report['lr']}, bf16 autocast. PSNR-Y (dB) of every validation frame, "
             "by the CRF its sequence was coded at (-1: uncoded).", "",
             "| arm | step | " + " | ".join(f"CRF {k}" if k != "all" else "all" for k in keys) + " |",
             "| --- | --- | " + " | ".join("---" for _ in keys) + " |"]
    for arm in report["arms"]:
        for h in (arm["history"][0], arm["history"][-1]):
            lines.append(f"| {arm['arm']} | {h['step']} | " + " | ".join(f"{h[k]:.3f}" for k in keys) + " |")
    ends = {arm["arm"]: arm["history"][-1] for arm in report["arms"]}
    for name, end in ends.items():
        if name != "single" and "single" in ends:
            lines += ["", f"{name} minus single at the end: "
                      + ", ".join(f"{k} {end[k] - ends['single'][k]:+.3f} dB" for k in keys)]
    return "\n".join(lines) + "\n"


def run_trial(args: argparse.Namespace, out: Path, say) -> None:
    val_folder, train_folder = Path(args.val_cache), Path(args.train_cache)
    val = load_shards(val_folder)
    train = load_shards(train_folder, skip={s.stem for s in val_folder.glob("*.npz")})
    say(f"train {train['lr_y'].shape}, val {val['lr_y'].shape}")
    report = {"command": "PYTHONPATH=. .venv/bin/python docs/multiframe_trial.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
              "init": args.init, "train_cache": str(train_folder), "val_cache": str(val_folder),
              "train_sequences": int(train["lr_y"].shape[0]), "val_sequences": int(val["lr_y"].shape[0]),
              "val_frames": int(val["lr_y"].shape[1]), "steps": args.steps, "batch": args.batch,
              "crop": args.crop, "lr": args.lr, "arms": []}
    for arm in args.arms.split(","):
        report["arms"].append(run_arm(arm, args.init, train, val, args, say))
        write_report(out, "report", report, render(report))
    say(render(report))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", default="x2-codec-aware-v2-up")
    p.add_argument("--train-cache", default="runs/cache/x264-b5c385f74c50")
    p.add_argument("--val-cache", default="runs/cache/x264-89d8ae614687")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=64, help="LR crop edge in luma pixels (even)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arms", default="single,temporal")
    p.add_argument("--out", default="runs/multiframe-trial")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "a") as log:
        def say(text: str) -> None:
            print(text, flush=True)
            log.write(text + "\n")
            log.flush()

        run_trial(args, out, say)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
