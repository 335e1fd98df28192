"""Checkpoints of the inflated ResNet-50 family, in each source's own layout, mapped onto ``i3d.networks.resnet3d``.

Four layouts, recognised by their contents: PyTorchVideo (``.pyth``: ``model_state``, ``blocks.N...``),
MMAction2 (``.pth``: ``state_dict``, ``backbone.layerN...`` and ``cls_head.fc_cls``), the Caffe2 pickles of
facebookresearch/video-nonlocal-net (``blobs``: ``res3_1_branch2a_w``, ``res_conv1_bn_riv``...) and
pytorch-resnet3d's conversion of those (``layerN.M.conv1.weight``, ``nl.theta``). Every tensor is mapped
or the file is refused: nothing missing, nothing left over. ``.pth``/``.pyth`` are read with
``torch.load(weights_only=True)``, Caffe2 pickles with an unpickler that builds arrays and nothing else.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from i3d.errors import I3DError
from i3d.networks.architecture import RESNET_BLOCKS, RESNET_LAYOUTS, RESNET_STAGES, ResNetLayout

RESNET_FORMATS = ("pytorchvideo", "mmaction2", "caffe2", "pytorch-resnet3d")
_BN = {"weight": "weight", "bias": "bias", "running_mean": "running_mean", "running_var": "running_var"}
_CAFFE2_BN = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}  # riv holds the variance
_CAFFE2_IGNORED = ("model_iter", "lr")  # training state beside the blobs


def torch_checkpoint_format(loaded: Any) -> str | None:
    """Which ResNet layout a ``torch.load``-ed checkpoint has, by its names; None for none of them."""
    if not isinstance(loaded, dict):
        return None
    model_state = loaded.get("model_state")
    if isinstance(model_state, dict) and any(str(k).startswith("blocks.0.conv") for k in model_state):
        return "pytorchvideo"
    state = loaded.get("state_dict", loaded)
    if isinstance(state, dict) and "backbone.conv1.conv.weight" in state:
        return "mmaction2"
    if isinstance(state, dict) and "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        first = state["conv1.weight"]
        if isinstance(first, torch.Tensor) and first.ndim == 5:
            return "pytorch-resnet3d"
    return None


def read_caffe2_pickle(path: Path) -> dict[str, np.ndarray]:
    """The parameter blobs of a video-nonlocal-net ``.pkl`` (momentum and training counters left out)."""
    from i3d.weights.tfhub_pickle import ArrayOnlyUnpickler

    try:
        with open(path, "rb") as handle:
            loaded = ArrayOnlyUnpickler(handle, encoding="latin1").load()
    except I3DError as error:
        raise I3DError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise I3DError(f"{path}: not a whole Caffe2 pickle ({type(error).__name__}: {str(error)[:120]}); "
                       "download it again") from None
    blobs = loaded.get("blobs", loaded) if isinstance(loaded, dict) else None
    if not isinstance(blobs, dict) or "conv1_w" not in blobs:
        raise I3DError(f"{path}: a pickle, but not a video-nonlocal-net checkpoint (no blobs with conv1_w)")
    return {k: np.asarray(v) for k, v in blobs.items()
            if k not in _CAFFE2_IGNORED and not k.endswith("_momentum") and isinstance(v, np.ndarray)}


def _state(loaded: Any, source_format: str) -> dict[str, Any]:
    if source_format == "pytorchvideo":
        return loaded["model_state"]
    if source_format in ("mmaction2", "pytorch-resnet3d"):
        state = loaded.get("state_dict", loaded)
        return {k.removeprefix("module."): v for k, v in state.items()}
    return loaded


def _pytorchvideo_name(name: str) -> str | None:
    if name == "blocks.0.conv.weight":
        return "stem.conv.weight"
    if m := re.fullmatch(r"blocks\.0\.norm\.(\w+)", name):
        return f"stem.bn.{_BN[m[1]]}" if m[1] in _BN else None
    if m := re.fullmatch(r"blocks\.6\.proj\.(weight|bias)", name):
        return f"fc.{m[1]}"
    stages = {"1": "res2", "3": "res3", "4": "res4", "5": "res5"}  # blocks.2 is the parameter-free pool
    if m := re.fullmatch(r"blocks\.(\d)\.res_blocks\.(\d+)\.(.+)", name):
        if m[1] not in stages:
            return None
        prefix, rest = f"{stages[m[1]]}.{m[2]}", m[3]
        if rest == "branch1_conv.weight":
            return f"{prefix}.shortcut.conv.weight"
        if b := re.fullmatch(r"branch1_norm\.(\w+)", rest):
            return f"{prefix}.shortcut.bn.{_BN[b[1]]}" if b[1] in _BN else None
        if b := re.fullmatch(r"branch2\.conv_([abc])\.weight", rest):
            return f"{prefix}.conv_{b[1]}.conv.weight"
        if b := re.fullmatch(r"branch2\.norm_([abc])\.(\w+)", rest):
            return f"{prefix}.conv_{b[1]}.bn.{_BN[b[2]]}" if b[2] in _BN else None
    return None


def _mmaction2_name(name: str) -> str | None:
    if m := re.fullmatch(r"cls_head\.fc_cls\.(weight|bias)", name):
        return f"fc.{m[1]}"
    name = name.removeprefix("backbone.")
    if name == "conv1.conv.weight":
        return "stem.conv.weight"
    if m := re.fullmatch(r"conv1\.bn\.(\w+)", name):
        return f"stem.bn.{_BN[m[1]]}" if m[1] in _BN else None
    if not (m := re.fullmatch(r"layer([1-4])\.(\d+)\.(.+)", name)):
        return None
    prefix, rest = f"res{int(m[1]) + 1}.{m[2]}", m[3]
    if b := re.fullmatch(r"conv([123])\.conv\.weight", rest):
        return f"{prefix}.conv_{'abc'[int(b[1]) - 1]}.conv.weight"
    if b := re.fullmatch(r"conv([123])\.bn\.(\w+)", rest):
        return f"{prefix}.conv_{'abc'[int(b[1]) - 1]}.bn.{_BN[b[2]]}" if b[2] in _BN else None
    if rest == "downsample.conv.weight":
        return f"{prefix}.shortcut.conv.weight"
    if b := re.fullmatch(r"downsample\.bn\.(\w+)", rest):
        return f"{prefix}.shortcut.bn.{_BN[b[1]]}" if b[1] in _BN else None
    if b := re.fullmatch(r"non_local_block\.(theta|phi|g)(?:\.0)?\.conv\.(weight|bias)", rest):
        return f"{prefix}.nonlocal_block.{b[1]}.{b[2]}"
    if b := re.fullmatch(r"non_local_block\.conv_out\.conv\.(weight|bias)", rest):
        return f"{prefix}.nonlocal_block.out.{b[1]}"
    if b := re.fullmatch(r"non_local_block\.conv_out\.bn\.(\w+)", rest):
        return f"{prefix}.nonlocal_block.bn.{_BN[b[1]]}" if b[1] in _BN else None
    return None


def _caffe2_name(name: str) -> str | None:
    if name == "conv1_w":
        return "stem.conv.weight"
    if m := re.fullmatch(r"res_conv1_bn_(s|b|rm|riv)", name):
        return f"stem.bn.{_CAFFE2_BN[m[1]]}"
    if m := re.fullmatch(r"pred_([wb])", name):
        return f"fc.{'weight' if m[1] == 'w' else 'bias'}"
    if m := re.fullmatch(r"res([2-5])_(\d+)_branch(1|2[abc])_(w|bn_(?:s|b|rm|riv))", name):
        part = "shortcut" if m[3] == "1" else f"conv_{m[3][1]}"
        leaf = "conv.weight" if m[4] == "w" else f"bn.{_CAFFE2_BN[m[4][3:]]}"
        return f"res{m[1]}.{m[2]}.{part}.{leaf}"
    if m := re.fullmatch(r"nonlocal_conv([2-5])_(\d+)_(theta|phi|g|out)_([wb])", name):
        return f"res{m[1]}.{m[2]}.nonlocal_block.{m[3]}.{'weight' if m[4] == 'w' else 'bias'}"
    if m := re.fullmatch(r"nonlocal_conv([2-5])_(\d+)_bn_(s|b|rm|riv)", name):
        return f"res{m[1]}.{m[2]}.nonlocal_block.bn.{_CAFFE2_BN[m[3]]}"
    return None


def _resnet3d_name(name: str) -> str | None:
    if name == "conv1.weight":
        return "stem.conv.weight"
    if m := re.fullmatch(r"bn1\.(\w+)", name):
        return f"stem.bn.{_BN[m[1]]}" if m[1] in _BN else None
    if m := re.fullmatch(r"fc\.(weight|bias)", name):
        return name
    if not (m := re.fullmatch(r"layer([1-4])\.(\d+)\.(.+)", name)):
        return None
    prefix, rest = f"res{int(m[1]) + 1}.{m[2]}", m[3]
    if b := re.fullmatch(r"conv([123])\.weight", rest):
        return f"{prefix}.conv_{'abc'[int(b[1]) - 1]}.conv.weight"
    if b := re.fullmatch(r"bn([123])\.(\w+)", rest):
        return f"{prefix}.conv_{'abc'[int(b[1]) - 1]}.bn.{_BN[b[2]]}" if b[2] in _BN else None
    if rest == "downsample.0.weight":
        return f"{prefix}.shortcut.conv.weight"
    if b := re.fullmatch(r"downsample\.1\.(\w+)", rest):
        return f"{prefix}.shortcut.bn.{_BN[b[1]]}" if b[1] in _BN else None
    if b := re.fullmatch(r"nl\.(theta|phi|g|out)\.(weight|bias)", rest):
        return f"{prefix}.nonlocal_block.{b[1]}.{b[2]}"
    if b := re.fullmatch(r"nl\.bn\.(\w+)", rest):
        return f"{prefix}.nonlocal_block.bn.{_BN[b[1]]}" if b[1] in _BN else None
    return None


_NAMERS = {"pytorchvideo": _pytorchvideo_name, "mmaction2": _mmaction2_name, "caffe2": _caffe2_name,
           "pytorch-resnet3d": _resnet3d_name}


def map_resnet_state(source: dict[str, Any], source_format: str, path: Path) -> dict[str, torch.Tensor]:
    """Every source tensor under its name here; BatchNorm step counters dropped; anything else refused."""
    namer, state, unknown = _NAMERS[source_format], {}, []
    for name, value in source.items():
        if name.endswith("num_batches_tracked"):
            continue
        ours = namer(name)
        if ours is None:
            unknown.append(name)
            continue
        tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).float()
        state[ours] = tensor.reshape(tensor.shape[0], -1) if ours == "fc.weight" else tensor  # Caffe2's test
    if unknown:  # conv-form classifier is (400, 2048, 1, 1, 1)
        raise I3DError(f"{path}: {len(unknown)} {source_format} tensors fit no ResNet-50 I3D layer "
                       f"({', '.join(unknown[:3])}{'...' if len(unknown) > 3 else ''})")
    return state


Pattern = tuple[tuple[int, ...], ...]


def checkpoint_structure(state: dict[str, torch.Tensor]) -> tuple[Pattern, Pattern]:
    """The temporal kernels and the non-local blocks the tensors themselves show, stage by stage."""
    kernels, nonlocal_blocks = [], []
    for stage, count in zip(RESNET_STAGES, RESNET_BLOCKS):
        kernels.append(tuple(int(state[f"{stage}.{b}.conv_a.conv.weight"].shape[2])
                             if f"{stage}.{b}.conv_a.conv.weight" in state else 0 for b in range(count)))
        nonlocal_blocks.append(tuple(int(f"{stage}.{b}.nonlocal_block.g.weight" in state) for b in range(count)))
    return tuple(kernels), tuple(nonlocal_blocks)


_VARIANT_WORDS = {"dot-product": "dot_product", "dot_product": "dot_product", "embedded-gaussian": "embedded_gaussian",
                  "embedded_gaussian": "embedded_gaussian"}


def choose_layout(source_format: str, state: dict[str, torch.Tensor], path: Path, layout: str | None) -> ResNetLayout:
    """The layout of a checkpoint: as asked (checked against the tensors), else as its tensors and name tell.

    What tensors cannot tell (Caffe2's 32x2 and 8x8 stems, mmcv's dot-product and embedded-Gaussian forms)
    comes from the file name as published, or ``layout``; a file that says neither is refused."""
    kernels, nonlocal_blocks = checkpoint_structure(state)
    has_nonlocal = any(any(stage) for stage in nonlocal_blocks)
    if layout is None:
        stem = path.name.lower()
        if source_format == "pytorchvideo":
            layout = "pytorchvideo-r50"
        elif source_format == "mmaction2":
            if not has_nonlocal:
                layout = "mmaction2-r50-heavy" if all(k == 3 for stage in kernels for k in stage) else "mmaction2-r50"
            elif "res3.1.nonlocal_block.theta.weight" not in state:
                layout = "mmaction2-r50-nl-gaussian"
            else:
                mode = next((v for k, v in _VARIANT_WORDS.items() if k in stem), None)
                if mode is None:
                    raise I3DError(f"{path}: an MMAction2 non-local checkpoint whose tensors fit both the dot-product "
                                   "and the embedded-Gaussian form; give --layout mmaction2-r50-nl-dot-product or "
                                   "mmaction2-r50-nl-embedded-gaussian (its config name says which)")
                layout = f"mmaction2-r50-nl-{mode.replace('_', '-')}"
        else:  # caffe2 and its pytorch-resnet3d conversion
            clip = "32x2" if source_format == "pytorch-resnet3d" or "32x2" in stem else "8x8" if "8x8" in stem else None
            if clip is None:
                raise I3DError(f"{path}: a video-nonlocal-net checkpoint whose name says neither 32x2 nor 8x8 (the "
                               "two stems differ and the tensors cannot tell); give --layout caffe2-r50-32x2, "
                               "caffe2-r50-8x8, caffe2-r50-nl-32x2 or caffe2-r50-nl-8x8")
            layout = f"caffe2-r50{'-nl' if has_nonlocal else ''}-{clip}"
    if layout not in RESNET_LAYOUTS:
        raise I3DError(f"unknown layout {layout!r}; known: {', '.join(RESNET_LAYOUTS)}")
    chosen = RESNET_LAYOUTS[layout]
    if nonlocal_blocks != chosen.nonlocal_blocks:
        where = [f"{s}.{b}" for s, stage in zip(RESNET_STAGES, nonlocal_blocks) for b, v in enumerate(stage) if v]
        if has_nonlocal and not chosen.has_nonlocal:
            raise I3DError(f"{path}: a non-local checkpoint (blocks after {', '.join(where[:3])}...) cannot be "
                           f"converted as {layout}, which has none")
        raise I3DError(f"{path}: its non-local blocks ({', '.join(where) or 'none'}) are not those of {layout}")
    if kernels != chosen.temporal_kernels:
        raise I3DError(f"{path}: its temporal kernels {kernels} are not the inflation pattern of {layout} "
                       f"{chosen.temporal_kernels}")
    return chosen


def read_resnet_checkpoint(path: Path, source_format: str, loaded: Any = None, layout: str | None = None
                           ) -> tuple[dict[str, torch.Tensor], ResNetLayout]:
    """The state dict here and the layout of one ResNet-50 I3D checkpoint (``loaded``: its torch.load)."""
    source = read_caffe2_pickle(path) if source_format == "caffe2" else _state(loaded, source_format)
    state = map_resnet_state(source, source_format, path)
    return state, choose_layout(source_format, state, path, layout)
