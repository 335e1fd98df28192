"""The project's own weights format: one safetensors file whose metadata carries the class names.

Every converter ends here, so a converted file is self-describing and checked the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from i3d.download import cache_dir, sha256_of
from i3d.errors import I3DError, I3DNotice
from i3d.files import (
    FORMAT_VERSION,
    TENSORS_DIGEST,
    atomic_path,
    atomic_write_text,
    read_safetensors,
    tensors_digest,
)
from i3d.networks.architecture import (
    FEATURE_DIM,
    FIRST_CONV_WEIGHT,
    INCEPTION,
    MODALITY_CHANNELS,
    RESNET_FEATURE_DIM,
    RESNET_FIRST_CONV_WEIGHT,
    ResNetLayout,
)
from i3d.networks.inception import InceptionI3d
from i3d.networks.resnet3d import ResNet3d
from i3d.video.recipe import Preprocessing, recipe_for
from i3d.weights.registry import WeightsInfo

# A trained I3D's largest weight or statistic is of order 10 (running variances reach ~1e3 in early layers);
# damaged float bits give 1e30s. A file that cannot vouch for itself is held to this bound.
PLAUSIBLE_MAGNITUDE = 1e5


@dataclass(frozen=True)
class LoadedWeights:
    """One set of weights as every command uses it: the tensors and the one record of what they are.

    ``i3d.factory.resolve_weights`` is the only place that makes these from a name or path, so the
    canonical name, the file, its sha256, the labels, the stream and the recipe are decided once.
    """

    state_dict: dict[str, torch.Tensor]
    labels: list[str]
    modality: str  # the stream: "rgb" or "flow"
    metadata: dict[str, str]
    path: Path | None = None  # the file the tensors were read from
    sha256: str | None = None  # of that file, as verified when it was read
    info: WeightsInfo | None = field(default=None, compare=False)  # the registry entry, for a registry name

    @property
    def in_channels(self) -> int:
        first = first_conv(self.state_dict)
        return first.shape[1] if first is not None else MODALITY_CHANNELS[self.modality]

    @property
    def layout(self) -> ResNetLayout | None:
        """The ResNet-50 layout these weights were converted with; None for the Inception network."""
        text = self.metadata.get("architecture")
        return ResNetLayout.from_json(text) if text else None

    @property
    def feature_dim(self) -> int:
        return RESNET_FEATURE_DIM if self.layout is not None else FEATURE_DIM

    @property
    def architecture(self) -> str:
        """``inception-i3d`` or the name of a ResNet-50 layout (``pytorchvideo-r50``, ``caffe2-r50-nl-32x2``...)."""
        return self.layout.name if self.layout is not None else INCEPTION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def name(self) -> str:
        """The canonical registry name, else the name the file records, else its path."""
        if self.info is not None:
            return self.info.name
        return self.metadata.get("name") or (str(self.path) if self.path is not None else "")

    @property
    def stream(self) -> str:
        return self.modality

    @property
    def multi_label(self) -> bool:
        return self.metadata.get("multi_label") == "true"

    @property
    def provenance(self) -> str:
        return self.info.provenance if self.info is not None else self.metadata.get("provenance", "")

    @property
    def preprocessing(self) -> Preprocessing:
        return self.info.preprocessing if self.info is not None else recipe_for(self.modality)

    @property
    def meta(self) -> dict[str, Any]:
        """Everything known about the weights, as plain data (for listings and reports)."""
        base = self.info.meta if self.info is not None else dict(self.metadata)
        return {**base, "modality": self.modality}

    def record(self) -> dict[str, str | None]:
        """What reports say about the weights: name, stream, file and sha256."""
        return {"name": self.name, "stream": self.modality, "file": str(self.path) if self.path else None,
                "sha256": self.sha256}

    def without_tensors(self) -> LoadedWeights:
        """The same record without its tensors (what a built model keeps: its own parameters hold them)."""
        return replace(self, state_dict={})

    def transforms(self, flow_method: str = "torch", device: str = "cpu", flow_options: dict | None = None):
        """The exact preprocessing callable these weights were trained with (what ``i3d predict`` applies)."""
        from i3d.video.preset import VideoTransform

        return VideoTransform(self.preprocessing, flow_method, device, flow_options)


def weights_dir() -> Path:
    return cache_dir() / "weights"


def installed_path(name: str) -> Path:
    return weights_dir() / f"{name}.safetensors"


def first_conv(state_dict: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The first convolution's kernel, whichever network the tensors are for: it says the input channels."""
    first = state_dict.get(FIRST_CONV_WEIGHT)
    return first if first is not None else state_dict.get(RESNET_FIRST_CONV_WEIGHT)


