"""Clips in memory for the measurements (the benchmarks, ``--report`` and the probes of
``--resolution auto``): reading any input whole or in sampled segments, writing exact y4m, encoding
and decoding one base-layer stream, and counting its bits.

Reading, y4m writing and decoding go through the project's in-process PyAV layer
(:mod:`vsr_plugin.media`); rate-distortion encodes run the bundled ffmpeg (:func:`encode_y4m`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.bitstream
import av.error
import numpy as np

from ..media import (EncodeOptions, MediaError, StreamInfo, TimedFrame, VideoInput, VideoOutput, Y4MOutput,
                     reach_bitrate)
from ..yuv import Colorimetry, Frame

# Units that carry no picture data and that the encoders add on their own (x264's ~0.7 kB version
# SEI, x265's SEI, AV1 metadata OBUs). Removed before counting bits, the same way for every pipeline.
NON_PICTURE_UNITS = {"h264": "6", "hevc": "39|40", "av1": "5"}


@dataclass(frozen=True)
class Clip:
    """A decoded clip: its frames (all one size and depth), frame rate and where it came from."""

    path: str
    frames: list[Frame]
    rate: Fraction
    truncated: bool = False

    @property
    def name(self) -> str:
        return Path(self.path).stem

    @property
    def width(self) -> int:
        return self.frames[0].width

    @property
    def height(self) -> int:
        return self.frames[0].height

    @property
    def bits(self) -> int:
        return self.frames[0].bits

    @property
    def colorimetry(self) -> Colorimetry:
        return self.frames[0].colorimetry

    @property
    def seconds(self) -> float:
        return len(self.frames) / float(self.rate)

    @functools.cached_property
    def content_sha256(self) -> str:
        """SHA-256 of the decoded planes (and depth) of every frame: the pictures a measurement saw,
        whatever container or encoder produced the file."""
        h = hashlib.sha256(f"{self.bits}:{self.width}x{self.height}:{len(self.frames)}".encode())
        for f in self.frames:
            for plane in (f.y, f.u, f.v):
                h.update(np.ascontiguousarray(plane).data)
        return h.hexdigest()


def read_clip(path: str | Path, *, max_frames: int | None = None) -> Clip:
    """Decode up to ``max_frames`` frames of a video file (y4m, mp4, mkv, ...) with PyAV."""
    frames: list[Frame] = []
    with VideoInput(path) as inp:
        for item in inp.items():
            if isinstance(item, TimedFrame):
                if frames and (item.frame.y.shape != frames[0].y.shape or item.frame.bits != frames[0].bits):
                    raise MediaError(f"{path}: picture size or depth changes mid-clip (frame {len(frames)})")
                frames.append(item.frame)
                if max_frames is not None and len(frames) >= max_frames:
                    break
        rate = inp.rate
        truncated = inp.truncated
    return Clip(str(path), frames, Fraction(rate).limit_denominator(1001 * 1000), truncated)


def read_segments(path: str | Path, plan: Callable[[int, float], list[tuple[int, int]]], *,
                  max_frames: int | None = None) -> tuple[Clip, list[tuple[int, int]], int]:
    """The frames of some segments of a video, one after the other as one clip: ``plan(total,
    fps)`` gives ``(first frame, frames)`` pairs for a clip of ``total`` frames (counted by decoding
    when the container does not say, or says more than there are). Returns the clip, the segments
    and the frame count of the whole video."""
    with VideoInput(path, max_frames=max_frames) as inp:
        total, rate = inp.frame_count_estimate, inp.rate
    if not total:
        total = sum(1 for _ in _frames(path, max_frames))
    segments = plan(total, float(rate))
    frames = _pick(path, max_frames, segments)
    if len(frames) < sum(n for _, n in segments):  # the estimate was high: plan again on the real count
        total = sum(1 for _ in _frames(path, max_frames))
        segments = plan(total, float(rate))
        frames = _pick(path, max_frames, segments)
    if not frames:
        raise MediaError(f"no decodable video frames in {path}")
    return Clip(str(path), frames, Fraction(rate).limit_denominator(1001 * 1000)), segments, total


def _pick(path: str | Path, max_frames: int | None, segments: list[tuple[int, int]]) -> list[Frame]:
    """The frames of the segments: each reached by seeking where the file allows it
    (:meth:`VideoInput.decode_range`), else by decoding from the start, no further than the last one."""
    with VideoInput(path, max_frames=max_frames) as inp:
        frames: list[Frame] = []
        for start, n in segments:
            part = inp.decode_range(start, n)
            if part is None:
                break
            frames += part
        else:
            return frames
    wanted = {i for start, n in segments for i in range(start, start + n)}
    frames = []
    for i, f in enumerate(_frames(path, max_frames)):
        if i in wanted:
            frames.append(f)
            if len(frames) == len(wanted):
                break
    return frames


def _frames(path: str | Path, max_frames: int | None) -> Iterator[Frame]:
    with VideoInput(path, max_frames=max_frames) as inp:
        for item in inp.items():
            if isinstance(item, TimedFrame):
                yield item.frame


# --- lossless files --------------------------------------------------------------------------------

def write_y4m(path: str | Path, frames: Iterable[Frame], rate: Fraction) -> int:
    """Write frames as y4m through the project's PyAV muxer (plain write: callers wrap it in
    :func:`vsr_plugin.atomic.atomic_output` where a final name is involved). Returns the count."""
    out = None
    n = 0
    try:
        for frame in frames:
            if out is None:
                info = StreamInfo(width=frame.width, height=frame.height, bits=frame.bits,
                                  colorimetry=frame.colorimetry, time_base=1 / Fraction(rate), rate=Fraction(rate))
                out = Y4MOutput(str(path), info)
            out.write(frame, n)
            n += 1
        if out is None:
            raise ValueError("no frames to write")
        out.close()
    except BaseException:
        if out is not None:
            out.abort()
        raise
    return n


def write_ffv1(path: str | Path, frames: Iterable[Frame], rate: Fraction) -> int:
    """Write frames losslessly as FFV1 (version 3, intra only) in Matroska, with their colour tags.
    Bit-exact flags keep version strings and random IDs out, so the same frames give the same bytes."""
    from ..media import apply_colorimetry, video_frame

    container = av.open(str(path), "w", format="matroska", options={"fflags": "+bitexact"})
    n = 0
    try:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("ffv1", rate=rate, options={"level": "3", "g": "1", "slicecrc": "1"})
                cc = stream.codec_context
                cc.width, cc.height = frame.width, frame.height
                cc.pix_fmt = "yuv420p" if frame.bits == 8 else "yuv420p10le"
                cc.time_base = Fraction(1, 1) / rate
                cc.flags |= av.codec.context.Flags.bitexact
                apply_colorimetry(cc, frame.colorimetry)
            vf = video_frame(frame)
            vf.pts, vf.time_base = n, Fraction(1, 1) / rate
            for packet in stream.encode(vf):
                container.mux(packet)
            n += 1
        if stream is None:
            raise ValueError("no frames to write")
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    return n


# --- geometry ------------------------------------------------------------------------------------

def pad_even(frame: Frame) -> Frame:
    """Edge-replicate one row/column where a side is odd (H.264/HEVC take even 4:2:0 sizes only)."""
    return frame.padded(frame.height + frame.height % 2, frame.width + frame.width % 2)


# --- one encoded stream --------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamBits:
    """What an encoded video stream costs. ``picture_bytes`` (packets with the encoder's SEI /
    metadata units removed) is the figure every bitrate is computed from."""

    packet_bytes: int
    picture_bytes: int
    extradata_bytes: int
    packets: int
    key_picture_bytes: int = 0  # the part of picture_bytes in keyframe packets
    keyframes: int = 0
    frame_bytes: tuple[int, ...] = ()  # picture bytes of each frame, in display order
    frame_packet_bytes: tuple[int, ...] = ()  # packet bytes (SEI included) of each frame, display order
    frame_keys: tuple[bool, ...] = ()  # whether each frame is a keyframe, display order

    def kbps(self, seconds: float, *, with_sei: bool = False) -> float:
        return 8.0 * (self.packet_bytes if with_sei else self.picture_bytes) / seconds / 1000.0

    def selected(self, frames: Sequence[int]) -> StreamBits:
        """The figures of some frames only (display-order indices), e.g. the measured part of
        probe segments whose lead-out was encoded but is not counted."""
        pick = lambda values: tuple(values[i] for i in frames)  # noqa: E731
        sizes, packets, keys = pick(self.frame_bytes), pick(self.frame_packet_bytes), pick(self.frame_keys)
        return StreamBits(packet_bytes=sum(packets), picture_bytes=sum(sizes), extradata_bytes=self.extradata_bytes,
                          packets=len(sizes), key_picture_bytes=sum(n for n, k in zip(sizes, keys) if k),
                          keyframes=sum(keys), frame_bytes=sizes, frame_packet_bytes=packets, frame_keys=keys)


def encode(frames: Sequence[Frame], path: Path, rate: Fraction, options: EncodeOptions) -> None:
    """Encode frames (even-sized) into a Matroska file with the project's PyAV encoder."""
    first = frames[0]
    info = StreamInfo(width=first.width, height=first.height, bits=first.bits, colorimetry=first.colorimetry,
                      time_base=Fraction(1, 1) / rate, rate=rate)
    out = VideoOutput(path, info, options)
    try:
        for i, f in enumerate(frames):
            out.write(f, i)
        out.close()
    except (av.error.FFmpegError, ValueError) as e:
        out.abort()
        raise MediaError(f"{options.codec} failed: {e}") from None


