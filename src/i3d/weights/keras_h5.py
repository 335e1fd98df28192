"""Keras ports' HDF5 weights (dlpbc/keras-kinetics-i3d, ``*_inception_i3d_tf_dim_ordering_tf_kernels.h5``).

Their layers (i3d_inception.py, ``conv3d_bn``) are ``<unit>_conv`` (Conv3D, kernel (t, h, w, in, out), no
bias) and ``<unit>_bn`` (BatchNormalization(scale=False), Keras's eps 1e-3: beta, moving_mean,
moving_variance), one unit per reference layer: ``Conv3d_1a_7x7``, ``Conv3d_2b_1x1``, ``Conv3d_2c_3x3``, then
per inception block ``Conv3d_<3b..5c>_<0a_1x1|1a_1x1|1b_3x3|2a_1x1|2b_3x3|3b_1x1>``, and the classifier
``Conv3d_6a_1x1_conv`` (kernel and bias). Read with h5py from either layout Keras writes (``save_weights``,
or ``save`` under ``model_weights``), following each layer's ``weight_names``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from i3d.errors import I3DError
from i3d.networks.architecture import CLASSIFIER, INCEPTION_CHANNELS

_UNITS = {"Conv3d_1a_7x7": "Conv3d_1a_7x7", "Conv3d_2b_1x1": "Conv3d_2b_1x1", "Conv3d_2c_3x3": "Conv3d_2c_3x3"}
_BRANCHES = {"0a_1x1": "Branch_0.Conv3d_0a_1x1", "1a_1x1": "Branch_1.Conv3d_0a_1x1", "1b_3x3": "Branch_1.Conv3d_0b_3x3",
             "2a_1x1": "Branch_2.Conv3d_0a_1x1", "2b_3x3": "Branch_2.Conv3d_0b_3x3", "3b_1x1": "Branch_3.Conv3d_0b_1x1"}
for _block in INCEPTION_CHANNELS:  # Mixed_4b -> Conv3d_4b_...
    for _theirs, _ours in _BRANCHES.items():
        _UNITS[f"Conv3d_{_block.removeprefix('Mixed_')}_{_theirs}"] = f"{_block}.{_ours}"
_BN = {"beta": "batch_norm.bias", "moving_mean": "batch_norm.running_mean", "moving_variance": "batch_norm.running_var"}


def keras_name(layer: str, weight: str) -> str | None:
    """This network's parameter for a Keras layer's weight (``Conv3d_4b_1b_3x3_bn``, ``moving_mean``)."""
    if layer == "Conv3d_6a_1x1_conv":
        return f"{CLASSIFIER}.conv3d.{'weight' if weight == 'kernel' else 'bias'}" if weight in ("kernel", "bias") \
            else None
    match = re.fullmatch(r"(.+)_(conv|bn)", layer)
    if match is None or match[1] not in _UNITS:
        return None
    if match[2] == "conv":
        return f"{_UNITS[match[1]]}.conv3d.weight" if weight == "kernel" else None
    return f"{_UNITS[match[1]]}.{_BN[weight]}" if weight in _BN else None


def read_keras_h5(path: Path) -> dict[str, torch.Tensor]:
    import h5py

    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise I3DError(f"{path}: not a readable HDF5 file ({error})") from None
    state, unknown = {}, []
    with file:
        root = file.get("model_weights", file)
        layers = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs.get("layer_names", list(root))]
        for layer in layers:
            group = root[layer]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
            for weight_path in names:
                weight = weight_path.rsplit("/", 1)[-1].split(":")[0]
                target = keras_name(layer, weight)
                if target is None:
                    unknown.append(f"{layer}/{weight}")
                    continue
                array = np.asarray(group[weight_path], dtype=np.float32)
                if target.endswith("conv3d.weight"):
                    if array.ndim != 5:
                        raise I3DError(f"{path}: {layer}/{weight} has shape {array.shape}; a Conv3D kernel is "
                                       "(t, h, w, in, out)")
                    array = array.transpose(4, 3, 0, 1, 2)
                state[target] = torch.from_numpy(np.ascontiguousarray(array))
    if unknown:
        raise I3DError(f"{path}: {len(unknown)} weights map to nothing in I3D, first {unknown[0]} (expected the "
                       "keras-kinetics-i3d layer names: Conv3d_1a_7x7_conv, ..._bn, Conv3d_4b_1b_3x3_conv, "
                       "Conv3d_6a_1x1_conv)")
    if not state:
        raise I3DError(f"{path}: holds no Keras layer weights")
    return state