def new_network(layout: ResNetLayout | None, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.0,
                final_endpoint: str = "Logits") -> InceptionI3d | ResNet3d:
    """The freshly initialised network of an architecture: Inception I3D, or the ResNet-50 of ``layout``."""
    if layout is None:
        return InceptionI3d(num_classes, in_channels, dropout, final_endpoint)
    return ResNet3d(layout, num_classes, in_channels, dropout, final_endpoint)


def check_state_dict(state_dict: dict[str, torch.Tensor], num_classes: int, in_channels: int,
                     layout: ResNetLayout | None = None) -> None:
    """Every tensor the network has, with its exact shape, and nothing else."""
    network = "I3D" if layout is None else f"the {layout.name} ResNet-50 I3D"
    with torch.device("meta"):
        expected = {k: v.shape for k, v in new_network(layout, num_classes, in_channels).state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    if missing or extra:
        raise I3DError(f"weights do not fit {network}: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                       f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
    wrong = [f"{k} {tuple(state_dict[k].shape)} != {tuple(s)}" for k, s in expected.items() if state_dict[k].shape != s]
    if wrong:
        raise I3DError(f"weights do not fit {network}: {wrong[0]}"
                       + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))


def save_weights(
    path: Path, state_dict: dict[str, torch.Tensor], labels: list[str], modality: str,
    layout: ResNetLayout | None = None, **metadata: str
) -> None:
    """Check, then write atomically: a reader never sees a half-written file. ``layout``: a ResNet-50's."""
    first = first_conv(state_dict)
    if first is None:
        raise I3DError("weights do not fit I3D: no first convolution")
    check_state_dict(state_dict, len(labels), first.shape[1], layout)
    if layout is not None:
        metadata = {**metadata, "architecture": layout.to_json()}
    if modality not in ("rgb", "flow"):
        raise I3DError(f"modality must be rgb or flow, not {modality!r}")
    meta = {"i3d_format": FORMAT_VERSION, "modality": modality, "labels": json.dumps(labels), **metadata}
    tensors = {k: v.contiguous().float() for k, v in state_dict.items()}
    bad = next((k for k, v in tensors.items() if not torch.isfinite(v).all()), None)
    if bad is not None:
        raise I3DError(f"weights hold NaN or infinite values ({bad}); refusing to write them")
    meta[TENSORS_DIGEST] = tensors_digest(tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    record_digest(path)


def digest_path(path: Path) -> Path:
    """The sidecar that records a weights file's sha256 as written, and when it was last found intact."""
    return path.with_name(path.name + ".sha256.json")


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def record_digest(path: Path) -> None:
    atomic_write_text(digest_path(path), json.dumps({"sha256": sha256_of(path), "verified": _stamp(path)}) + "\n")


def verify_digest(path: Path, refetch: str) -> str:
    """The file's sha256. A file whose recorded sha256 no longer matches (flipped bits, a partial copy) is
    refused; the hash is computed again only when the size or modification time changed since it last
    matched, or where no record exists."""
    sidecar = digest_path(path)
    if not sidecar.is_file():
        return sha256_of(path)
    try:
        record = json.loads(sidecar.read_text())
        expected = record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return sha256_of(path)  # an unreadable record proves nothing either way; the values are still checked
    if record.get("verified") == _stamp(path) and isinstance(expected, str):
        return expected
    actual = sha256_of(path)
    if actual != expected:
        raise I3DError(f"{path}: sha256 {actual} differs from {expected}, recorded when it was written: the file "
                       f"is damaged; {refetch}")
    with contextlib.suppress(I3DError, OSError):  # only a shortcut for next time: a read-only folder keeps none
        atomic_write_text(sidecar, json.dumps({"sha256": expected, "verified": _stamp(path)}) + "\n")
    return actual


def check_tensors(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str], refetch: str) -> None:
    """The tensors are those the file was written with (the digest in its metadata); a file without one (a
    foreign or older file) loads with a note, its values held to what a trained network has."""
    recorded = metadata.get(TENSORS_DIGEST)
    if recorded is not None and tensors_digest(state_dict) != recorded:
        raise I3DError(f"{path}: its tensors differ from the digest recorded in the file when it was written: the "
                       f"file is damaged; {refetch}")
    bad = next((k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise I3DError(f"{path}: {bad} holds NaN or infinite values; {refetch}")
    if recorded is None:
        warnings.warn(f"{path}: records no digest of its tensors, so it cannot be verified (convert it again to "
                      "add one)", I3DNotice, stacklevel=4)
        huge = next((k for k, v in state_dict.items()
                     if v.is_floating_point() and v.numel() and float(v.abs().max()) > PLAUSIBLE_MAGNITUDE), None)
        if huge is not None:
            raise I3DError(f"{path}: {huge} holds values of magnitude {float(state_dict[huge].abs().max()):.3g}, "
                           f"beyond any trained network's: the file is damaged; {refetch}")


def load_weights(path: Path, refetch: str = "write it again", info: WeightsInfo | None = None) -> LoadedWeights:
    """Load and check a weights file: recorded sha256, names and shapes, finite values, labels.

    ``info`` is the registry entry the file was installed for (``i3d.factory.resolve_weights`` passes it).
    """
    if not os.access(path, os.R_OK):
        raise I3DError(f"{path}: cannot be read (permission denied)")
    sha256 = verify_digest(path, refetch)
    state_dict, metadata = read_safetensors(path, refetch)
    if metadata.get("kind") == "raft":
        raise I3DError(f"{path}: RAFT optical-flow weights, not I3D weights: give them with --raft-weights")
    if metadata.get("i3d_format") != FORMAT_VERSION or "labels" not in metadata:
        raise I3DError(f"{path}: not an i3d weights file (no i3d_format/labels metadata)")
    try:
        labels = json.loads(metadata["labels"])
    except ValueError:
        labels = None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise I3DError(f"{path}: its labels metadata is not a JSON list of class names")
    check_tensors(path, state_dict, metadata, refetch)
    weights = LoadedWeights(state_dict, labels, metadata.get("modality", "rgb"), metadata, Path(path), sha256, info)
    try:
        layout = weights.layout
    except (ValueError, TypeError) as error:
        raise I3DError(f"{path}: its architecture metadata is not a ResNet-50 layout ({error})") from None
    if first_conv(state_dict) is None:
        raise I3DError(f"{path}: weights do not fit I3D: no {FIRST_CONV_WEIGHT}")
    if weights.modality not in MODALITY_CHANNELS:
        raise I3DError(f"{path}: its metadata names the stream {weights.modality!r}, not rgb or flow")
    if weights.in_channels != MODALITY_CHANNELS[weights.modality]:
        raise I3DError(f"{path}: its metadata says {weights.modality} ({MODALITY_CHANNELS[weights.modality]} "
                       f"input channels) but its first convolution takes {weights.in_channels}: the file "
                       f"contradicts itself; {refetch}")
    try:
        check_state_dict(state_dict, len(labels), weights.in_channels, layout)
    except (I3DError, ValueError) as error:
        raise I3DError(f"{path}: {error}") from None
    return weights