def encode_y4m(src: Path, dst: Path, options: EncodeOptions, colorimetry: Colorimetry, *,
               seconds: float | None = None, keyframes_every: int | None = None) -> None:
    """Encode a y4m file with the bundled ffmpeg in a fresh process, into Matroska; a ``bitrate``
    in two passes with the check of :func:`media.reach_bitrate`, as ``vsr-transcode`` encodes it
    (``seconds``: the clip's duration, to measure the bitrate reached). ``keyframes_every`` N:
    a keyframe on every N-th frame (probe clips made of N-frame segments).

    The rate–distortion runs use this rather than the in-process PyAV encoder: measured here,
    libx264 inside a long-lived Python process gives streams that differ by ~0.1% in size from run
    to run (the same input, threads=1 included), while a fresh ffmpeg process is bit-exact."""
    extra = {"force_key_frames": f"expr:eq(mod(n,{keyframes_every}),0)"} if keyframes_every else {}
    if options.bitrate is None:
        _ffmpeg_encode(src, dst, options, colorimetry, extra)
        return
    if seconds is None:
        raise ValueError("a bitrate target needs the clip's duration to check the rate reached")
    with tempfile.TemporaryDirectory(prefix="vsr-2pass-") as tmp:
        log = str(Path(tmp) / "stats")
        _ffmpeg_encode(src, Path(tmp) / "analysis.mkv", options, colorimetry, {"pass": 1, "passlogfile": log, **extra})

        def second_pass(attempt: int, bitrate: int) -> float:
            out = Path(tmp) / f"pass2-{attempt}.mkv"
            _ffmpeg_encode(src, out, replace(options, bitrate=bitrate), colorimetry,
                           {"pass": 2, "passlogfile": log, **extra})
            return 1000 * stream_bits(out).kbps(seconds, with_sei=True)

        best, _ = reach_bitrate(options.bitrate, second_pass)
        shutil.move(Path(tmp) / f"pass2-{best}.mkv", dst)


