"""Carry one clip through a codec and measure what comes back: the engine of ``vsr-bench rd``,
``vsr-transcode --report`` and the probes of ``--resolution auto``.

A :class:`Pipeline` says how the clip reaches the codec (the original, a 2x-reduced base layer
from a conventional scaler or a vsr network, or the 2/3 layer) and how it is restored; a :class:`LadderRunner`
encodes a prepared base layer at one setting in a fresh process of the bundled ffmpeg (bit-exact
from run to run), decodes it, restores it and measures it against the original: the bitrate of the
video packets (encoder SEI/metadata units removed), PSNR-Y/U/V, PSNR-YUV (6:1:1) and SSIM-Y
in-process, VMAF from libvmaf, whose own PSNR-Y must agree with the in-process one.

Odd sizes: the base layer of ``H x W`` is ``ceil(H/2) x ceil(W/2)`` (the packed grid of the
networks); any odd picture is edge-padded by one row/column for the encoder (4:2:0 encoders take
even sizes) and cropped after decoding; the restored result is cropped to ``H x W``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ..baselayer import RESOLUTIONS, base_size
from ..media import CRF_RANGE, EncodeOptions, MediaError
from ..yuv import Frame
from . import metrics
from .resample import downscale2, half_size, upscale2
from .video import Clip, StreamBits, decode, encode_y4m, pad_even, remove, stream_bits, write_ffv1, write_y4m
from .vmaf import DEFAULT_MODEL, VmafJob, check_psnr

RD_CODECS = ("libx264", "libx265", "libsvtav1")  # lossy codecs with a CRF scale

# CRF ladders, six points each, chosen so that the full- and half-resolution curves cover about the
# same bitrates (so BD values have an overlap to integrate over) and reach the low rates where the
# curves cross. Calibrated on 1080p make-clip renders (docs/benchmarks.md, "Choosing the ladders"):
# at equal CRF a 2x-reduced encode cost 0.27–0.29x the bits; x264 and x265 double the rate about
# every 6 CRF steps, so equal bitrate sits ~9.5–11 steps lower for the half-resolution ladder (9 is
# used for x264, leaning towards low rates; 11 for x265, as measured). SVT-AV1's rate falls slowly
# with CRF until the top of its scale, so its full ladder ends at 63 and the half one spans 13–53.
# The 2/3 layer (1280x720 for 1080p) spent 0.46-0.54x native's bits at equal x264 CRF and about as much as
# native 2 steps higher with x265 (docs/results/layer_scale_trial_x264.md, _x265.md), so its ladders sit 4
# steps below the full ones; SVT-AV1's is placed between its full and half ladders, not calibrated.
DEFAULT_LADDERS = {
    "libx264": {"full": (24, 28, 32, 36, 40, 44), "half": (15, 19, 23, 27, 31, 35),
                "two_thirds": (20, 24, 28, 32, 36, 40)},
    "libx265": {"full": (24, 28, 32, 36, 40, 44), "half": (13, 17, 21, 25, 29, 33),
                "two_thirds": (20, 24, 28, 32, 36, 40)},
    "libsvtav1": {"full": (33, 39, 45, 51, 57, 63), "half": (13, 21, 29, 37, 45, 53),
                  "two_thirds": (25, 31, 37, 43, 49, 55)},
}
DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8"}


Frames = list[Frame]


@dataclass(frozen=True)
class Pipeline:
    """One way of carrying a clip through the codec.

    ``down`` makes the base layer from the original frames (None: encode the original);
    ``up`` restores the decoded base layer to ``(height, width)`` (None: the decoded frames are
    the result); ``scale``: the reduction ``down`` makes (2, or 3/2 for the 2/3 layer)."""

    name: str
    description: str
    down: Callable[[Frames], Frames] | None = None
    up: Callable[[Frames, int, int], Frames] | None = None
    models: dict = field(default_factory=dict)
    scale: Fraction = Fraction(2)

    def base_size(self, height: int, width: int) -> tuple[int, int]:
        """The base layer ``down`` makes of a ``height x width`` clip (before padding to even)."""
        if not self.reduced:
            return height, width
        if self.scale == 2:
            return half_size(height, width)
        return base_size(height, self.scale), base_size(width, self.scale)

    @property
    def reduced(self) -> bool:
        return self.down is not None


# --- the pipelines ---------------------------------------------------------------------------------

def native() -> Pipeline:
    return Pipeline("native", "full-resolution encode")


def conventional(kernel: str) -> Pipeline:
    label = {"bicubic": "bicubic (a=-0.5)", "lanczos": "Lanczos-3"}[kernel]
    return Pipeline(kernel, f"{label} 2x down (antialiased), encode, {label} 2x up",
                    down=lambda frames: [downscale2(f, kernel) for f in frames],
                    up=lambda frames, h, w: [upscale2(f, kernel, h, w) for f in frames])


def _upscaler(model: str, engine_options: dict):
    from ..engine import Upscaler

    engine = Upscaler(model, **engine_options)

    def up(frames: Frames, h: int, w: int) -> Frames:
        return [f.cropped(h, w) for f in engine.upscale_frames(frames)]

    return up, repr(engine), _sha(engine)


def _sha(engine) -> str:
    return engine.info.sha256 if engine.info else ""


def sr(model: str, engine_options: dict) -> Pipeline:
    up, name, sha = _upscaler(model, engine_options)
    return Pipeline("sr", f"bicubic (a=-0.5) 2x down, encode, vsr upsampler {name}",
                    down=lambda frames: [downscale2(f, "bicubic") for f in frames], up=up,
                    models={"upsampler": name, "upsampler_weights": str(model), "upsampler_sha256": sha})


def _two_thirds_down(device: str) -> Callable[[Frames], Frames]:
    """The 2/3 layer's reduction: Lanczos-3 (antialiased) to 2/3 of each side, rounded to even."""
    from ..engine import Resizer

    def down(frames: Frames) -> Frames:
        return Resizer.two_thirds_layer(frames[0].height, frames[0].width, device=device).resize_frames(frames)

    return down


