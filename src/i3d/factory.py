"""One way in for every network and every set of weights, as timm's ``create_model`` is.

``resolve_weights`` is the only place a weights name or path becomes tensors and the one record of
what they are (canonical name, stream, file, sha256, labels, recipe, provenance); ``create_model`` builds
the network for them and adapts it (a new classifier, a cross-modal first convolution). Every command and
capability gets its networks here, so every command accepts the same names.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from i3d.download import first_use_lock, offline
from i3d.errors import I3DError, I3DNotice, OutputError
from i3d.networks.architecture import RESNET_LAYOUTS
from i3d.networks.inception import InceptionI3d
from i3d.networks.resnet3d import ResNet3d
from i3d.weights import registry
from i3d.weights.registry import DEFAULT_WEIGHTS, find_entry, registry_entry
from i3d.weights.store import LoadedWeights, installed_path, load_weights, new_network

DEFAULT_FLOW_WEIGHTS = "flow_imagenet"

Weights = str | Path | LoadedWeights | None


def list_models(installed: bool = False) -> list[str]:
    """Weights names ``create_model`` accepts (``installed=True``: only those on this machine)."""
    return [name for name in registry.REGISTRY if not installed or installed_path(name).exists()]


def resolve_weights(weights: Weights = None, stream: str | None = None) -> LoadedWeights:
    """Weights by registry name (installed), or by path to a converted ``.safetensors`` file, checked
    and verified. ``stream`` (rgb or flow) refuses weights of the other stream; with no weights named, the
    flow stream takes DeepMind's flow_imagenet."""
    if isinstance(weights, LoadedWeights):
        loaded = weights
    else:
        if weights is None:
            weights = DEFAULT_FLOW_WEIGHTS if stream == "flow" else DEFAULT_WEIGHTS
        info = find_entry(str(weights))
        if info is not None:
            loaded = _installed(info, default_flow=stream == "flow" and weights == DEFAULT_FLOW_WEIGHTS)
        else:
            path = Path(weights)
            if not path.is_file():
                raise I3DError(f"{weights} is neither a known weights name ({', '.join(registry.REGISTRY)}) nor a "
                               "file")
            loaded = load_weights(path)
    if stream is not None and loaded.modality != stream:
        raise I3DError(f"weights {loaded.name} are for the {loaded.modality} stream, not {stream}")
    return loaded


def _installed(info: registry.WeightsInfo, default_flow: bool = False) -> LoadedWeights:
    name = info.name
    path = installed_path(name)
    if not path.exists():
        if default_flow and offline():
            raise I3DError(f"no flow weights installed: run `i3d weights fetch {name}` (DeepMind's flow "
                           "checkpoint; --mirror for a local copy), or give --flow-weights FILE")
        fetch_on_first_use(info)
    refetch = (f"re-fetch it: `i3d weights fetch {name} --force`" if info.fetchable
               else f"convert it again: {info.source}")
    return load_weights(path, refetch, info)


def fetch_on_first_use(info: registry.WeightsInfo) -> None:
    """Fetch, verify, convert and install weights the first time they are asked for, as torchvision and
    Hugging Face do: one note, then the download's progress. Concurrent first uses (two processes, Ray
    workers on one cache) fetch once, under a lock; every file is written whole or not at all."""
    name = info.name
    path = installed_path(name)
    if offline() or not info.fetchable:
        how = (f"run `i3d weights fetch {name}`" if info.fetchable
               else f"no published hash pins them, so i3d does not fetch them: {info.source}")
        raise I3DError(f"weights {name} are not installed; {how}")
    with first_use_lock(path):
        if path.exists():  # another process fetched them while this one waited
            return
        size = f", {info.download_bytes / 2**20:.0f} MB" if info.download_bytes else ""
        warnings.warn(f"weights {name} are not installed: fetching them now (first use{size}; I3D_OFFLINE=1 "
                      "turns this off)", I3DNotice, stacklevel=3)
        from i3d.weights.fetch import fetch_weights

        try:
            fetch_weights(name)
        except OutputError:
            raise
        except I3DError as error:
            raise I3DError(f"weights {name} are not installed and could not be fetched ({error}); fetch them "
                           f"where the network reaches their source (`i3d weights fetch {name}`) and copy "
                           f"{path.name} into {path.parent}, or point --mirror / I3D_WEIGHTS_URL at a copy of "
                           "the published files") from None


def build_model(weights: LoadedWeights) -> torch.nn.Module:
    """The plain network of loaded weights in eval mode."""
    model = new_network(weights.layout, weights.num_classes, weights.in_channels)
    model.load_state_dict(weights.state_dict)
    model.eval()
    model.labels = weights.labels
    model.weights = weights.without_tensors()
    return model