def _ffmpeg_encode(src: Path, dst: Path, options: EncodeOptions, colorimetry: Colorimetry,
                   extra: dict | None = None) -> None:
    import ffmpeg

    from ..ffmpeg_tools import command
    from ..yuv import MATRICES, PRIMARIES, TRANSFERS

    kwargs: dict = {"vcodec": options.codec, **options.codec_options(), **(extra or {})}
    if options.bitrate is not None:
        kwargs["video_bitrate"] = options.bitrate
    if options.pix_fmt:
        kwargs["pix_fmt"] = options.pix_fmt
    c = colorimetry
    tags = {key: table[value] for key, table, value in (
        ("colorspace", MATRICES, c.matrix), ("color_primaries", PRIMARIES, c.primaries),
        ("color_trc", TRANSFERS, c.transfer)) if value not in (0, 2) and value in table}
    tags["color_range"] = "pc" if c.range == "full" else "tv"
    # y4m carries no matrix, and ffmpeg 9 converts between the colour properties it assumes for an
    # input (BT.601 below HD sizes) and those asked of the output: the input is tagged alike, so
    # the tags are written and the pictures pass through unconverted
    video = ffmpeg.input(str(src), format="yuv4mpegpipe").video.filter(
        "setparams", **{"range": tags["color_range"]},
        **{k: v for k, v in tags.items() if k != "color_range"})
    proc = subprocess.run(command(video.output(str(dst), **kwargs, **tags)), capture_output=True)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise MediaError(f"{options.codec} failed: " + " | ".join(tail))


def stream_bits(path: Path) -> StreamBits:
    """Sum the video packet sizes of an encoded file, before and after removing non-picture units."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        name = s.codec_context.name
        extradata = len(s.codec_context.extradata or b"")
        units = NON_PICTURE_UNITS.get(name)
        bsf = av.bitstream.BitStreamFilterContext(f"filter_units=remove_types={units}", s) if units else None
        raw = picture = packets = key = keyframes = 0
        by_pts: list[tuple[int, int, int, bool]] = []
        for p in c.demux(s):
            if not p.size:
                continue
            packets += 1
            raw += p.size
            keyframe, pts, packet_size = p.is_keyframe, p.pts, p.size  # read first: the filter takes the packet
            size = sum(q.size for q in bsf.filter(p)) if bsf else p.size
            picture += size
            by_pts.append((pts if pts is not None else len(by_pts), size, packet_size, keyframe))
            if keyframe:
                key += size
                keyframes += 1
        if bsf:
            picture += sum(q.size for q in bsf.filter(None))
    frames = sorted(by_pts)
    return StreamBits(raw, picture, extradata, packets, key, keyframes, tuple(f[1] for f in frames),
                      tuple(f[2] for f in frames), tuple(f[3] for f in frames))


def decode(path: Path) -> list[Frame]:
    with VideoInput(path) as inp:
        frames = [t.frame for t in inp.items() if isinstance(t, TimedFrame)]
    return frames


def remove(*paths: Path) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
