"""State dicts of the popular PyTorch port (``rgb_imagenet.pt``, ``flow_imagenet.pt``, ``rgb_charades.pt``, ...).

Its names differ from ours in the block branches (``b0``, ``b1a``, ``b1b``, ``b2a``, ``b2b``, ``b3b``),
``bn`` for ``batch_norm`` and ``logits`` for ``Logits``. Its BatchNorm has a scale; ours, like
DeepMind's, has none, so a scale is folded into the running variance: ``gamma (x - m) / sqrt(v + eps)``
equals ``(x - m) / sqrt(v' + eps)`` with ``v' = (v + eps) / gamma^2 - eps`` for any positive ``gamma``.
Files are read with ``torch.load(weights_only=True)``: tensors and plain containers, no code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from i3d.errors import I3DError
from i3d.networks.architecture import BATCH_NORM_EPS, CLASSIFIER

_BRANCHES = {"b0": "Branch_0.Conv3d_0a_1x1", "b1a": "Branch_1.Conv3d_0a_1x1", "b1b": "Branch_1.Conv3d_0b_3x3",
             "b2a": "Branch_2.Conv3d_0a_1x1", "b2b": "Branch_2.Conv3d_0b_3x3", "b3b": "Branch_3.Conv3d_0b_1x1"}
_PARAMS = {"conv3d.weight": "conv3d.weight", "conv3d.bias": "conv3d.bias", "bn.bias": "batch_norm.bias",
           "bn.running_mean": "batch_norm.running_mean", "bn.running_var": "batch_norm.running_var"}


def load_torch_checkpoint(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers, never code; one line when refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
        named = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        reason = (f"it names {named[1]}" if named else
                  next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__))
        raise I3DError(f"{path}: not a PyTorch checkpoint that loads without running code ({reason[:160]})") from None


def load_torch_file(path: Path, loaded: Any = None) -> dict[str, torch.Tensor]:
    loaded = load_torch_checkpoint(path) if loaded is None else loaded
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise I3DError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}  # saved from DataParallel


def our_name(port_name: str) -> str | None:
    """This network's name for one of the port's parameters, None for ``bn.weight`` and bookkeeping."""
    match = re.fullmatch(r"(\w+?)\.(?:(b0|b1a|b1b|b2a|b2b|b3b)\.)?(conv3d\.weight|conv3d\.bias|bn\.\w+)", port_name)
    if match is None or match[3] not in _PARAMS:
        return None
    layer = CLASSIFIER if match[1] == "logits" else match[1]
    branch = f".{_BRANCHES[match[2]]}" if match[2] else ""
    return f"{layer}{branch}.{_PARAMS[match[3]]}"


def convert_torch_port(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted, unknown = {}, []
    for name, tensor in state.items():
        mapped = our_name(name)
        if mapped is not None:
            converted[mapped] = tensor.detach().float().clone()
        elif not name.endswith(("bn.weight", "bn.num_batches_tracked")):
            unknown.append(name)
    if unknown:
        raise I3DError(f"{len(unknown)} entries map to nothing in I3D: {', '.join(sorted(unknown)[:3])}")
    for name, gamma in state.items():
        if not name.endswith("bn.weight"):
            continue
        var_name = our_name(name.removesuffix("weight") + "running_var")
        if var_name not in converted:
            raise I3DError(f"{name} has no running_var beside it")
        gamma = gamma.double()
        if (gamma <= 0).any():
            raise I3DError(f"{name}: a BatchNorm scale <= 0 cannot be folded into a scale-free BatchNorm")
        variance = converted[var_name].double()
        converted[var_name] = ((variance + BATCH_NORM_EPS) / gamma**2 - BATCH_NORM_EPS).float()
    return converted


def port_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This network's tensors under the port's names, each BatchNorm with a scale of 1: the layout of the
    port's files and of the FVD code that copied it (TATS, VideoGPT, cd-fvd), for running their code on
    these weights."""
    branches = {full: short for short, full in _BRANCHES.items()}
    params = {ours: port for port, ours in _PARAMS.items()}
    out = {}
    for name, tensor in state_dict.items():
        layer, _, rest = name.partition(".")
        if name.startswith(CLASSIFIER + "."):
            layer, rest = "logits", name.removeprefix(CLASSIFIER + ".")
        branch = next((b for full, b in branches.items() if rest.startswith(full + ".")), None)
        rest = rest.removeprefix(next(full for full, b in branches.items() if b == branch) + ".") if branch else rest
        port = ".".join(part for part in (layer, branch, params[rest]) if part)
        assert our_name(port) == name, (name, port)
        out[port] = tensor.detach().clone()
        if port.endswith("bn.bias"):
            out[port.removesuffix("bias") + "weight"] = torch.ones_like(tensor)
    return out