def two_thirds(up_model: str, engine_options: dict) -> Pipeline:
    """The 2/3 layer as ``vsr-transcode`` makes and restores it
    (:func:`vsr_plugin.transcode.encode_two_thirds_layer`)."""
    from ..engine import Upscaler

    engine = Upscaler(up_model, **engine_options)

    def up(frames: Frames, h: int, w: int) -> Frames:
        return engine.upscale_frames_to(frames, h, w)

    return Pipeline("vsr23", f"Lanczos-3 down to 2/3 (sides rounded to even), encode, vsr upsampler {engine!r} x2 "
                             "then antialiased bicubic to the original size",
                    down=_two_thirds_down(engine_options.get("device", "auto")), up=up, scale=RESOLUTIONS["two-thirds"],
                    models={"upsampler": repr(engine), "upsampler_weights": str(up_model),
                            "upsampler_sha256": _sha(engine)})


def conventional_two_thirds() -> Pipeline:
    """The 2/3 layer's base layer restored by Lanczos-3 alone (the same encode as ``vsr23``'s)."""
    from ..engine import Resizer

    def up(frames: Frames, h: int, w: int) -> Frames:
        return Resizer(h, w, kernel="lanczos", device="cpu").resize_frames(frames)

    return Pipeline("lanczos23", "Lanczos-3 down to 2/3 (sides rounded to even), encode, Lanczos-3 up to the "
                                 "original size", down=_two_thirds_down("cpu"), up=up, scale=RESOLUTIONS["two-thirds"])


def learned_downscale(model: str, engine_options: dict, *, refine_steps: int = 0, refine_with: str | None = None
                      ) -> tuple[Callable[[Frames], Frames], str, str]:
    """The encoder side's learned 2x downscale (the one function the ``vsr`` pipeline adds), its
    base layer refined for ``refine_with`` when ``refine_steps`` > 0 (:mod:`vsr_plugin.refine`)."""
    from ..engine import Downscaler
    from ..refine import RefineOptions

    engine = Downscaler(model, **engine_options, refine=RefineOptions(steps=refine_steps), refine_with=refine_with)
    return engine.downscale_frames, repr(engine), _sha(engine)


def vsr(down_model: str, up_model: str, engine_options: dict, *, refine_steps: int = 0) -> Pipeline:
    down, down_name, down_sha = learned_downscale(down_model, engine_options, refine_steps=refine_steps,
                                                  refine_with=up_model)
    up, up_name, up_sha = _upscaler(up_model, engine_options)
    return Pipeline("vsr", f"learned 2x down {down_name}, encode, vsr upsampler {up_name}", down=down, up=up,
                    models={"downsampler": down_name, "downsampler_weights": str(down_model),
                            "downsampler_sha256": down_sha, "upsampler": up_name, "upsampler_weights": str(up_model),
                            "upsampler_sha256": up_sha})


