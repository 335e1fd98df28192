"""The I3D architecture as data: endpoints, channel widths, pool shapes and the layer names weights use.

Plain constants, no torch: the network (``model.py``), every weights converter and the command-line
parser read them from here, so a layer name is spelt in one place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
    "Predictions",
)

# Output channels of each inception block's branches:
# (b0 1x1, b1 1x1, b1 3x3, b2 1x1, b2 3x3, b3 1x1 after the max-pool).
INCEPTION_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# (kernel, stride) of the stand-alone max-pools.
MAX_POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}

FEATURE_DIM = 1024
MIN_FRAMES = 9  # three temporal stride-2 stages, then a VALID pool of 2: ceil(ceil(ceil(T/2)/2)/2) >= 2
MIN_SIZE = 193  # five spatial stride-2 stages, then a VALID pool of 7: ceil(H / 32) >= 7
MIN_CROP = 193  # five spatial stride-2 stages, then the 7x7 VALID pool: ceil(side / 32) >= 7
BATCH_NORM_EPS = 1e-3
BATCH_NORM_MOMENTUM = 1e-3  # Sonnet's decay of 0.999

# Parameter names in this project's state dicts (and so in every converted weights file).
FIRST_CONV = "Conv3d_1a_7x7"
FIRST_CONV_WEIGHT = f"{FIRST_CONV}.conv3d.weight"  # (64, in_channels, 7, 7, 7): 3 for RGB, 2 for flow
CLASSIFIER = "Logits.Conv3d_0c_1x1"
CLASSIFIER_WEIGHT = f"{CLASSIFIER}.conv3d.weight"  # (num_classes, 1024, 1, 1, 1)
CLASSIFIER_BIAS = f"{CLASSIFIER}.conv3d.bias"

# Input channels of each modality (stream): RGB frames, or the (x, y) components of optical flow.
MODALITY_CHANNELS = {"rgb": 3, "flow": 2}


# ---------------------------------------------------------------------------------------------------------
# The inflated ResNet-50 family (Wang et al., "Non-local Neural Networks", CVPR 2018): what the anomaly-
# detection features, MMAction2's "I3D" and PyTorchVideo's ``i3d_r50`` mean by I3D. One network, laid out
# as each source builds it; a layout is plain data, stored in every converted weights file.
# ---------------------------------------------------------------------------------------------------------

INCEPTION = "inception-i3d"  # the architecture of every weights file that names none
RESNET_STAGES = ("res2", "res3", "res4", "res5")
RESNET_ENDPOINTS = ("stem", *RESNET_STAGES, "Logits")
RESNET_BLOCKS = (3, 4, 6, 3)  # ResNet-50
RESNET_WIDTHS = (64, 128, 256, 512)  # bottleneck width of each stage; its output is four times that
RESNET_FEATURE_DIM = 2048
RESNET_FIRST_CONV_WEIGHT = "stem.conv.weight"
RESNET_CLASSIFIER_WEIGHT = "fc.weight"
NONLOCAL_MODES = ("embedded_gaussian", "dot_product", "gaussian")


@dataclass(frozen=True)
class ResNetLayout:
    """How one source lays out the inflated ResNet-50: everything its checkpoints do not say themselves.

    The network takes this project's input, RGB in [-1, 1]; ``mean`` and ``std`` (per channel, on the [0, 1]
    scale) are the source's own normalisation, applied inside the network, so every pipeline feeds every
    network the same way.
    """

    name: str
    stem_kernel: tuple[int, int, int] = (5, 7, 7)
    stem_stride: tuple[int, int, int] = (1, 2, 2)
    pool1_kernel: tuple[int, int, int] = (1, 3, 3)
    pool1_stride: tuple[int, int, int] = (1, 2, 2)
    pool1_padding: tuple[int, int, int] = (0, 1, 1)
    # Temporal kernel (3 or 1) of each bottleneck's first convolution, stage by stage: the inflation pattern.
    temporal_kernels: tuple[tuple[int, ...], ...] = ((3, 3, 3), (3, 1, 3, 1), (3, 1, 3, 1, 3, 1), (1, 3, 1))
    # 1 where a non-local block follows the bottleneck.
    nonlocal_blocks: tuple[tuple[int, ...], ...] = ((0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0, 0, 0), (0, 0, 0))
    nonlocal_mode: str = "embedded_gaussian"
    nonlocal_scale: bool = True  # affinities divided by sqrt(inner channels) before the softmax
    nonlocal_pool_first: bool = True  # Caffe2 max-pools before phi and g; mmcv after
    nonlocal_out_bias: bool = True
    head_pool: tuple[int, int, int] | None = None  # windowed average (stride 1) before the classifier; None: global
    bn_eps: float = 1e-5
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)

    @property
    def has_nonlocal(self) -> bool:
        return any(any(stage) for stage in self.nonlocal_blocks)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ResNetLayout:
        data = json.loads(text)
        return cls(**{k: _tuples(v) for k, v in data.items()})


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


_NL_EVERY_OTHER = ((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0))  # 5 blocks: res3 1, 3; res4 1, 3, 5
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # mmaction2: 123.675/255 ...
_CAFFE2_MEAN, _CAFFE2_STD = (114.75 / 255,) * 3, (57.375 / 255,) * 3

RESNET_LAYOUTS: dict[str, ResNetLayout] = {layout.name: layout for layout in [
    # pytorchvideo 0.1.5 models/hub/resnet.py:126-160 (i3d_r50) over models/resnet.py:599-852 (create_resnet):
    # stem 5x7x7 stride (1, 2, 2), max-pool 1x3x3 padding (0, 1, 1), stage-1 pool 2x1x1, head AvgPool3d (4, 7, 7)
    # stride 1, Linear, then the global mean; BatchNorm3d eps 1e-5. Normalisation: mean 0.45, std 0.225.
    ResNetLayout("pytorchvideo-r50", head_pool=(4, 7, 7)),
    # mmaction2 1.2.0 configs/_base_/models/i3d_r50.py: conv1 (5, 7, 7) stride_t 2, pool1 stride_t 2, pool2,
    # inflate ((1,1,1),(1,0,1,0),(1,0,1,0,1,0),(0,1,0)), I3DHead global average; ImageNet mean/std in 0..255.
    ResNetLayout("mmaction2-r50", stem_stride=(2, 2, 2), pool1_stride=(2, 2, 2), mean=_IMAGENET_MEAN,
                 std=_IMAGENET_STD),
    # ..._heavy_...py: inflate (1, 1, 1, 1) (every block), conv1 and pool1 stride_t 1.
    ResNetLayout("mmaction2-r50-heavy", temporal_kernels=((3,) * 3, (3,) * 4, (3,) * 6, (3,) * 3), mean=_IMAGENET_MEAN,
                 std=_IMAGENET_STD),
    # ..._nl-{dot-product,embedded-gaussian,gaussian}_...py: non_local (0,1,0,1) in res3, (0,1,0,1,0,1) in res4;
    # mmcv NonLocal3d: sub_sample max-pools after phi and g, use_scale False, conv_out without bias, then BN.
    *(ResNetLayout(f"mmaction2-r50-nl-{mode.replace('_', '-')}", stem_stride=(2, 2, 2), pool1_stride=(2, 2, 2),
                   nonlocal_blocks=_NL_EVERY_OTHER, nonlocal_mode=mode, nonlocal_scale=False, nonlocal_pool_first=False,
                   nonlocal_out_bias=False, mean=_IMAGENET_MEAN, std=_IMAGENET_STD) for mode in NONLOCAL_MODES),
    # facebookresearch/video-nonlocal-net lib/models/resnet_video_org.py:21-33,141-172,210 (the 32x2 models):
    # conv1 5x7x7 stride 2, pool1 2x3x3 stride 2 no padding, pool2 2x1x1, pool5 (T/8, 7, 7) stride 1;
    # lib/core/config.py:100,108-109 (BN eps 1e-5, mean 114.75, std 57.375, RGB); nonlocal_helper.py
    # (pool then theta/phi/g with bias, scale dim_inner^-0.5, softmax, out conv with bias, BN).
    ResNetLayout("caffe2-r50-32x2", stem_stride=(2, 2, 2), pool1_kernel=(2, 3, 3), pool1_stride=(2, 2, 2),
                 pool1_padding=(0, 0, 0), head_pool=(4, 7, 7), mean=_CAFFE2_MEAN, std=_CAFFE2_STD),
    # The same network as the anomaly-detection extractor feeds it: 2 x / 255 - 1 and no Caffe2 normalisation
    # (GowthamGottimukkala/I3D_Feature_Extraction_resnet extract_features.py:16, through pytorch-resnet3d).
    ResNetLayout("caffe2-r50-32x2-anomaly", stem_stride=(2, 2, 2), pool1_kernel=(2, 3, 3), pool1_stride=(2, 2, 2),
                 pool1_padding=(0, 0, 0), head_pool=(4, 7, 7), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    ResNetLayout("caffe2-r50-nl-32x2", stem_stride=(2, 2, 2), pool1_kernel=(2, 3, 3), pool1_stride=(2, 2, 2),
                 pool1_padding=(0, 0, 0), head_pool=(4, 7, 7), nonlocal_blocks=_NL_EVERY_OTHER, mean=_CAFFE2_MEAN,
                 std=_CAFFE2_STD),
    # lib/models/resnet_video.py:50-61,141-172,210 (the 8x8 models): conv1 stride 1, pool1 1x3x3 stride (1, 2, 2)
    # no padding, pool5 (T/2, 7, 7).
    ResNetLayout("caffe2-r50-8x8", pool1_padding=(0, 0, 0), head_pool=(4, 7, 7), mean=_CAFFE2_MEAN, std=_CAFFE2_STD),
    ResNetLayout("caffe2-r50-nl-8x8", pool1_padding=(0, 0, 0), head_pool=(4, 7, 7), nonlocal_blocks=_NL_EVERY_OTHER,
                 mean=_CAFFE2_MEAN, std=_CAFFE2_STD),
]}
