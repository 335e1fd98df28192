"""ImageNet inflation: a 2D Inception-v1 (GoogLeNet) state dict in torchvision's layout -> I3D weights.

Each 2D filter is repeated N times along time and divided by N (N = the I3D kernel's temporal size), so a
"boring" video, one image repeated, gives every layer the 2D network's response on that image (away from
the clip's first and last frames, where the temporal padding is zeros). torchvision's BatchNorm has a
scale that I3D's lacks; the scale and the variance are folded into the convolution, which leaves a
BatchNorm of unit variance (running_var = 1 - eps) that computes the same thing. torchvision's GoogLeNet
expects input in [-1, 1] after its own ``transform_input``, as I3D does; the auxiliary heads are dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch

from i3d.errors import I3DError
from i3d.networks.architecture import (
    BATCH_NORM_EPS,
    CLASSIFIER_BIAS,
    CLASSIFIER_WEIGHT,
    FIRST_CONV,
    INCEPTION_CHANNELS,
)

_BLOCKS_2D = ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
              "inception4e", "inception5a", "inception5b")
_BRANCHES = {  # torchvision name -> (I3D name, temporal kernel size)
    "branch1": ("Branch_0.Conv3d_0a_1x1", 1),
    "branch2.0": ("Branch_1.Conv3d_0a_1x1", 1),
    "branch2.1": ("Branch_1.Conv3d_0b_3x3", 3),
    "branch3.0": ("Branch_2.Conv3d_0a_1x1", 1),
    "branch3.1": ("Branch_2.Conv3d_0b_3x3", 3),
    "branch4.1": ("Branch_3.Conv3d_0b_1x1", 1),
}


def googlenet_units() -> dict[str, tuple[str, int]]:
    """torchvision's conv units -> (I3D unit name, temporal kernel size)."""
    units = {"conv1": (FIRST_CONV, 7), "conv2": ("Conv3d_2b_1x1", 1), "conv3": ("Conv3d_2c_3x3", 3)}
    for block_2d, block_3d in zip(_BLOCKS_2D, INCEPTION_CHANNELS):
        for branch_2d, (branch_3d, time) in _BRANCHES.items():
            units[f"{block_2d}.{branch_2d}"] = (f"{block_3d}.{branch_3d}", time)
    return units


def inflate_googlenet(state_2d: dict[str, torch.Tensor], eps_2d: float = 1e-3) -> dict[str, torch.Tensor]:
    """I3D state dict (classifier from ``fc``, 3 input channels) of a torchvision GoogLeNet state dict."""
    units = googlenet_units()
    expected = {f"{name}.{part}" for name in units for part in
                ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")} | {"fc.weight", "fc.bias"}
    missing = sorted(expected - set(state_2d))
    if missing:
        raise I3DError(f"not a torchvision GoogLeNet state dict: missing {', '.join(missing[:4])}"
                       + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""))
    ignored = {k for k in state_2d if k.startswith(("aux1.", "aux2.")) or k.endswith("num_batches_tracked")}
    extra = sorted(set(state_2d) - expected - ignored)
    if extra:
        raise I3DError(f"unexpected variables in the GoogLeNet state dict: {', '.join(extra[:4])}")
    state: dict[str, torch.Tensor] = {}
    for name_2d, (name_3d, time) in units.items():
        weight = state_2d[f"{name_2d}.conv.weight"].double()
        gamma, beta = state_2d[f"{name_2d}.bn.weight"].double(), state_2d[f"{name_2d}.bn.bias"].double()
        mean, var = state_2d[f"{name_2d}.bn.running_mean"].double(), state_2d[f"{name_2d}.bn.running_var"].double()
        scale = gamma / torch.sqrt(var + eps_2d)  # BN(Wx) = scale (Wx - mean) + beta = (scale W)x - scale mean + beta
        kernel = (weight * scale[:, None, None, None]).unsqueeze(2).repeat(1, 1, time, 1, 1) / time
        state[f"{name_3d}.conv3d.weight"] = kernel.float()
        state[f"{name_3d}.batch_norm.bias"] = beta.float()
        state[f"{name_3d}.batch_norm.running_mean"] = (mean * scale).float()
        state[f"{name_3d}.batch_norm.running_var"] = torch.full_like(beta, 1 - BATCH_NORM_EPS).float()
    state[CLASSIFIER_WEIGHT] = state_2d["fc.weight"].float()[:, :, None, None, None].clone()
    state[CLASSIFIER_BIAS] = state_2d["fc.bias"].float().clone()
    return state


def inflate_file(source: Path, output: Path, labels_file: Path | None = None) -> int:
    """Read a GoogLeNet state dict (.pth/.pt via ``torch.load(weights_only=True)``, or .safetensors), inflate
    it, write I3D safetensors; returns the number of classes."""
    from i3d.weights.convert import read_labels
    from i3d.weights.store import save_weights

    if not source.is_file():
        raise I3DError(f"{source}: no such file")
    try:
        if source.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_2d = load_file(source)
        else:
            state_2d = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many kinds; the file is the user's
        raise I3DError(f"{source}: not a readable state dict of tensors ({type(error).__name__}; other pickled "
                       "objects are never loaded)") from None
    if isinstance(state_2d, dict) and isinstance(state_2d.get("state_dict"), dict):
        state_2d = state_2d["state_dict"]
    if not isinstance(state_2d, dict):
        raise I3DError(f"{source}: holds a {type(state_2d).__name__}, not a state dict")
    state = inflate_googlenet(state_2d)
    classes = state[CLASSIFIER_BIAS].shape[0]
    labels = read_labels(labels_file, classes) if labels_file else [f"class_{i:03d}" for i in range(classes)]
    save_weights(output, state, labels, "rgb", name=output.stem,
                 provenance=f"ImageNet inflation of {source.name} (2D filters repeated over time, divided by N)")
    return classes
