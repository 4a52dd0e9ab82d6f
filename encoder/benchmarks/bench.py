"""``vsr-bench``: quality and speed measurements, with the conventional baselines beside them.

Subcommands (each a thin adapter over its module; docs/benchmarks.md has the exact commands):

* ``sr`` — image super-resolution on Set5/Set14/BSD100/Urban100 (below);
* ``rd`` — video rate–distortion over CRF ladders, BD-rate, VMAF (:mod:`encoder.benchmarks.rd`);
* ``make-clip`` — deterministic natural-motion test clips from photos (:mod:`encoder.benchmarks.clips`);
* ``speed`` — fps and memory beside the conventional scalers (:mod:`encoder.benchmarks.speed`).

``vsr-bench sr`` — image super-resolution in the literature protocol::

    HR RGB -> crop to a multiple of the scale -> antialiased bicubic downscale in float RGB
    (Keys a = -0.5), rounded to 8 bits -> BT.601 limited-range YUV 4:2:0 (8 bit)
    -> method -> output Y vs the BT.601 Y (8 bit) of HR, ``scale`` pixels shaved: PSNR-Y, SSIM-Y

Rows: bicubic and lanczos upscaling of the LR planes (PIL's float resampler: bicubic a = -0.5, the
MATLAB ``imresize`` kernel that literature tables use; Lanczos-3) and every shipped model.

Learned pairs (``--pairs``, default: every shipped downsampler with its ``-up`` sibling) replace the
bicubic downscale: HR YUV 4:2:0 -> learned downsampler -> base layer, stored losslessly (8 bit) ->
its upsampler -> Y vs HR Y as above. Their ``base`` column is the PSNR-Y of the base layer against
the protocol's bicubic LR, i.e. how watchable the base layer stays on an ordinary player. Params and
CPU ms/frame for 960x540 -> 1920x1080 (network + pack/unpack) are timed in the same run, beside
torch's bicubic interpolation of the same planes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vsr_plugin.engine import Downscaler, Upscaler
from vsr_plugin.measure import metrics
from vsr_plugin.measure.markdown import markdown_table
from vsr_plugin.measure.resample import resize_plane
from vsr_plugin.media import MediaError
from vsr_plugin.models import DOWNSAMPLER, CheckpointError, paired_upsampler, shipped_models
from vsr_plugin.refine import RefineOptions
from vsr_plugin.yuv import Frame, chroma_shape, frame_to_rgb, rgb_to_frame

from ..training.data import bicubic_downscale_rgb, crop_to_multiple, list_images, load_rgb
from . import clips, rd, speed
from .report import machine, write_report

SETS = ("Set5", "Set14", "BSD100", "Urban100")
BASELINES = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def default_data_root() -> Path:
    return Path(os.environ.get("VSR_DATA", "../shared/data"))


def time_call(fn: Callable[[], object], *, repeat: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def baseline_upscale(frame: Frame, scale: int, resample: Image.Resampling) -> Frame:
    h, w = frame.height * scale, frame.width * scale
    ch, cw = chroma_shape(h, w)
    return frame.with_planes(resize_plane(frame.y, h, w, resample, frame.bits),
                             resize_plane(frame.u, ch, cw, resample, frame.bits),
                             resize_plane(frame.v, ch, cw, resample, frame.bits))


def sr_case(rgb: np.ndarray, scale: int) -> tuple[Frame, Frame]:
    """(LR frame, HR frame) of one benchmark image under the protocol above."""
    hr_rgb = crop_to_multiple(rgb, scale)
    return rgb_to_frame(bicubic_downscale_rgb(hr_rgb, scale)), rgb_to_frame(hr_rgb)


def _speed_frame(bits: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A deterministic 960x540 frame with texture (content does not change the timing)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(16, 236, (1, 540, 960), generator=g, dtype=torch.int32).to(torch.uint8)
    u = torch.randint(16, 241, (1, 270, 480), generator=g, dtype=torch.int32).to(torch.uint8)
    return y, u, u.clone()


def torch_bicubic_ms(scale: int) -> float:
    """torch bicubic interpolation of the three planes of a 960x540 frame (uint8 -> uint8)."""
    planes = _speed_frame()

    def run():
        for p in planes:
            x = p[None].to(torch.float32)
            F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).round_().clamp_(0, 255).to(torch.uint8)

    return time_call(run)


def model_ms(engine: Upscaler) -> float:
    planes = _speed_frame()
    return time_call(lambda: engine.upscale_planes(*planes, bits=8))


def run_sr(args: argparse.Namespace) -> int:
    root = Path(args.data)
    sets = [s for s in args.sets.split(",") if s]
    for name in sets:
        if not (root / name).is_dir():
            raise FileNotFoundError(f"benchmark set {name!r} not found under {root} (set --data or VSR_DATA)")
    models = [m for m in args.models.split(",") if m] if args.models else shipped_models()
    engines = {m: Upscaler(m, scale=args.scale, device=args.device, dtype=args.dtype) for m in models}
    pairs = {}
    refine = RefineOptions(steps=args.refine, base_weight=args.refine_base_weight) if args.refine else None
    for down, up in _pairs(args.pairs):
        name = f"pair {down}" if up == paired_upsampler(down) else f"pair {down}:{up}"
        upscaler = Upscaler(up, scale=args.scale, device=args.device, dtype=args.dtype)
        pairs[name] = (Downscaler(down, scale=args.scale, device=args.device, dtype=args.dtype), upscaler)
        if refine:  # the same pair with its base layer refined for its upsampler (vsr_plugin.refine)
            pairs[f"{name} refined {refine.steps}"] = (
                Downscaler(down, scale=args.scale, device=args.device, dtype=args.dtype, refine=refine,
                           refine_with=up), upscaler)
    methods = list(BASELINES) + models + list(pairs)
    results: dict[str, dict] = {m: {"sets": {}} for m in methods}
    for set_name in sets:
        files = list_images(root / set_name)
        scores = {m: [] for m in methods}
        base_scores = {m: [] for m in pairs}
        down_seconds = dict.fromkeys(pairs, 0.0)
        for i, path in enumerate(files):
            lr, hr = sr_case(load_rgb(path), args.scale)
            outputs = {m: baseline_upscale(lr, args.scale, f) for m, f in BASELINES.items()}
            outputs.update({m: e.upscale(lr) for m, e in engines.items()})
            for m, (down, up) in pairs.items():
                t = time.perf_counter()
                base = down.downscale(hr)
                down_seconds[m] += time.perf_counter() - t
                base_scores[m].append(metrics.psnr(base.y, lr.y))
                outputs[m] = up.upscale(base)
            ref = metrics.shave(hr.y, args.scale)
            for m, out in outputs.items():
                test = metrics.shave(out.y, args.scale)
                scores[m].append((metrics.psnr(test, ref), metrics.ssim(test, ref)))
                if args.save_images:
                    dest = Path(args.save_images) / set_name / Path(m).name
                    dest.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(frame_to_rgb(out)).save(dest / f"{path.stem}.png")
            if args.save_images:
                dest = Path(args.save_images) / set_name / "side_by_side"
                dest.mkdir(parents=True, exist_ok=True)
                shown = ["bicubic", *models, *pairs]
                Image.fromarray(side_by_side([outputs[m] for m in shown] + [hr])).save(dest / f"{path.stem}.png")
            if not args.quiet:
                print(f"\r{set_name}: {i + 1}/{len(files)}", end="", file=sys.stderr, flush=True)
        if not args.quiet:
            print(file=sys.stderr)
        for m in methods:
            results[m]["sets"][set_name] = {
                "psnr_y": float(np.mean([s[0] for s in scores[m]])),
                "ssim_y": float(np.mean([s[1] for s in scores[m]])),
                "images": len(files),
            }
            if m in pairs:
                results[m]["sets"][set_name]["base_psnr_y"] = float(np.mean(base_scores[m]))
                results[m]["sets"][set_name]["downscale_s_per_image"] = down_seconds[m] / len(files)

    speed = {}
    if args.speed:
        speed["torch_bicubic_ms"] = torch_bicubic_ms(args.scale)
        for m, e in engines.items():
            ms = model_ms(e)
            results[m]["cpu_ms_960x540"] = ms
            results[m]["vs_torch_bicubic"] = ms / speed["torch_bicubic_ms"]
    for m, e in engines.items():
        results[m]["params"] = sum(p.numel() for p in e.net.parameters())
        results[m]["weights"] = e.info.name if e.info else m
    for m, (down, up) in pairs.items():
        results[m]["params"] = sum(p.numel() for e in (down, up) for p in e.net.parameters())
        results[m]["weights"] = [e.info.name if e.info else m for e in (down, up)]

    header = ["method", "params"] + [f"{s} PSNR / SSIM" for s in sets]
    if args.speed:
        header += ["ms/frame 960x540→1920x1080", "fps", "× torch bicubic time"]
    rows = []
    if args.speed:
        rows.append(["torch bicubic (a=-0.75, timing reference)", "-"] + ["-"] * len(sets)
                    + [speed["torch_bicubic_ms"], 1000.0 / speed["torch_bicubic_ms"], 1.0])
    for m in methods:
        r = results[m]
        label = {"bicubic": "bicubic (PIL, a=-0.5)", "lanczos": "lanczos3 (PIL)"}.get(m, m)
        row = [label, r.get("params", "-")] + [_cell(r["sets"][s]) for s in sets]
        if args.speed:
            row += ([r["cpu_ms_960x540"], 1000.0 / r["cpu_ms_960x540"], r["vs_torch_bicubic"]] if m in engines
                    else ["-", "-", "-"])
        rows.append(row)
    table = markdown_table(header, rows)
    info = machine()
    md = (f"# vsr-bench sr — x{args.scale}\n\nPSNR-Y (dB) / SSIM-Y, BT.601 Y, {args.scale} px shaved; "
          f"LR = antialiased bicubic (a=-0.5) downscale rounded to 8 bit, fed as YUV 4:2:0.\n"
          + (f"Pairs: learned downscale of HR 4:2:0, 8-bit lossless base layer, paired upsampler; "
             f"[base: PSNR-Y of the base layer vs the bicubic LR].\n" if pairs else "")
          + (f"Refined pairs: the base layer optimised for its upsampler, {refine.steps} Adam steps per image "
             f"(lr {refine.lr:g}, base weight {refine.base_weight:g}; vsr_plugin.refine).\n" if refine else "")
          + (f"Speed: {info['cpu']}, {info['cpu_threads']} threads, fp32, batch 1, network + pack/unpack.\n"
             if args.speed else "")
          + f"\n{table}")
    data = {"protocol": "sr-v1", "scale": args.scale, "sets": sets, "machine": info, "speed": speed,
            "results": results, "command": "vsr-bench " + " ".join(args.argv)}
    json_path, md_path = write_report(args.out, f"sr_x{args.scale}", data, md)
    print(table, end="")
    if not args.quiet:
        print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


CROP = 128  # HR pixels of the side-by-side crops


def detailed_crop(y: np.ndarray, size: int = CROP) -> tuple[int, int, int]:
    """``(top, left, edge)`` of the ``size`` window (stride size/4) with the most luma gradient energy:
    where the methods differ most, not a flat sky."""
    edge = min(size, *y.shape)
    gy, gx = np.abs(np.diff(y.astype(np.float32), axis=0))[:, :-1], np.abs(np.diff(y.astype(np.float32), axis=1))[:-1]
    energy = np.pad(gy + gx, ((0, 1), (0, 1)))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    stride = max(1, edge // 4)
    best, where = -1.0, (0, 0)
    for top in range(0, y.shape[0] - edge + 1, stride):
        for left in range(0, y.shape[1] - edge + 1, stride):
            e = (integral[top + edge, left + edge] - integral[top, left + edge] - integral[top + edge, left]
                 + integral[top, left])
            if e > best:
                best, where = e, (top, left)
    return where[0], where[1], edge


def side_by_side(frames: list[Frame], gap: int = 4) -> np.ndarray:
    """The same detailed crop (chosen on the last frame, the reference) of each frame, left to right,
    as RGB with white gaps."""
    top, left, edge = detailed_crop(frames[-1].y)
    crops = [frame_to_rgb(f)[top:top + edge, left:left + edge] for f in frames]
    white = np.full((edge, gap, 3), 255, np.uint8)
    return np.concatenate([part for c in crops for part in (c, white)][:-1], axis=1)


def _cell(scores: dict) -> str:
    text = f"{scores['psnr_y']:.2f} / {scores['ssim_y']:.4f}"
    if "base_psnr_y" in scores:
        text += f" [base {scores['base_psnr_y']:.2f}]"
    return text


def _pairs(spec: str | None) -> list[tuple[str, str]]:
    """``DOWN[:UP],…`` -> (downsampler, upsampler) pairs; UP defaults to DOWN's ``-up`` sibling.
    None means every shipped downsampler that has one."""
    if spec is None:
        return [(d, u) for d in shipped_models(DOWNSAMPLER) if (u := paired_upsampler(d))]
    pairs = []
    for item in filter(None, spec.split(",")):
        down, _, up = item.partition(":")
        up = up or paired_upsampler(down)
        if not up:
            raise ValueError(f"no upsampler paired with {down!r}: name it as DOWN:UP")
        pairs.append((down, up))
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsr-bench", description="vsr quality and speed benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    sr = sub.add_parser("sr", help="image super-resolution: PSNR-Y/SSIM-Y on Set5/Set14/BSD100/Urban100",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sr.add_argument("--data", default=str(default_data_root()), help="folder holding the benchmark sets (env VSR_DATA)")
    sr.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    sr.add_argument("--models", default="", help="comma-separated model names or weight paths (default: all shipped)")
    sr.add_argument("--pairs", default=None,
                    help="learned pairs DOWN[:UP],… evaluated with a lossless base layer "
                         "(default: every shipped downsampler with its -up upsampler; '' for none)")
    sr.add_argument("--refine", type=int, default=0, metavar="STEPS",
                    help="also evaluate each pair with its base layer refined for its upsampler (encoder-side "
                         "gradient steps per image; vsr_plugin.refine)")
    sr.add_argument("--refine-base-weight", type=float, default=RefineOptions().base_weight,
                    help="with --refine: weight of the squared departure from the bicubic reduction")
    sr.add_argument("--scale", type=int, default=2)
    sr.add_argument("--device", default="cpu")
    sr.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    sr.add_argument("--speed", action=argparse.BooleanOptionalAction, default=True,
                    help="time each model at 960x540 -> 1920x1080")
    sr.add_argument("--out", default="docs/results", help="folder for sr_x{scale}.json and .md")
    sr.add_argument("--save-images", default="",
                    help="also write the upscaled images (RGB PNG) here, and side-by-side crops of each image "
                         "(bicubic | each model | each pair | HR) in SET/side_by_side/")
    sr.add_argument("--quiet", action="store_true")
    sr.set_defaults(func=run_sr)
    rd.add_parser(sub)
    clips.add_parser(sub)
    speed.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointError, MediaError) as e:
        print(f"vsr-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vsr-bench: interrupted; no report written", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as e:  # a tool failed while running (ffmpeg, an encoder, a metric check)
        print(f"vsr-bench: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
