"""Media I/O with PyAV: decode any common container to YUV 4:2:0 frames, encode them back.

In-process (no ffmpeg subprocess). Decoded frames become :class:`~vsr_plugin.yuv.Frame` values
with their timestamps; other pixel formats are converted to 4:2:0 with a one-line notice.
Encoding keeps timestamps (variable frame rate too), colorimetry, rotation and sample aspect
ratio, and copies audio and subtitle streams packet for packet.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from .yuv import CHROMA_LOCATIONS, Colorimetry, Frame

CODECS = ("libx264", "libx265", "libsvtav1", "ffv1")
EVEN_ONLY = ("libx264", "libx265")  # H.264/HEVC cannot code odd 4:2:0 sizes (cropping is in 2-pixel units)
PIX_FMTS = {"yuv420p": 8, "yuv420p10le": 10}
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libsvtav1": 30}  # ffv1 is lossless
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libsvtav1": (1, 63)}
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")
PRESETS = {"libx264": _X26X_PRESETS, "libx265": _X26X_PRESETS, "libsvtav1": tuple(str(p) for p in range(-1, 14))}
# the encoders' --tune values (SVT-AV1 and FFV1 take none through ffmpeg's options)
TUNES = {"libx264": ("film", "animation", "grain", "stillimage", "psnr", "ssim", "fastdecode", "zerolatency"),
         "libx265": ("psnr", "ssim", "grain", "zerolatency", "fastdecode", "animation")}
PIPE_IN, PIPE_OUT = "pipe:0", "pipe:1"


class MediaError(Exception):
    """A media problem with a one-line explanation for the user."""


def notice(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


# --- colorimetry between PyAV and vsr ----------------------------------------------------------

# FFmpeg's AVChromaLocation: 0 unspecified, 1 left, 2 center, 3 topleft, 4 top, 5 bottomleft, 6 bottom
_AV_CHROMA = {name: i + 1 for i, name in enumerate(CHROMA_LOCATIONS)}


def colorimetry_of(stream: av.video.stream.VideoStream, frame: av.VideoFrame | None) -> Colorimetry:
    """Stream-level tags, falling back to the first frame's where the stream leaves one unset."""
    cc = stream.codec_context

    def pick(name: str, frame_name: str | None = None) -> int:
        value = int(getattr(cc, name) or 0)
        if value in (0, 2) and frame is not None:  # 0/2: reserved/unspecified
            value = int(getattr(frame, frame_name or name) or 0)
        return value

    matrix = pick("colorspace")
    rng = pick("color_range")
    loc = int(cc.chroma_sample_location or 0) or (int(frame.chroma_location or 0) if frame is not None else 0)
    return Colorimetry(
        matrix=matrix if 0 <= matrix <= 255 else 2,
        transfer=pick("color_trc"),
        primaries=pick("color_primaries"),
        range="full" if rng == 2 else "limited",  # AVCOL_RANGE_JPEG == 2
        chroma_location=CHROMA_LOCATIONS[loc - 1] if 1 <= loc <= 6 else "left",
    )


def apply_colorimetry(target, c: Colorimetry) -> None:
    """Tag a codec context or a VideoFrame with ``c``."""
    target.colorspace = c.matrix
    target.color_trc = c.transfer
    target.color_primaries = c.primaries
    target.color_range = 2 if c.range == "full" else 1
    if hasattr(target, "chroma_sample_location"):
        target.chroma_sample_location = _AV_CHROMA[c.chroma_location]
    elif hasattr(target, "chroma_location"):
        target.chroma_location = _AV_CHROMA[c.chroma_location]


# --- planes <-> av.VideoFrame -------------------------------------------------------------------

def _plane_view(plane, dtype: np.dtype) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    return np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // itemsize)[:, : plane.width]


