"""``vsr-bench make-clip``: deterministic natural-motion test clips from still photos.

A slow sub-pixel pan and zoom over a photo, every frame rendered by antialiased *downsampling*
of the photo (PIL's Lanczos-3 with its support stretched by the reduction factor, evaluated at
sub-pixel window positions), so each frame holds real detail up to its Nyquist limit — unlike an
upscaled small picture, which a super-resolution benchmark would flatter. 1080p clips exist this
way without storing large videos.

Photos smaller than the output (every set in ../shared/data is) are composed into a larger canvas
with ``--mosaic CxR``: C x R photos, each centre-cropped to the smallest photo's size, side by
side. A render that would need any upscaling is refused.

Colour: photo RGB values are taken as BT.709 R'G'B' (sRGB and BT.709 share primaries; the
transfer difference is ignored, as cameras' video modes do), converted to BT.709 limited-range
Y'CbCr at full canvas resolution, and each plane is rendered on its own sampling grid — luma at
pixel centres, 4:2:0 chroma at MPEG-2 "left" positions (co-sited horizontally with even luma
columns, midway vertically). Output: y4m (raw) or FFV1 in Matroska (lossless, colour-tagged).
Same inputs and options give the same bytes.

Motion at frame ``t`` of ``N``: window scale ``s_t = s_0 · zoom^(-t/(N-1))`` canvas pixels per
output pixel (zoom > 1 zooms in), window centre ``c + (t - (N-1)/2) · pan · s_mid``; ``s_0`` is
the largest scale that keeps every window inside the canvas.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from vsr_plugin.atomic import atomic_output
from vsr_plugin.measure.video import write_ffv1, write_y4m
from vsr_plugin.progress import Progress
from vsr_plugin.yuv import Colorimetry, Frame, chroma_shape, rgb_to_yuv_float


RENDER_FILTER = Image.Resampling.LANCZOS
MARGIN = 3.0  # output pixels kept between the window and the canvas edge (filter support, chroma offset)


@dataclass(frozen=True, kw_only=True)
class ClipSpec:
    """What to render.

    Args:
        width, height: output size in pixels (any size, odd included).
        frames: number of frames (>= 2).
        rate: frame rate.
        pan: (x, y) motion in output pixels per frame (sub-pixel values make sub-pixel motion).
        zoom: total zoom over the clip (window size of the first frame / of the last); 1 = none.
        bits: 8 or 10.
    """

    width: int = 1920
    height: int = 1080
    frames: int = 48
    rate: Fraction = Fraction(24)
    pan: tuple[float, float] = (0.37, 0.21)
    zoom: float = 1.06
    bits: int = 8

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"--size must be at least 16x16, got {self.width}x{self.height}")
        if self.frames < 2:
            raise ValueError(f"--frames must be >= 2, got {self.frames}")
        if self.rate <= 0:
            raise ValueError(f"--fps must be positive, got {self.rate}")
        if not (math.isfinite(self.zoom) and 0.5 <= self.zoom <= 2.0):
            raise ValueError(f"--zoom must be within 0.5..2, got {self.zoom}")
        if not all(math.isfinite(p) and abs(p) <= 8 for p in self.pan):
            raise ValueError(f"--pan must be within -8..8 pixels per frame, got {self.pan}")
        if self.bits not in (8, 10):
            raise ValueError(f"--bits must be 8 or 10, got {self.bits}")


@dataclass(frozen=True)
class Window:
    """Where frame ``t`` looks: top-left corner (canvas pixels) and canvas pixels per output pixel."""

    x0: float
    y0: float
    scale: float


def load_mosaic(paths: list[str | Path], cols: int, rows: int) -> np.ndarray:
    """``cols x rows`` photos centre-cropped to the smallest one's size and tiled (row-major):
    uint8 RGB ``(H, W, 3)``."""
    if cols < 1 or rows < 1:
        raise ValueError(f"--mosaic must be at least 1x1, got {cols}x{rows}")
    if len(paths) != cols * rows:
        raise ValueError(f"--mosaic {cols}x{rows} takes {cols * rows} photos, got {len(paths)}")
    photos = []
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"no such photo: {p}")
        try:
            with Image.open(p) as im:
                photos.append(np.asarray(im.convert("RGB")))
        except (OSError, Image.DecompressionBombError) as e:
            raise ValueError(f"cannot read photo {p}: {e}") from None
    th, tw = min(a.shape[0] for a in photos), min(a.shape[1] for a in photos)
    tiles = []
    for a in photos:
        top, left = (a.shape[0] - th) // 2, (a.shape[1] - tw) // 2
        tiles.append(a[top:top + th, left:left + tw])
    return np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def plan(canvas_h: int, canvas_w: int, spec: ClipSpec) -> list[Window]:
    """The window of every frame; refuses (ValueError) a plan that would need upscaling."""
    n = spec.frames
    k = [spec.zoom ** (-t / (n - 1)) for t in range(n)]
    mid = spec.zoom ** -0.5
    # s0 * (k_t * (size/2 + MARGIN) + |t - (n-1)/2| * |pan| * mid) <= canvas/2 on both axes, for all t
    s0 = math.inf
    for t in range(n):
        dt = abs(t - (n - 1) / 2)
        for size, pan, extent in ((spec.width, spec.pan[0], canvas_w), (spec.height, spec.pan[1], canvas_h)):
            need = k[t] * (size / 2 + MARGIN) + dt * abs(pan) * mid
            s0 = min(s0, extent / 2 / need)
    smallest = s0 * min(k)
    if smallest < 1.0:
        need_w = math.ceil(canvas_w / smallest)
        need_h = math.ceil(canvas_h / smallest)
        raise ValueError(
            f"a {spec.width}x{spec.height} render from a {canvas_w}x{canvas_h} canvas would need upscaling "
            f"(reduction {smallest:.2f} < 1); give a canvas of about {need_w}x{need_h} or more (--mosaic CxR with "
            f"more or larger photos), or a smaller --size, --pan or --zoom")
    cx, cy = canvas_w / 2, canvas_h / 2
    out = []
    for t in range(n):
        s = s0 * k[t]
        dx, dy = ((t - (n - 1) / 2) * p * s0 * mid for p in spec.pan)
        out.append(Window(cx + dx - spec.width * s / 2, cy + dy - spec.height * s / 2, s))
    return out


def _planes(canvas: np.ndarray, bits: int) -> list[Image.Image]:
    yuv = rgb_to_yuv_float(canvas.astype(np.float64) / 255.0, matrix=1, bits=bits, range="limited")
    return [Image.fromarray(np.ascontiguousarray(yuv[..., i], dtype=np.float32), mode="F") for i in range(3)]


def render(canvas_planes: list[Image.Image], win: Window, spec: ClipSpec) -> Frame:
    """One frame: each plane resampled from its window (luma at pixel centres; chroma left-sited)."""
    w, h, s = spec.width, spec.height, win.scale
    ch, cw = chroma_shape(h, w)
    m = (1 << spec.bits) - 1
    dtype = np.uint8 if spec.bits == 8 else np.uint16

    def sample(im: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
        out = np.asarray(im.resize(size, RENDER_FILTER, box=box))
        return np.clip(np.rint(out), 0, m).astype(dtype)

    y = sample(canvas_planes[0], (w, h), (win.x0, win.y0, win.x0 + w * s, win.y0 + h * s))
    # chroma sample j sits on luma column 2j (centre 2j + 0.5) and between luma rows 2i and 2i + 1:
    # in luma units its cell spans [2j - 0.5, 2j + 1.5] x [2i, 2i + 2]
    box = (win.x0 - 0.5 * s, win.y0, win.x0 + (2 * cw - 0.5) * s, win.y0 + 2 * ch * s)
    u = sample(canvas_planes[1], (cw, ch), box)
    v = sample(canvas_planes[2], (cw, ch), box)
    return Frame(y=y, u=u, v=v, bits=spec.bits, colorimetry=Colorimetry.bt709())


def make_clip(photos: list[str | Path], output: str | Path, spec: ClipSpec, *, mosaic: tuple[int, int] = (1, 1),
              progress: bool = False) -> dict:
    """Render the clip to ``output`` (``.y4m`` or ``.mkv``), atomically. Returns what was made."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".y4m", ".mkv"):
        raise ValueError(f"output must end in .y4m (raw) or .mkv (FFV1), got {output.name}")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {output.parent}")
    canvas = load_mosaic(list(photos), *mosaic)
    windows = plan(canvas.shape[0], canvas.shape[1], spec)  # refuses before any rendering
    planes = _planes(canvas, spec.bits)

    bar = Progress(len(windows), label="make-clip: ", enabled=progress)
    start = time.perf_counter()

    def frames():
        for i, win in enumerate(windows):
            yield render(planes, win, spec)
            bar.update(i + 1, time.perf_counter() - start)
        bar.close()

    with atomic_output(output) as tmp:
        (write_y4m if suffix == ".y4m" else write_ffv1)(tmp, frames(), spec.rate)
    scales = [w.scale for w in windows]
    return {"output": str(output), "canvas": [canvas.shape[1], canvas.shape[0]], "frames": spec.frames,
            "reduction": [min(scales), max(scales)]}


