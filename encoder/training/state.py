"""Flattening modules and optimizers into one safetensors dict and back (``--resume`` state).

Keys are ``PREFIX.NAME`` for a module's state dict and ``PREFIX.INDEX.KEY`` for an optimizer's
per-parameter state; an optimizer's ``param_groups`` go into the JSON beside the tensors.
"""

from __future__ import annotations

import torch
from torch import nn


def module_tensors(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def load_module(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    cut = len(prefix) + 1
    module.load_state_dict({k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
    """The optimizer's per-parameter state as tensors, and its ``param_groups`` (for the JSON)."""
    state = opt.state_dict()
    tensors = {f"{prefix}.{idx}.{key}": torch.as_tensor(value).detach().cpu().contiguous()
               for idx, per_param in state["state"].items() for key, value in per_param.items()}
    return tensors, state["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str,
                   param_groups: list) -> None:
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": param_groups})