@dataclass(frozen=True, kw_only=True)
class LadderConfig:
    """What every point of a run shares."""

    codec: str = "libx264"
    preset: str | None = None
    tune: str | None = None                 # the encoder's tune, every pipeline alike
    crf_full: tuple[float, ...] = DEFAULT_LADDERS["libx264"]["full"]
    crf_half: tuple[float, ...] = DEFAULT_LADDERS["libx264"]["half"]
    crf_two_thirds: tuple[float, ...] = DEFAULT_LADDERS["libx264"]["two_thirds"]
    vmaf_model: str | None = DEFAULT_MODEL  # None: no VMAF (PSNR only)
    ssim: bool = True
    keyframes_every: int | None = None      # force a keyframe every N frames (clips of N-frame segments)
    lead_out: int = 0                       # the last frames of each such segment are encoded, not counted:
                                            # the encoder's lookahead sees a future past the measured frames
    vmaf_threads: int = field(default_factory=lambda: min(os.cpu_count() or 1, 8))  # libvmaf n_threads (same scores)
    lossless_check: bool = True

    def __post_init__(self) -> None:
        if self.lead_out and not (self.keyframes_every and 0 <= self.lead_out < self.keyframes_every):
            raise ValueError(f"lead_out {self.lead_out} needs segments (keyframes_every) longer than it")
        if self.codec not in RD_CODECS:
            raise ValueError(f"codec must be one of {', '.join(RD_CODECS)}, got {self.codec!r}")
        self.options()  # a preset or tune the codec does not take: a clear error before any encode
        lo, hi = CRF_RANGE[self.codec]
        for which, ladder in (("full", self.crf_full), ("half", self.crf_half), ("2/3", self.crf_two_thirds)):
            if len(ladder) < 2:
                raise ValueError(f"the {which}-resolution CRF ladder needs at least two values, got {list(ladder)}")
            if len(set(ladder)) != len(ladder):
                raise ValueError(f"the {which}-resolution CRF ladder repeats a value: {list(ladder)}")
            bad = [c for c in ladder if not lo <= c <= hi]
            if bad:
                raise ValueError(f"{self.codec} CRF must be within {lo}..{hi}, got {bad}")

    def options(self, *, crf: float | None = None, bitrate: int | None = None) -> EncodeOptions:
        """The encoder settings every point of the run shares (codec, preset, tune), at one CRF or bitrate."""
        return EncodeOptions(codec=self.codec, crf=crf, bitrate=bitrate, preset=self.preset, tune=self.tune)

    def ladder(self, pipeline: Pipeline) -> tuple[float, ...]:
        if not pipeline.reduced:
            return tuple(sorted(self.crf_full))
        return tuple(sorted(self.crf_half if pipeline.scale == 2 else self.crf_two_thirds))


