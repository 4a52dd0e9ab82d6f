"""``vsr-bench rd``: rate–distortion of the vsr pipelines against the conventional ones.

For every clip and pipeline, a CRF ladder of real encodes::

    original (decoded, 4:2:0) ──┬─ native ─────────────────────────── encode ─ decode ───────────────┐
                                ├─ bicubic / lanczos: 2x down (PIL) ─ encode ─ decode ─ 2x up (PIL) ─┤
                                ├─ sr:  bicubic 2x down ───────────── encode ─ decode ─ vsr upsampler ┤
                                ├─ vsr: learned 2x down ───────────── encode ─ decode ─ vsr upsampler ┤
                                ├─ vsr23: Lanczos-3 to 2/3 ────────── encode ─ decode ─ x2, reduce ───┤
                                └─ lanczos23: Lanczos-3 to 2/3 ────── encode ─ decode ─ Lanczos-3 up ─┘
                                                                        compared with the original, at its size

Encoding runs in a fresh process of the bundled ffmpeg for every point (bit-exact from run to run,
which libx264 inside a long-lived process is not, see :func:`vsr_plugin.measure.video.encode_y4m`); decoding,
the scalers and the networks run in-process (PyAV, PIL, the vsr engine).

Every point records the bitrate of the encoded video packets (the encoder's SEI / metadata units
removed by ffmpeg's ``filter_units``, identically for every pipeline; the raw count is kept too),
PSNR-Y/U/V, PSNR-YUV (6:1:1) and SSIM-Y computed in-process on the planes, and VMAF from the
libvmaf filter of the bundled ffmpeg, whose own PSNR-Y must agree with the in-process one (see
:mod:`vsr_plugin.measure.vmaf`). BD-rate and BD-quality against ``native`` and against ``bicubic`` follow
(:mod:`vsr_plugin.measure.bdrate`), with the overlap and the crossover bitrates.

Odd sizes: the base layer of ``H x W`` is ``ceil(H/2) x ceil(W/2)`` (the packed grid of the
networks); any odd picture is edge-padded by one row/column for the encoder (4:2:0 encoders take
even sizes) and cropped after decoding; the upscaled result is cropped to ``H x W`` and compared
at that size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vsr_plugin.measure import bdrate, metrics
from vsr_plugin.measure.ladder import (DEFAULT_LADDERS, DEFAULT_PRESET, RD_CODECS, LadderConfig, LadderRunner,
                                       Pipeline, conventional, conventional_two_thirds, native, sr, two_thirds,
                                       vsr)
from vsr_plugin.measure.markdown import markdown_table
from vsr_plugin.measure.resample import half_size
from vsr_plugin.measure.video import Clip, read_clip, remove
from vsr_plugin.measure.vmaf import DEFAULT_MODEL
from vsr_plugin.media import MediaError, VideoInput
from vsr_plugin.models import DEFAULT_PAIR, pair_names, paired_upsampler, shipped_models

from .report import machine, write_file, write_report

PIPELINES = ("native", "bicubic", "lanczos", "sr", "vsr", "lanczos23", "vsr23", "auto")
ANCHORS = ("native", "bicubic", "lanczos", "sr", "vsr")  # each compared with the pipelines after it
BD_METRICS = ("psnr_y", "vmaf")
PLOT_METRICS = ("psnr_y", "ssim_y", "psnr_yuv", "vmaf")
METRIC_LABELS = {"psnr_y": "PSNR-Y (dB)", "ssim_y": "SSIM-Y", "psnr_yuv": "PSNR-YUV 6:1:1 (dB)", "vmaf": "VMAF"}


# --- the pipelines ---------------------------------------------------------------------------------

def _shipped(kind: str, prefer: str = "default") -> str | None:
    names = shipped_models(kind)
    for n in names:
        if n.endswith(f"-{prefer}") or n == prefer:
            return n
    return names[0] if names else None


def _vsr_models(down_model: str | None, vsr_up_model: str | None, up_model: str | None
                ) -> tuple[str | None, str | None]:
    """The vsr pipeline's downsampler and upsampler: the product's default pair (what vsr-transcode
    uses), else any shipped downsampler with its paired upsampler; either may be None."""
    default_down, default_up = pair_names(DEFAULT_PAIR)
    down = down_model or _shipped("downsampler", prefer=default_down)
    up = (vsr_up_model or (default_up if down == default_down else None)
          or (paired_upsampler(down) if down else None) or up_model)
    return down, up


def build_pipelines(names: Sequence[str], *, model: str | None, down_model: str | None, vsr_up_model: str | None,
                    engine_options: dict, two_thirds_up_model: str | None = None, refine_steps: int = 0
                    ) -> tuple[list[Pipeline], dict[str, str]]:
    """The requested pipelines that can run, and a note for each one that cannot."""
    pipes, skipped = [], {}
    if refine_steps and "auto" in names:
        raise ValueError("--refine changes the vsr pipeline only; auto stands for vsr-transcode, which does not "
                         "refine: run auto without it")
    up_model = model or _shipped("upsampler")
    for name in names:
        if name == "native":
            pipes.append(native())
        elif name in ("bicubic", "lanczos"):
            pipes.append(conventional(name))
        elif name == "sr":
            if up_model is None:
                skipped[name] = "no shipped upsampler weights yet (vsr_plugin/weights is empty); pass --model PATH"
            else:
                pipes.append(sr(up_model, engine_options))
        elif name == "vsr":
            down, up = _vsr_models(down_model, vsr_up_model, up_model)
            if down is None:
                skipped[name] = ("no learned downsampler is available yet (none shipped in vsr_plugin/weights); "
                                 "pass --down-model PATH (and --vsr-up-model PATH for its jointly trained upsampler)")
            elif up is None:
                skipped[name] = "no upsampler for the learned base layer; pass --vsr-up-model PATH"
            else:
                pipes.append(vsr(down, up, engine_options, refine_steps=refine_steps))
        elif name == "lanczos23":
            pipes.append(conventional_two_thirds())
        elif name == "vsr23":  # the 2/3 layer vsr-transcode makes, restored as vsr-transcode restores it
            up = two_thirds_up_model or _vsr_models(down_model, vsr_up_model, up_model)[1]
            if up is None:
                skipped[name] = "no upsampler for the 2/3 layer; pass --two-thirds-up-model PATH"
            else:
                pipes.append(two_thirds(up, engine_options))
        elif name == "auto":
            if not {"native", "vsr"} <= set(names):
                raise ValueError("the auto pipeline chooses between native and the layers: list native and vsr "
                                 "(and vsr23 for the three-way choice) in --pipelines")
            if "vsr23" in names:
                pipes.append(Pipeline("auto", "vsr-transcode --resolution auto: at each full-resolution CRF, the "
                                              "native encode, the vsr23 layer or the vsr layer at the CRF that spends "
                                              "the same bits, chosen on probe encodes of samples of the clip"))
            else:
                pipes.append(Pipeline("auto", "vsr-transcode --resolution auto: at each full-resolution CRF, the "
                                              "native encode or the vsr layer at the CRF that spends the same bits, "
                                              "chosen on probe encodes of samples of the clip"))
        else:
            raise ValueError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
    if "auto" in names and "vsr" in skipped:
        skipped["auto"] = "needs the vsr pipeline, which is skipped"
        pipes = [p for p in pipes if p.name != "auto"]
    return pipes, skipped


AUTO_SIDES = {"full": "native", "half": "vsr", "two-thirds": "vsr23"}  # auto's choice -> the pipeline it codes


def auto_points(runner: LadderRunner, pipes: dict[str, Pipeline], done: list[dict], *,
                metric: str, frames: int | None, on_point: Callable[[dict], None]) -> list[dict]:
    """The ``auto`` pipeline on one clip: at each full-resolution CRF, :func:`vsr_plugin.resolution.decide`
    on the clip (its probes, as ``vsr-transcode --resolution auto --crf C`` runs them) among native and
    the layers of ``pipes`` (``vsr``, and ``vsr23`` where given), then the chosen encode: the native point
    at that CRF (taken from ``done``, the same deterministic encode) or the layer at the CRF the
    decision found."""
    from vsr_plugin.resolution import ProbeOptions, decide

    cfg, clip = runner.config, runner.clip
    layers = {choice: pipes[name] for choice, name in AUTO_SIDES.items() if choice != "full" and name in pipes}
    prepared: dict[str, tuple] = {}
    points = []
    try:
        for crf in cfg.ladder(pipes["native"]):
            dec = decide(clip.path, pipes["native"], layers, ProbeOptions(
                codec=cfg.codec, preset=cfg.preset, crf=crf, tune=cfg.tune, metric=metric, frames=frames))
            if dec.choice == "full":
                point = dict(next(p for p in done if p["pipeline"] == "native" and p["crf"] == crf))
            else:
                pipe = layers[dec.choice]
                prepared[dec.choice] = prepared.get(dec.choice) or runner.prepare(pipe)
                base, size, _ = prepared[dec.choice]
                point = runner.point(pipe, cfg.options(crf=dec.layer_crf), base, size)
            point.update(pipeline="auto", full_crf=crf, resolution=dec.choice, decision={
                "metric": metric, "target_kbps": dec.target_kbps, "full_quality": dec.full_quality,
                "margin": dec.margin, "layer_crf": dec.layer_crf, "probe_s": dec.probe_s,
                "probe_frames": dec.probe_frames, "segments": dec.segments,
                "layers": {e.name: {"quality": e.quality, "crf": e.crf} for e in dec.layers},
                "unprobed": list(dec.unprobed),
                "probes": {"full": [p.__dict__ for p in dec.full],
                           **{e.name: [p.__dict__ for p in e.probes] for e in dec.layers}}})
            points.append(point)
            on_point(point)
    finally:
        for base, _, _ in prepared.values():
            remove(base)
    return points


def curve_at(pts: list[tuple[float, float]], kbps: float) -> tuple[float, bool]:
    """Quality at ``kbps`` on a ladder's (kbps, quality) points, linear in log-rate; beyond either
    end the end segment is extended (a curve held flat there would credit a ladder that stops at
    410 kbps with its 410 kbps quality at 300). Returns (quality, whether extrapolated)."""
    pts = sorted(pts)
    x, q = np.log([r for r, _ in pts]), [v for _, v in pts]
    t = np.log(kbps)
    if len(pts) < 2 or x[0] <= t <= x[-1]:
        return float(np.interp(t, x, q)), False
    i = 0 if t < x[0] else len(pts) - 2
    slope = (q[i + 1] - q[i]) / (x[i + 1] - x[i]) if x[i + 1] != x[i] else 0.0
    return float(q[i] + slope * (t - x[i])), True


def auto_check(points: list[dict], metric: str) -> list[dict]:
    """Each ``auto`` point against the best of ``native``, ``vsr`` (and ``vsr23``, where measured) at the
    same rate.

    The side auto chose is measured there: an auto point *is* that pipeline's encode at that rate (the
    native point at its CRF, or the vsr pipeline run at the CRF the decision found, see
    :func:`auto_points`), so its value there is the auto point's own. The other side's curve is interpolated
    linearly in log-rate (extended beyond its ends: :func:`curve_at`). ``vsr_chord`` keeps the vsr
    curve's interpolation between its own ladder points, which on short clips can sit half a VMAF
    point off the pipeline's measured value at a CRF in between (x264's rate and quality do not move
    smoothly with a fractional CRF)."""
    def curve(name: str) -> list[tuple[float, float]]:
        return [(p["kbps"], p[metric]) for p in points if p["pipeline"] == name]

    sides = [n for n in AUTO_SIDES.values() if curve(n)]
    out = []
    for p in points:
        if p["pipeline"] == "auto":
            chosen = AUTO_SIDES[p["resolution"]]
            there, extrapolated = {chosen: p[metric]}, []
            for other in sides:
                if other != chosen:
                    there[other], beyond = curve_at(curve(other), p["kbps"])
                    extrapolated += [other] if beyond else []
            out.append({"full_crf": p["full_crf"], "resolution": p["resolution"], "kbps": p["kbps"],
                        "quality": p[metric], **there, "vsr_chord": curve_at(curve("vsr"), p["kbps"])[0],
                        "extrapolated": extrapolated, "gap": p[metric] - max(there.values()),
                        "probe_s": p["decision"]["probe_s"], "probe_margin": p["decision"]["margin"]})
    return out


def parse_ladder(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"bad CRF ladder {text!r}; give comma-separated numbers, e.g. 22,27,32,37") from None
    return tuple(int(v) if v.is_integer() else v for v in values)


Progress = Callable[[str], None]


# --- analysis --------------------------------------------------------------------------------------

def curve(points: list[dict], pipeline: str, metric: str) -> bdrate.Curve:
    pts = [p for p in points if p["pipeline"] == pipeline]
    return bdrate.Curve.of([p["kbps"] for p in pts], [p[metric] for p in pts])


def analyse(points: list[dict], pipelines: Sequence[str], *, min_overlap: float) -> dict:
    """``{metric: {"vs <anchor>": {pipeline: comparison}}}`` for every anchor present."""
    out: dict = {}
    for metric in BD_METRICS:
        out[metric] = {}
        for anchor in ANCHORS:
            if anchor not in pipelines:
                continue
            a = curve(points, anchor, metric)
            out[metric][f"vs {anchor}"] = {  # native vs bicubic is bicubic vs native inverted: not repeated
                name: bdrate.compare(a, curve(points, name, metric), min_overlap=min_overlap)
                for name in pipelines if name != anchor and name not in ANCHORS[:ANCHORS.index(anchor)]}
    return out


def summarise(clips: list[dict], pipelines: Sequence[str]) -> dict:
    """Mean BD-rate (pchip) over the clips where it is reliable, per anchor, metric and pipeline."""
    out: dict = {}
    for metric in BD_METRICS:
        for anchor in ANCHORS:
            key = f"vs {anchor}"
            for name in pipelines:
                vals = [c["bd"][metric][key][name]["bd_rate"]["pchip"] for c in clips
                        if key in c["bd"][metric] and name in c["bd"][metric][key]]
                if not vals:
                    continue
                good = [v["value"] for v in vals if v["reliable"]]
                out.setdefault(metric, {}).setdefault(key, {})[name] = {
                    "mean_bd_rate_pchip": float(np.mean(good)) if good else None,
                    "clips": len(vals), "reliable_clips": len(good)}
    return out


# --- report ----------------------------------------------------------------------------------------

def _fmt_delta(d: dict, unit: str) -> str:
    if d["value"] is None:
        return "n/a"
    return f"{d['value']:+.2f}{unit}" + ("" if d["reliable"] else " ⚠")


def _fmt_range(d: dict, unit: str, digits: int) -> str:
    if d["interval"] is None:
        return d["note"]
    lo, hi = d["interval"]
    text = f"{lo:.{digits}f}–{hi:.{digits}f}{unit} ({100 * d['overlap_of_narrower']:.0f}% of the narrower curve)"
    return text + (f" ⚠ {d['note']}" if d["note"] else "")


def _fmt_cross(cs: list[dict], anchor: str, test: str) -> str:
    if not cs:
        return "none in the common range"
    return ", ".join(f"{c['rate']:.0f} kbps ({test if c['better_below'] == 'test' else anchor} better below)"
                     for c in cs)


def markdown(data: dict, plots: dict[str, dict[str, str]]) -> str:
    tune = f", tune {data['tune']}" if data.get("tune") else ""
    lines = [f"# vsr-bench rd — {data['codec']} preset {data['preset']}{tune}", ""]
    lines.append("Bitrate: video packet bytes with the encoder's SEI/metadata units removed (same for every "
                 "pipeline), over the clip's duration. PSNR: mean of per-frame PSNR (capped at "
                 f"{metrics.PSNR_CAP_DB:g} dB); PSNR-YUV = (6·Y + U + V) / 8; SSIM-Y: 11x11 Gaussian; VMAF: libvmaf "
                 f"{data['vmaf_model']} (mean). All against the original at its own size.")
    two_thirds = (f", 2/3 layer {list(data['ladders']['two_thirds'])}"
                  if "two_thirds" in data["ladders"] and {"vsr23", "lanczos23"} & set(data["pipelines"]) else "")
    lines.append(f"CRF ladders: full resolution {list(data['ladders']['full'])}, half resolution "
                 f"{list(data['ladders']['half'])}{two_thirds}.")
    lines.append("BD-rate integrates over the quality range both curves cover, BD-quality over the bitrate range "
                 f"both cover (ranges shown); ⚠ marks an overlap under {100 * data['min_overlap']:.0f}% of the "
                 "narrower curve's range, or fewer than two points of a curve inside it. Crossovers: bitrates "
                 "where the curves cross (pchip on log-rate).")
    lines.append("")
    lines.append("Pipelines:")
    for name, desc in data["pipelines"].items():
        lines.append(f"- `{name}`: {desc}")
    for name, note in data["skipped"].items():
        lines.append(f"- `{name}`: **skipped** — {note}")
    reused = sorted({p for c in data["clips"] for p in c.get("reused", [])})
    if reused:
        lines.append(f"\nPoints of {', '.join(f'`{p}`' for p in reused)} were reused from `{data['reused_from']}` "
                     "(same clips, codec, preset, ladders and weights).")
    lines.append("")
    if data["summary"]:
        lines.append("## Mean BD-rate over clips (pchip, reliable clips only)")
        rows = []
        for metric, by_anchor in data["summary"].items():
            for anchor, by_pipe in by_anchor.items():
                for name, s in by_pipe.items():
                    v = s["mean_bd_rate_pchip"]
                    rows.append([METRIC_LABELS[metric], anchor, name, "n/a" if v is None else f"{v:+.2f}%",
                                 f"{s['reliable_clips']}/{s['clips']}"])
        lines += [markdown_table(["metric", "anchor", "pipeline", "mean BD-rate", "clips"], rows), ""]
    for c in data["clips"]:
        lines.append(f"## {c['name']} — {c['width']}x{c['height']}, {c['frames']} frames, {c['fps']:.3f} fps, "
                     f"{c['bits']}-bit")
        lines.append(f"Source: `{c['path']}`; base layer {c['base_width']}x{c['base_height']}.")
        if c.get("lossless_check"):
            lc = c["lossless_check"]
            lines.append(f"Lossless check: FFV1 round trip identical; PSNR-Y {lc['psnr_y']:.1f} (cap), "
                         f"VMAF ceiling {lc['vmaf']:.2f} (min {lc['vmaf_min']:.2f}).")
        if c.get("truncated"):
            lines.append("⚠ the input is truncated or damaged; the frames that decoded were used.")
        lines.append("")
        rows = [[p["pipeline"], f"{p['crf']:g}", f"{p['kbps']:.1f}", f"{p['psnr_y']:.2f}", f"{p['ssim_y']:.4f}",
                 f"{p['psnr_yuv']:.2f}", f"{p['vmaf']:.2f}"] for p in c["points"]]
        lines += [markdown_table(["pipeline", "CRF", "kbps", "PSNR-Y", "SSIM-Y", "PSNR-YUV", "VMAF"], rows), ""]
        for metric in BD_METRICS:
            unit = " dB" if metric == "psnr_y" else ""
            rows = []
            for anchor, by_pipe in c["bd"][metric].items():
                for name, cmp in by_pipe.items():
                    rate, qual = cmp["bd_rate"], cmp["bd_quality"]
                    rows.append([anchor, name, _fmt_delta(rate["pchip"], "%"), _fmt_delta(rate["akima"], "%"),
                                 _fmt_range(rate["pchip"], unit, 2), _fmt_delta(qual["pchip"], unit),
                                 _fmt_range(qual["pchip"], " kbps", 0),
                                 _fmt_cross(cmp["crossovers"], anchor.removeprefix("vs "), name)])
            if rows:
                short = "PSNR" if metric == "psnr_y" else "VMAF"
                lines += [f"BD on {METRIC_LABELS[metric]}:", "",
                          markdown_table(["anchor", "pipeline", "BD-rate pchip", "BD-rate akima",
                                          f"{short} range of BD-rate", f"BD-{short} pchip",
                                          f"bitrate range of BD-{short}", "crossovers"], rows), ""]
        if c.get("auto"):
            unit = "VMAF" if data.get("auto_metric", "vmaf") == "vmaf" else "PSNR-Y"
            sides = [n for n in AUTO_SIDES.values() if n in c["auto"][0]]
            named = ", ".join(f"`{n}`" for n in sides[:-1]) + f" and `{sides[-1]}`"
            lines += [f"`auto` at each full-resolution CRF against the best of {named} at the same "
                      f"rate ({unit}): the side auto chose is its own encode (the native point at that CRF, or "
                      "the layer's pipeline run at the CRF the decision found), the other sides' curves interpolated "
                      "in log-rate († beyond that ladder's rates, its end segment extended); `vsr chord`: the "
                      "vsr curve interpolated between its ladder points alone; probe margin: the best layer's "
                      "quality minus the full side's on the probes:", ""]
            def there(a: dict, side: str) -> str:  # † beyond that ladder's rates (older reports do not say)
                return f"{a[side]:.2f}" + (" †" if side in a.get("extrapolated", ()) else "")

            rows = [[f"{a['full_crf']:g}", a["resolution"], f"{a['kbps']:.1f}", f"{a['quality']:.2f}",
                     *(there(a, n) for n in sides), f"{a['vsr_chord']:.2f}" if "vsr_chord" in a else "-",
                     f"{a['gap']:+.2f}", f"{a['probe_margin']:+.2f}", f"{a['probe_s']:.1f}"] for a in c["auto"]]
            lines += [markdown_table(["CRF", "chose", "kbps", unit, *(f"{n} there" for n in sides), "vsr chord",
                                      "gap to the best", "probe margin", "probe s"], rows), ""]
        for metric, name in plots.get(c["name"], {}).items():
            lines.append(f"![{c['name']} {METRIC_LABELS[metric]}]({name})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --- command ---------------------------------------------------------------------------------------

def _say(quiet: bool) -> Progress:
    start = time.perf_counter()

    def say(text: str) -> None:
        if not quiet:
            s = int(time.perf_counter() - start)
            print(f"[{s // 60:02d}:{s % 60:02d}] {text}", file=sys.stderr, flush=True)

    return say


def ffmpeg_version() -> str:
    """First line of the bundled ffmpeg's ``-version`` (encoder and libvmaf builds vary with it)."""
    import subprocess

    from vsr_plugin.ffmpeg_tools import ffmpeg_exe

    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def _unique_names(paths: list[str]) -> list[str]:
    """Clip names for reports and plot files: the file stems, numbered where two are equal."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = Path(p).stem
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        out.append(stem if n == 0 else f"{stem}-{n + 1}")
    return out


def ladders_of(config: LadderConfig) -> dict[str, list[float]]:
    return {"full": list(config.crf_full), "half": list(config.crf_half), "two_thirds": list(config.crf_two_thirds)}


def load_reusable(path: str | None, config: LadderConfig) -> dict:
    """An earlier report whose points may stand in for this run's: same protocol, codec, preset,
    ladders and VMAF model, or a clear error (a silent mismatch would corrupt every BD-rate)."""
    if not path:
        return {}
    try:
        old = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--reuse: cannot read {path}: {e}") from None
    want = {"protocol": "rd-v1", "codec": config.codec, "preset": config.preset, "tune": config.tune,
            "ladders": ladders_of(config), "vmaf_model": config.vmaf_model}
    if "two_thirds" not in old.get("ladders", {}):  # measured before the 2/3 layer: its other ladders must agree
        want["ladders"].pop("two_thirds")
    for key, value in want.items():
        if old.get(key) != value:
            raise ValueError(f"--reuse: {path} was measured with {key} {old.get(key)!r}, this run uses {value!r}")
    return old


def reused_points(old: dict, clip: Clip, pipeline: Pipeline) -> list[dict] | None:
    """The earlier report's points of ``pipeline`` on ``clip`` when both are the same as now (same
    file, frame count and decoded pictures, by content hash; same pipeline description and the same
    weights, by content hash), else None. A report without the clip's content hash is not reused:
    a re-rendered clip of the same name can differ from the one measured before."""
    if old.get("pipelines", {}).get(pipeline.name) != pipeline.description:
        return None
    if old.get("models", {}).get(pipeline.name, {}) != pipeline.models:
        return None
    for entry in old.get("clips", []):
        if (entry["path"], entry["frames"], entry["width"], entry["height"], entry.get("content_sha256")) == (
                clip.path, len(clip.frames), clip.width, clip.height, clip.content_sha256):
            points = [p for p in entry["points"] if p["pipeline"] == pipeline.name]
            return points or None
    return None


def run_rd(args: argparse.Namespace) -> int:
    say = _say(args.quiet)
    codec = args.codec
    ladders = DEFAULT_LADDERS[codec]
    config = LadderConfig(codec=codec, preset=args.preset or DEFAULT_PRESET[codec], tune=args.tune,
                          crf_full=parse_ladder(args.crf_full) if args.crf_full else ladders["full"],
                          crf_half=parse_ladder(args.crf_half) if args.crf_half else ladders["half"],
                          crf_two_thirds=(parse_ladder(args.crf_two_thirds) if args.crf_two_thirds
                                          else ladders["two_thirds"]),
                          vmaf_model=args.vmaf_model, lossless_check=not args.no_lossless_check,
                          **({"vmaf_threads": args.threads} if args.threads is not None else {}))
    old = load_reusable(args.reuse, config)
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    if not names:
        raise ValueError("--pipelines is empty")
    if not 0 <= args.min_overlap <= 1:  # also false for NaN
        raise ValueError(f"--min-overlap must be within 0..1, got {args.min_overlap}")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    for path in args.clips:  # fail on a bad clip before any model is loaded or a ladder run
        if not Path(path).is_file():
            raise MediaError(f"no such clip: {path}")
        VideoInput(path).close()
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out is not a folder: {out_dir}")
    engine_options = {"device": args.device, "dtype": args.dtype, "batch": args.batch}
    pipelines, skipped = build_pipelines(names, model=args.model, down_model=args.down_model,
                                         vsr_up_model=args.vsr_up_model, engine_options=engine_options,
                                         two_thirds_up_model=args.two_thirds_up_model, refine_steps=args.refine)
    for name, note in skipped.items():
        say(f"note: pipeline {name} skipped: {note}")
    total = sum(len(config.ladder(p)) for p in pipelines) * len(args.clips)
    done = 0
    results = []
    for name, path in zip(_unique_names(args.clips), args.clips):
        clip = read_clip(path, max_frames=args.frames)  # one clip in memory at a time
        with tempfile.TemporaryDirectory(prefix="vsr-rd-", dir=args.work_dir) as tmp:
            runner = LadderRunner(clip, config, Path(tmp))
            bh, bw = half_size(clip.height, clip.width)
            entry = {"name": name, "path": clip.path, "content_sha256": clip.content_sha256,
                     "width": clip.width, "height": clip.height, "frames": len(clip.frames),
                     "fps": float(clip.rate), "rate": str(clip.rate), "bits": clip.bits,
                     "colorimetry": clip.colorimetry.describe(), "base_width": bw, "base_height": bh,
                     "truncated": clip.truncated, "points": []}
            if config.lossless_check:
                say(f"{name}: lossless check ({clip.width}x{clip.height}, {len(clip.frames)} frames)")
                entry["lossless_check"] = runner.lossless_check()
            for p in pipelines:
                if p.name == "auto":
                    by_name = {q.name: q for q in pipelines}

                    def on_auto(pt: dict, name=name) -> None:
                        nonlocal done
                        done += 1
                        say(f"{done}/{total} {name} auto crf {pt['full_crf']:g}: {pt['resolution']} "
                            f"(probe margin {pt['decision']['margin']:+.2f}, {pt['decision']['probe_s']:.1f} s), "
                            f"{pt['kbps']:.1f} kbps, VMAF {pt['vmaf']:.2f}")
                    entry["points"] += auto_points(runner, by_name, entry["points"], metric=args.auto_metric,
                                                   frames=args.frames, on_point=on_auto)
                    continue
                if (reused := reused_points(old, clip, p)) is not None:
                    done += len(reused)
                    say(f"{name} {p.name}: {len(reused)} points reused from {args.reuse}")
                    entry["points"] += reused
                    entry.setdefault("reused", []).append(p.name)
                    continue

                def on_point(pt: dict, p=p, name=name) -> None:
                    nonlocal done
                    done += 1
                    say(f"{done}/{total} {name} {p.name} crf {pt['crf']:g}: {pt['kbps']:.1f} kbps, "
                        f"PSNR-Y {pt['psnr_y']:.2f}, VMAF {pt['vmaf']:.2f}")
                entry["points"] += runner.run(p, on_point=on_point)
        entry["bd"] = analyse(entry["points"], [p.name for p in pipelines], min_overlap=args.min_overlap)
        if any(p.name == "auto" for p in pipelines):
            entry["auto"] = auto_check(entry["points"], "vmaf" if args.auto_metric == "vmaf" else "psnr_y")
        results.append(entry)

    data = {
        "protocol": "rd-v1", "codec": codec, "preset": config.preset, "tune": config.tune,
        "ladders": ladders_of(config),
        "pipelines": {p.name: p.description for p in pipelines}, "skipped": skipped,
        "models": {p.name: p.models for p in pipelines if p.models},
        "vmaf_model": config.vmaf_model, "psnr_cap_db": metrics.PSNR_CAP_DB, "min_overlap": args.min_overlap,
        "auto_metric": args.auto_metric,
        "bitrate": "video packet bytes after ffmpeg filter_units removed the encoder's SEI/metadata units "
                   "(h264: 6; hevc: 39|40; av1 OBU 5); kbps_with_sei counts every packet byte; codec "
                   "extradata is not counted (recorded as extradata_bytes)",
        "reused_from": args.reuse, "clips": results, "summary": summarise(results, [p.name for p in pipelines]),
        "machine": {**machine(), "ffmpeg": ffmpeg_version()}, "command": "vsr-bench " + " ".join(args.argv),
    }
    rendered = {}
    if args.plots:
        from .plots import rd_plots

        rendered = rd_plots(data, args.name)
    plots = {clip: {metric: f for metric, (f, _) in by_metric.items()} for clip, by_metric in rendered.items()}
    markdown_text = markdown(data, plots)
    for by_metric in rendered.values():
        for filename, png in by_metric.values():
            write_file(out_dir, filename, png)
    json_path, md_path = write_report(out_dir, args.name, data, markdown_text)
    say(f"wrote {json_path}, {md_path}" + (f" and {sum(len(v) for v in plots.values())} plots" if plots else ""))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("rd", help="video rate–distortion: CRF ladders, BD-rate and VMAF against native and bicubic",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Rate–distortion curves of native, bicubic, lanczos, sr and vsr pipelines (and "
                                   "the 2/3 layer vsr23 and auto, on request) over CRF ladders, with PSNR-Y, "
                                   "SSIM-Y, PSNR-YUV, VMAF, BD-rate and crossovers.")
    p.add_argument("clips", nargs="+", metavar="CLIP", help="video files (y4m, mp4, mkv, ...)")
    p.add_argument("--codec", default="libx264", choices=list(RD_CODECS))
    p.add_argument("--preset", default=None, help="encoder preset (default: x264/x265 medium, SVT-AV1 8)")
    p.add_argument("--tune", default=None, help="x264/x265 tune of every encode, every pipeline alike (default: none)")
    p.add_argument("--crf-full", default=None, help="CRF ladder of full-resolution encodes, e.g. 23,27,31,35 "
                                                    "(default per codec, see docs/benchmarks.md)")
    p.add_argument("--crf-half", default=None, help="CRF ladder of half-resolution (base layer) encodes")
    p.add_argument("--crf-two-thirds", default=None, help="CRF ladder of the 2/3 layer (vsr23) encodes")
    p.add_argument("--pipelines", default=",".join(n for n in PIPELINES if n not in ("lanczos23", "vsr23", "auto")),
                   help="comma-separated subset of " + ",".join(PIPELINES) + " (vsr23: the 2/3 layer; lanczos23: "
                        "its base layer restored by Lanczos-3; auto: probes "
                        "at every point; with native and vsr, and vsr23 for the three-way choice, e.g. "
                        "native,vsr,vsr23,auto --reuse an earlier report)")
    p.add_argument("--frames", type=int, default=None, help="use the first N frames of each clip (default: all)")
    p.add_argument("--model", default=None,
                   help="upsampler for sr (shipped name or weights path; default: the shipped default)")
    p.add_argument("--down-model", default=None, help="learned downsampler for vsr (default: the default pair's)")
    p.add_argument("--vsr-up-model", default=None,
                   help="upsampler for --down-model's base layers (default: the default pair's upsampler with its "
                        "downsampler, else the '-up' sibling of a downsampler named '...-down', else --model)")
    p.add_argument("--two-thirds-up-model", default=None,
                   help="upsampler for vsr23's 2/3 layers (default: vsr's upsampler, which vsr-transcode restores "
                        "them with)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="vsr: refine each base layer frame for the vsr upsampler before coding (encoder-side "
                        "gradient steps per frame; vsr_plugin.refine; slow on a CPU)")
    p.add_argument("--device", default="auto", help="network device: auto, cpu, cuda")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    p.add_argument("--batch", type=int, default=None, help="frames per network call (default: 1 on the CPU, 4 on CUDA)")
    p.add_argument("--vmaf-model", default=DEFAULT_MODEL, help="libvmaf model option")
    p.add_argument("--auto-metric", default="vmaf", choices=["vmaf", "psnr"],
                   help="what the auto pipeline's probes compare (vsr-transcode --metric)")
    p.add_argument("--threads", type=int, default=None,
                   help="libvmaf threads (default: the cores, up to 8; 0: none); the scores do not depend on it")
    p.add_argument("--min-overlap", type=float, default=bdrate.DEFAULT_MIN_OVERLAP,
                   help="overlap (fraction of the union of the two ranges) below which a BD value is flagged")
    p.add_argument("--no-lossless-check", action="store_true",
                   help="skip the per-clip check of the metric path against a lossless FFV1 round trip")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True, help="write PNG plots")
    p.add_argument("--out", default="docs/results", help="folder for NAME.json, NAME.md and the plots")
    p.add_argument("--name", default=None, help="report name (default: rd_CODEC)")
    p.add_argument("--reuse", default=None, metavar="REPORT.json",
                   help="take the points of any pipeline that an earlier report measured on the same clip with "
                        "the same codec, preset, ladders and models (e.g. add an ablation without re-encoding "
                        "native and bicubic)")
    p.add_argument("--work-dir", default=None, help="scratch folder for streams and y4m files (default: system temp)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    args.name = args.name or f"rd_{args.codec}"
    if "/" in args.name or args.name.startswith("."):
        raise ValueError(f"--name must be a plain file name, got {args.name!r}")
    return run_rd(args)
