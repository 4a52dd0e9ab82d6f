"""Codec-degraded training pairs: short inter-coded sequences through the real base codec, cached.

The decoder side of ``vsr-transcode`` never sees a clean half-resolution picture: it sees what
x264 (or x265) made of one. This builds that input once, the way the product makes it::

    photo --window panning over T frames (integer HR pixels per frame: half-pel motion at the
          base layer)--> HR RGB crops --BT.601 4:2:0--> HR planes
        --the product's reduction of the layer (half: kernels.unpack_downscale with a zero residual;
          two-thirds: Resizer.two_thirds_layer, Lanczos-3)--> base planes
        --libx264/libx265 preset P, CRF drawn from the range, one GOP (I + P/B frames)-->
        --decode--> coded base planes            pair: (coded base, HR) per frame

A share of the sequences (``clean_fraction``) skips the codec, so the network keeps working on
nearly lossless base layers (the top of the CRF ladder). Each photo's sequences depend only on the
spec, the photo's index and its pixels, so a cache is built photo by photo, resumes after a stop,
and gives the same bytes every time (x264/x265 run single-threaded, to be safe from threaded
encoders' nondeterminism). One ``.npz`` shard per photo (named by its folder and stem) lies in
``<cache>/<spec key>/``; ``spec.json`` records the spec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import kernels
from vsr_plugin.atomic import atomic_output, write_bytes_atomic
from vsr_plugin.baselayer import RESOLUTIONS
from vsr_plugin.engine import Resizer
from vsr_plugin.yuv import Frame, rgb_to_frame

from .codec import round_trip
from .data import SRPair, bicubic_resize_rgb, load_rgb

CODECS = {"x264": "libx264", "x265": "libx265"}
LAYERS = tuple(word for word, scale in RESOLUTIONS.items() if scale != 1)  # the reduced layers: half, two-thirds
CACHE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class DegradeSpec:
    """How the coded base layers are made.

    Args:
        codec: ``x264`` or ``x265``.
        preset: the encoder preset (the product's default is ``medium``).
        crf: ``(low, high)``: each sequence's CRF is drawn uniformly from these integers.
        frames: frames per sequence (one GOP: an I frame, then P/B frames).
        size: HR window edge in pixels (a multiple of 8; the base layer is half of it, or 2/3 of it
            for the two-thirds layer, where it must be a multiple of 12).
        speed: largest motion in HR pixels per frame, each axis.
        clean_fraction: share of sequences that skip the codec (rounding only).
        pixels_per_sequence: one sequence per this many photo pixels (at least one per photo).
        max_side: photos whose shorter side exceeds this are first reduced 2x (antialiased
            bicubic), which also removes the JPEG artefacts of large photos.
        rescales: extra downscaled copies of each photo, e.g. ``(0.8, 0.6)``, in its shard.
        seed: the base of every random draw.
        layer: the base layer the sequences are: ``half`` (the 2x layer) or ``two-thirds``.
    """

    codec: str = "x264"
    preset: str = "medium"
    crf: tuple[int, int] = (12, 38)
    frames: int = 12
    size: int = 256
    speed: int = 4
    clean_fraction: float = 0.1
    pixels_per_sequence: int = 131072
    max_side: int = 1200
    rescales: tuple[float, ...] = ()
    seed: int = 0
    layer: str = "half"

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"degradation codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        lo, hi = self.crf
        if not 0 <= lo <= hi <= 51:
            raise ValueError(f"CRF range must satisfy 0 <= low <= high <= 51, got {lo},{hi}")
        if self.frames < 2:
            raise ValueError(f"sequences need at least 2 frames, got {self.frames}")
        if self.size < 16 or self.size % 8:
            raise ValueError(f"window size must be a multiple of 8 and >= 16, got {self.size}")
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")
        if not 0.0 <= self.clean_fraction <= 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1], got {self.clean_fraction}")
        if self.pixels_per_sequence < 1:
            raise ValueError(f"pixels_per_sequence must be >= 1, got {self.pixels_per_sequence}")
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got {self.layer!r}")
        if self.layer == "two-thirds" and self.size % 12:
            raise ValueError(f"a two-thirds layer's window must be a multiple of 12, got {self.size}")

    def described(self) -> dict:
        """The spec as the cache records it (``layer`` only when it is not ``half``, so the 2x layer's
        caches keep their keys)."""
        fields = dataclasses.asdict(self)
        if fields["layer"] == "half":
            del fields["layer"]
        return {"version": CACHE_VERSION, **fields}

    @property
    def key(self) -> str:
        """A short content key of the spec (the cache folder name)."""
        text = json.dumps(self.described(), sort_keys=True)
        return f"{self.codec}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _photo_versions(path: Path, spec: DegradeSpec) -> list[np.ndarray]:
    rgb = load_rgb(path)
    if min(rgb.shape[:2]) > spec.max_side:
        h, w = rgb.shape[:2]
        rgb = bicubic_resize_rgb(rgb[: h - h % 2, : w - w % 2], h // 2, w // 2)
    return [rgb] + [bicubic_resize_rgb(rgb, round(rgb.shape[0] * f), round(rgb.shape[1] * f)) for f in spec.rescales]


def code_sequence(planes: tuple[np.ndarray, np.ndarray, np.ndarray], codec: str, preset: str, crf: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode 8-bit planes ``(T, H, W)`` (chroma ``(T, H/2, W/2)``) as one inter-coded sequence and
    decode them back, single-threaded (deterministic)."""
    params = "threads=1:log-level=error" if codec == "x264" else "pools=none:frame-threads=1:log-level=error"

    def add_stream(out):
        s = out.add_stream(CODECS[codec], rate=25, options={"crf": str(crf), "preset": preset,
                                                            f"{codec}-params": params})
        s.codec_context.thread_count = 1
        return s

    return round_trip(planes, add_stream)


def _reduce(hr: tuple[torch.Tensor, torch.Tensor, torch.Tensor], spec: DegradeSpec
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The product's base layer of HR planes ``(T, S, S)``: its 2x reduction (the default pair's
    downsampler is the bicubic reduction: a zero residual) or its 2/3 reduction."""
    s = spec.size
    if spec.layer == "two-thirds":
        return Resizer.two_thirds_layer(s, s, device="cpu").resize_planes(*hr, bits=8)
    zero = torch.zeros(hr[0].shape[0], 6, s // 4, s // 4)
    return kernels.unpack_downscale(zero, *hr, bits=8, backend="torch")


def _sequences(rgb: np.ndarray, spec: DegradeSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """All sequences of one photo version: HR and coded base planes, and each sequence's CRF (-1: clean)."""
    h, w = rgb.shape[:2]
    n, s, t = max(1, round(h * w / spec.pixels_per_sequence)), spec.size, spec.frames
    out: dict[str, list] = {k: [] for k in ("hr_y", "hr_u", "hr_v", "lr_y", "lr_u", "lr_v", "crf")}
    for _ in range(n):
        vy, vx = (int(v) for v in rng.integers(-spec.speed, spec.speed + 1, size=2))
        span_y, span_x = abs(vy) * (t - 1), abs(vx) * (t - 1)
        if h < s + span_y or w < s + span_x:
            vy = vx = span_y = span_x = 0
        y0 = int(rng.integers(0, h - s - span_y + 1)) + (span_y if vy < 0 else 0)
        x0 = int(rng.integers(0, w - s - span_x + 1)) + (span_x if vx < 0 else 0)
        frames = [rgb_to_frame(rgb[y0 + k * vy: y0 + k * vy + s, x0 + k * vx: x0 + k * vx + s]) for k in range(t)]
        hr = tuple(np.stack([f.planes[k] for f in frames]) for k in range(3))
        hr_t = tuple(torch.from_numpy(p) for p in hr)
        base = tuple(p.numpy() for p in _reduce(hr_t, spec))
        clean = float(rng.random()) < spec.clean_fraction
        crf = int(rng.integers(spec.crf[0], spec.crf[1] + 1))
        coded = base if clean else code_sequence(base, spec.codec, spec.preset, crf)
        for k, name in enumerate(("y", "u", "v")):
            out[f"hr_{name}"].append(hr[k])
            out[f"lr_{name}"].append(coded[k])
        out["crf"].append(-1 if clean else crf)
    return {k: np.stack(v) for k, v in out.items()}


def _photo_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def build_cache(photos: Sequence[Path], spec: DegradeSpec, cache_root: str | Path, *,
                quiet: bool = False) -> list[Path]:
    """Build (or complete) the cache of ``photos`` under ``cache_root/<spec.key>``; the shard of
    each photo, in order.

    Photos too small for one window are skipped. Shards already present are kept: a stopped
    build continues where it was.
    """
    folder = Path(cache_root) / spec.key
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / "spec.json", (json.dumps(spec.described(), indent=2) + "\n").encode())
    shards = [folder / f"{_photo_id(p).replace('/', '_')}.npz" for p in photos]
    todo = [(p, s) for p, s in zip(photos, shards) if not s.is_file()]
    for done, (path, shard) in enumerate(todo):
        # every photo draws from its own stream, so a shard does not depend on what else is built
        rng = np.random.default_rng([spec.seed, zlib.crc32(_photo_id(path).encode())])
        parts = [_sequences(rgb, spec, rng) for rgb in _photo_versions(path, spec)
                 if min(rgb.shape[:2]) >= spec.size]
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {"crf": np.zeros(0)}
        with atomic_output(shard) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        if not quiet:
            print(f"\rcodec cache {folder.name}: {len(photos) - len(todo) + done + 1}/{len(photos)} photos",
                  end="", file=sys.stderr, flush=True)
    if todo and not quiet:
        print(file=sys.stderr)
    return shards