class LadderRunner:
    """Runs every pipeline's ladder on one clip inside a scratch folder."""

    def __init__(self, clip: Clip, config: LadderConfig, workdir: Path) -> None:
        self.clip, self.config, self.work = clip, config, workdir
        n, every = len(clip.frames), config.keyframes_every
        # the frames each point is measured on (all but the segments' lead-out)
        self.measured = [i for i in range(n) if not config.lead_out or i % every < every - config.lead_out]
        self.reference = [clip.frames[i] for i in self.measured]
        self.seconds = clip.seconds * len(self.measured) / n
        self.ref_path = workdir / "reference.y4m"
        write_y4m(self.ref_path, self.reference, clip.rate)

    def _quality(self, frames: Frames, what: str) -> tuple[dict, dict]:
        """In-process metrics and VMAF (ffmpeg, in parallel) of frames against the original."""
        clip, cfg = self.clip, self.config
        if len(frames) != len(self.reference):
            raise MediaError(f"{what}: {len(frames)} frames came back for {len(self.reference)}")
        dist_path = self.work / "distorted.y4m"
        job = None
        try:
            if cfg.vmaf_model is not None:
                write_y4m(dist_path, frames, clip.rate)
                job = VmafJob(dist_path, self.ref_path, rate=clip.rate, colorimetry=clip.colorimetry, bits=clip.bits,
                              threads=cfg.vmaf_threads, model=cfg.vmaf_model)
            per_frame = [metrics.frame_quality(r, d, ssim_y=cfg.ssim) for r, d in zip(self.reference, frames)]
            vm = job.result() if job is not None else None
        finally:
            if job is not None:
                job.close()
            remove(dist_path)
        q = metrics.mean_quality(per_frame)
        psnr_y = [f["psnr_y"] for f in per_frame]
        if vm is None:
            return q, {"psnr_y": psnr_y}
        check_psnr(vm, psnr_y, what)
        q.update(vmaf=vm.vmaf, vmaf_harmonic_mean=vm.vmaf_harmonic_mean, vmaf_min=vm.vmaf_min)
        return q, {"vmaf": vm.frames, "psnr_y": psnr_y}

    def lossless_check(self) -> dict:
        """Encode the clip losslessly (FFV1), decode it, and measure it like any point: the planes must
        come back identical, PSNR at its cap and libvmaf's PSNR-Y at its own cap on every frame.
        The VMAF found is this clip's ceiling."""
        path = self.work / "lossless.mkv"
        write_ffv1(path, self.clip.frames, self.clip.rate)
        back = decode(path)
        remove(path)
        same = len(back) == len(self.clip.frames) and all(a.equals(b) for a, b in zip(self.clip.frames, back))
        if not same:
            raise MediaError(f"{self.clip.path}: a lossless FFV1 round trip changed the pictures")
        q, _ = self._quality([back[i] for i in self.measured], "lossless check")
        return {"identical_planes": True, "psnr_y": q["psnr_y"], "vmaf": q["vmaf"], "vmaf_min": q["vmaf_min"]}

    def prepare(self, pipeline: Pipeline) -> tuple[Path, tuple[int, int], float]:
        """Make ``pipeline``'s base layer once: its y4m file (padded to even), size and seconds taken."""
        clip = self.clip
        t = time.perf_counter()
        base = pipeline.down(clip.frames) if pipeline.down else clip.frames
        down_s = time.perf_counter() - t
        bh, bw = base[0].height, base[0].width
        if (bh, bw) != pipeline.base_size(clip.height, clip.width):
            raise RuntimeError(f"{pipeline.name}: base layer is {bw}x{bh}, expected "
                               f"{pipeline.base_size(clip.height, clip.width)[::-1]}")
        base_path = self.work / f"{pipeline.name}_base.y4m"
        write_y4m(base_path, (pad_even(f) for f in base), clip.rate)
        return base_path, (bh, bw), down_s

    def run(self, pipeline: Pipeline, *, on_point: Callable[[dict], None] | None = None) -> list[dict]:
        cfg = self.config
        base_path, size, down_s = self.prepare(pipeline)
        points = []
        try:
            for crf in cfg.ladder(pipeline):
                points.append(self.point(pipeline, cfg.options(crf=crf), base_path, size, down_s if not points else 0.0))
                if on_point:
                    on_point(points[-1])
        finally:
            remove(base_path)
        return points

    def _counted(self, bits: StreamBits) -> StreamBits:
        """The stream's figures over the measured frames (the segments' lead-out left out)."""
        return bits.selected(self.measured) if self.config.lead_out else bits

    def kbps(self, options: EncodeOptions, base_path: Path) -> float:
        """Bitrate alone of one encode of a prepared base layer (for rate-matching searches)."""
        stream = self.work / "probe.mkv"
        try:
            encode_y4m(base_path, stream, options, self.clip.colorimetry, seconds=self.clip.seconds,
                       keyframes_every=self.config.keyframes_every)
            return self._counted(stream_bits(stream)).kbps(self.seconds)
        finally:
            remove(stream)

    def point(self, pipeline: Pipeline, options: EncodeOptions, base_path: Path, base_size: tuple[int, int],
              down_s: float = 0.0) -> dict:
        """One encode of a prepared base layer, decoded, restored and measured."""
        clip = self.clip
        bh, bw = base_size
        stream = self.work / f"{pipeline.name}_point.mkv"
        t0 = time.perf_counter()
        try:
            encode_y4m(base_path, stream, options, clip.colorimetry, seconds=clip.seconds,
                       keyframes_every=self.config.keyframes_every)
            t1 = time.perf_counter()
            bits = self._counted(stream_bits(stream))
            decoded = [f.cropped(bh, bw) for f in decode(stream)]
        finally:
            remove(stream)
        if self.config.lead_out:
            if len(decoded) != len(clip.frames):
                raise MediaError(f"{clip.name}: {len(decoded)} frames came back for {len(clip.frames)}")
            decoded = [decoded[i] for i in self.measured]
        t2 = time.perf_counter()
        out = pipeline.up(decoded, clip.height, clip.width) if pipeline.up else decoded
        t3 = time.perf_counter()
        setting = f"crf {options.crf:g}" if options.crf is not None else f"{options.bitrate / 1000:g} kbps target"
        q, per_frame = self._quality(out, f"{clip.name} {pipeline.name} {setting}")
        t4 = time.perf_counter()
        return {
            "pipeline": pipeline.name, "crf": options.crf, "target_bitrate": options.bitrate, "tune": options.tune,
            "base_width": bw, "base_height": bh,
            "kbps": bits.kbps(self.seconds), "kbps_with_sei": bits.kbps(self.seconds, with_sei=True),
            "bytes": bits.picture_bytes, "bytes_with_sei": bits.packet_bytes, "key_bytes": bits.key_picture_bytes,
            "keyframes": bits.keyframes,
            "extradata_bytes": bits.extradata_bytes, "packets": bits.packets, **q,
            "per_frame": {**per_frame, "bytes": list(bits.frame_bytes)},
            "seconds": {"downscale": down_s, "encode": t1 - t0, "decode": t2 - t1, "upscale": t3 - t2,
                        "metrics": t4 - t3},
        }

