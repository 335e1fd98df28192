"""The I3D architecture as data: endpoints, channel widths, pool shapes and the layer names weights use.

Plain constants, no torch: the network (``model.py``), every weights converter and the command-line
parser read them from here, so a layer name is spelt in one place.
"""

from __future__ import annotations

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
