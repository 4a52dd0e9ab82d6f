"""VapourSynth surface: ``vsr_plugin.upscale(clip)``, ``vsr_plugin.downscale(clip)``, a
PyAV-backed ``vsr_plugin.source(path)`` and ``vsr_plugin.restore(path)``, the decoder side of a
``.vsr.mkv`` base layer as a clip.

The only module that imports :mod:`vapoursynth`. Frames are processed as VapourSynth requests
them, on its worker threads; each of ``num_streams`` engines runs one frame at a time, so GPU
work is serialised per stream while several streams overlap. Nothing is printed on stdout,
which ``vspipe`` reserves for video.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import vapoursynth as vs

from .baselayer import BaseLayerError, parse_tags, resolve_upsampler
from .engine import Downscaler, Upscaler, resolve_device
from .media import MediaError, TimedFrame, VideoInput
from .models import DEFAULT_PAIR, pair_names
from .transcode import restore_frames
from .yuv import CHROMA_LOCATIONS, Colorimetry, Frame

core = vs.core
ACCEPTED = {vs.YUV420P8: 8, vs.YUV420P10: 10}
ACCEPTED_NAMES = "YUV420P8, YUV420P10"

# VapourSynth's _ChromaLocation: 0 left, 1 center, 2 topleft, 3 top, 4 bottomleft, 5 bottom
_VS_CHROMA = {name: i for i, name in enumerate(CHROMA_LOCATIONS)}


def _is_full_range(props) -> bool:
    """``_Range`` (R74+: 1 full, 0 limited), else the older ``_ColorRange`` (0 full, 1 limited)."""
    if "_Range" in props:
        return int(props["_Range"]) == 1
    return int(props.get("_ColorRange", 1)) == 0


def _colorimetry(props) -> Colorimetry:
    loc = int(props.get("_ChromaLocation", 0))
    return Colorimetry(
        matrix=int(props.get("_Matrix", 2)), transfer=int(props.get("_Transfer", 2)),
        primaries=int(props.get("_Primaries", 2)),
        range="full" if _is_full_range(props) else "limited",
        chroma_location=CHROMA_LOCATIONS[loc] if 0 <= loc < len(CHROMA_LOCATIONS) else "left")


def _read(frame: vs.VideoFrame, bits: int) -> Frame:
    y, u, v = (np.asarray(frame[i]).copy() for i in range(3))
    return Frame(y=y, u=u, v=v, bits=bits, colorimetry=_colorimetry(frame.props))


def _write(frame: vs.VideoFrame, planes) -> None:
    for i, data in enumerate(planes):
        np.copyto(np.asarray(frame[i]), data)


def _check_clip(clip, where: str) -> int:
    if not isinstance(clip, vs.VideoNode):
        raise vs.Error(f"{where}: expected a clip, got {type(clip).__name__}")
    fmt = clip.format
    if fmt is None or clip.width == 0 or clip.height == 0:
        raise vs.Error(f"{where}: variable-format or variable-size clips are not supported; accepted: {ACCEPTED_NAMES}")
    if fmt.id not in ACCEPTED:
        raise vs.Error(f"{where}: clip format {fmt.name} is not supported; accepted: {ACCEPTED_NAMES}")
    return ACCEPTED[fmt.id]


def _apply(clip: vs.VideoNode, bits: int, engines: list, width: int, height: int, run) -> vs.VideoNode:
    """A clip of ``width x height`` whose frames are ``run(engine, Frame)`` of ``clip``'s frames.

    VapourSynth calls the selector from its worker threads; each engine (stream) serves one frame
    at a time, and properties are copied from the source frame."""
    pool: queue.Queue = queue.Queue()
    for engine in engines:
        pool.put(engine)
    blank = core.std.BlankClip(clip, width=width, height=height, keep=True)

    def render(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        src = f[1]
        engine = pool.get()
        try:
            out = run(engine, _read(src, bits))
        finally:
            pool.put(engine)
        dst = f[0].copy()
        _write(dst, out.planes)
        for key in list(dst.props.keys()):
            del dst.props[key]
        dst.props.update(src.props)
        return dst

    return core.std.ModifyFrame(blank, clips=[blank, clip], selector=render)


def _engines(make, where: str, device: str, num_streams: int | None) -> list:
    try:
        dev = resolve_device(device)
        first = make(None)
    except Exception as e:  # vs.Error is what a VapourSynth user expects to see
        raise vs.Error(f"{where}: {e}") from e
    streams = num_streams or (2 if dev.type == "cuda" else 1)
    if streams < 1:
        raise vs.Error(f"{where}: num_streams must be >= 1, got {streams}")
    return [first] + [make(first.net) for _ in range(streams - 1)]


def upscale(clip: vs.VideoNode, *, scale: int = 2, model: str = "default", device: str = "auto",
            dtype: str | None = None, tile: int | None = None, num_streams: int | None = None,
            runtime: str = "torch") -> vs.VideoNode:
    """Upscale a YUV420P8 or YUV420P10 clip ``scale`` times with a vsr upsampler.

    Args:
        clip: constant-format YUV420P8 / YUV420P10 clip.
        scale: upscale factor of the weights (2 is shipped).
        model: shipped model name (``"default"``, ``"fast"``) or a weights path.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``fp32``, ``fp16`` or ``bf16`` (default: fp16 on CUDA; bf16 on CPUs with native BF16,
            fp32 on other CPUs).
        tile: tile edge in input pixels for large frames (None: whole frames).
        num_streams: engines working concurrently (default: 2 on CUDA, 1 on CPU where torch already
            uses every core for one frame).
        runtime: ``torch``, ``onnxruntime``, ``openvino`` (CPU, optional extras) or ``auto`` (the
            fastest installed one, measured); see :mod:`vsr_plugin.runtimes`.

    Returns:
        A clip of the same format at ``scale`` times the size; frame properties are copied
        (colorimetry, ``_DurationNum``/``_DurationDen``, ``_FieldBased``, ``_SARNum``/``_SARDen``, ...).
    """
    bits = _check_clip(clip, "vsr_plugin.upscale")
    engines = _engines(lambda net: Upscaler(net or model, scale=scale, device=device, dtype=dtype, tile=tile, batch=1,
                                            runtime=runtime),
                       "vsr_plugin.upscale", device, num_streams)
    s = engines[0].scale
    return _apply(clip, bits, engines, clip.width * s, clip.height * s, lambda e, f: e.upscale(f))


def downscale(clip: vs.VideoNode, *, pair: str = DEFAULT_PAIR, model: str | None = None, device: str = "auto",
              dtype: str | None = None, tile: int | None = None, num_streams: int | None = None,
              runtime: str = "torch") -> vs.VideoNode:
    """Learned 2x reduction of a YUV420P8 or YUV420P10 clip (the encoder side's base layer).

    Args:
        clip: constant-format YUV420P8 / YUV420P10 clip whose half size is even (VapourSynth's 4:2:0).
        pair: shipped down/upsampler pair (its ``x2-PAIR-down`` weights are used).
        model: a downsampler weights path instead of ``pair``.
        device, dtype, tile, num_streams, runtime: as for :func:`upscale`.

    Returns:
        A clip of the same format at half the size, frame properties copied.
    """
    bits = _check_clip(clip, "vsr_plugin.downscale")
    w, h = (clip.width + 1) // 2, (clip.height + 1) // 2
    if w % 2 or h % 2:
        raise vs.Error(f"vsr_plugin.downscale: half of {clip.width}x{clip.height} is {w}x{h}, and VapourSynth's "
                       "4:2:0 formats need even sizes; crop or pad the clip first")
    name = model or pair_names(pair)[0]
    engines = _engines(lambda net: Downscaler(net or name, device=device, dtype=dtype, tile=tile, batch=1,
                                              runtime=runtime),
                       "vsr_plugin.downscale", device, num_streams)
    return _apply(clip, bits, engines, w, h, lambda e, f: e.downscale(f))


class _Decoder:
    """Frame-accurate random access over a sequential PyAV decoder: frames are decoded forward
    and the most recent ones cached; a request behind the cache restarts from the beginning."""

    def __init__(self, path: str, cache: int = 32) -> None:
        self.path, self.cache_size = path, cache
        self.lock = threading.Lock()
        self.cache: OrderedDict[int, Frame] = OrderedDict()
        self._open()

    def _open(self) -> None:
        self.input = VideoInput(self.path)
        self.iter = (t for t in self.input.items() if isinstance(t, TimedFrame))
        self.next_index = 0

    def get(self, n: int) -> Frame:
        with self.lock:
            if n in self.cache:
                return self.cache[n]
            if n < self.next_index:
                self.input.close()
                self._open()
            while self.next_index <= n:
                item = next(self.iter, None)
                if item is None:
                    raise vs.Error(f"vsr_plugin.source: {self.path} has no frame {n}")
                self.cache[self.next_index] = item.frame
                self.next_index += 1
                while len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
            return self.cache[n]


def _count_frames(inp: VideoInput) -> int:
    if inp.stream.frames:
        return int(inp.stream.frames)
    n = sum(1 for p in inp.container.demux(inp.stream) if p.size)
    return n


def source(path: str) -> vs.VideoNode:
    """A clip from any file PyAV decodes (4:2:0 8/10-bit, other formats converted), with
    colorimetry, duration and SAR frame properties. Meant for scripts and tests; for long-form
    work, a seeking source plugin (bestsource, ffms2) is faster at random access."""
    try:
        probe = VideoInput(path)
        length = _count_frames(probe)
        probe.close()
        dec = _Decoder(path)
        first = dec.get(0)
    except MediaError as e:
        raise vs.Error(f"vsr_plugin.source: {e}") from None
    fmt = vs.YUV420P8 if first.bits == 8 else vs.YUV420P10
    rate = dec.input.rate
    if first.width % 2 or first.height % 2:
        raise vs.Error(f"vsr_plugin.source: {first.width}x{first.height} is odd-sized; VapourSynth's 4:2:0 needs even sizes")
    blank = core.std.BlankClip(width=first.width, height=first.height, format=fmt, length=length,
                               fpsnum=rate.numerator, fpsden=rate.denominator)
    c = first.colorimetry
    sar = dec.input.sample_aspect_ratio
    props = {"_Matrix": c.matrix, "_Transfer": c.transfer, "_Primaries": c.primaries,
             "_Range": 1 if c.range == "full" else 0, "_ChromaLocation": _VS_CHROMA[c.chroma_location],
             "_FieldBased": 0, "_DurationNum": rate.denominator, "_DurationDen": rate.numerator}
    if sar:
        props.update(_SARNum=sar.numerator, _SARDen=sar.denominator)

    def render(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        dst = f.copy()
        _write(dst, dec.get(n).planes)
        dst.props.update(props)
        return dst

    return core.std.ModifyFrame(blank, clips=blank, selector=render)


def restore(path: str, *, weights_dir: str | None = None, device: str = "auto", dtype: str | None = None,
            tile: int | None = None, num_streams: int | None = None, runtime: str = "torch") -> vs.VideoNode:
    """A ``.vsr.mkv`` base layer (``vsr-transcode in.mp4``'s output) as the full-size clip its tags
    describe, restored as ``vsr-transcode FILE`` restores it: a 2x layer upscaled by the upsampler its
    tags name and cropped to the original size, a 2/3 layer upscaled and reduced to it (antialiased
    bicubic), a full-resolution layer as decoded.

    Args:
        path: the base-layer file.
        weights_dir: a folder of weights to search for the upsampler the tags name (by content hash),
            besides the shipped ones (``vsr-transcode --weights-dir``).
        device, dtype, tile, num_streams, runtime: as for :func:`upscale`.

    Returns:
        A clip of the original size in the base layer's format (YUV420P8 / YUV420P10), with
        :func:`source`'s frame properties.
    """
    where = "vsr_plugin.restore"
    try:
        with VideoInput(path) as inp:
            tags = parse_tags(inp.metadata, base_width=inp.width, base_height=inp.height, source=path)
    except (MediaError, BaseLayerError) as e:
        raise vs.Error(f"{where}: {e}") from None
    if tags.width % 2 or tags.height % 2:
        raise vs.Error(f"{where}: the original is {tags.width}x{tags.height}, odd-sized; VapourSynth's 4:2:0 needs "
                       "even sizes (vsr-transcode FILE restores it)")
    clip = source(path)
    if tags.full_resolution:
        return core.std.CropAbs(clip, width=tags.width, height=tags.height) \
            if (clip.width, clip.height) != (tags.width, tags.height) else clip
    search = (Path(weights_dir),) if weights_dir else ()
    try:
        weights = resolve_upsampler(tags, search=search)
    except ValueError as e:  # BaseLayerError, CheckpointError: not installed, or other weights by that name
        raise vs.Error(f"{where}: {e}") from None
    engines = _engines(lambda net: Upscaler(net or weights, device=device, dtype=dtype, tile=tile, batch=1,
                                            runtime=runtime), where, device, num_streams)
    return _apply(clip, ACCEPTED[clip.format.id], engines, tags.width, tags.height,
                  lambda e, f: restore_frames(e, tags, [f])[0])
