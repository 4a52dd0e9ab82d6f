"""Trial for #10: a layer between the native encode and the 2x layer. The clip is reduced to a
fraction of its size (2/3 by default: 1280x720 for 1080p, Lanczos-3, antialiased), coded, and
restored by the shipped x2 upsampler followed by an antialiased bicubic reduction to the original
size (720p -> 1440p -> 1080p). A measurement to plan by, not a product path: no surface makes such a
layer.

Each point is measured like a ``vsr-bench rd`` point (fresh ffmpeg encode, packet bytes without SEI,
PSNR-Y, VMAF), and again with VMAF NEG (libvmaf's "no enhancement gain" model, which discounts
sharpening). The native and 2x-layer points are taken from earlier reports of the same clips
(checked by content hash): ``--reuse`` (VMAF; its ``native`` and ``vsr``) and ``--reuse-neg`` (VMAF
NEG; its ``native`` and ``sr``, the same upsampler on bicubic base layers). The report gives BD-rates
of the new layer against both, and of the best-of envelope with and without it against native::

    PYTHONPATH=. .venv/bin/python docs/layer_scale_trial.py out/clips/{urban,nature,urban2}_1080p.mkv \\
        --out docs/results --name layer_scale_trial_x264
"""

from __future__ import annotations

import argparse
import json
import tempfile
from fractions import Fraction
from pathlib import Path

from PIL import Image

from encoder.benchmarks.report import write_report
from vsr_plugin.engine import Upscaler
from vsr_plugin.measure import bdrate
from vsr_plugin.measure.ladder import LadderConfig, LadderRunner, Pipeline
from vsr_plugin.measure.markdown import markdown_table
from vsr_plugin.measure.resample import resize_plane
from vsr_plugin.measure.video import pad_even, read_clip, remove, write_y4m
from vsr_plugin.measure.vmaf import DEFAULT_MODEL
from vsr_plugin.media import EncodeOptions
from vsr_plugin.yuv import Frame

NEG_MODEL = "version=vmaf_v0.6.1neg"
METRICS = ("vmaf", "psnr_y", "vmaf_neg")
LABELS = {"vmaf": "VMAF", "psnr_y": "PSNR-Y", "vmaf_neg": "VMAF NEG"}


def resize(frame: Frame, height: int, width: int, kernel: Image.Resampling) -> Frame:
    """Every plane of a 4:2:0 frame resized (PIL, antialiased when reducing) to ``height x width``."""
    ch, cw = (height + 1) // 2, (width + 1) // 2
    return frame.with_planes(resize_plane(frame.y, height, width, kernel, frame.bits),
                             resize_plane(frame.u, ch, cw, kernel, frame.bits),
                             resize_plane(frame.v, ch, cw, kernel, frame.bits))


def layer_size(height: int, width: int, scale: Fraction) -> tuple[int, int]:
    """The reduced picture's size: ``scale`` of each side, rounded to even (4:2:0 encoders)."""
    return 2 * round(height * scale / 2), 2 * round(width * scale / 2)


def layer_pipeline(model: str, engine_options: dict) -> Pipeline:
    engine = Upscaler(model, **engine_options)

    def up(frames: list[Frame], h: int, w: int) -> list[Frame]:
        return [resize(f, h, w, Image.Resampling.BICUBIC) for f in engine.upscale_frames(frames)]

    return Pipeline("layer", f"Lanczos-3 reduction, encode, {engine!r} x2, bicubic reduction to the original size",
                    up=up)


def reused(report: str, clip, names: tuple[str, ...]) -> dict[str, list[dict]]:
    data = json.loads(Path(report).read_text())
    entry = next((c for c in data["clips"] if c.get("content_sha256") == clip.content_sha256), None)
    if entry is None:
        raise SystemExit(f"{report} did not measure {clip.path} (no clip with its content hash)")
    return {n: [p for p in entry["points"] if p["pipeline"] == n] for n in names}


def curve(points: list[dict], key: str) -> bdrate.Curve:
    return bdrate.Curve.of([p["kbps"] for p in points], [p[key] for p in points])


def bd(anchor: list[dict], test: list[dict], key: str) -> float | None:
    return bdrate.bd_rate(curve(anchor, key), curve(test, key)).value