def create_model(
    weights: Weights = DEFAULT_WEIGHTS,
    *,
    pretrained: bool = True,
    stream: str | None = None,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    in_channels: int | None = None,
    dropout: float = 0.0,
    final_endpoint: str = "Logits",
    seed: int | None = None,
) -> InceptionI3d | ResNet3d:
    """I3D built for ``weights`` (a registry name, a converted ``.safetensors`` file, or weights
    already resolved): the Inception network, or the ResNet-50 of the layout the weights record.

    ``pretrained=False`` gives the same architecture freshly initialised (a registry name only decides its
    classes and channels then). ``stream`` refuses weights of the other stream. ``num_classes`` other than
    the weights' (or ``classes``, names other than the weights' labels) replaces the classifier with a new
    one, initialised from ``seed`` where given; ``in_channels=2`` on RGB weights initialises a flow network
    from them (cross-modal). The model is the plain network (``.to(dtype)``, ``.to(device)``, training all
    work as on any module), in eval mode, with ``weights`` (the record: name, stream, file, sha256, labels,
    recipe), ``labels`` and ``weights_meta`` set. ``i3d.load_model`` and ``i3d.runtimes`` make faster forms.
    """
    if num_classes is not None and num_classes < 1:
        raise I3DError(f"num_classes must be at least 1, not {num_classes}")
    if pretrained:
        record = resolve_weights(weights, stream)
        state_dict, labels, modality, meta = record.state_dict, record.labels, record.modality, record.meta
        layout = record.layout
    else:
        record, info = None, registry_entry(str(weights or DEFAULT_WEIGHTS))
        state_dict, labels, modality, meta = None, None, info.modality, {**info.meta, "modality": info.modality}
        layout = RESNET_LAYOUTS[info.layout] if info.layout else None
    channels = 3 if modality == "rgb" else 2
    if layout is not None and in_channels not in (None, 3):
        raise I3DError(f"{record.name if record else weights}: the ResNet-50 I3D family is RGB only (3 input "
                       "channels)")
    if state_dict is not None and in_channels not in (None, channels):
        if (channels, in_channels) != (3, 2):
            raise I3DError(f"{record.name}: {channels}-channel weights cannot start a {in_channels}-channel "
                           "network")
        from i3d.weights.cross_modal import flow_state_dict_from_rgb

        state_dict, channels, modality = flow_state_dict_from_rgb(state_dict), 2, "flow"
        meta = {**meta, "modality": modality}
    channels = in_channels or channels
    weights_classes = len(labels) if labels is not None else registry_entry(str(weights)).num_classes
    try:
        model = new_network(layout, weights_classes, channels, dropout, final_endpoint)
    except ValueError as error:
        raise I3DError(str(error)) from None
    if state_dict is not None:
        if final_endpoint != "Logits":
            state_dict = {k: v for k, v in state_dict.items() if k.split(".")[0] in model.endpoints}
        model.load_state_dict(state_dict)
    if classes is not None:
        num_classes = len(classes)
    wanted = list(classes) if classes is not None else None
    if (num_classes is not None and num_classes != weights_classes) or (wanted is not None and wanted != labels):
        if final_endpoint != "Logits":
            raise I3DError("num_classes needs the network built up to its Logits endpoint")
        _new_classifier(model, num_classes, seed)
        labels = wanted
    model.eval()
    model.labels = labels
    model.weights = record.without_tensors() if record is not None else None
    model.weights_meta = meta
    return model


def _new_classifier(model: InceptionI3d, num_classes: int, seed: int | None) -> None:
    """A fresh classifier; from ``seed``, it is the same in every process and every run. Every generator
    (the CPU's and each GPU's) is left as it was, so ranks keep their own dropout masks."""
    if seed is None:
        model.replace_logits(num_classes)
        return
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
        torch.manual_seed(seed)
        model.replace_logits(num_classes)


def load_model(name: Weights = None, *, runtime: str = "auto", precision: str = "fp32",
               device: str | torch.device = "cpu", stream: str | None = None) -> torch.nn.Module:
    """Pretrained I3D for inference, (B, C, T, H, W) float in [-1, 1] -> logits (B, num_classes), in the form
    ``runtime`` names (``i3d.runtimes``): ``auto`` (the default: OpenVINO on a CPU, PyTorch's fused form
    elsewhere), ``fused``, ``openvino``, or ``eager`` (the plain
    network, as ``create_model`` gives it). ``precision``: fp32 (within 1e-4 of the reference), bf16, fp16
    (CUDA) or int8 (OpenVINO). The form says what it is (``runtime``, ``precision``, ``device``)."""
    from i3d.runtimes import for_inference

    return for_inference(create_model(name, stream=stream), runtime, precision, device)
