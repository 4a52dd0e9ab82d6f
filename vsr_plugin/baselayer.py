"""The ``.vsr.mkv`` file: an ordinary Matroska video plus tags saying how to restore it.

Most are base layers: a reduced video that any player shows at its own size and vsr restores with
the upsampler the tags name — half the size (the 2x layer) or two thirds of it (the 2/3 layer,
restored by the x2 upsampler and an antialiased reduction to the original size). Where a
full-resolution encode looked better at the user's rate (``--resolution auto``, or ``full``), the
file holds that encode instead; vsr restores it by copying its streams unchanged. The global tags:

=========================  ==========================================================================
``VSR_FORMAT``             ``vsr-base-layer``
``VSR_FORMAT_VERSION``     ``1`` for a half-resolution layer (readable by every vsr); ``2`` for a
                           full-resolution one, ``3`` for a 2/3 layer (older vsr refuse what they
                           cannot restore rather than restore it wrongly)
``VSR_SCALE``              the reduction factor: ``2``, ``3/2`` or ``1`` (a full-resolution encode)
``VSR_RESOLUTION``         ``half``, ``two-thirds`` or ``full`` (the same fact in words; informational)
``VSR_WIDTH``              original width in pixels (odd sizes restore exactly; the coded video itself
                           is padded to even sizes, which H.264/HEVC require; a 2/3 layer's sides are
                           2/3 of the original's rounded to even, :func:`base_size`)
``VSR_HEIGHT``             original height
``VSR_UPSAMPLER``          name of the upsampler trained with the downsampler (e.g. ``x2-codec-default-up``);
                           empty at scale 1
``VSR_UPSAMPLER_SHA256``   content hash of that upsampler's weights file; empty at scale 1
``VSR_DOWNSAMPLER``        name of the downsampler that made the base layer (informational)
``VSR_DECISION``           ``--resolution auto``'s one-line reason, with the probe figures (informational)
=========================  ==========================================================================
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .models import CheckpointInfo, WEIGHTS_DIR, find_by_hash, read_info, sidecar_paths

FORMAT = "vsr-base-layer"
# scale -> (the version written, the word for it): a vsr reads only the layers it knows how to restore
LAYERS = {Fraction(2): (1, "half"), Fraction(1): (2, "full"), Fraction(3, 2): (3, "two-thirds")}
FORMAT_VERSIONS = {scale: version for scale, (version, _) in LAYERS.items()}
RESOLUTIONS = {word: scale for scale, (_, word) in LAYERS.items()}  # "half" -> 2 ...
SUFFIX = ".vsr.mkv"


class BaseLayerError(ValueError):
    """A base-layer file whose tags vsr cannot honour, with the reason."""


@dataclass(frozen=True, kw_only=True)
class BaseLayerTags:
    scale: Fraction  # 2, 3/2 or 1
    width: int
    height: int
    upsampler: str = ""
    upsampler_sha256: str = ""
    downsampler: str = ""
    decision: str = ""

    @property
    def full_resolution(self) -> bool:
        return self.scale == 1

    @property
    def resolution(self) -> str:
        return LAYERS[self.scale][1]

    def to_metadata(self) -> dict[str, str]:
        meta = {
            "VSR_FORMAT": FORMAT, "VSR_FORMAT_VERSION": str(FORMAT_VERSIONS[self.scale]), "VSR_SCALE": str(self.scale),
            "VSR_RESOLUTION": self.resolution,
            "VSR_WIDTH": str(self.width), "VSR_HEIGHT": str(self.height), "VSR_UPSAMPLER": self.upsampler,
            "VSR_UPSAMPLER_SHA256": self.upsampler_sha256, "VSR_DOWNSAMPLER": self.downsampler,
        }
        if self.decision:
            meta["VSR_DECISION"] = self.decision
        return meta


def base_size(original: int, scale: Fraction | int = 2) -> int:
    """Base-layer side for an original side: at scale 2 or 1 ``ceil(original / scale)`` rounded up to
    even (the networks' packed grid, then the encoders' even sizes); at other scales ``original / scale``
    rounded to the nearest even number (1080 -> 720, 1920 -> 1280), at least 2."""
    scale = Fraction(scale)
    if scale.denominator == 1:
        n = -(-original // scale.numerator)
        return n + n % 2
    return 2 * max(1, math.floor(original / scale / 2 + Fraction(1, 2)))


def _tag(meta: dict[str, str], key: str) -> str | None:
    for k, v in meta.items():  # Matroska tag names are case-insensitive in practice
        if k.upper() == key:
            return v
    return None


def is_base_layer(metadata: dict[str, str]) -> bool:
    return _tag(metadata, "VSR_FORMAT") is not None


def parse_tags(metadata: dict[str, str], *, base_width: int, base_height: int, source: str) -> BaseLayerTags:
    """Validate the tags of a base-layer file against its own video stream."""
    fmt = _tag(metadata, "VSR_FORMAT")
    if fmt != FORMAT:
        raise BaseLayerError(f"{source}: VSR_FORMAT tag is {fmt!r}, not {FORMAT!r}; not a vsr base layer")
    version = _tag(metadata, "VSR_FORMAT_VERSION")
    if version not in {str(v) for v in FORMAT_VERSIONS.values()}:
        raise BaseLayerError(f"{source}: base-layer format version {version!r} is not supported "
                             f"(this vsr reads versions {', '.join(str(v) for v in sorted(FORMAT_VERSIONS.values()))})")
    values = {}
    for key in ("VSR_WIDTH", "VSR_HEIGHT"):
        text = _tag(metadata, key)
        if text is None or not (text.isascii() and text.isdigit()) or int(text) <= 0:
            raise BaseLayerError(f"{source}: tag {key} is missing or not a positive integer ({text!r})")
        values[key] = int(text)
    width, height = values["VSR_WIDTH"], values["VSR_HEIGHT"]
    text = _tag(metadata, "VSR_SCALE")
    if text is None or not re.fullmatch(r"[1-9][0-9]{0,3}(/[1-9][0-9]{0,3})?", text):
        raise BaseLayerError(f"{source}: tag VSR_SCALE is missing or not a positive number or fraction ({text!r})")
    scale = Fraction(text)
    if scale not in FORMAT_VERSIONS:
        raise BaseLayerError(f"{source}: VSR_SCALE {text} is not supported (2: a half-resolution layer, 3/2: a 2/3 "
                             "layer, 1: a full-resolution encode)")
    if version != str(FORMAT_VERSIONS[scale]):
        raise BaseLayerError(f"{source}: a layer at scale {scale} is format version {FORMAT_VERSIONS[scale]}, "
                             f"but the tags say {version}")
    if base_size(width, scale) != base_width or base_size(height, scale) != base_height:
        raise BaseLayerError(f"{source}: tags say {width}x{height} at x{scale}, but the video is "
                             f"{base_width}x{base_height}; the tags do not belong to this stream")
    name = _tag(metadata, "VSR_UPSAMPLER") or ""
    sha = (_tag(metadata, "VSR_UPSAMPLER_SHA256") or "").lower()
    if scale != 1 and (not name or not re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise BaseLayerError(f"{source}: tags VSR_UPSAMPLER / VSR_UPSAMPLER_SHA256 are missing or malformed")
    return BaseLayerTags(scale=scale, width=width, height=height, upsampler=name, upsampler_sha256=sha,
                         downsampler=_tag(metadata, "VSR_DOWNSAMPLER") or "",
                         decision=_tag(metadata, "VSR_DECISION") or "")


def resolve_upsampler(tags: BaseLayerTags, *, search: tuple[Path, ...] = ()) -> Path:
    """The installed weights the tags ask for: by content hash among the shipped weights (and
    ``search`` folders); a name match with other content is refused, not guessed at."""
    found = find_by_hash(tags.upsampler_sha256)
    if found is not None:
        return found
    for folder in search:
        for meta in sorted(Path(folder).glob("*.json")):
            try:
                info = read_info(meta)
            except ValueError:
                continue
            if info.kind == "upsampler" and info.sha256 == tags.upsampler_sha256:
                return info.path
    named = sidecar_paths(WEIGHTS_DIR / tags.upsampler)[1]
    if named.is_file():
        raise BaseLayerError(f"upsampler {tags.upsampler!r} is installed, but with different weights than the "
                             f"file was made for (sha256 {tags.upsampler_sha256[:12]}…); install the matching version")
    raise BaseLayerError(f"this base layer needs upsampler {tags.upsampler!r} (sha256 {tags.upsampler_sha256[:12]}…), "
                         "which is not installed")


def tags_for(info_up: CheckpointInfo, info_down: CheckpointInfo | None, *, scale: Fraction | int, width: int,
             height: int, decision: str = "") -> BaseLayerTags:
    return BaseLayerTags(scale=scale, width=width, height=height, upsampler=info_up.name,
                         upsampler_sha256=info_up.sha256, downsampler=info_down.name if info_down else "",
                         decision=decision)


def default_base_output(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.stem + SUFFIX)


def default_restored_output(path: str | Path) -> Path:
    """``clip.vsr.mkv`` -> ``clip.restored.mkv``."""
    p = Path(path)
    stem = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.stem
    return p.with_name(stem + ".restored.mkv")
