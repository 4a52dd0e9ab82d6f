"""The ``.vsr.mkv`` base-layer file: an ordinary half-resolution Matroska video plus tags.

Any player shows it as a normal video at half size. vsr recognises it by its global tags and
restores the original:

=====================  ==============================================================
``VSR_FORMAT``         ``vsr-base-layer``
``VSR_FORMAT_VERSION`` ``1``
``VSR_SCALE``          the reduction factor (2)
``VSR_WIDTH``          original width in pixels (odd sizes restore exactly; the base layer
                       itself is padded to even sizes, which H.264/HEVC require)
``VSR_HEIGHT``         original height
``VSR_UPSAMPLER``      name of the upsampler trained with the downsampler (e.g. ``x2-codec-default-up``)
``VSR_UPSAMPLER_SHA256``  content hash of that upsampler's weights file
``VSR_DOWNSAMPLER``    name of the downsampler that made the base layer (informational)
=====================  ==============================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .models import CheckpointInfo, WEIGHTS_DIR, find_by_hash, read_info, sidecar_paths

FORMAT = "vsr-base-layer"
FORMAT_VERSION = 1
SUFFIX = ".vsr.mkv"


class BaseLayerError(ValueError):
    """A base-layer file whose tags vsr cannot honour, with the reason."""


@dataclass(frozen=True, kw_only=True)
class BaseLayerTags:
    scale: int
    width: int
    height: int
    upsampler: str
    upsampler_sha256: str
    downsampler: str = ""

    def to_metadata(self) -> dict[str, str]:
        return {
            "VSR_FORMAT": FORMAT, "VSR_FORMAT_VERSION": str(FORMAT_VERSION), "VSR_SCALE": str(self.scale),
            "VSR_WIDTH": str(self.width), "VSR_HEIGHT": str(self.height), "VSR_UPSAMPLER": self.upsampler,
            "VSR_UPSAMPLER_SHA256": self.upsampler_sha256, "VSR_DOWNSAMPLER": self.downsampler,
        }


def base_size(original: int, scale: int = 2) -> int:
    """Base-layer side for an original side: ``ceil(original / scale)``, rounded up to even."""
    n = -(-original // scale)
    return n + n % 2


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
    if version != str(FORMAT_VERSION):
        raise BaseLayerError(f"{source}: base-layer format version {version!r} is not supported "
                             f"(this vsr reads version {FORMAT_VERSION})")
    values = {}
    for key in ("VSR_SCALE", "VSR_WIDTH", "VSR_HEIGHT"):
        text = _tag(metadata, key)
        if text is None or not (text.isascii() and text.isdigit()) or int(text) <= 0:
            raise BaseLayerError(f"{source}: tag {key} is missing or not a positive integer ({text!r})")
        values[key] = int(text)
    scale, width, height = values["VSR_SCALE"], values["VSR_WIDTH"], values["VSR_HEIGHT"]
    if base_size(width, scale) != base_width or base_size(height, scale) != base_height:
        raise BaseLayerError(f"{source}: tags say {width}x{height} at x{scale}, but the video is "
                             f"{base_width}x{base_height}; the tags do not belong to this stream")
    name = _tag(metadata, "VSR_UPSAMPLER") or ""
    sha = (_tag(metadata, "VSR_UPSAMPLER_SHA256") or "").lower()
    if not name or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise BaseLayerError(f"{source}: tags VSR_UPSAMPLER / VSR_UPSAMPLER_SHA256 are missing or malformed")
    return BaseLayerTags(scale=scale, width=width, height=height, upsampler=name, upsampler_sha256=sha,
                         downsampler=_tag(metadata, "VSR_DOWNSAMPLER") or "")


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


def tags_for(info_up: CheckpointInfo, info_down: CheckpointInfo | None, *, scale: int, width: int,
             height: int) -> BaseLayerTags:
    return BaseLayerTags(scale=scale, width=width, height=height, upsampler=info_up.name,
                         upsampler_sha256=info_up.sha256, downsampler=info_down.name if info_down else "")


def default_base_output(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.stem + SUFFIX)


def default_restored_output(path: str | Path) -> Path:
    """``clip.vsr.mkv`` -> ``clip.restored.mkv``."""
    p = Path(path)
    stem = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.stem
    return p.with_name(stem + ".restored.mkv")
