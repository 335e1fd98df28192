"""One way in for every network: ``create_model`` builds I3D from a weights name or file, as timm's does.

Every command and capability builds its networks here. A weights entry decides the classes, the input
channels and the recipe; ``num_classes`` or ``in_channels`` that differ from the weights' give a new
classifier (fine-tuning) or a cross-modal first convolution (flow from RGB) on top of the same weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from i3d.errors import I3DError
from i3d.inference import optimize_for_inference
from i3d.model import InceptionI3d
from i3d.weights.registry import DEFAULT_WEIGHTS, REGISTRY, registry_entry
from i3d.weights.resolve import resolve_weights
from i3d.weights.store import LoadedWeights, installed_path

DEFAULT_FLOW_WEIGHTS = "flow_imagenet"


def list_models(installed: bool = False) -> list[str]:
    """Weights names ``create_model`` accepts (``installed=True``: only those on this machine)."""
    return [name for name in REGISTRY if not installed or installed_path(name).exists()]


def build_model(weights: LoadedWeights, optimize: bool = False) -> torch.nn.Module:
    """The network of loaded weights in eval mode; ``optimize`` gives the fast inference-only form."""
    model = InceptionI3d(weights.num_classes, weights.in_channels)
    model.load_state_dict(weights.state_dict)
    model.eval()
    model = optimize_for_inference(model) if optimize else model
    model.labels = weights.labels
    return model


def create_model(
    weights: str | Path | None = DEFAULT_WEIGHTS,
    *,
    pretrained: bool = True,
    num_classes: int | None = None,
    in_channels: int | None = None,
    dropout: float = 0.0,
    final_endpoint: str = "Logits",
) -> InceptionI3d:
    """I3D built for ``weights`` (a registry name or a converted ``.safetensors`` file).

    ``pretrained=False`` gives the same architecture freshly initialised (a registry name only decides its
    classes and channels then). ``num_classes`` other than the weights' replaces the classifier with a
    new one; ``in_channels=2`` on RGB weights initialises a flow network from them (cross-modal). The
    model comes in eval mode with ``labels`` (the class names, where known) and ``weights_meta`` set.
    """
    if num_classes is not None and num_classes < 1:
        raise I3DError(f"num_classes must be at least 1, not {num_classes}")
    weights = weights or DEFAULT_WEIGHTS
    if pretrained:
        loaded = resolve_weights(weights)
        state_dict, labels, modality = loaded.state_dict, loaded.labels, loaded.modality
        meta = REGISTRY[loaded.name].meta if loaded.name in REGISTRY else dict(loaded.metadata)
    else:
        info = registry_entry(str(weights))
        state_dict, labels, modality, meta = None, None, info.modality, info.meta
    channels = 3 if modality == "rgb" else 2
    if state_dict is not None and in_channels not in (None, channels):
        if (channels, in_channels) != (3, 2):
            raise I3DError(f"{weights}: {channels}-channel weights cannot start a {in_channels}-channel network")
        from i3d.weights.cross_modal import flow_state_dict_from_rgb

        state_dict, channels, modality = flow_state_dict_from_rgb(state_dict), 2, "flow"
    channels = in_channels or channels
    classes = len(labels) if labels is not None else registry_entry(str(weights)).num_classes
    model = InceptionI3d(classes, channels, dropout, final_endpoint)
    if state_dict is not None:
        if final_endpoint != "Logits":
            state_dict = {k: v for k, v in state_dict.items() if k.split(".")[0] in model.endpoints}
        model.load_state_dict(state_dict)
    if num_classes is not None and num_classes != classes:
        if final_endpoint != "Logits":
            raise I3DError("num_classes needs the network built up to its Logits endpoint")
        model.replace_logits(num_classes)
        labels = None
    model.eval()
    model.fast_inference = True
    model.labels = labels
    model.weights_meta = {**meta, "modality": modality}
    return model


def load_model(name: str | Path | None = None, optimize: bool = False) -> torch.nn.Module:
    """Pretrained I3D in eval mode, (B, C, T, H, W) in [-1, 1] -> logits (B, num_classes).

    Fast by default: in eval mode with autograd off (``torch.inference_mode()`` or ``no_grad``) it runs the
    fused inference form; ``train()``, gradients and ``load_state_dict`` work as on the plain network.
    ``optimize=True`` returns the inference-only form itself (as earlier releases did).
    """
    model = build_model(resolve_weights(name), optimize)
    model.fast_inference = True
    return model


def load_stream_weights(weights: str | Path | None, modality: str) -> LoadedWeights:
    """The weights of one stream: the named or default ones, checked to be for that stream."""
    if modality == "flow" and weights is None:
        if not installed_path(DEFAULT_FLOW_WEIGHTS).exists():
            raise I3DError(
                f"no flow weights installed: run `i3d weights fetch {DEFAULT_FLOW_WEIGHTS}` (DeepMind's flow "
                "checkpoint; --mirror for a local copy), or give --flow-weights FILE")
        weights = DEFAULT_FLOW_WEIGHTS
    loaded = resolve_weights(weights)
    if loaded.modality != modality:
        raise I3DError(f"weights {weights or 'default'} are for the {loaded.modality} stream, not {modality}")
    return loaded
