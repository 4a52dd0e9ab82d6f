"""Networks, their configs and their checkpoints.

Shipped weights live in ``vsr_plugin/weights`` as ``x{scale}-{name}.safetensors`` + ``.json``;
``load_upsampler("default")`` finds them, and any other argument is taken as a path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import DEFAULT_PAIR, NAMED_PAIRS  # defined in the package root, torch-free, for the command line's start-up
from .checkpoint import (CheckpointError, CheckpointInfo, load_into, load_state, read_info, save_checkpoint,
                         sidecar_paths)
from .downsampler import DOWN_PRESETS, Downsampler, DownsamplerConfig
from .layers import PooledSelfAttention
from .upsampler import PRESETS, Upsampler, UpsamplerConfig

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
UPSAMPLER = "upsampler"
DOWNSAMPLER = "downsampler"

__all__ = ["CheckpointError", "CheckpointInfo", "DEFAULT_PAIR", "DOWN_PRESETS", "Downsampler", "DownsamplerConfig",
           "PRESETS",
           "PooledSelfAttention", "Upsampler", "UpsamplerConfig", "WEIGHTS_DIR", "blend_weights", "find_by_hash",
           "load_downsampler",
           "NAMED_PAIRS", "load_upsampler", "pair_names", "paired_upsampler", "resolve_weights", "save_downsampler",
           "save_upsampler", "shipped_models", "standalone_upsamplers", "read_info"]


def shipped_models(kind: str = UPSAMPLER) -> list[str]:
    """Names of the shipped weight files of one kind, e.g. ``["x2-default", "x2-fast"]``."""
    names = []
    for meta in sorted(WEIGHTS_DIR.glob("*.json")):
        try:
            if read_info(meta).kind == kind:
                names.append(meta.stem)
        except CheckpointError:
            continue
    return names


def pair_names(pair: str, *, scale: int = 2) -> tuple[str, str]:
    """Weight names of a shipped down/upsampler pair: ``"codec-default"`` ->
    ``("x2-codec-default-down", "x2-codec-default-up")`` (the naming joint training's files follow),
    or the two names :data:`NAMED_PAIRS` gives."""
    down, up = NAMED_PAIRS.get(pair, (f"{pair}-down", f"{pair}-up"))
    return f"x{scale}-{down}", f"x{scale}-{up}"


def paired_upsampler(down_model: str | Path) -> str | None:
    """The upsampler trained with a downsampler, by that naming: ``…-down`` pairs with ``…-up``
    (a shipped name, or a weights file beside the downsampler's)."""
    text = str(down_model)
    if not text.endswith("-down"):
        return None
    up = text[: -len("-down")] + "-up"
    try:
        resolve_weights(up)
        return up
    except CheckpointError:
        return None


def standalone_upsamplers() -> list[str]:
    """Shipped upsamplers that were not trained for one particular downsampler."""
    paired = {paired_upsampler(d) for d in shipped_models(DOWNSAMPLER)}
    return [n for n in shipped_models() if n not in paired]


def resolve_weights(model: str | Path, *, scale: int = 2) -> Path:
    """A shipped model name (``"default"``, ``"fast"``, ``"x2-default"``) or a path -> weights path."""
    text = str(model)
    for candidate in (WEIGHTS_DIR / f"x{scale}-{text}", WEIGHTS_DIR / text):
        if sidecar_paths(candidate)[1].is_file():
            return sidecar_paths(candidate)[0]
    path = Path(model)
    if sidecar_paths(path)[1].is_file() or sidecar_paths(path)[0].is_file():
        return sidecar_paths(path)[0]
    if path.is_file():
        raise CheckpointError(f"{path}: not a vsr weights file; weights are .safetensors with a .json beside them "
                              "(pickled checkpoints such as .pt/.pth are refused: loading one can run code)")
    shipped = ", ".join(shipped_models()) or "none"
    raise CheckpointError(f"no model {text!r}: not a shipped model (shipped: {shipped}) nor an existing weights file")


def find_by_hash(sha256: str, kind: str = UPSAMPLER) -> Path | None:
    """The shipped weights file of ``kind`` whose content hash is ``sha256``, if any."""
    for meta in sorted(WEIGHTS_DIR.glob("*.json")):
        try:
            info = read_info(meta)
        except CheckpointError:
            continue
        if info.kind == kind and info.sha256 == sha256:
            return info.path
    return None


def _load(model: str | Path, scale: int, kind: str, config_cls, net_cls):
    path = resolve_weights(model, scale=scale)
    info, tensors = load_state(path, kind=kind)
    try:
        config = config_cls.from_dict(info.config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad architecture config in metadata ({e})") from None
    if config.scale != scale:
        raise CheckpointError(f"{path}: an x{config.scale} model, but x{scale} was requested")
    net = net_cls(config)
    load_into(net, tensors, path)
    return net.eval(), info


def load_upsampler(model: str | Path = "default", *, scale: int = 2) -> tuple[Upsampler, CheckpointInfo]:
    """Build an :class:`Upsampler` from shipped or saved weights (on CPU, eval mode)."""
    return _load(model, scale, UPSAMPLER, UpsamplerConfig, Upsampler)


def load_downsampler(model: str | Path, *, scale: int = 2) -> tuple[Downsampler, CheckpointInfo]:
    """Build a :class:`Downsampler` from shipped or saved weights (on CPU, eval mode)."""
    return _load(model, scale, DOWNSAMPLER, DownsamplerConfig, Downsampler)


def save_upsampler(path: str | Path, net: Upsampler, *, training: dict | None = None) -> tuple[Path, Path]:
    return save_checkpoint(path, net, kind=UPSAMPLER, config=net.config.to_dict(), training=training)


def save_downsampler(path: str | Path, net: Downsampler, *, training: dict | None = None) -> tuple[Path, Path]:
    return save_checkpoint(path, net, kind=DOWNSAMPLER, config=net.config.to_dict(), training=training)


def blend_weights(a: str | Path, b: str | Path, alpha: float, output: str | Path) -> tuple[Path, Path]:
    """Write ``(1 - alpha) * a + alpha * b``, tensor by tensor, as a new weights file.

    Network interpolation (ESRGAN's): between a fidelity-trained network and the same network
    fine-tuned adversarially, ``alpha`` sets how much of the fine-tuning's texture is kept. Both must be
    the same kind with the same architecture (one fine-tuned from the other, or both from one
    ancestor, for the blend to mean anything). ``alpha`` 0 and 1 reproduce ``a`` and ``b`` exactly.
    The sidecar records both parents (name, hash, training summary) and ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"blend weight {alpha} is outside [0, 1] (0 keeps the first model, 1 the second)")
    path_a, path_b = resolve_weights(a), resolve_weights(b)
    kind = read_info(path_a).kind
    info_a, tensors_a = load_state(path_a, kind=kind)
    info_b, tensors_b = load_state(path_b, kind=kind)
    if info_a.config != info_b.config:
        raise CheckpointError(f"cannot blend {info_a.name} and {info_b.name}: different architectures "
                              f"({info_a.config} vs {info_b.config})")
    config_cls, net_cls = ((UpsamplerConfig, Upsampler) if kind == UPSAMPLER
                           else (DownsamplerConfig, Downsampler))
    net = net_cls(config_cls.from_dict(info_a.config))
    for path, tensors in ((path_a, tensors_a), (path_b, tensors_b)):
        load_into(net, tensors, path)  # each parent fits the shared config (else one clear error, not a KeyError)
    mixed = {}
    for k, ta in tensors_a.items():
        tb = tensors_b[k]
        if not ta.is_floating_point():
            if not torch.equal(ta, tb):
                raise CheckpointError(f"cannot blend {info_a.name} and {info_b.name}: integer tensor {k} differs")
            mixed[k] = ta
            continue
        # in float64 so that alpha 0 and 1 return the parents bit for bit
        mixed[k] = ((1.0 - alpha) * ta.double() + alpha * tb.double()).to(ta.dtype)
    load_into(net, mixed, output)
    parents = {key: {"name": info.name, "sha256": info.sha256, "training": info.training}
               for key, info in (("a", info_a), ("b", info_b))}
    return save_checkpoint(output, net, kind=kind, config=info_a.config, training={"blend": {"alpha": alpha, **parents}})
