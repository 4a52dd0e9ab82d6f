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

from .atomic import atomic_output
from .engine import Upscaler
from .media import (PIPE_IN, PIPE_OUT, EncodeOptions, MediaError, TimedFrame, VideoInput, VideoOutput,
                    Y4MOutput, stream_info)
from .pipeline import Pipeline, StageStats
from .progress import Progress


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


def _upscale_batch(engine: Upscaler) -> Callable[[list[TimedFrame]], list[TimedFrame]]:
    def run(batch: list[TimedFrame]) -> list[TimedFrame]:
        frames = engine.upscale_frames([t.frame for t in batch])
        return [TimedFrame(f, t.pts, t.time_base, t.index) for f, t in zip(frames, batch)]
    return run


def _run(inp: VideoInput, output, source: Iterator, engine: Upscaler, progress: Progress) -> StageStats:
    def sink(item) -> None:
        if isinstance(item, TimedFrame):
            output.write(item.frame, item.pts)
        else:
            output.mux_copy(item)

    pipe = Pipeline(source, _upscale_batch(engine), sink, batch=engine.options.batch)
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
            stats = _run(inp, out, source, engine, progress)
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
        stats = _run(inp, out, source, engine, Progress(None, enabled=show_progress))
        return TranscodeResult("stdin", "stdout", (inp.width, inp.height), (info.width, info.height),
                               stats.frames_out, stats, inp.truncated, inp.truncation_reason, repr(engine))
