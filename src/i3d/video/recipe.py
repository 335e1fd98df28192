"""The published preprocessing of I3D's weights as plain data: what a weights record points at.

Weights carry their recipe (as torchvision's weights carry a transforms preset), never the reverse: this
module knows nothing of weights, and ``i3d.video.preset.VideoTransform`` carries a recipe out.
"""

from __future__ import annotations

from dataclasses import dataclass

from i3d.networks.architecture import MODALITY_CHANNELS


@dataclass(frozen=True)
class Preprocessing:
    """The published recipe a network's weights were trained with (Carreira & Zisserman 2017, section 3).

    RGB: frames resampled to ``fps`` by timestamps, short side resized to ``short_side`` (bilinear,
    OpenCV ``INTER_LINEAR``), centre ``crop``, values mapped linearly from [0, 255] to ``value_range``.
    Flow: TV-L1 between consecutive grey frames at that size, each component clipped to
    +-``flow_bound`` px and divided by it, then the same crop; channels (x, y). The ResNet-50 family's
    sources sample every ``frame_stride``-th frame at the video's own rate instead (``fps`` None).
    """

    modality: str = "rgb"
    fps: float | None = 25.0  # None: every frame at the video's own rate
    short_side: int = 256
    crop: int = 224
    value_range: tuple[float, float] = (-1.0, 1.0)
    channel_order: str = "RGB"  # "RGB" frames, or "xy" flow components
    resize: str = "bilinear, OpenCV INTER_LINEAR (half-pixel centres), aspect kept"
    flow_bound: float | None = None  # px; flow only
    frame_stride: int = 1  # one frame in every ``frame_stride`` after the rate is set (ResNet-50 sources: 2 or 8)
    clip_frames: int | None = None  # frames per clip as the weights were trained and tested (None: any length)
    # The source's own normalisation, for the record: the ResNet-50 networks apply it inside, from [-1, 1].
    normalisation: str = "x / 127.5 - 1"

    @property
    def channels(self) -> int:
        return MODALITY_CHANNELS[self.modality]


RGB_RECIPE = Preprocessing()
FLOW_RECIPE = Preprocessing(modality="flow", channel_order="xy", flow_bound=20.0)


def recipe_for(modality: str) -> Preprocessing:
    """The published recipe of a stream: every I3D checkpoint of either stream was trained with it."""
    return RGB_RECIPE if modality == "rgb" else FLOW_RECIPE