def planes_of(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copies of the Y, U, V planes of a yuv420p (or yuvj420p) or yuv420p10le frame."""
    dtype = np.dtype("<u2") if frame.format.name == "yuv420p10le" else np.uint8
    return tuple(_plane_view(p, dtype).copy() for p in frame.planes[:3])


def video_frame(frame: Frame, fmt: str | None = None) -> av.VideoFrame:
    """A new VideoFrame holding ``frame``'s planes and colour tags: yuv420p / yuv420p10le by bit
    depth, or ``fmt`` of the same layout (e.g. ``yuvj420p`` for the JPEG encoder)."""
    fmt = fmt or ("yuv420p" if frame.bits == 8 else "yuv420p10le")
    out = av.VideoFrame(frame.width, frame.height, fmt)
    for plane, data in zip(out.planes, frame.planes):
        _plane_view(plane, data.dtype.newbyteorder("<") if data.dtype.itemsize > 1 else data.dtype)[...] = data
    apply_colorimetry(out, frame.colorimetry)
    return out


def convert_bits(frame: Frame, bits: int) -> Frame:
    """Change bit depth: up by shifting, down by rounding (``(x + 2^(k-1)) >> k``, clamped)."""
    if bits == frame.bits:
        return frame
    k = bits - frame.bits
    out_dtype = np.uint8 if bits == 8 else np.uint16
    if k > 0:
        planes = [(p.astype(np.uint16) << k).astype(out_dtype) for p in frame.planes]
    else:
        m = (1 << bits) - 1
        planes = [np.minimum((p.astype(np.uint32) + (1 << (-k - 1))) >> -k, m).astype(out_dtype) for p in frame.planes]
    return Frame(y=planes[0], u=planes[1], v=planes[2], bits=bits, colorimetry=frame.colorimetry)


# --- input ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimedFrame:
    """A decoded picture and its presentation time (``pts`` in ``time_base`` units)."""

    frame: Frame
    pts: int
    time_base: Fraction
    index: int


def check_input(path: str | Path) -> None:
    """Cheap checks before anything expensive: the input exists and is a file."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"no such file: {path}")
    if p.is_dir():
        raise MediaError(f"is a directory, not a video file: {path}")


Y4M_MAX_SIDE = 32768


def check_y4m_header(line: bytes, source: str) -> None:
    """Refuse a yuv4mpeg stream header that libavformat would answer with a misleading errno."""
    bad = f"bad y4m header on {source}"
    if not line.startswith(b"YUV4MPEG2"):
        raise MediaError(f"{bad}: it must start with 'YUV4MPEG2', got {line[:20]!r}")
    fields = {f[:1]: f[1:] for f in line.split()[1:] if f}
    for key, name in ((b"W", "width"), (b"H", "height")):
        value = fields.get(key)
        if value is None:
            raise MediaError(f"{bad}: no {name} ({key.decode()} field)")
        if not value.isdigit() or int(value) < 1:
            got = key.decode() + value.decode(errors="replace")
            raise MediaError(f"{bad}: {name} must be a positive integer, got {got}")
        if int(value) > Y4M_MAX_SIDE:
            raise MediaError(f"{bad}: {name} {int(value)} is larger than {Y4M_MAX_SIDE}")
    rate = fields.get(b"F")
    if rate is not None:
        num, _, den = rate.partition(b":")
        if not (num.isdigit() and den.isdigit() and int(num) > 0 and int(den) > 0):
            got = "F" + rate.decode(errors="replace")
            raise MediaError(f"{bad}: frame rate must be F<num>:<den> with both positive, got {got}")


class _CountingReader(io.RawIOBase):
    """A byte stream that counts what it hands to the demuxer and keeps the first line.

    FFmpeg's y4m demuxer silently drops a final, incomplete frame; comparing the bytes read with
    what the complete frames account for reveals one."""

    def __init__(self, raw) -> None:
        super().__init__()
        self.raw, self.count, self.head = raw, 0, b""
        self._pending = b""
        self.interrupted: BaseException | None = None

    def reraise(self) -> None:
        """Raise the interrupt (Ctrl-C, a signal) that arrived inside a read, if one did."""
        if self.interrupted is not None:
            raise self.interrupted

    def readable(self) -> bool:
        return True

    def first_line(self, limit: int = 1024) -> bytes:
        """The stream's first line (without reading past it for the demuxer: it is served again)."""
        while b"\n" not in self._pending and len(self._pending) < limit:
            data = self.raw.read(1)
            if not data:
                break
            self._pending += data
        return self._pending.split(b"\n", 1)[0]

    def readinto(self, buffer) -> int:
        if self._pending:
            data, self._pending = self._pending[: len(buffer)], self._pending[len(buffer):]
        else:
            try:
                # read1: what has arrived (at least a byte), so a live pipe is not held until 1 MB
                data = self.raw.read1(len(buffer)) if hasattr(self.raw, "read1") else self.raw.read(len(buffer))
            except BaseException as e:  # noqa: BLE001 - Ctrl-C inside the demuxer's read callback:
                self.interrupted = e    # PyAV would swallow it, so end the stream and re-raise after
                return 0
        n = len(data)
        buffer[:n] = data
        self.count += n
        if len(self.head) < 4096:
            self.head += data[: 4096 - len(self.head)]
        return n

    def close(self) -> None:
        if self.raw is not sys.stdin.buffer:
            self.raw.close()
        super().close()


def main_video_stream(streams):
    """The video stream ffmpeg's command line picks by default: a score of picture area plus
    5,000,000 for the ``default`` flag, a cover picture (``attached_pic``) scoring 1; the first of equals."""
    from av.stream import Disposition

    def score(s) -> int:
        if s.disposition & Disposition.attached_pic:
            return 1
        area = (s.codec_context.width or 0) * (s.codec_context.height or 0)
        return area + 5_000_000 * bool(s.disposition & Disposition.default)

    return max(streams, key=lambda s: (score(s), -s.index))


class _BestEffortPts:
    """Frame timestamps as ffmpeg guesses them (libavcodec's ``guess_correct_pts``): the frame's
    pts, unless pts has gone backwards more often than the packet dts has. A raw H.264 stream
    remuxed into mp4 with B-frames carries pts in decode order; its dts are the usable clock."""

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = None

    def pts(self, frame: av.VideoFrame) -> int | None:
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


class VideoInput:
    """An opened input with one video stream (the first), decoded to 4:2:0 :class:`Frame` values.

    ``path`` is a file or :data:`PIPE_IN` (stdin, read as yuv4mpegpipe). Raises
    :class:`MediaError` for a missing file, a file that is not media, or no video stream. After
    iteration, ``truncated`` says whether decoding stopped at corrupt or missing data (for y4m: an
    incomplete last frame) and ``truncation_reason`` says how; ``damaged_packets`` counts the
    video packets that failed to decode and were skipped (decoding goes on after them, as ffmpeg's does).
    """

    def __init__(self, path: str | Path, *, max_frames: int | None = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"frames must be >= 1, got {max_frames}")
        self.path = str(path)
        self.max_frames = max_frames
        self._reader: _CountingReader | None = None
        is_pipe = self.path == PIPE_IN
        if not is_pipe:
            check_input(path)
        is_y4m = is_pipe or self.path.lower().endswith(".y4m")
        try:
            if is_y4m:
                self._reader = _CountingReader(sys.stdin.buffer if is_pipe else open(self.path, "rb"))
                try:
                    check_y4m_header(self._reader.first_line(), "stdin" if is_pipe else self.path)
                except MediaError:
                    self._reader.close()
                    raise
                try:
                    self.container = av.open(self._reader, format="yuv4mpegpipe", buffer_size=1 << 20)
                finally:
                    self._reader.reraise()
            else:
                self.container = av.open(self.path)
        except av.error.FFmpegError as e:
            what = "y4m stream on stdin" if is_pipe else "video file"
            raise MediaError(f"not a readable {what}: {path} ({_reason(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise MediaError(f"no video stream in {path}")
        self.stream = main_video_stream(self.container.streams.video)
        self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        if not cc.width or not cc.height:
            self.container.close()
            raise MediaError(f"video stream of {path} has no picture size (unsupported or corrupt)")
        self.width, self.height = cc.width, cc.height
        self.time_base = self.stream.time_base or Fraction(1, 25)
        self.rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self.truncated = False
        self.truncation_reason = ""
        self.frames_decoded = 0
        self.damaged_packets = 0
        self.damage_reason = ""
        self.bits: int | None = None
        self.colorimetry: Colorimetry | None = None
        self.rotation_matrix: list[int] | None = None
        self.hdr: HdrMetadata | None = None
        self.sample_aspect_ratio = self.stream.sample_aspect_ratio
        self._notified: set[str] = set()
        self._raw_frame_bytes: int | None = None

    @property
    def metadata(self) -> dict[str, str]:
        """Container-level tags."""
        return dict(self.container.metadata)

    @property
    def copy_streams(self) -> list:
        """Audio and subtitle streams, to be copied unchanged."""
        return [s for s in self.container.streams if s.type in ("audio", "subtitle")]

    @property
    def frame_count_estimate(self) -> int | None:
        estimate = None
        if self.stream.frames:
            estimate = int(self.stream.frames)
        elif self.container.duration and self.rate:
            estimate = int(round(self.container.duration / 1_000_000 * float(self.rate)))
        if self.max_frames is not None:
            return min(estimate, self.max_frames) if estimate else self.max_frames
        return estimate

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _to_frame(self, frame: av.VideoFrame) -> Frame:
        name = frame.format.name
        if self._raw_frame_bytes is None:
            sample = 2 if any(c.bits > 8 for c in frame.format.components) else 1
            self._raw_frame_bytes = sample * sum(p.width * p.height for p in frame.planes)
        from_rgb = False
        if name not in PIX_FMTS:
            deep = any(c.bits > 8 for c in frame.format.components)
            target = "yuv420p10le" if deep else "yuv420p"
            if frame.format.is_rgb:
                # RGB has no YUV matrix of its own: BT.709 for HD and larger, BT.601 below (as encoders
                # assume for untagged video), limited range; the output is tagged with what was used
                from av.video.reformatter import ColorRange, Colorspace

                from_rgb = True
                space = Colorspace.ITU709 if frame.height >= 720 else Colorspace.SMPTE170M
                frame = frame.reformat(format=target, dst_colorspace=space, dst_color_range=ColorRange.MPEG)
                how = f"{target}, BT.{'709' if frame.height >= 720 else '601'} limited range"
            else:
                frame = frame.reformat(format=target)
                how = target
            if name not in self._notified:
                notice(f"converting {name} to {how} (vsr works on 4:2:0)")
                self._notified.add(name)
            name = target
        if self.colorimetry is None:
            order = str(getattr(self.stream.codec_context, "field_order", "") or "").lower()
            if frame.interlaced_frame or order in ("tt", "bb", "tb", "bt"):
                where = "stdin" if self.path == PIPE_IN else self.path
                notice(f"{where}: the video is interlaced; vsr scales whole frames as progressive ones, which "
                       "combs moving edges: deinterlace first (e.g. ffmpeg -vf bwdif) for a clean result")
            self.colorimetry = colorimetry_of(self.stream, frame)
            if from_rgb:
                hd = frame.height >= 720
                c = self.colorimetry
                self.colorimetry = replace(
                    c, matrix=1 if hd else 6, range="limited",
                    primaries=c.primaries if c.primaries not in (0, 2) else (1 if hd else 6),
                    transfer=c.transfer if c.transfer not in (0, 2) else (1 if hd else 6))
            self.bits = PIX_FMTS[name]
            self.rotation_matrix = _display_matrix(frame)
            self.hdr = _hdr_metadata(frame)
        y, u, v = planes_of(frame)
        return Frame(y=y, u=u, v=v, bits=PIX_FMTS[name], colorimetry=self.colorimetry)

    def decode_range(self, first: int, count: int) -> list[Frame] | None:
        """Frames ``first`` .. ``first + count - 1`` (numbered at the stream's average rate), reached
        by seeking to the keyframe before ``first`` rather than decoding everything up to it (a probe in
        the middle of a film). None where that cannot be trusted — a pipe or y4m, frames without
        timestamps, a gap or repeat in the numbering (variable frame rate), a failed seek: the caller
        decodes from the start instead."""
        if self._reader is not None or not self.rate or count < 1:
            return None
        start = self.stream.start_time or 0
        per_frame = 1 / (self.rate * self.time_base)  # timestamp units per frame
        frames: list[Frame] = []
        try:
            self.container.seek(start + int(first * per_frame), stream=self.stream, backward=True)
            self.stream.codec_context.flush_buffers()
            for packet in self.container.demux(self.stream):
                for frame in packet.decode():  # the final empty packet flushes the decoder
                    if frame.pts is None:
                        return None
                    index = round(float((frame.pts - start) / per_frame))
                    if index < first:  # from the keyframe up to the first one asked for
                        continue
                    if index >= first + count:
                        return frames if len(frames) == count else None
                    if index != first + len(frames):
                        return None
                    frames.append(self._to_frame(frame))
        except av.error.FFmpegError:
            return None
        return frames if len(frames) == count else None

    def items(self) -> Iterator[TimedFrame | av.Packet]:
        """Decoded video frames and the packets of the streams to copy, in demux order.

        A read or decode error after some frames ends the iteration and sets ``truncated``;
        an error before the first frame raises :class:`MediaError`.
        """
        streams = [self.stream] + self.copy_streams
        last_pts = None
        step = max(1, int(round(1 / (self.rate * self.time_base)))) if self.rate else 1
        clock = _BestEffortPts()
        demux = self.container.demux(streams)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except (av.error.FFmpegError, EOFError) as e:  # the file itself ends or cannot be read on
                if self.frames_decoded == 0:
                    raise MediaError(f"cannot decode {self.path}: {_reason(e)}") from None
                self.truncated = True
                self.truncation_reason = _reason(e)
                break
            if packet.stream.index != self.stream.index:
                if packet.dts is not None:
                    yield packet
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:  # one damaged packet: skip it and keep decoding
                self.damaged_packets += 1
                self.damage_reason = self.damage_reason or _reason(e)
                continue
            for frame in frames:
                pts = clock.pts(frame)
                if pts is None:
                    pts = 0 if last_pts is None else last_pts + step
                elif last_pts is not None and pts <= last_pts:  # never go back: the muxer refuses that
                    pts = last_pts + step
                last_pts = pts
                yield TimedFrame(self._to_frame(frame), pts, self.time_base, self.frames_decoded)
                self.frames_decoded += 1
                if self.frames_decoded == self.max_frames:  # the first N frames were asked for: done
                    return
        if self._reader is not None:
            self._reader.reraise()
        if self.frames_decoded == 0 and self.damaged_packets:
            raise MediaError(f"cannot decode {self.path}: {self.damage_reason}")
        if self.frames_decoded == 0:
            raise MediaError(f"no decodable video frames in {self.path}")
        if self.stream.frames and self.frames_decoded < self.stream.frames:
            self.truncated = True
            self.truncation_reason = self.truncation_reason or f"{self.stream.frames} frames announced"
        announced = self._announced_seconds()
        if announced and last_pts is not None and not self.truncated:
            start = self.stream.start_time or 0
            decoded = float((last_pts - start) * self.time_base) + float(1 / self.rate)
            if announced - decoded > 2 / float(self.rate) + 0.05:
                self.truncated = True
                self.truncation_reason = f"video ends at {decoded:.2f} s of {announced:.2f} s announced"
        if self._reader is not None:
            leftover = self._y4m_leftover()
            if leftover:
                self.truncated = True
                self.truncation_reason = f"ends mid-frame ({leftover} bytes of an incomplete frame)"

    def _announced_seconds(self) -> float | None:
        """The video duration the container header promises (stream, Matroska tag or container)."""
        if self.stream.duration:
            return float(self.stream.duration * self.time_base)
        tag = self.stream.metadata.get("DURATION")
        if tag:
            try:
                h, m, sec = tag.split(":")
                return int(h) * 3600 + int(m) * 60 + float(sec)
            except ValueError:
                pass
        if self.container.duration and len(self.container.streams) == 1:
            return self.container.duration / 1_000_000
        return None

    def _y4m_leftover(self) -> int:
        """Bytes read beyond the header and the complete frames (each ``FRAME\\n`` + planes)."""
        header = self._reader.head.find(b"\n") + 1
        frame_bytes = len(b"FRAME\n") + (self._raw_frame_bytes or 0)
        return max(0, self._reader.count - header - self.frames_decoded * frame_bytes)


def _display_matrix(frame: av.VideoFrame) -> list[int] | None:
    try:
        sd = frame.side_data[av.sidedata.sidedata.Type.DISPLAYMATRIX]
    except (KeyError, AttributeError, IndexError):
        return None
    return np.frombuffer(bytes(sd), "<i4").tolist()


@dataclass(frozen=True, kw_only=True)
class HdrMetadata:
    """HDR10 static metadata: the mastering display (SMPTE ST 2086) and the content light levels.

    Chromaticities are CIE 1931 x, y; luminances in cd/m^2; ``max_cll``/``max_fall`` in cd/m^2
    (None when the input has no content light level). What the encoders take, in their units.
    """

    red: tuple[float, float] | None = None
    green: tuple[float, float] | None = None
    blue: tuple[float, float] | None = None
    white: tuple[float, float] | None = None
    max_luminance: float | None = None
    min_luminance: float | None = None
    max_cll: int | None = None
    max_fall: int | None = None

    def _st2086(self, chroma, luma) -> str | None:
        """``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)``, the string x264, x265 and SVT-AV1 read."""
        if None in (self.red, self.green, self.blue, self.white, self.max_luminance, self.min_luminance):
            return None
        xy = lambda c: f"({chroma(c[0])},{chroma(c[1])})"  # noqa: E731
        return (f"G{xy(self.green)}B{xy(self.blue)}R{xy(self.red)}WP{xy(self.white)}"
                f"L({luma(self.max_luminance)},{luma(self.min_luminance)})")

    def encoder_params(self, codec: str) -> dict[str, str]:
        """``key=value`` settings of the encoder's own parameter string (x264-params, ...)."""
        out: dict[str, str] = {}
        if codec == "libsvtav1":
            md = self._st2086(lambda v: f"{v:.4f}", lambda v: f"{v:.4f}")
            if md:
                out["mastering-display"] = md
            if self.max_cll is not None:
                out["content-light"] = f"{self.max_cll},{self.max_fall or 0}"
            return out
        # x264 and x265: chromaticity in 0.00002 steps, luminance in 0.0001 cd/m^2 steps
        md = self._st2086(lambda v: str(round(v * 50000)), lambda v: str(round(v * 10000)))
        if md:
            out["mastering-display" if codec == "libx264" else "master-display"] = md
        if self.max_cll is not None:
            out["cll" if codec == "libx264" else "max-cll"] = f"{self.max_cll},{self.max_fall or 0}"
        if codec == "libx265" and out:
            out["hdr10"] = "1"
        return out


def _hdr_metadata(frame: av.VideoFrame) -> HdrMetadata | None:
    """The HDR10 side data of a decoded frame (libavutil's AVMasteringDisplayMetadata: 10 rationals
    r, g, b primaries, white point, min and max luminance, then has_primaries and has_luminance;
    AVContentLightMetadata: MaxCLL, MaxFALL), or None."""
    Type = av.sidedata.sidedata.Type
    fields: dict = {}
    try:
        md = bytes(frame.side_data[Type.MASTERING_DISPLAY_METADATA])
    except (KeyError, AttributeError, IndexError):
        md = b""
    if len(md) >= 88:
        r = np.frombuffer(md[:80], "<i4").reshape(10, 2).astype(np.float64)
        q = [float(num / den) if den else 0.0 for num, den in r]
        has_primaries, has_luminance = np.frombuffer(md[80:88], "<i4").tolist()
        if has_primaries:
            fields.update(red=(q[0], q[1]), green=(q[2], q[3]), blue=(q[4], q[5]), white=(q[6], q[7]))
        if has_luminance:
            fields.update(min_luminance=q[8], max_luminance=q[9])
    try:
        cll = bytes(frame.side_data[Type.CONTENT_LIGHT_LEVEL])
    except (KeyError, AttributeError, IndexError):
        cll = b""
    if len(cll) >= 8:
        fields["max_cll"], fields["max_fall"] = (int(v) for v in np.frombuffer(cll[:8], "<u4"))
    return HdrMetadata(**fields) if fields else None


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.split("; last error log:")[0].strip() or type(e).__name__


# --- output --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RatePass:
    """Pass 1 (analysis: the encoder writes its statistics to ``stats``) or 2 (the real encode,
    reading them) of a two-pass encode. x264 and x265 keep the file themselves; SVT-AV1's statistics
    go through the codec context and :class:`VideoOutput` moves them to and from the file."""

    number: int
    stats: Path

    def __post_init__(self) -> None:
        if self.number not in (1, 2):
            raise ValueError(f"a rate pass is 1 or 2, got {self.number}")


RATE_TOLERANCE = 0.03  # a two-pass encode further than this from its target is encoded again
RATE_RETRIES = 3


def reach_bitrate(target: int, second_pass: Callable[[int, int], float]) -> tuple[int, float]:
    """Pass 2 of a two-pass encode until its bitrate is within :data:`RATE_TOLERANCE` of ``target``.

    Two-pass x264/x265/SVT-AV1 miss their target by up to ~25% on short clips (measured on 2 s
    clips at 1080p: x264 medium +23% at 1 Mbit/s), so a result too far off is encoded again (same
    first-pass statistics) at a corrected target, up to :data:`RATE_RETRIES` times: first scaled by
    the miss, then by the secant through the last two (asked, reached) pairs on log scales (SVT-AV1
    answers a raised target less than in proportion). ``second_pass(attempt, bitrate)`` encodes and
    returns the bitrate reached; returns the attempt closest to the target and its bitrate."""
    tried: list[tuple[float, float]] = []  # (log asked, log reached)
    asked, best = target, None
    for attempt in range(1 + RATE_RETRIES):
        reached = second_pass(attempt, asked)
        if best is None or abs(math.log(reached / target)) < abs(math.log(best[1] / target)):
            best = (attempt, reached)
        if abs(reached / target - 1) <= RATE_TOLERANCE:
            break
        tried.append((math.log(asked), math.log(max(reached, 1.0))))
        slope = 1.0
        if len(tried) >= 2 and tried[-1][0] != tried[-2][0]:
            (a0, r0), (a1, r1) = tried[-2:]
            slope = min(max((r1 - r0) / (a1 - a0), 0.3), 3.0)
        asked = max(1, round(math.exp(tried[-1][0] + (math.log(target) - tried[-1][1]) / slope)))
    return best


@dataclass(frozen=True, kw_only=True)
class EncodeOptions:
    """Base-codec settings for file output.

    ``crf`` and ``bitrate`` (bits/s) are alternatives; with neither, the codec's default CRF
    (x264 18, x265 20, SVT-AV1 30) is used; ``ffv1`` is lossless and takes neither. ``pix_fmt``
    None keeps the input's bit depth. ``threads`` caps the encoder's worker threads (x264
    ``threads``, x265 ``pools``, SVT-AV1 ``lp``, otherwise libavcodec's ``threads``); None leaves the
    codec's own choice. ``tune``: the encoder's tune (x264, x265: ``psnr``, ``film``, ...).
    """

    codec: str = "libx264"
    crf: float | None = None
    preset: str | None = None
    bitrate: int | None = None
    pix_fmt: str | None = None
    rate_pass: RatePass | None = None  # one pass of a two-pass encode at ``bitrate`` (see transcode.py)
    threads: int | None = None
    tune: str | None = None            # the encoder's --tune (x264, x265); None: none

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.pix_fmt is not None and self.pix_fmt not in PIX_FMTS:
            raise ValueError(f"pix_fmt must be one of {', '.join(PIX_FMTS)}, got {self.pix_fmt!r}")
        if self.crf is not None and self.bitrate is not None:
            raise ValueError("give either crf or bitrate, not both")
        if self.bitrate is not None and self.bitrate <= 0:
            raise ValueError(f"bitrate must be positive, got {self.bitrate}")
        if self.codec == "ffv1" and (self.crf is not None or self.bitrate is not None):
            raise ValueError("ffv1 is lossless: it takes neither crf nor bitrate")
        if self.crf is not None:
            lo, hi = CRF_RANGE[self.codec]
            if not lo <= self.crf <= hi:
                raise ValueError(f"{self.codec} takes a crf from {lo} to {hi}, got {self.crf:g}")
        if self.rate_pass is not None and (self.bitrate is None or self.codec == "ffv1"):
            raise ValueError("a two-pass encode needs a bitrate and a lossy codec")
        if self.preset is not None:
            if self.codec == "ffv1":
                raise ValueError("ffv1 has no presets")
            if self.preset not in PRESETS[self.codec]:
                names = PRESETS[self.codec]
                shown = f"{names[0]}..{names[-1]}" if self.codec == "libsvtav1" else ", ".join(names)
                raise ValueError(f"{self.codec} presets are {shown}, got {self.preset!r}")
        if self.tune is not None and self.tune not in TUNES.get(self.codec, ()):
            if self.codec not in TUNES:
                raise ValueError(f"{self.codec} takes no tune, got {self.tune!r}")
            raise ValueError(f"{self.codec} tunes are {', '.join(TUNES[self.codec])}, got {self.tune!r}")

    def codec_options(self, hdr: HdrMetadata | None = None) -> dict[str, str]:
        """The encoder's options; ``hdr``: HDR10 metadata to write into the bitstream."""
        opts: dict[str, str] = {}
        if self.threads is not None and self.codec not in ("libx265", "libsvtav1"):
            opts["threads"] = str(self.threads)
        if self.codec == "ffv1":
            return {**opts, "level": "3", "slicecrc": "1"}
        if self.preset:
            opts["preset"] = self.preset
        if self.tune:
            opts["tune"] = self.tune
        if self.bitrate is None:
            opts["crf"] = f"{self.crf if self.crf is not None else DEFAULT_CRF[self.codec]:g}"
        params = {"log-level": "error"} if self.codec == "libx265" else {}
        if self.threads is not None and self.codec in ("libx265", "libsvtav1"):  # they size their own pools
            params["pools" if self.codec == "libx265" else "lp"] = str(self.threads)
        if self.rate_pass is not None:
            if self.codec == "libx264":
                opts["stats"] = str(self.rate_pass.stats)
            elif self.codec == "libx265":  # x265 takes its passes as parameters, not codec flags
                params.update({"pass": str(self.rate_pass.number), "stats": str(self.rate_pass.stats)})
        params.update(hdr.encoder_params(self.codec) if hdr else {})
        if params:
            key = {"libx264": "x264-params", "libx265": "x265-params", "libsvtav1": "svtav1-params"}[self.codec]
            opts[key] = ":".join(f"{k}={v}" for k, v in params.items())
        return opts


@dataclass(frozen=True, kw_only=True)
class StreamInfo:
    """What the output video stream must carry over from the input."""

    width: int
    height: int
    bits: int
    colorimetry: Colorimetry
    time_base: Fraction
    rate: Fraction
    sample_aspect_ratio: Fraction | None = None
    display_matrix: list[int] | None = None
    hdr: HdrMetadata | None = None


class _Output:
    """What both outputs share: flushing the encoder on close, closing quietly on abort."""

    container: av.container.OutputContainer
    stream: av.video.stream.VideoStream

    def _encode(self, vf: av.VideoFrame) -> None:
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self.container.close()

    def _flush(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # already failing; the caller removes the file
            pass


# Codecs a muxer holds that libavformat's codec query does not list (mpegts has no codec tag table,
# so the query answers "unknown" for most of what it carries).
_ALSO_HELD = {"mpegts": {"aac", "ac3", "eac3", "mp2", "mp3", "opus", "dts", "truehd", "dvb_subtitle",
                         "dvb_teletext"}}

# stream tags that describe the content; the rest (encoder, durations, statistics) is the old file's
_DESCRIPTIVE_TAGS = ("language", "title", "handler_name", "comment")


def _mov_text_to_srt(data: bytes) -> bytes | None:
    """A 3GPP timed-text sample (16-bit big-endian length, UTF-8 text, style boxes) as SubRip text;
    None for the empty samples that mark gaps."""
    n = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
    return data[2:2 + n] or None


def _srt_to_mov_text(data: bytes) -> bytes | None:
    text = data[:0xFFFF]
    return len(text).to_bytes(2, "big") + text


# text subtitles that one container holds and another does not (mp4: mov_text; mkv, ts: subrip):
# the packet payloads convert one to one, timing unchanged, as ffmpeg's -c:s srt / mov_text do
_TEXT_SUBTITLE_CONVERSIONS = {("mov_text", "subrip"): _mov_text_to_srt, ("srt", "mov_text"): _srt_to_mov_text,
                              ("subrip", "mov_text"): _srt_to_mov_text, ("text", "mov_text"): _srt_to_mov_text}


def _copy_description(src, dst) -> None:
    """Language, title and dispositions (default, forced, ...) of a stream onto its copy."""
    for key, value in src.metadata.items():
        if key.lower() in _DESCRIPTIVE_TAGS:
            dst.metadata[key] = value
    dst.disposition = src.disposition


# x265 as PyAV bundles it corrupts its heap now and then when an encoder of 40-48 px wide pictures is
# closed (glibc aborts with "free(): invalid next size" in x265::Lookahead::destroy; in-process only: a
# 96x64 clip's 2x layer aborted 5 of 18 test runs under MALLOC_CHECK_=3, with and without vsr's compiled
# CPU kernels; 32 px and 50-64 px were clean). Narrower pictures are refused rather than risked.
X265_MIN_WIDTH = 50


class VideoOutput(_Output):
    """An output file: one encoded video stream plus copies of the input's audio/subtitle streams.

    Write frames with :meth:`write` (``pts`` in the input's time base), copied packets with
    :meth:`mux_copy`, then :meth:`close`.
    """

    def __init__(self, path: str | Path, info: StreamInfo, options: EncodeOptions,
                 copy_streams: list | None = None, *, format: str | None = None,
                 tags: dict[str, str] | None = None, source: VideoInput | None = None) -> None:
        self.info, self.options = info, options
        self.bits = PIX_FMTS[options.pix_fmt] if options.pix_fmt else info.bits
        if options.codec in EVEN_ONLY and (info.width % 2 or info.height % 2):
            raise MediaError(f"{options.codec} cannot encode the odd frame size {info.width}x{info.height}; "
                             "use --codec libsvtav1 or ffv1")
        if options.codec == "libx265" and info.width < X265_MIN_WIDTH:
            raise MediaError(f"libx265 is refused for pictures under {X265_MIN_WIDTH} pixels wide (this one is "
                             f"{info.width}): this build of x265 corrupts memory on 40-48 px wide pictures; "
                             "use --codec libx264 or libsvtav1")
        try:
            self.container = av.open(str(path), "w", format=format)
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot create {path}: {_reason(e)}") from None
        if source is not None:  # what describes the programme: title, chapters, ... (not vsr's own tags)
            self.container.metadata.update({k: v for k, v in source.metadata.items()
                                            if not k.upper().startswith("VSR_")})
        if tags:
            self.container.metadata.update(tags)
        try:
            self.stream = self.container.add_stream(options.codec, rate=info.rate,
                                                    options=options.codec_options(info.hdr))
        except (av.error.FFmpegError, ValueError) as e:
            self.container.close()
            raise MediaError(f"cannot use encoder {options.codec}: {_reason(e)}") from None
        cc = self.stream.codec_context
        cc.width, cc.height = info.width, info.height
        cc.pix_fmt = "yuv420p" if self.bits == 8 else "yuv420p10le"
        cc.time_base = info.time_base
        self.stream.time_base = info.time_base
        if options.bitrate is not None:
            cc.bit_rate = int(options.bitrate)
        self._rate_pass = options.rate_pass if options.codec != "libx265" else None
        if self._rate_pass is not None:
            flags = av.codec.context.Flags
            cc.flags |= flags.pass1 if self._rate_pass.number == 1 else flags.pass2
            if options.codec == "libsvtav1" and self._rate_pass.number == 2:
                cc.stats_in = Path(self._rate_pass.stats).read_text()
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        apply_colorimetry(cc, info.colorimetry)
        if info.display_matrix is not None:
            self.stream.set_display_matrix(info.display_matrix)
        self.copies: dict[int, object] = {}
        self.converters: dict[int, Callable[[bytes], bytes | None]] = {}
        supported = self.container.supported_codecs | _ALSO_HELD.get(self.container.format.name, set())
        suffix = Path(str(path)).suffix or "this container"
        for s in copy_streams or []:
            name = s.codec_context.name
            if name in supported:
                self.copies[s.index] = copy = self.container.add_stream_from_template(s)
            else:
                target = next((t for (f, t) in _TEXT_SUBTITLE_CONVERSIONS if f == name and t in supported), None)
                if target is None:
                    notice(f"dropping {s.type} stream #{s.index} ({name}): {suffix} cannot hold it")
                    continue
                notice(f"converting subtitle stream #{s.index} from {name} to {target} ({suffix} cannot hold {name})")
                self.copies[s.index] = copy = self.container.add_mux_stream(target)
                copy.time_base = s.time_base
                self.converters[s.index] = _TEXT_SUBTITLE_CONVERSIONS[name, target]
            _copy_description(s, copy)
        if source is not None:
            _copy_description(source.stream, self.stream)
            chapters = source.container.chapters()
            if chapters:
                self.container.set_chapters(chapters)
            self._copy_attachments(source, suffix)
        self.frames_written = 0

    def _flush(self) -> None:
        super()._flush()
        if self._rate_pass is not None and self._rate_pass.number == 1 and self.options.codec == "libsvtav1":
            Path(self._rate_pass.stats).write_text(self.stream.codec_context.stats_out or "")

    def write(self, frame: Frame, pts: int) -> None:
        vf = video_frame(convert_bits(frame, self.bits))
        vf.pts = pts
        vf.time_base = self.info.time_base
        self._encode(vf)

    def _copy_attachments(self, source: VideoInput, suffix: str) -> None:
        """Attached files (fonts of styled subtitles, cover art) go along where the container holds them."""
        attachments = source.container.streams.attachments
        if not attachments:
            return
        if "matroska" not in self.container.format.name.split(","):
            notice(f"dropping {len(attachments)} attached file(s) (e.g. fonts): {suffix} cannot hold them")
            return
        for a in attachments:
            self.container.add_attachment(a.name or f"attachment{a.index}", a.mimetype or "application/octet-stream",
                                          bytes(a.data))

    def mux_copy(self, packet: av.Packet) -> None:
        index = packet.stream.index
        out = self.copies.get(index)
        if out is None:
            return
        convert = self.converters.get(index)
        if convert is not None:
            data = convert(bytes(packet))
            if data is None:
                return
            converted = av.Packet(data)
            converted.pts, converted.dts, converted.duration = packet.pts, packet.dts, packet.duration
            converted.time_base = packet.time_base
            packet = converted
        packet.stream = out
        self.container.mux(packet)


class _AspectHeader:
    """A binary writer that puts the sample aspect ratio into a y4m stream header on its way out
    (libavformat's y4m muxer writes ``A0:0`` when fed through PyAV, which cannot set it there)."""

    def __init__(self, raw, sar: Fraction) -> None:
        self.raw, self.token = raw, f" A{sar.numerator}:{sar.denominator} ".encode()
        self.head: bytes | None = b""

    def write(self, data) -> int:
        data = bytes(data)
        if self.head is not None:
            self.head += data
            if b"\n" not in self.head:
                return len(data)
            line, rest = self.head.split(b"\n", 1)
            self.raw.write(line.replace(b" A0:0 ", self.token) + b"\n" + rest)
            self.head = None
            return len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


class Y4MOutput(_Output):
    """yuv4mpegpipe output (stdout by default), 8- or 10-bit, through PyAV's muxer."""

    def __init__(self, path: str, info: StreamInfo) -> None:
        self.info = info
        self._file = None
        target = path
        if info.sample_aspect_ratio and info.sample_aspect_ratio != 1:
            self._file = sys.stdout.buffer if path == PIPE_OUT else open(path, "wb")
            target = _AspectHeader(self._file, Fraction(info.sample_aspect_ratio))
        self.container = av.open(target, "w", format="yuv4mpegpipe", options={"strict": "-1"})
        self.stream = self.container.add_stream("wrapped_avframe", rate=info.rate)
        cc = self.stream.codec_context
        cc.width, cc.height = info.width, info.height
        cc.pix_fmt = "yuv420p" if info.bits == 8 else "yuv420p10le"
        # y4m states its frame rate as the inverse of the stream time base: one tick per frame
        cc.time_base = self.stream.time_base = 1 / Fraction(info.rate)
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        apply_colorimetry(cc, info.colorimetry)
        self.frames_written = 0

    def write(self, frame: Frame, pts: int) -> None:
        vf = video_frame(frame)
        vf.pts = self.frames_written  # y4m is constant-rate: one tick of 1/rate per frame
        vf.time_base = 1 / self.info.rate
        self._encode(vf)

    def mux_copy(self, packet) -> None:  # y4m carries video only
        pass

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def abort(self) -> None:
        super().abort()
        self._release()

    def _release(self) -> None:
        if self._file is not None:
            self._file.flush()
            if self._file is not sys.stdout.buffer:
                self._file.close()


def remux(src: str | Path, dst: str | Path, *, drop_tags: str = "VSR_") -> int:
    """Copy every video, audio and subtitle stream of ``src`` into ``dst`` unchanged (packets,
    timestamps, stream descriptions, chapters and attachments), leaving out the global tags that
    start with ``drop_tags``. Returns the number of video packets copied."""
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot read {src}: {_reason(e)}") from None
    video = 0
    with inp:
        try:
            out = av.open(str(dst), "w")
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot create {dst}: {_reason(e)}") from None
        with out:
            out.metadata.update({k: v for k, v in inp.metadata.items() if not k.upper().startswith(drop_tags)})
            copies = {}
            for s in inp.streams:
                if s.type in ("video", "audio", "subtitle"):
                    copies[s.index] = out.add_stream_from_template(s)
                    _copy_description(s, copies[s.index])
            chapters = inp.chapters()
            if chapters:
                out.set_chapters(chapters)
            for a in inp.streams.attachments:
                out.add_attachment(a.name or f"attachment{a.index}", a.mimetype or "application/octet-stream",
                                   bytes(a.data))
            for packet in inp.demux(*[inp.streams[i] for i in copies]):
                if packet.dts is None and not packet.size:
                    continue  # the demuxer's end-of-stream marker
                video += packet.stream.type == "video"
                packet.stream = copies[packet.stream.index]
                out.mux(packet)
    return video


def stream_info(inp: VideoInput, first: Frame, *, scale: int = 1, size: tuple[int, int] | None = None) -> StreamInfo:
    """Output stream parameters: the input's, with the picture scaled (or set to ``size``)."""
    w, h = size if size else (first.width * scale, first.height * scale)
    return StreamInfo(width=w, height=h, bits=first.bits, colorimetry=first.colorimetry,
                      time_base=inp.time_base, rate=inp.rate,
                      sample_aspect_ratio=inp.sample_aspect_ratio or None, display_matrix=inp.rotation_matrix,
                      hdr=inp.hdr)

