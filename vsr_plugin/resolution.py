"""``--resolution auto``: code a clip at full resolution, as the 2/3 layer or as the 2x layer,
whichever looks best at the same rate on probe encodes of samples of the clip.

A reduced layer wins below a crossover rate and loses above it, and the crossover moves with content
(docs/results: 0.3–1.2 Mbit/s for the 2x layer on 1080p clips); the 2/3 layer sits between the two,
winning at the middle rates where neither extreme does. Per-title encoding ladders choose the
resolution per clip from trial encodes (the convex hull of the rate–quality curves); this module does that for
one clip at the user's rate, with the models the clip would be coded with:

* **Probes**: a few short segments spread over the clip (:func:`probe_segments`), decoded into one
  probe clip with a keyframe at each join — or the whole clip where the segments would cover half of
  it or more (a clip of about 3 s or less) — encoded each way with the user's codec and preset,
  restored (the reduced layers with the pair's upsampler) and measured against the original with the
  user's metric (:mod:`vsr_plugin.measure.ladder`, as ``vsr-bench rd`` measures). Each segment is
  encoded with a lead-out (:data:`LEAD_OUT_SECONDS` more frames, not counted or measured), so the
  encoder's lookahead sees a future past the measured frames as it does inside the clip. A probe's
  rate is taken as the whole clip's would be: its keyframes' bytes spread over the clip's GOPs
  (:func:`clip_kbps`).
* **Points**: the full side at two CRFs (the slope of its rate–quality curve and of its rate with
  CRF), each reduced layer at the CRF expected to spend the target rate, and at a second, corrected
  CRF unless the first landed within 10% of the target or settles the question alone
  (:func:`_needs_second`). Each side's quality at the target rate (linear in log-rate between its
  probes) is compared; the better reduced layer must beat the full side by :data:`LAYER_LEAD` to be
  chosen. The layers are probed largest first, and one that does not beat the full side at all ends
  the probing: a smaller layer then loses by more (in all 78 three-way decisions recorded in
  docs/results, x264 and x265, VMAF and PSNR-Y, the 2x layer read below the 2/3 layer in each of the
  18 where the 2/3 layer read below full size, by 0.6 to 5.6 VMAF or dB; 24 of the 401 probe encodes).
* **The rate**: with ``--bitrate B`` both sides are compared at B (the full side's probe CRFs are
  searched to straddle it); with ``--crf C`` the target is the rate a full-resolution encode at CRF C
  spends, and a chosen reduced layer gets the CRF that spends the same (its CRF found on the probes).

One decision per clip: switching the resolution per scene would need a stream whose picture size
changes mid-way (not every player follows that in Matroska) or one file per scene; not built.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .measure.ladder import DEFAULT_LADDERS, LadderConfig, LadderRunner, Pipeline
from .measure.video import read_segments, remove
from .measure.vmaf import DEFAULT_MODEL
from .media import CRF_RANGE, DEFAULT_CRF

LAYERS = ("two-thirds", "half")  # the reduced layers auto may choose (baselayer.RESOLUTIONS), probed in this order
LAYER_WORDS = {"half": "2x layer", "two-thirds": "2/3 layer"}  # how messages name them

METRICS = ("vmaf", "psnr")  # psnr: PSNR-Y
SEGMENT_SECONDS = 1.0        # one probe segment (0.5 s favoured the 2x layer by 2-4 VMAF more, measured)
# Encoded after each segment but not counted: without it the segment's last frames are the stream's
# last, which x264's lookahead (mb-tree) codes cheaper and worse than inside the clip, the half layer
# far more than the full one (nature 1080p, x264 medium, CRF 36 / 27: the P and B frames of the probe
# cost 0.86x the same frames of the whole-clip encode at full size, 0.66x at half size; with 12
# frames of lead-out 0.97x and 0.90x: docs/probe_bias.py), so the probes read the half layer as cheaper
# than it is.
LEAD_OUT_SECONDS = 0.5
PROBE_SHARE = 0.02           # probe frames as a share of the clip's frames (a probe frame costs about 7-9
                             # frames of the final 1080p encode, so 14-18% of it on long clips) ...
MAX_SEGMENTS = 6             # ... in at least one and at most this many segments
# Where the segments would cover this share of the clip or more, the whole clip is the probe: it costs
# at most twice as much and reads the clip itself, not a sample. Segments miss frames (Big Buck Bunny,
# 48 frames, x264 CRF 32: the one segment, frames 6-41, left out the opening and called half by +0.07
# dB PSNR-Y where the whole clip lost 0.43 dB with it) and their lead-out is only an approximation.
WHOLE_CLIP_SHARE = 0.5
FULL_CRF_STEP = 4.0          # the second full-resolution probe, this many CRF steps above the first
FIRST_GUESS_CRF = {"libx264": 26.0, "libx265": 28.0, "libsvtav1": 40.0}  # --bitrate: where the search starts
KEYINT_SECONDS = {"libsvtav1": 5.0}  # the encoders' default keyframe interval: x264/x265 250 frames, SVT-AV1 ~5 s
# The lead a reduced layer needs on the probes to be chosen (calibrated on the 2x layer). A tie costs
# little either way and the full-resolution file needs no upsampler. Before the lead-out the probes
# leaned the 2x layer's way (a near-tie called for half on urban 1080p, x264 CRF 32: +0.11 on the probes, 1.8 VMAF below native;
# 0.5 was the lead then); with it that probe reads -1.51 against a true -1.50, and the probe margins
# within 0.5 of zero on the 1080p and natural rd clips were within 0.8 VMAF of the truth, off either way
# (bikes, CRF 28: +0.41 on the probes, +1.2 true; docs/benchmarks.md).
LAYER_LEAD = {"vmaf": 0.25, "psnr": 0.05}


def keyframes_in(frames: int, fps: float, codec: str) -> int:
    """Keyframes an encoder with its default GOP puts in a clip of ``frames`` (scene cuts aside)."""
    keyint = round(KEYINT_SECONDS[codec] * fps) if codec in KEYINT_SECONDS else 250
    return max(1, math.ceil(frames / max(keyint, 1)))


def clip_kbps(point: dict, probe_frames: int, clip_frames: int, fps: float, codec: str) -> float:
    """The bitrate a probe encode stands for on the whole clip. Every probe segment starts with a
    keyframe, which a whole-clip encode pays once per GOP: the keyframes' bytes are spread over the
    clip's GOPs instead of the probe's (on a 12-frame segment of a 1080p clip the keyframe is about
    half the bytes, so the raw probe rate is about twice the clip's)."""
    key, keys = point["key_bytes"], max(point["keyframes"], 1)
    per_frame = (point["bytes"] - key) / max(probe_frames - keys, 1)
    per_frame += key / keys * keyframes_in(clip_frames, fps, codec) / clip_frames
    return 8 * per_frame * fps / 1000


def layer_crf_offset(codec: str, layer: str = "half") -> float:
    """CRF steps between a full-resolution encode and a reduced layer at about the same rate, from the
    ``vsr-bench rd`` ladders (2x layer: x264 9, x265 11, SVT-AV1 15, calibrated; 2/3 layer: 4, 4, 8)."""
    ladders = DEFAULT_LADDERS[codec]
    key = layer.replace("-", "_")
    return (sum(ladders["full"]) / len(ladders["full"])) - (sum(ladders[key]) / len(ladders[key]))


def segment_frames(total: int, rate: float) -> tuple[int, int]:
    """Measured frames of one probe segment of a ``total``-frame clip, and the lead-out frames
    encoded after them (fewer where the clip is too short)."""
    length = max(2, min(total, round(SEGMENT_SECONDS * rate)))
    return length, max(0, min(round(LEAD_OUT_SECONDS * rate), total - length))


def probe_segments(total: int, rate: float, *, share: float = PROBE_SHARE,
                   max_segments: int = MAX_SEGMENTS) -> list[tuple[int, int]]:
    """``(first frame, frames)`` of the probe segments of a ``total``-frame clip: segments of
    :data:`SEGMENT_SECONDS` and their lead-out (:func:`segment_frames`), as many as ``share`` of
    the frames makes in measured frames (1 .. ``max_segments``), centred in equal parts of the clip;
    or the whole clip, ``[(0, total)]``, where they would cover :data:`WHOLE_CLIP_SHARE` of it."""
    length, lead = segment_frames(total, rate)
    block = length + lead
    count = max(1, min(max_segments, round(share * total / length), total // block))
    if count * block >= WHOLE_CLIP_SHARE * total:
        return [(0, total)]
    part = total / count
    return [(min(total - block, max(0, round(part * (i + 0.5) - block / 2))), block) for i in range(count)]


def lead_out_frames(segments: list[tuple[int, int]], total: int, rate: float) -> int:
    """The lead-out at the end of each of the probe segments :func:`probe_segments` planned: none
    where the probe is the whole clip (nothing follows it there either)."""
    return 0 if segments == [(0, total)] else segment_frames(total, rate)[1]


@dataclass(frozen=True)
class Point:
    """One probe encode: its setting and what it gave (rate in kbps on the probe clip)."""

    crf: float
    kbps: float
    quality: float


@dataclass(frozen=True)
class LayerEstimate:
    """A reduced layer on the probes: its probe encodes and where it stands at the target rate."""

    name: str                    # "half" or "two-thirds"
    probes: tuple[Point, ...]    # one or two
    quality: float               # at the target rate
    crf: float | None            # the CRF that spends the target rate (with --crf; None with --bitrate)


@dataclass(frozen=True)
class Decision:
    """The choice, the probe figures behind it and what the final encode uses."""

    choice: str                  # "full", "half" or "two-thirds"
    metric: str
    target_kbps: float           # the rate the sides are compared at (whole-clip kbps, estimated on the probes)
    full: tuple[Point, Point]    # the full-resolution probes
    full_quality: float          # its quality at the target rate
    layers: tuple[LayerEstimate, ...]
    segments: list[tuple[int, int]]
    probe_frames: int
    probe_s: float
    unprobed: tuple[str, ...] = ()  # layers asked for but not probed: a larger layer already lost

    def layer(self, name: str) -> LayerEstimate | None:
        return next((e for e in self.layers if e.name == name), None)

    @property
    def best(self) -> LayerEstimate:
        """The reduced layer that looks best at the target rate."""
        return max(self.layers, key=lambda e: e.quality)

    @property
    def margin(self) -> float:
        """The best reduced layer's quality minus the full side's at the target rate (VMAF points or dB)."""
        return self.best.quality - self.full_quality

    @property
    def layer_crf(self) -> float | None:
        """The CRF of the chosen reduced layer that spends what the full encode at --crf would (None:
        full chosen, or --bitrate)."""
        return None if self.choice == "full" else self.layer(self.choice).crf

    def summary(self) -> str:
        unit = "VMAF" if self.metric == "vmaf" else "dB PSNR-Y"
        side = "full (native)"
        if self.choice != "full":
            what = LAYER_WORDS[self.choice]
            side = f"{self.choice} ({what}" + (f", CRF {self.layer_crf:g})" if self.layer_crf is not None else ")")
        short = ""
        if self.choice == "full" and self.margin > 0:
            short = f", short of the {LAYER_LEAD[self.metric]:.2f} lead it needs"
        others = ", ".join(f"{e.name} {e.quality:.2f}" for e in self.layers)
        skipped = "".join(f", {name} not probed" for name in self.unprobed)
        return (f"resolution auto: {side} — at {self.target_kbps:.0f} kbps on the probes, "
                f"full {self.full_quality:.2f}, {others} {unit} ({self.best.name} {self.margin:+.2f}{short}{skipped}); "
                f"{self.sample}, {self.encodes} probe encodes in {self.probe_s:.1f} s")

    @property
    def encodes(self) -> int:
        return 2 + sum(len(e.probes) for e in self.layers)

    @property
    def sample(self) -> str:
        """What was probed: the whole clip, or how many segments of it."""
        if self.segments == [(0, self.probe_frames)]:  # (a whole-clip probe has no lead-out: all frames count)
            return f"the whole clip ({self.probe_frames} frames)"
        return f"{len(self.segments)} segment(s), {self.probe_frames} frames"


def _interpolate(a: Point, b: Point, kbps: float) -> float:
    """Quality on the line through two points in (log-rate, quality), at ``kbps`` (extrapolated outside)."""
    if a.kbps == b.kbps:
        return (a.quality + b.quality) / 2
    t = (math.log(kbps) - math.log(a.kbps)) / (math.log(b.kbps) - math.log(a.kbps))
    return a.quality + t * (b.quality - a.quality)


def _crf_per_halving(a: Point, b: Point) -> float:
    """CRF steps that halve the rate, from two probes of one side (6 where they cannot tell)."""
    if a.kbps <= 0 or b.kbps <= 0 or a.kbps == b.kbps or a.crf == b.crf:
        return 6.0
    return min(max((b.crf - a.crf) / (math.log2(a.kbps) - math.log2(b.kbps)), 1.0), 20.0)


def _crf_for_rate(p: Point, per_halving: float, kbps: float) -> float:
    """The CRF that spends ``kbps`` on the line through ``p`` with the given slope."""
    return p.crf + per_halving * math.log2(p.kbps / kbps)


@dataclass(frozen=True, kw_only=True)
class ProbeOptions:
    codec: str = "libx264"
    preset: str | None = None
    crf: float | None = None        # --crf: the full-resolution CRF whose rate is the target
    bitrate: int | None = None      # --bitrate, bits/s
    tune: str | None = None         # --tune, for both sides
    metric: str = "vmaf"
    frames: int | None = None       # the first N frames of the input only

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.crf is not None and self.bitrate is not None:
            raise ValueError("give either crf or bitrate, not both")


def decide(path: str | Path, full: Pipeline, layers: dict[str, Pipeline], opts: ProbeOptions, *,
           say: Callable[[str], None] = lambda text: None) -> Decision:
    """Probe ``path`` at full resolution and as each of ``layers`` (``{"half": pipeline,
    "two-thirds": pipeline}``, one or both) and choose (see the module's description)."""
    unknown = set(layers) - set(LAYERS)
    if not layers or unknown:
        raise ValueError(f"layers must name one or more of {', '.join(LAYERS)}, got {sorted(layers)}")
    t0 = time.perf_counter()
    clip, segments, total = read_segments(path, probe_segments, max_frames=opts.frames)
    lo, hi = CRF_RANGE[opts.codec]
    fps = float(clip.rate)
    config = LadderConfig(codec=opts.codec, preset=opts.preset, tune=opts.tune,
                          vmaf_model=DEFAULT_MODEL if opts.metric == "vmaf" else None, ssim=False,
                          keyframes_every=segments[0][1], lead_out=lead_out_frames(segments, total, fps))
    lead = LAYER_LEAD[opts.metric]
    with tempfile.TemporaryDirectory(prefix="vsr-probe-") as tmp:
        runner = LadderRunner(clip, config, Path(tmp))
        measured = len(runner.measured)

        def probe(pipe: Pipeline, base: Path, size: tuple[int, int], crf: float) -> Point:
            crf = round(min(max(crf, lo), hi), 2)
            p = runner.point(pipe, config.options(crf=crf), base, size)
            kbps = clip_kbps(p, measured, total, fps, opts.codec)
            point = Point(crf, kbps, p["vmaf"] if opts.metric == "vmaf" else p["psnr_y"])
            say(f"probe {pipe.name} crf {crf:g}: {point.kbps:.0f} kbps, {opts.metric} {point.quality:.2f}")
            return point

        base, size, _ = runner.prepare(full)
        try:
            if opts.bitrate is None:  # the target: what the full-resolution encode at --crf spends
                a = probe(full, base, size, opts.crf if opts.crf is not None else DEFAULT_CRF[opts.codec])
                b = probe(full, base, size, a.crf + FULL_CRF_STEP)
                target = a.kbps
            else:  # two full-resolution CRFs, the second aimed at the target
                target = opts.bitrate / 1000
                first = probe(full, base, size, FIRST_GUESS_CRF[opts.codec])
                aim = _crf_for_rate(first, 6.0, target)
                if abs(aim - first.crf) < 1:
                    aim = first.crf + FULL_CRF_STEP
                a, b = sorted((first, probe(full, base, size, aim)), key=lambda p: p.crf)
        finally:
            remove(base)
        per_halving = _crf_per_halving(a, b)
        at_target = min(max(_crf_for_rate(a, per_halving, target), lo), hi)
        full_q = _interpolate(a, b, target)
        estimates = []
        wanted = [n for n in LAYERS if n in layers]
        for name in wanted:
            if estimates and estimates[-1].quality <= full_q:
                break  # a larger layer that does not beat the full side: the smaller ones lose by more
            base, size, _ = runner.prepare(layers[name])
            try:
                h = [probe(layers[name], base, size, at_target - layer_crf_offset(opts.codec, name))]
                if _needs_second(h[0], _interpolate(a, b, h[0].kbps), target, lead, rivals=len(layers) > 1):
                    h.append(probe(layers[name], base, size, _crf_for_rate(h[0], per_halving, target)))
            finally:
                remove(base)
            if len(h) == 2 and h[0].crf != h[1].crf:
                q, crf = _interpolate(h[0], h[1], target), _crf_for_rate(h[0], _crf_per_halving(*h), target)
            else:  # one probe near the target (or one that cannot win): moved along the full side's slopes
                q = h[0].quality + (full_q - _interpolate(a, b, h[0].kbps))
                crf = _crf_for_rate(h[0], per_halving, target)
            estimates.append(LayerEstimate(name, tuple(h), q,
                                           round(min(max(crf, lo), hi), 2) if opts.bitrate is None else None))
    return Decision(choice=choose(full_q, {e.name: e.quality for e in estimates}, opts.metric), metric=opts.metric,
                    target_kbps=target, full=(a, b), full_quality=full_q, layers=tuple(estimates),
                    segments=segments, probe_frames=measured, probe_s=time.perf_counter() - t0,
                    unprobed=tuple(wanted[len(estimates):]))


def choose(full_q: float, layers: dict[str, float], metric: str) -> str:
    """The reduced layer that looks best at the target rate where it leads the full side by more than
    :data:`LAYER_LEAD`, else "full"."""
    name = max(layers, key=layers.get)
    return name if layers[name] > full_q + LAYER_LEAD[metric] else "full"


def _needs_second(h: Point, full_q: float, target: float, lead: float = 0.0, *, rivals: bool = False) -> bool:
    """Whether a second probe of a reduced layer is needed to compare at the target rate. Not when the
    first landed within 10% of it, nor when it decides alone: a reduced layer's lead shrinks as the
    rate rises (the curves cross once), so a probe below the target rate that does not lead by
    ``lead`` cannot win there; nor, with no other layer to compare with (``rivals`` False), a probe
    above it that does lead, which wins there too (``full_q``: the full side's quality at its rate).
    Against another layer a winner's own quality at the target is needed, which one probe moved along
    the full side's slope misjudges (x265 at ~250 kbps: a 2x-layer probe at 1.6x the rate read 2-4
    VMAF low)."""
    if abs(math.log(h.kbps / target)) <= math.log(1.1):
        return False
    below, leads = h.kbps < target, h.quality > full_q + lead
    if below and not leads:
        return False
    return rivals or below or not leads