def load_cache(shards: Sequence[Path], *, crf: tuple[int, int] | None = None) -> list[SRPair]:
    """Every frame of every shard as an :class:`SRPair` of (coded base, HR); with ``crf = (low,
    high)``, only the sequences coded at a CRF in that range, and the uncoded ones."""
    pairs = []
    for shard in shards:
        with np.load(shard) as z:
            if not len(z["crf"]):
                continue
            planes = {k: z[k] for k in ("hr_y", "hr_u", "hr_v", "lr_y", "lr_u", "lr_v")}
            crfs = z["crf"]
        for s in range(len(crfs)):
            if crf is not None and crfs[s] >= 0 and not crf[0] <= crfs[s] <= crf[1]:
                continue
            for t in range(planes["hr_y"].shape[1]):
                hr = Frame(y=planes["hr_y"][s, t], u=planes["hr_u"][s, t], v=planes["hr_v"][s, t])
                lr = Frame(y=planes["lr_y"][s, t], u=planes["lr_u"][s, t], v=planes["lr_v"][s, t])
                pairs.append(SRPair(hr=hr, lr=lr, name=f"{shard.stem}/s{s}-crf{int(crfs[s])}-f{t}"))
    return pairs


def codec_pairs(photos: Sequence[Path], spec: DegradeSpec, cache_root: str | Path, *,
                crf: tuple[int, int] | None = None, quiet: bool = False) -> list[SRPair]:
    """The (coded base, HR) pairs of ``photos``, built into the cache first where missing
    (``crf``: see :func:`load_cache`)."""
    return load_cache(build_cache(photos, spec, cache_root, quiet=quiet), crf=crf)