def measure_clip(path: str, args: argparse.Namespace, pipe: Pipeline, say) -> dict:
    clip = read_clip(path, max_frames=args.frames)
    plain = reused(args.reuse, clip, ("native", "vsr"))
    others = {"vmaf": plain, "psnr_y": plain}
    if args.reuse_neg:
        neg = reused(args.reuse_neg, clip, ("native", "sr"))
        others["vmaf_neg"] = {"native": neg["native"], "vsr": neg["sr"]}
    h, w = layer_size(clip.height, clip.width, args.scale)
    base = [resize(f, h, w, Image.Resampling.LANCZOS) for f in clip.frames]
    points = []
    with tempfile.TemporaryDirectory(prefix="vsr-layer-") as tmp:
        runners = {}
        for key, model in (("vmaf", DEFAULT_MODEL), ("vmaf_neg", NEG_MODEL)):
            (Path(tmp) / key).mkdir()
            runners[key] = LadderRunner(clip, LadderConfig(codec=args.codec, preset="medium", vmaf_model=model,
                                                           ssim=False), Path(tmp) / key)
        base_path = Path(tmp) / "layer.y4m"
        write_y4m(base_path, (pad_even(f) for f in base), clip.rate)
        for crf in args.crf:
            options = EncodeOptions(codec=args.codec, crf=crf, preset="medium")
            p = runners["vmaf"].point(pipe, options, base_path, (h, w))
            neg = runners["vmaf_neg"].point(pipe, options, base_path, (h, w))
            if neg["bytes"] != p["bytes"]:
                raise RuntimeError(f"{clip.name} CRF {crf:g}: the two encodes differ")
            points.append({"crf": crf, "kbps": p["kbps"], "psnr_y": p["psnr_y"], "vmaf": p["vmaf"],
                           "vmaf_neg": neg["vmaf"]})
            say(f"{clip.name} CRF {crf:g}: {p['kbps']:.0f} kbps, PSNR-Y {p['psnr_y']:.2f}, VMAF {p['vmaf']:.2f}, "
                f"NEG {neg['vmaf']:.2f}")
        remove(base_path)
    result = {"name": clip.name, "path": clip.path, "content_sha256": clip.content_sha256,
              "layer_width": w, "layer_height": h, "points": points, "bd": {}}
    for key in others:
        src = key if key != "vmaf_neg" else "vmaf"  # the NEG reports store their score as "vmaf"
        nat = [{"kbps": p["kbps"], key: p[src]} for p in others[key]["native"]]
        half = [{"kbps": p["kbps"], key: p[src]} for p in others[key]["vsr"]]
        result["bd"][key] = {"layer vs native": bd(nat, points, key), "layer vs 2x layer": bd(half, points, key),
                             "best of native and 2x vs native": bd(nat, nat + half, key),
                             "best of all three vs native": bd(nat, nat + half + points, key)}
    return result


def render(report: dict) -> str:
    lines = ["# A layer between native and 2x (docs/layer_scale_trial.py)", "", f"`{report['command']}`", "",
             f"Layer: {report['scale']} of each side, {report.get('codec', 'libx264')} medium at CRF {', '.join(f'{c:g}' for c in report['crf'])}: "
             f"{report['upsampler']}. Native and 2x-layer points from "
             f"`{report['reuse']}` (VMAF, PSNR-Y)"
             + (f" and `{report['reuse_neg']}` (VMAF NEG, its `sr` pipeline). " if report["reuse_neg"] else ". ")
             + "BD-rate (pchip) over each pair's overlap; negative = fewer bits at equal quality. 'best of' is the "
             "upper envelope of the pipelines' points (what an ideal per-rate choice would reach).", ""]
    for c in report["clips"]:
        lines += [f"## {c['name']} (layer {c['layer_width']}x{c['layer_height']})", "",
                  markdown_table(["CRF", "kbps", "PSNR-Y", "VMAF", "VMAF NEG"],
                                 [[f"{p['crf']:g}", f"{p['kbps']:.1f}", f"{p['psnr_y']:.2f}", f"{p['vmaf']:.2f}",
                                   f"{p['vmaf_neg']:.2f}"] for p in c["points"]]), ""]
        metrics = [m for m in METRICS if m in c["bd"]]
        rows = [[k] + [("n/a" if c["bd"][m][k] is None else f"{c['bd'][m][k]:+.1f}%") for m in metrics]
                for k in c["bd"]["vmaf"]]
        lines += [markdown_table(["BD-rate", *(LABELS[m] for m in metrics)], rows), ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="+")
    p.add_argument("--scale", type=Fraction, default=Fraction(2, 3))
    p.add_argument("--codec", default="libx264", choices=["libx264", "libx265"], help="(preset medium)")
    p.add_argument("--crf", type=lambda s: [float(c) for c in s.split(",")], default=[20, 24, 28, 32, 36, 40])
    p.add_argument("--model", default="x2-perceptual-v2", help="the x2 upsampler (default: the default pair's)")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--reuse", default="docs/results/rd_1080p_libx264.json")
    p.add_argument("--reuse-neg", default="docs/results/rd_1080p_libx264_perceptual_v2_neg.json",
                   help="a VMAF NEG report of the same clips ('' for none)")
    p.add_argument("--frames", type=int, default=None, help="the first N frames of each clip (as the reports)")
    p.add_argument("--out", default="docs/results")
    p.add_argument("--name", default="layer_scale_trial_x264")
    args = p.parse_args()
    if not 0.5 < args.scale < 1:
        raise SystemExit(f"--scale must lie between 1/2 and 1, got {args.scale}")
    pipe = layer_pipeline(args.model, {"device": "cpu", "dtype": args.dtype})
    report = {"command": "PYTHONPATH=. .venv/bin/python docs/layer_scale_trial.py " + " ".join(args.clips)
                         + f" --scale {args.scale} --codec {args.codec} --crf {','.join(f'{c:g}' for c in args.crf)} --model {args.model}"
                         f" --dtype {args.dtype} --reuse {args.reuse} --reuse-neg '{args.reuse_neg}'"
                         + (f" --frames {args.frames}" if args.frames else ""),
              "scale": str(args.scale), "codec": args.codec, "crf": [float(c) for c in args.crf], "upsampler": pipe.description,
              "reuse": args.reuse, "reuse_neg": args.reuse_neg, "clips": []}
    for path in args.clips:
        report["clips"].append(measure_clip(path, args, pipe, lambda text: print(text, flush=True)))
    write_report(Path(args.out), args.name, report, render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
