"""Whole-file and pipe jobs: media input -> engine -> media output, concurrently.

2x upscaling (file and pipe), the encoder side's reductions (the learned 2x one, file and pipe; the
2/3 layer's Lanczos-3 one; each into a ``.vsr.mkv``) and the decoder side's restoration. Thin
orchestration over :mod:`media`, :mod:`pipeline` and :mod:`engine`: each job is a :class:`Plan`
(output stream, frames function) run by one file or pipe runner. The CLI and the benchmarks call these functions.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from kernels import downscale_shapes

from .atomic import atomic_output
from .baselayer import (RESOLUTIONS, SUFFIX, BaseLayerTags, base_size, default_base_output, default_restored_output,
                        is_base_layer, parse_tags, resolve_upsampler, tags_for)
from .engine import Downscaler, Resizer, Upscaler
from .media import (PIPE_IN, PIPE_OUT, EncodeOptions, MediaError, RatePass, StreamInfo, TimedFrame, VideoInput,
                    VideoOutput, Y4MOutput, notice, reach_bitrate, remux, stream_info)
from .models import CheckpointInfo
from .pipeline import FILE_STOP_GRACE_S, STOP_GRACE_S, Pipeline, StageStats
from .progress import Progress
from .yuv import Frame


@dataclass(frozen=True)
class TranscodeResult:
    input: str
    output: str
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    frames: int
    stats: StageStats
    truncated: bool
    truncation_reason: str
    engine: str
    damaged_packets: int = 0  # video packets that failed to decode and were skipped
    damage_reason: str = ""
    rate: Fraction | None = None      # the output's frame rate
    rate_kbps: float | None = None    # a two-pass encode: the video bitrate reached ...
    target_kbps: float | None = None  # ... for this target
    passes: int = 1                   # runs through the input (two-pass: 2, or more after a correction)
    total_s: float | None = None      # wall time of all the passes

    @property
    def fps(self) -> float:
        return self.stats.fps

    def summary(self, what: str) -> str:
        (iw, ih), (ow, oh) = self.in_size, self.out_size
        s = self.stats
        return (f"{what}: {self.input} {iw}x{ih} -> {self.output} {ow}x{oh}, {self.frames} frames in "
                f"{s.wall_s:.1f} s ({s.fps:.2f} fps; busy: decode {s.decode_s:.1f} s, network {s.network_s:.1f} s, "
                f"encode {s.encode_s:.1f} s)" + self._rate_note())

    def _rate_note(self) -> str:
        if self.rate_kbps is None:
            return ""
        return (f"; {self.passes} passes in {self.total_s:.1f} s, video {self.rate_kbps:.0f} kbps for a target of "
                f"{self.target_kbps:.0f} ({100 * (self.rate_kbps / self.target_kbps - 1):+.1f}%)")


def default_output(path: str | Path, scale: int) -> Path:
    """``clip.mp4`` -> ``clip.x2.mkv`` next to the input (Matroska holds any audio/subtitle codec)."""
    p = Path(path)
    return p.with_name(f"{p.stem}.x{scale}.mkv")


STDOUT = Path("-")  # -o -: the frames as yuv4mpegpipe on stdout (for a pipe into ffmpeg or a player)


def check_output(output: Path, *, overwrite: bool, input_path: str) -> None:
    if output == STDOUT:
        return
    if output.is_dir():
        raise MediaError(f"output is a directory: {output}; give a file name, e.g. {output / 'out.mkv'}")
    if not output.parent.is_dir():
        raise MediaError(f"output directory does not exist: {output.parent}")
    if output.exists() and not overwrite:
        raise MediaError(f"output exists (pass --overwrite to replace it): {output}")
    if input_path != PIPE_IN and output.exists() and os.path.samefile(output, input_path):
        raise MediaError(f"output would overwrite the input: {output}")


def _with_first_frame(inp: VideoInput) -> tuple[TimedFrame, Iterator]:
    """Read up to the first frame (to learn bit depth and colorimetry before opening the output)."""
    items = inp.items()
    held = []
    for item in items:
        held.append(item)
        if isinstance(item, TimedFrame):
            return item, itertools.chain(held, items)
    raise MediaError(f"no decodable video frames in {inp.path}")


FramesFn = Callable[[list[Frame]], list[Frame]]


def _batches(fn: FramesFn) -> Callable[[list[TimedFrame]], list[TimedFrame]]:
    def run(batch: list[TimedFrame]) -> list[TimedFrame]:
        frames = fn([t.frame for t in batch])
        return [TimedFrame(f, t.pts, t.time_base, t.index) for f, t in zip(frames, batch)]
    return run


def _run(output, source: Iterator, fn: FramesFn, batch: int, progress: Progress, *,
         stop_grace_s: float = FILE_STOP_GRACE_S) -> StageStats:
    def sink(item) -> None:
        if isinstance(item, TimedFrame):
            output.write(item.frame, item.pts)
        else:
            output.mux_copy(item)

    pipe = Pipeline(source, _batches(fn), sink, batch=batch, stop_grace_s=stop_grace_s)
    try:
        stats = pipe.run(on_tick=lambda s: progress.update(s.frames_out, s.wall_s))
        output.close()
    except BaseException:
        output.abort()
        raise
    finally:
        progress.close()
    return stats


@dataclass(frozen=True)
class Plan:
    """What a job does with the frames, decided once the first frame is known."""

    info: StreamInfo          # the output video stream
    fn: FramesFn              # frames in -> frames out (batches of one size)
    batch: int
    engine: str               # for the summary line
    tags: dict[str, str] | None = None


Planner = Callable[[VideoInput, Frame], Plan]


def _to_file(src: str | Path, dst: Path, encode: EncodeOptions, plan: Planner, *, overwrite: bool,
             show_progress: bool, format: str | None = None, frames: int | None = None) -> TranscodeResult:
    """Decode ``src``, run the planned frames function, encode into ``dst`` atomically (audio and
    subtitles copied). The planner runs after the input has proved readable, so a bad input fails
    before any model is loaded. A ``bitrate`` is reached in two passes (:func:`_two_pass`)."""
    check_output(dst, overwrite=overwrite, input_path=str(src))
    if dst == STDOUT:  # nothing to make atomic; a consumer that stops reading ends the run
        if format is not None or encode.bitrate is not None:
            raise MediaError("-o - writes raw yuv4mpegpipe frames on stdout; it does not make a base layer "
                             "or reach a bitrate")
        return _encode_pass(src, Path(PIPE_OUT), encode, plan, show_progress=show_progress, format=None,
                            frames=frames, raw=True, shown_as=Path("stdout"), stop_grace_s=STOP_GRACE_S)
    raw = dst.suffix.lower() == ".y4m" and format is None
    if encode.bitrate is not None and not raw:
        return _two_pass(src, dst, encode, _Replay(plan, REPLAY_BYTES), overwrite=overwrite, show_progress=show_progress,
                         format=format, frames=frames)
    with atomic_output(dst, overwrite=overwrite) as tmp:
        return _encode_pass(src, tmp, encode, plan, show_progress=show_progress, format=format, frames=frames,
                            raw=raw, shown_as=dst)


def _encode_pass(src: str | Path, out_path: Path, encode: EncodeOptions, plan: Planner, *, show_progress: bool,
                 format: str | None, frames: int | None, raw: bool = False, shown_as: Path | None = None,
                 label: str = "", stop_grace_s: float = FILE_STOP_GRACE_S) -> TranscodeResult:
    """One run of the whole input through the planned frames function into ``out_path``."""
    shown_as = shown_as or out_path
    with VideoInput(src, max_frames=frames) as inp:
        first, source = _with_first_frame(inp)
        job = plan(inp, first.frame)
        progress = Progress(inp.frame_count_estimate, label=label, enabled=show_progress)
        if raw:  # the frames go out uncompressed, through the same muxer as the pipe
            if inp.copy_streams:
                notice(f"{shown_as.name}: y4m holds one video stream; {len(inp.copy_streams)} other stream(s) "
                       "(audio, subtitles) not copied")
            out = Y4MOutput(str(out_path), job.info)
        else:
            first_pass = encode.rate_pass is not None and encode.rate_pass.number == 1  # analysis only
            out = VideoOutput(out_path, job.info, encode, [] if first_pass else inp.copy_streams, format=format,
                              tags=job.tags, source=None if first_pass else inp)
        stats = _run(out, source, job.fn, job.batch, progress, stop_grace_s=stop_grace_s)
    return TranscodeResult(str(src), str(shown_as), (inp.width, inp.height), (job.info.width, job.info.height),
                           stats.frames_out, stats, inp.truncated, inp.truncation_reason, job.engine,
                           inp.damaged_packets, inp.damage_reason, rate=job.info.rate)


class _Replay:
    """The planner of a multi-pass encode: planned once, and the frames function's output of the
    first pass kept (up to ``cap_bytes``) and handed out again in the later ones, so that a network
    runs once however many passes the rate needs. Batches come in the same order every pass (same
    input, same batch size), so the k-th call of a pass gets the k-th batch of the first."""

    def __init__(self, planner: Planner, cap_bytes: int) -> None:
        self.planner, self.cap = planner, cap_bytes
        self.job: Plan | None = None
        self.kept: list[list[Frame]] | None = []
        self.kept_bytes = 0
        self.passes = 0

    def plan(self, inp: VideoInput, first: Frame) -> StreamInfo:
        """Plan (once) without running a pass; the output stream's parameters."""
        if self.job is None:
            self.job = self.planner(inp, first)
        return self.job.info

    def __call__(self, inp: VideoInput, first: Frame) -> Plan:
        self.passes += 1
        self.plan(inp, first)
        if self.passes == 1:
            return replace(self.job, fn=self._record)
        if self.kept is None:
            return self.job
        batches = iter(self.kept)
        return replace(self.job, fn=lambda frames: next(batches))

    def _record(self, frames: list[Frame]) -> list[Frame]:
        out = self.job.fn(frames)
        if self.kept is not None:
            self.kept_bytes += sum(p.nbytes for f in out for p in f.planes)
            self.kept.append(out)
            if self.kept_bytes > self.cap:
                self.kept = None  # too long to keep: the later passes run the frames function again
        return out


