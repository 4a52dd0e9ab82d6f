"""Whole-file and pipe upscaling: media input -> engine -> media output, concurrently.

Thin orchestration over :mod:`media`, :mod:`pipeline` and :mod:`engine`; the CLI and the
benchmarks call these functions.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kernels import downscale_shapes

from .atomic import atomic_output
from .baselayer import (BaseLayerTags, base_size, default_base_output, default_restored_output, is_base_layer, parse_tags,
                        resolve_upsampler, tags_for)
from .engine import Downscaler, Upscaler
from .media import (PIPE_IN, PIPE_OUT, EncodeOptions, MediaError, TimedFrame, VideoInput, VideoOutput,
                    Y4MOutput, stream_info)
from .models import CheckpointInfo
from .pipeline import Pipeline, StageStats
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

    @property
    def fps(self) -> float:
        return self.stats.fps

    def summary(self, what: str) -> str:
        (iw, ih), (ow, oh) = self.in_size, self.out_size
        s = self.stats
        return (f"{what}: {self.input} {iw}x{ih} -> {self.output} {ow}x{oh}, {self.frames} frames in "
                f"{s.wall_s:.1f} s ({s.fps:.2f} fps; busy: decode {s.decode_s:.1f} s, network {s.network_s:.1f} s, "
                f"encode {s.encode_s:.1f} s)")


def default_output(path: str | Path, scale: int) -> Path:
    """``clip.mp4`` -> ``clip.x2.mkv`` next to the input (Matroska holds any audio/subtitle codec)."""
    p = Path(path)
    return p.with_name(f"{p.stem}.x{scale}.mkv")


def check_output(output: Path, *, overwrite: bool, input_path: str) -> None:
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


def _run(output, source: Iterator, fn: FramesFn, batch: int, progress: Progress) -> StageStats:
    def sink(item) -> None:
        if isinstance(item, TimedFrame):
            output.write(item.frame, item.pts)
        else:
            output.mux_copy(item)

    pipe = Pipeline(source, _batches(fn), sink, batch=batch)
    try:
        stats = pipe.run(on_tick=lambda s: progress.update(s.frames_out, s.wall_s))
        output.close()
    except BaseException:
        output.abort()
        raise
    finally:
        progress.close()
    return stats


EngineSource = Upscaler | Callable[[], Upscaler]


def _engine(engine: EngineSource) -> Upscaler:
    return engine if isinstance(engine, Upscaler) else engine()


def upscale_file(src: str | Path, dst: str | Path | None, engine: EngineSource, encode: EncodeOptions, *,
                 overwrite: bool = False, show_progress: bool = True) -> TranscodeResult:
    """Upscale a video file into a new file (written atomically; nothing is left on failure).

    ``engine`` may be a factory, called once the input has proved readable (so a bad input
    fails before a model is loaded).
    """
    dst = Path(dst) if dst else default_output(src, 2)
    check_output(dst, overwrite=overwrite, input_path=str(src))
    with VideoInput(src) as inp:
        first, source = _with_first_frame(inp)
        engine = _engine(engine)
        info = stream_info(inp, first.frame, scale=engine.scale)
        progress = Progress(inp.frame_count_estimate, enabled=show_progress)
        with atomic_output(dst, overwrite=overwrite) as tmp:
            out = VideoOutput(tmp, info, encode, inp.copy_streams)
            stats = _run(out, source, engine.upscale_frames, engine.options.batch, progress)
        return TranscodeResult(str(src), str(dst), (inp.width, inp.height), (info.width, info.height),
                               stats.frames_out, stats, inp.truncated, inp.truncation_reason, repr(engine))


def upscale_pipe(engine: EngineSource, *, show_progress: bool = True) -> TranscodeResult:
    """yuv4mpegpipe on stdin -> upscaled yuv4mpegpipe on stdout."""
    if sys.stdin.isatty():
        raise MediaError("pipe mode reads a yuv4mpegpipe stream on stdin, e.g. ffmpeg -i in.mp4 -f yuv4mpegpipe - | vsr-transcode pipe --upscale")
    with VideoInput(PIPE_IN) as inp:
        first, source = _with_first_frame(inp)
        engine = _engine(engine)
        info = stream_info(inp, first.frame, scale=engine.scale)
        out = Y4MOutput(PIPE_OUT, info)
        stats = _run(out, source, engine.upscale_frames, engine.options.batch, Progress(None, enabled=show_progress))
        return TranscodeResult("stdin", "stdout", (inp.width, inp.height), (info.width, info.height),
                               stats.frames_out, stats, inp.truncated, inp.truncation_reason, repr(engine))


def downscale_pipe(engine: Callable[[], Downscaler] | Downscaler, *, show_progress: bool = True) -> TranscodeResult:
    """yuv4mpegpipe on stdin -> learned 2x reduction as yuv4mpegpipe on stdout (the base layer,
    for an external encoder)."""
    if sys.stdin.isatty():
        raise MediaError("pipe mode reads a yuv4mpegpipe stream on stdin, e.g. ffmpeg -i in.mp4 -f yuv4mpegpipe - | vsr-transcode pipe --downscale")
    with VideoInput(PIPE_IN) as inp:
        first, source = _with_first_frame(inp)
        engine = engine if isinstance(engine, Downscaler) else engine()
        (lh, lw), _ = downscale_shapes(first.frame.height, first.frame.width)
        info = stream_info(inp, first.frame, size=(lw, lh))
        out = Y4MOutput(PIPE_OUT, info)
        stats = _run(out, source, engine.downscale_frames, engine.options.batch, Progress(None, enabled=show_progress))
        return TranscodeResult("stdin", "stdout", (inp.width, inp.height), (lw, lh), stats.frames_out, stats,
                               inp.truncated, inp.truncation_reason, repr(engine))


def encode_base_layer(src: str | Path, dst: str | Path | None, down: Downscaler, up_info: CheckpointInfo,
                      encode: EncodeOptions, *, overwrite: bool = False, show_progress: bool = True) -> TranscodeResult:
    """Encoder side: learned 2x reduction + base codec -> ``.vsr.mkv`` (tags name the upsampler
    and the original size; audio and subtitles copied)."""
    dst = Path(dst) if dst else default_base_output(src)
    check_output(dst, overwrite=overwrite, input_path=str(src))
    with VideoInput(src) as inp:
        first, source = _with_first_frame(inp)
        h, w = first.frame.height, first.frame.width
        bh, bw = base_size(h), base_size(w)
        info = stream_info(inp, first.frame, size=(bw, bh))
        tags = tags_for(up_info, down.info, scale=2, width=w, height=h)

        def reduce(frames: list[Frame]) -> list[Frame]:
            return [f.padded(bh, bw) for f in down.downscale_frames(frames)]

        progress = Progress(inp.frame_count_estimate, enabled=show_progress)
        with atomic_output(dst, overwrite=overwrite) as tmp:
            out = VideoOutput(tmp, info, encode, inp.copy_streams, format="matroska", tags=tags.to_metadata())
            stats = _run(out, source, reduce, down.options.batch, progress)
        return TranscodeResult(str(src), str(dst), (inp.width, inp.height), (bw, bh), stats.frames_out, stats,
                               inp.truncated, inp.truncation_reason, repr(down))


def read_base_layer_tags(src: str | Path) -> BaseLayerTags | None:
    """The validated tags of a ``.vsr.mkv`` file, or None for an ordinary video."""
    with VideoInput(src) as inp:
        if not is_base_layer(inp.metadata):
            return None
        return parse_tags(inp.metadata, base_width=inp.width, base_height=inp.height, source=str(src))


def restore_base_layer(src: str | Path, dst: str | Path | None, make_engine: Callable[[Path], Upscaler],
                       encode: EncodeOptions, *, overwrite: bool = False, show_progress: bool = True,
                       search: tuple[Path, ...] = ()) -> TranscodeResult:
    """Decoder side: a tagged base layer, decoded and upsampled with the upsampler its tags name
    (looked up by content hash among the shipped weights and ``search`` folders), cropped to the
    original size."""
    dst = Path(dst) if dst else default_restored_output(src)
    check_output(dst, overwrite=overwrite, input_path=str(src))
    with VideoInput(src) as inp:
        tags = parse_tags(inp.metadata, base_width=inp.width, base_height=inp.height, source=str(src))
        engine = make_engine(resolve_upsampler(tags, search=search))
        first, source = _with_first_frame(inp)
        info = stream_info(inp, first.frame, size=(tags.width, tags.height))

        def restore(frames: list[Frame]) -> list[Frame]:  # the base layer may carry padding
            return [f.cropped(tags.height, tags.width) for f in engine.upscale_frames(frames)]

        progress = Progress(inp.frame_count_estimate, enabled=show_progress)
        with atomic_output(dst, overwrite=overwrite) as tmp:
            out = VideoOutput(tmp, info, encode, inp.copy_streams)
            stats = _run(out, source, restore, engine.options.batch, progress)
        return TranscodeResult(str(src), str(dst), (inp.width, inp.height), (tags.width, tags.height),
                               stats.frames_out, stats, inp.truncated, inp.truncation_reason, repr(engine))