# --- command ---------------------------------------------------------------------------------------

def _pair(text: str, sep: str, what: str, cast=int) -> tuple:
    try:
        a, b = (cast(v) for v in text.lower().split(sep))
    except ValueError:
        raise ValueError(f"bad {what} {text!r}") from None
    return a, b


def run_make_clip(args: argparse.Namespace) -> int:
    w, h = _pair(args.size, "x", "--size (use WxH, e.g. 1920x1080)")
    cols, rows = _pair(args.mosaic, "x", "--mosaic (use CxR, e.g. 2x2)")
    pan = _pair(args.pan, ",", "--pan (use X,Y pixels per frame, e.g. 0.37,0.21)", float)
    try:
        rate = Fraction(args.fps).limit_denominator(1001)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"bad --fps {args.fps!r}") from None
    spec = ClipSpec(width=w, height=h, frames=args.frames, rate=rate, pan=pan, zoom=args.zoom, bits=args.bits)
    info = make_clip(args.photos, args.output, spec, mosaic=(cols, rows), progress=not args.quiet)
    if not args.quiet:
        lo, hi = info["reduction"]
        print(f"make-clip: wrote {info['output']}: {w}x{h}, {spec.frames} frames at {float(rate):g} fps, "
              f"rendered from a {info['canvas'][0]}x{info['canvas'][1]} canvas at {lo:.3f}..{hi:.3f}x reduction",
              file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("make-clip", help="deterministic natural-motion test clip (pan and zoom) from still photos",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Render a slow sub-pixel pan and zoom over a photo (or a mosaic of photos) by "
                                   "antialiased downsampling, as BT.709 limited 4:2:0 y4m or FFV1 Matroska.")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (C x R of them with --mosaic CxR)")
    p.add_argument("-o", "--output", required=True, help="output clip: .y4m (raw) or .mkv (FFV1)")
    p.add_argument("--size", default="1920x1080", help="output size WxH")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--fps", default="24", help="frame rate, e.g. 24, 25, 30000/1001")
    p.add_argument("--mosaic", default="1x1",
                   help="compose CxR photos (centre-cropped to a common size) into one canvas")
    p.add_argument("--pan", default="0.37,0.21", help="motion X,Y in output pixels per frame")
    p.add_argument("--zoom", type=float, default=1.06, help="total zoom over the clip (>1 zooms in)")
    p.add_argument("--bits", type=int, default=8, choices=[8, 10])
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_make_clip)