REPLAY_BYTES = 1 << 30  # frames kept from the first pass (1 GiB: ~55 s of 1080p base layer, ~14 s of 1080p)


def video_kbps(path: Path, frames: int, rate) -> float:
    """The video stream's bitrate: all its packet bytes over the frames' duration."""
    from .measure.video import stream_bits

    return stream_bits(path).kbps(frames / float(rate), with_sei=True)


# SVT-AV1 4.2 (PyAV's build) crashes in a first pass over frames under ~144 pixels on a side when
# called from a thread other than the main one (measured: 160x120 and 320x96 crash, 192x144 and
# 144x256 do not); such small frames get one-pass encodes with the same rate check instead.
SVT_TWO_PASS_MIN_SIDE = 144


def _two_pass(src: str | Path, dst: Path, encode: EncodeOptions, plan: _Replay, *, overwrite: bool,
              show_progress: bool, format: str | None, frames: int | None) -> TranscodeResult:
    """Encode at ``encode.bitrate`` the way ffmpeg's ``-pass 1`` / ``-pass 2`` do, with the check of
    :func:`media.reach_bitrate` (short clips miss a two-pass target). The frames function runs in
    the first pass (and again only where its output is too long to keep, :class:`_Replay`)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vsr-2pass-") as tmp:
        stats = Path(tmp) / "stats"
        with VideoInput(src, max_frames=frames) as inp:
            info = plan.plan(inp, _with_first_frame(inp)[0].frame)
        one_pass = encode.codec == "libsvtav1" and min(info.width, info.height) < SVT_TWO_PASS_MIN_SIDE
        if one_pass:  # one-pass SVT-AV1 on threads lands ~4% apart run to run (measured, 128x96), and the
            encode = replace(encode, threads=1)  # rate search would chase that; on one it repeats exactly
        else:
            _encode_pass(src, Path(tmp) / "analysis.mkv", replace(encode, rate_pass=RatePass(1, stats)), plan,
                         show_progress=show_progress, format=format, frames=frames, label="pass 1/2: ")
            (Path(tmp) / "analysis.mkv").unlink()
        results: list[TranscodeResult] = []

        def second_pass(attempt: int, bitrate: int) -> float:
            label = ("" if one_pass else "pass 2/2: ") if attempt == 0 else f"again, at {bitrate / 1000:.0f} kbps: "
            out = Path(tmp) / f"pass2-{attempt}{dst.suffix}"
            rate_pass = None if one_pass else RatePass(2, stats)
            results.append(_encode_pass(src, out, replace(encode, bitrate=bitrate, rate_pass=rate_pass), plan,
                                        show_progress=show_progress, format=format, frames=frames, shown_as=dst,
                                        label=label))
            return 1000 * video_kbps(out, results[-1].frames, results[-1].rate)

        best, reached = reach_bitrate(encode.bitrate, second_pass)
        with atomic_output(dst, overwrite=overwrite) as final:
            shutil.move(Path(tmp) / f"pass2-{best}{dst.suffix}", final)
        return replace(results[best], rate_kbps=reached / 1000, target_kbps=encode.bitrate / 1000,
                       passes=len(results) + (not one_pass), total_s=time.perf_counter() - t0)


def _to_pipe(plan: Planner, *, show_progress: bool, mode: str) -> TranscodeResult:
    """yuv4mpegpipe on stdin -> the planned frames function -> yuv4mpegpipe on stdout."""
    if sys.stdin.isatty():
        raise MediaError("pipe mode reads a yuv4mpegpipe stream on stdin, e.g. "
                         f"ffmpeg -i in.mp4 -f yuv4mpegpipe - | vsr-transcode pipe --{mode}")
    with VideoInput(PIPE_IN) as inp:
        first, source = _with_first_frame(inp)
        job = plan(inp, first.frame)
        out = Y4MOutput(PIPE_OUT, job.info)
        stats = _run(out, source, job.fn, job.batch, Progress(None, enabled=show_progress),
                     stop_grace_s=STOP_GRACE_S)  # a stage may be blocked on stdin/stdout for good
        return TranscodeResult("stdin", "stdout", (inp.width, inp.height), (job.info.width, job.info.height),
                               stats.frames_out, stats, inp.truncated, inp.truncation_reason, job.engine,
                               inp.damaged_packets, inp.damage_reason)


def _built(engine):
    """An engine, or a factory called now (once the input has proved readable)."""
    return engine if isinstance(engine, (Upscaler, Downscaler)) else engine()


def _upscale_plan(engine: Upscaler | Callable[[], Upscaler]) -> Planner:
    def plan(inp: VideoInput, first: Frame) -> Plan:
        up = _built(engine)
        return Plan(stream_info(inp, first, scale=up.scale), up.upscale_frames, up.options.batch, repr(up))
    return plan


def _downscale_plan(engine: Downscaler | Callable[[], Downscaler], *, even: bool, tags_from=None) -> Planner:
    """The learned 2x reduction; ``even`` pads the base layer to even sizes (H.264/HEVC need them)."""
    def plan(inp: VideoInput, first: Frame) -> Plan:
        down = _built(engine)
        h, w = first.height, first.width
        (bh, bw), _ = downscale_shapes(h, w)
        fn = down.downscale_frames
        if even:
            bh, bw = base_size(h), base_size(w)
            fn = lambda frames: [f.padded(bh, bw) for f in down.downscale_frames(frames)]  # noqa: E731
        tags = tags_from(down, h, w).to_metadata() if tags_from else None
        return Plan(stream_info(inp, first, size=(bw, bh)), fn, down.options.batch, repr(down), tags)
    return plan


def upscale_file(src: str | Path, dst: str | Path | None, engine: Upscaler | Callable[[], Upscaler],
                 encode: EncodeOptions, *, overwrite: bool = False, show_progress: bool = True,
                 frames: int | None = None) -> TranscodeResult:
    """Upscale a video file into a new file (written atomically; nothing is left on failure).
    ``engine`` may be a factory, called once the input has proved readable; ``frames`` keeps
    only the first N frames (and the audio/subtitles up to them)."""
    dst = Path(dst) if dst else default_output(src, 2)
    return _to_file(src, dst, encode, _upscale_plan(engine), overwrite=overwrite, show_progress=show_progress,
                    frames=frames)


def upscale_pipe(engine: Upscaler | Callable[[], Upscaler], *, show_progress: bool = True) -> TranscodeResult:
    """yuv4mpegpipe on stdin -> upscaled yuv4mpegpipe on stdout."""
    return _to_pipe(_upscale_plan(engine), show_progress=show_progress, mode="upscale")


def downscale_pipe(engine: Downscaler | Callable[[], Downscaler], *, show_progress: bool = True) -> TranscodeResult:
    """yuv4mpegpipe on stdin -> learned 2x reduction as yuv4mpegpipe on stdout (the base layer,
    ``ceil(H/2) x ceil(W/2)``, for an external encoder)."""
    return _to_pipe(_downscale_plan(engine, even=False), show_progress=show_progress, mode="downscale")


def encode_base_layer(src: str | Path, dst: str | Path | None, down: Downscaler | Callable[[], Downscaler],
                      up_info: CheckpointInfo, encode: EncodeOptions, *, overwrite: bool = False,
                      show_progress: bool = True, frames: int | None = None, decision: str = "") -> TranscodeResult:
    """Encoder side: learned 2x reduction + base codec -> ``.vsr.mkv`` (tags name the upsampler
    and the original size; audio and subtitles copied)."""
    dst = _layer_output(src, dst)

    def tags(engine: Downscaler, h: int, w: int) -> BaseLayerTags:
        return tags_for(up_info, engine.info, scale=2, width=w, height=h, decision=decision)

    return _to_file(src, dst, encode, _downscale_plan(down, even=True, tags_from=tags), overwrite=overwrite,
                    show_progress=show_progress, format="matroska", frames=frames)


def encode_two_thirds_layer(src: str | Path, dst: str | Path | None, up_info: CheckpointInfo, encode: EncodeOptions,
                            *, device: str = "auto", overwrite: bool = False, show_progress: bool = True,
                            frames: int | None = None, decision: str = "") -> TranscodeResult:
    """Encoder side, the 2/3 layer: each side reduced to 2/3 (rounded to even; Lanczos-3, antialiased,
    on ``device``) + base codec -> ``.vsr.mkv`` whose tags (scale 3/2) name the x2 upsampler that
    restores it, followed by an antialiased reduction to the original size (:func:`restore_base_layer`)."""
    dst = _layer_output(src, dst)
    scale = RESOLUTIONS["two-thirds"]

    def plan(inp: VideoInput, first: Frame) -> Plan:
        h, w = first.height, first.width
        resizer = Resizer.two_thirds_layer(h, w, device=device)
        tags = BaseLayerTags(scale=scale, width=w, height=h, upsampler=up_info.name, upsampler_sha256=up_info.sha256,
                             downsampler="Lanczos-3", decision=decision).to_metadata()
        return Plan(stream_info(inp, first, size=(resizer.width, resizer.height)), resizer.resize_frames,
                    resizer.batch, repr(resizer), tags)

    return _to_file(src, dst, encode, plan, overwrite=overwrite, show_progress=show_progress, format="matroska",
                    frames=frames)


def encode_full_layer(src: str | Path, dst: str | Path | None, encode: EncodeOptions, *, overwrite: bool = False,
                      show_progress: bool = True, frames: int | None = None, decision: str = "") -> TranscodeResult:
    """Encoder side, where the full resolution codes better: the input encoded at its own size into
    a ``.vsr.mkv`` whose tags say so (scale 1), which the decoder side restores by copying."""
    dst = _layer_output(src, dst)

    def plan(inp: VideoInput, first: Frame) -> Plan:
        h, w = first.height, first.width
        bh, bw = base_size(h, 1), base_size(w, 1)
        tags = BaseLayerTags(scale=1, width=w, height=h, decision=decision).to_metadata()
        return Plan(stream_info(inp, first, size=(bw, bh)), lambda fs: [f.padded(bh, bw) for f in fs], 8,
                    "full resolution, no network", tags)

    return _to_file(src, dst, encode, plan, overwrite=overwrite, show_progress=show_progress, format="matroska",
                    frames=frames)


def _layer_output(src: str | Path, dst: str | Path | None) -> Path:
    dst = Path(dst) if dst else default_base_output(src)
    if dst.suffix.lower() != ".mkv":
        raise MediaError(f"a base layer is a Matroska file; name the output *{SUFFIX}, not {dst.name}")
    return dst


def read_base_layer_tags(src: str | Path) -> BaseLayerTags | None:
    """The validated tags of a ``.vsr.mkv`` file, or None for an ordinary video."""
    with VideoInput(src) as inp:
        if not is_base_layer(inp.metadata):
            return None
        return parse_tags(inp.metadata, base_width=inp.width, base_height=inp.height, source=str(src))


def restore_frames(engine: Upscaler, tags: BaseLayerTags, frames: list[Frame]) -> list[Frame]:
    """A reduced layer's decoded frames at the original size its tags give: a 2/3 layer upscaled, then
    reduced to it; a 2x layer upscaled and cropped (it may carry padding)."""
    if tags.scale != 2:
        return engine.upscale_frames_to(frames, tags.height, tags.width)
    return [f.cropped(tags.height, tags.width) for f in engine.upscale_frames(frames)]


def restore_base_layer(src: str | Path, dst: str | Path | None, make_engine: Callable[[Path], Upscaler],
                       encode: EncodeOptions, *, overwrite: bool = False, show_progress: bool = True,
                       search: tuple[Path, ...] = (), frames: int | None = None) -> TranscodeResult:
    """Decoder side: a tagged base layer, decoded and upsampled with the upsampler its tags name
    (looked up by content hash among the shipped weights and ``search`` folders), cropped to the
    original size (a 2x layer) or reduced to it (a 2/3 layer: antialiased bicubic after the x2). A
    full-resolution layer is copied unchanged (:func:`copy_full_layer`) unless it
    must be cropped (an odd original size) or cut (``frames``)."""
    dst = Path(dst) if dst else default_restored_output(src)
    with VideoInput(src) as inp:
        tags = parse_tags(inp.metadata, base_width=inp.width, base_height=inp.height, source=str(src))
        coded = (inp.width, inp.height)
    if (tags.full_resolution and coded == (tags.width, tags.height) and frames is None and dst != STDOUT
            and dst.suffix.lower() != ".y4m"):
        return copy_full_layer(src, dst, overwrite=overwrite)

    def plan(inp: VideoInput, first: Frame) -> Plan:
        if tags.full_resolution:
            return Plan(stream_info(inp, first, size=(tags.width, tags.height)),
                        lambda fs: [f.cropped(tags.height, tags.width) for f in fs], 8, "full resolution, cropped")
        engine = make_engine(resolve_upsampler(tags, search=search))
        return Plan(stream_info(inp, first, size=(tags.width, tags.height)),
                    functools.partial(restore_frames, engine, tags), engine.options.batch, repr(engine))

    return _to_file(src, dst, encode, plan, overwrite=overwrite, show_progress=show_progress, frames=frames)


def copy_full_layer(src: str | Path, dst: Path, *, overwrite: bool = False) -> TranscodeResult:
    """A full-resolution ``.vsr.mkv`` restored: every stream copied, packet for packet, without the vsr tags."""
    check_output(dst, overwrite=overwrite, input_path=str(src))
    t0 = time.perf_counter()
    with atomic_output(dst, overwrite=overwrite) as tmp:
        packets = remux(src, tmp)
    with VideoInput(dst) as out:
        size, rate = (out.width, out.height), out.rate
    stats = StageStats(frames_in=packets, frames_out=packets, wall_s=time.perf_counter() - t0)
    return TranscodeResult(str(src), str(dst), size, size, packets, stats, False, "", "stream copy", rate=rate)
