"""`i3d weights convert`: any published checkpoint format in, the project's safetensors file out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i3d.download import sha256_of
from i3d.errors import I3DError
from i3d.networks.architecture import CLASSIFIER_WEIGHT, FIRST_CONV_WEIGHT, RESNET_CLASSIFIER_WEIGHT, ResNetLayout
from i3d.settings import SOURCE_FORMATS
from i3d.weights.registry import LABEL_SETS, find_entry
from i3d.weights.resnet_checkpoints import RESNET_FORMATS, read_resnet_checkpoint, torch_checkpoint_format
from i3d.weights.store import installed_path, save_weights
from i3d.weights.tf_checkpoint import checkpoint_prefix, convert_tf_arrays, read_checkpoint
from i3d.weights.torch_port import convert_torch_port, load_torch_checkpoint, load_torch_file


def detect_format(path: Path) -> tuple[str, Any]:
    """The checkpoint's format, recognised by its contents, and (for PyTorch files) what it loaded to."""
    if path.suffix in (".h5", ".hdf5"):
        return "keras-h5", None
    if path.suffix == ".pkl":
        return "caffe2", None
    if checkpoint_prefix(path).with_name(checkpoint_prefix(path).name + ".index").is_file():
        return "tf", None
    if path.is_file() and path.suffix in (".pt", ".pth", ".pyth", ".bin", ".ckpt"):
        loaded = load_torch_checkpoint(path)
        resnet_format = torch_checkpoint_format(loaded)
        if resnet_format is not None:
            return resnet_format, loaded
        state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
        if isinstance(state, dict) and any(str(k).removeprefix("module.").startswith("Conv3d_1a_7x7") for k in state):
            return "torch-port", loaded
        from i3d.video.flow.raft_weights import layout_of

        if isinstance(state, dict) and layout_of(state) is not None:
            return "raft", loaded
        names = [str(k) for k in (state or {})][:3]
        raise I3DError(f"{path}: a PyTorch file of an unknown layout (first names: {', '.join(names) or 'none'}); "
                       "known: the PyTorch I3D port, PyTorchVideo, MMAction2, pytorch-resnet3d, RAFT")
    raise I3DError(f"{path}: not a known checkpoint: a TensorFlow model.ckpt(.index), a PyTorch .pt/.pth/.pyth, a "
                   "Keras .h5 or a Caffe2 .pkl")


def read_labels(path: Path, count: int) -> list[str]:
    if not path.is_file():
        raise I3DError(f"{path}: no such labels file")
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(labels) != count:
        raise I3DError(f"{path}: {len(labels)} labels for a classifier of {count} classes")
    return labels


@dataclass
class Converted:
    path: Path
    modality: str
    num_classes: int
    labels_note: str | None  # set when class names had to be made up
    layout: ResNetLayout | None = None  # the ResNet-50 layout; None for the Inception network

    @property
    def network(self) -> str:
        return f"ResNet-50 I3D ({self.layout.name})" if self.layout is not None else "I3D"


def convert_weights(
    source: Path,
    output: Path | None = None,
    name: str | None = None,
    labels_file: Path | None = None,
    scope: str | None = None,
    source_format: str | None = None,
    metadata: dict[str, str] | None = None,
    layout: str | None = None,
) -> Converted:
    """Read ``source``, map every variable, check names and shapes, write safetensors with the labels.

    ResNet-50 checkpoints also get their layout (``layout`` names one where the file cannot say)."""
    if not source.exists() and not checkpoint_prefix(source).with_name(checkpoint_prefix(source).name
                                                                       + ".index").exists():
        raise I3DError(f"{source}: no such file")
    info = find_entry(name) if name else None
    loaded = None
    if source_format is None:
        source_format, loaded = detect_format(source)
    if layout is None and info is not None and info.layout is not None:
        layout = info.layout
    resnet_layout = None
    if source_format in RESNET_FORMATS:
        if loaded is None and source_format != "caffe2":
            loaded = load_torch_checkpoint(source)
            if torch_checkpoint_format(loaded) != source_format:
                raise I3DError(f"{source}: not a {source_format} checkpoint")
        state_dict, resnet_layout = read_resnet_checkpoint(source, source_format, loaded, layout)
        modality, digest = "rgb", sha256_of(source)
    elif layout is not None:
        raise I3DError(f"--layout is for the ResNet-50 I3D family; {source} is an Inception I3D checkpoint")
    elif source_format == "tf":
        modality, state_dict = convert_tf_arrays(read_checkpoint(source), scope)
        data_files = sorted(checkpoint_prefix(source).parent.glob(checkpoint_prefix(source).name + ".data-*"))
        digest = sha256_of(data_files[0])
    elif source_format == "torch-port":
        state_dict = convert_torch_port(load_torch_file(source, loaded))
        modality = "flow" if state_dict.get(FIRST_CONV_WEIGHT, None) is not None and \
            state_dict[FIRST_CONV_WEIGHT].shape[1] == 2 else "rgb"
        digest = sha256_of(source)
    elif source_format == "keras-h5":
        from i3d.weights.keras_h5 import read_keras_h5

        state_dict = read_keras_h5(source)
        first = state_dict.get(FIRST_CONV_WEIGHT)
        modality = "flow" if first is not None and first.shape[1] == 2 else "rgb"
        digest = sha256_of(source)
    elif source_format == "raft":
        raise I3DError(f"{source} is a RAFT optical-flow checkpoint, not I3D: `i3d weights convert` writes it as "
                       "RAFT weights for --raft-weights (i3d.video.flow.raft_weights.convert_raft)")
    else:
        raise I3DError(f"source format must be one of {', '.join(SOURCE_FORMATS)}")
    logits = state_dict.get(RESNET_CLASSIFIER_WEIGHT if resnet_layout is not None else CLASSIFIER_WEIGHT)
    if logits is None:
        raise I3DError(f"{source}: no classifier (Logits/Conv3d_0c_1x1, fc, pred, cls_head) among its variables")
    num_classes, note = logits.shape[0], None
    name = info.name if info is not None else name
    if info is not None and (info.modality, info.num_classes) != (modality, num_classes):
        raise I3DError(f"{source} is a {modality} network of {num_classes} classes; {name} is "
                       f"{info.modality} with {info.num_classes}")
    if info is not None and info.layout != (resnet_layout.name if resnet_layout is not None else None):
        raise I3DError(f"{source} is {'the ' + resnet_layout.name + ' ResNet-50' if resnet_layout else 'Inception'} "
                       f"I3D; {name} is {'the ' + info.layout + ' ResNet-50' if info.layout else 'Inception'} I3D")
    if labels_file is not None:
        labels = read_labels(labels_file, num_classes)
    elif info is not None and info.label_set in LABEL_SETS:
        labels = LABEL_SETS[info.label_set]()
    elif num_classes == 400:
        labels, note = LABEL_SETS["kinetics400"](), "400 classes: assumed Kinetics-400 names (give --labels if not)"
    else:
        labels = [f"class_{i:03d}" for i in range(num_classes)]
        note = f"no --labels given: classes named class_000..class_{num_classes - 1:03d}"
    if output is None:
        if info is None:
            raise I3DError("give -o FILE.safetensors, or --name with a registry name to install it there")
        output = installed_path(name)
    save_weights(output, state_dict, labels, modality, resnet_layout, **{
        "name": name or output.stem, "provenance": f"converted from {source.name} ({source_format})",
        "source_sha256": digest, **(metadata or {})})
    return Converted(output, modality, num_classes, note, resnet_layout)
