"""``vsr-transcode --report in.mp4``: what the enhancement layer gains on this very clip.

Runs the full round trip — the pair's 2x down (or, with ``--resolution two-thirds``, the 2/3 layer's
Lanczos-3 reduction), base codec, decode, upsample — and, beside it, a native full-resolution encode
at the same bitrate (the CRF found by a short search on log-rate,
or both encoded at ``--bitrate``) and a conventional pipeline at the base layer's setting (bicubic
2x; for the 2/3 layer, its own base layer restored by Lanczos-3). Quality against the input: PSNR-Y, SSIM-Y and VMAF, measured exactly as ``vsr-bench rd``
measures them (:class:`vsr_plugin.measure.ladder.LadderRunner`).
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .measure.ladder import (DEFAULT_PRESET, RD_CODECS, LadderConfig, LadderRunner, conventional,
                             conventional_two_thirds, native, two_thirds, vsr)
from .measure.markdown import markdown_table
from .measure.video import read_clip, remove
from .media import CRF_RANGE, DEFAULT_CRF
from .resolution import layer_crf_offset

# Calibrated in docs/benchmarks.md: at equal CRF a 2x-reduced encode costs ~0.28x the bits, and
# x264/x265 double the rate about every 6 CRF steps, so equal bitrate is ~9 CRF steps higher at
# full resolution. The search starts there and corrects by 6 steps per doubling.
CRF_OFFSET_FULL = 9.0
CRF_PER_DOUBLING = 6.0
LAYERS = {"half": "vsr (pair: 2x down + upsampler)",
          "two-thirds": "vsr (2/3 layer: Lanczos-3 down + upsampler x2 + reduction)"}
LABELS = {"native": "native (full resolution)", "bicubic": "bicubic 2x down + bicubic up",
          "lanczos23": "Lanczos-3 2/3 down + Lanczos-3 up (the same base layer)"}


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    down_model: str
    up_model: str
    codec: str = "libx264"
    crf: float | None = None
    bitrate: int | None = None
    preset: str | None = None
    tune: str | None = None
    frames: int | None = None
    layer: str = "half"          # or "two-thirds"
    tolerance: float = 0.03      # relative bitrate mismatch accepted for the native encode
    max_probes: int = 6
    engine: dict | None = None

    def __post_init__(self) -> None:
        if self.codec not in RD_CODECS:
            raise ValueError(f"--report needs a lossy codec with rate control ({', '.join(RD_CODECS)}), "
                             f"got {self.codec!r}")
        if self.crf is not None and self.bitrate is not None:
            raise ValueError("give either --crf or --bitrate, not both")
        if self.layer not in LAYERS:
            raise ValueError(f"--report measures a layer ({', '.join(LAYERS)}), got {self.layer!r}")


def _match_native_crf(runner: LadderRunner, base_path: Path, target_kbps: float, start: float, opts: ReportOptions,
                      say) -> tuple[float, list[tuple[float, float]]]:
    """Secant search on log-rate for the native CRF whose bitrate is within ``tolerance`` of the target."""
    lo, hi = CRF_RANGE[opts.codec]
    crf = min(max(start, lo), hi)
    probes: list[tuple[float, float]] = []
    for _ in range(opts.max_probes):
        kbps = runner.kbps(runner.config.options(crf=round(crf, 2)), base_path)
        probes.append((round(crf, 2), kbps))
        say(f"native crf {crf:.2f}: {kbps:.1f} kbps (target {target_kbps:.1f})")
        if abs(kbps / target_kbps - 1) <= opts.tolerance:
            break
        if len(probes) >= 2 and probes[-1][1] != probes[-2][1]:  # secant on (crf, log2 rate)
            (c0, r0), (c1, r1) = probes[-2], probes[-1]
            slope = (c1 - c0) / (math.log2(r1) - math.log2(r0))
            step = slope * (math.log2(target_kbps) - math.log2(r1))
        else:
            step = -CRF_PER_DOUBLING * math.log2(target_kbps / kbps)
        crf = min(max(crf + max(-12.0, min(12.0, step)), lo), hi)
    best = min(probes, key=lambda p: abs(math.log(p[1] / target_kbps)))
    return best[0], probes


def report_verdict(v: dict, n: dict) -> str:
    """One sentence: which side wins at this rate (vsr or the native encode), and by how much."""
    dp, dv = v["psnr_y"] - n["psnr_y"], v["vmaf"] - n["vmaf"]
    if dp > 0 and dv > 0:
        head = "vsr wins on both"
    elif dp <= 0 and dv <= 0:
        head = "the native full-resolution encode wins on both"
    else:
        head = f"mixed: vsr wins on {'VMAF' if dv > 0 else 'PSNR-Y'}, native on {'PSNR-Y' if dv > 0 else 'VMAF'}"
    return (f"Verdict: {head} — vsr {dp:+.2f} dB PSNR-Y, {dv:+.2f} VMAF against the native encode at "
            f"{v['kbps']:.0f} vs {n['kbps']:.0f} kbps.")


def run_report(path: str, opts: ReportOptions, *, quiet: bool = False) -> tuple[str, dict]:
    """Measure the round trip and its competitors on ``path``; returns (Markdown, data)."""

    def say(text: str) -> None:
        if not quiet:
            print(f"report: {text}", file=sys.stderr, flush=True)

    preset = opts.preset or DEFAULT_PRESET[opts.codec]
    opts = ReportOptions(**{**opts.__dict__, "preset": preset})
    clip = read_clip(path, max_frames=opts.frames)
    engine = opts.engine or {}
    if opts.layer == "two-thirds":  # beside it, its own base layer restored conventionally (the same encode)
        layer, plain = two_thirds(opts.up_model, engine), conventional_two_thirds()
    else:
        layer, plain = vsr(opts.down_model, opts.up_model, engine), conventional("bicubic")
    pipes = {"vsr": layer, "native": native(), plain.name: plain}
    # where the native CRF search starts: the CRF steps between the layer and native at equal rate
    offset = CRF_OFFSET_FULL if opts.layer == "half" else layer_crf_offset(opts.codec, "two-thirds")
    base_crf = opts.crf if opts.crf is not None else (None if opts.bitrate else DEFAULT_CRF[opts.codec])
    config = LadderConfig(codec=opts.codec, preset=preset, tune=opts.tune)
    half = config.options(crf=base_crf, bitrate=opts.bitrate)
    points: dict[str, dict] = {}
    probes: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="vsr-report-") as tmp:
        runner = LadderRunner(clip, config, Path(tmp))
        for name in ("vsr", plain.name):
            down = "2/3 down" if opts.layer == "two-thirds" else "2x down"
            say(f"{name}: {down}, {opts.codec} {'crf %g' % base_crf if base_crf is not None else 'abr'}, up")
            base_path, size, _ = runner.prepare(pipes[name])
            points[name] = runner.point(pipes[name], half, base_path, size)
            remove(base_path)
        target = points["vsr"]["kbps"]
        base_path, size, _ = runner.prepare(pipes["native"])
        if opts.bitrate is not None:
            full = config.options(bitrate=opts.bitrate)
        else:
            crf, probes = _match_native_crf(runner, base_path, target, base_crf + offset, opts, say)
            full = config.options(crf=crf)
        points["native"] = runner.point(pipes["native"], full, base_path, size)
        remove(base_path)

    rows = []
    for name, label in (("vsr", LAYERS[opts.layer]), ("native", LABELS["native"]), (plain.name, LABELS[plain.name])):
        p = points[name]
        setting = f"CRF {p['crf']:g}" if p["crf"] is not None else f"target {p['target_bitrate'] / 1000:g} kbps"
        rows.append([label, setting, f"{p['kbps']:.1f}", f"{p['psnr_y']:.2f}", f"{p['ssim_y']:.4f}", f"{p['vmaf']:.2f}"])
    verdict = report_verdict(points["vsr"], points["native"])
    md = (f"vsr-transcode --report {path}: {clip.width}x{clip.height}, {len(clip.frames)} frames, "
          f"{opts.codec} preset {preset}{f', tune {opts.tune}' if opts.tune else ''}\n\n"
          + markdown_table(["pipeline", "setting", "kbps", "PSNR-Y", "SSIM-Y", "VMAF"], rows) + "\n" + verdict + "\n")
    data = {"input": str(path), "codec": opts.codec, "preset": preset, "tune": opts.tune, "frames": len(clip.frames),
            "layer": opts.layer,
            "points": {k: {kk: vv for kk, vv in p.items() if kk != "per_frame"} for k, p in points.items()},
            "native_crf_probes": probes}
    return md, data
