"""Checkpoints: ``NAME.safetensors`` (weights) + ``NAME.json`` (metadata). Never pickles.

The JSON sidecar holds the format name and version, the network kind and architecture config,
the scale, a training summary and the SHA-256 of the weights file, so a mismatched pair, a foreign
file or a future format is refused with a clear :class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..atomic import write_bytes_atomic

FORMAT = "vsr-weights"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A weights file that cannot be used, with the reason."""


@dataclass(frozen=True, kw_only=True)
class CheckpointInfo:
    """What the JSON sidecar says about a weights file."""

    kind: str
    config: dict
    training: dict = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.path.stem if self.path else "?"


def sidecar_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths for ``x.safetensors``, ``x.json`` or the stem ``x``."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, kind: str, config: dict,
                    training: dict | None = None) -> tuple[Path, Path]:
    """Write ``model``'s weights and metadata atomically; returns both paths."""
    weights_path, meta_path = sidecar_paths(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = save_safetensors(tensors, metadata={"format": FORMAT, "kind": kind})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "training": training or {},
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    write_bytes_atomic(weights_path, blob)
    write_bytes_atomic(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return weights_path, meta_path


def read_info(path: str | Path) -> CheckpointInfo:
    """Read and validate the JSON sidecar (not the weights)."""
    weights_path, meta_path = sidecar_paths(path)
    if not meta_path.is_file():
        raise CheckpointError(f"{meta_path}: metadata file missing (weights need their .json sidecar)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a vsr weights file (format is {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: weights format version {version!r} is not supported (this vsr reads version {FORMAT_VERSION})")
    for key, typ in (("kind", str), ("config", dict), ("sha256", str)):
        if not isinstance(meta.get(key), typ):
            raise CheckpointError(f"{meta_path}: metadata field {key!r} missing or malformed")
    return CheckpointInfo(kind=meta["kind"], config=meta["config"], training=meta.get("training", {}),
                          sha256=meta["sha256"], path=weights_path)


def load_state(path: str | Path, *, kind: str) -> tuple[CheckpointInfo, dict[str, torch.Tensor]]:
    """Validate metadata, kind and content hash; return the info and the tensors (on CPU)."""
    info = read_info(path)
    if info.kind != kind:
        raise CheckpointError(f"{info.path}: holds a {info.kind!r} network, expected {kind!r}")
    if not info.path.is_file():
        raise CheckpointError(f"{info.path}: weights file missing")
    blob = info.path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != info.sha256:
        raise CheckpointError(f"{info.path}: weights do not match their metadata (sha256 {digest[:12]}…, expected {info.sha256[:12]}…)")
    try:
        tensors = load_safetensors(blob)
    except SafetensorError as e:
        raise CheckpointError(f"{info.path}: unreadable safetensors data ({e})") from None
    return info, tensors


def load_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path | str) -> None:
    """Load ``tensors`` into ``model``, refusing missing, unexpected or mis-shaped entries."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    bad = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:4])}")
        if bad:
            parts.append(f"shape mismatch in {', '.join(bad[:4])}")
        raise CheckpointError(f"{source}: weights do not fit the architecture in their metadata ({'; '.join(parts)})")
    model.load_state_dict(tensors)
