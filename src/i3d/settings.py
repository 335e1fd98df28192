"""The settings of the commands, as dataclasses: the Python API takes them and the CLI builds its options
from them, so a field's help is the option's help. Plain data, no torch: ``i3d --help`` reads this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from i3d.architecture import MIN_CROP, MIN_FRAMES
from i3d.errors import I3DError


def setting(default: Any, help: str, choices: tuple | None = None, **argparse: Any) -> Any:
    """A dataclass field with the help (and choices) of the command-line option made from it."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, **argparse})


def check_choice(value: Any, choices: tuple, option: str) -> None:
    if value not in choices:
        raise I3DError(f"{option} must be one of {', '.join(map(str, choices))}, not {value!r}")


FLOW_METHODS = ("torch", "opencv")  # the batched PyTorch TV-L1, or OpenCV-contrib's Dual TV-L1
SOURCE_FORMATS = ("tf", "torch-port", "keras-h5")  # DeepMind's TF checkpoints, the PyTorch port, the Keras ports
FLOW_STYLES = ("reference", "wheel")
ANIMATION_FORMATS = ("gif", "mp4")
FEATURE_FORMATS = ("npz", "npy", "h5")
ENGINES = ("local", "ray")
EXPORT_FORMATS = ("onnx", "torchscript", "openvino")
LAYOUTS = ("NCTHW", "NTHWC")  # NTHWC is the layout of DeepMind's TensorFlow graph
BENCH_PATHS = ("eager", "optimized", "torchscript", "onnxruntime", "cuda")
AVERAGES = ("softmax", "logits")
LAST_WINDOW_POLICIES = ("keep", "repeat", "drop")
DEFAULT_CLIP_LEN = 64  # the reference's training clip length: 2.56 s at 25 fps
DEFAULT_STEP = 64  # non-overlapping windows, one feature per 2.56 s


@dataclass(frozen=True)
class WindowSpec:
    """How a video's 25 fps frames are cut into the windows that each give one feature."""

    clip_len: int = setting(DEFAULT_CLIP_LEN, "frames per window (25 fps)")
    step: int = setting(DEFAULT_STEP, "frames from one window's start to the next")
    last: str = setting("keep", "a final partial window: run as is, pad with its last frame, or drop it",
                        LAST_WINDOW_POLICIES, flag="--last-window")

    def __post_init__(self) -> None:
        if self.clip_len < 1 or self.step < 1:
            raise I3DError("--clip-len and --step must be at least 1")
        check_choice(self.last, LAST_WINDOW_POLICIES, "--last-window")


@dataclass(frozen=True)
class EvaluationProtocol:
    """The multi-clip, multi-crop testing protocol of ``i3d evaluate``."""

    clips: int = setting(1, "clips per video, uniformly spaced")
    clip_frames: int = setting(250, "frames per clip at 25 fps (250: a whole 10 s Kinetics clip in one pass)")
    crops: int = setting(1, "1: centre crop; 3: start, centre and end of the long side", (1, 3))
    average: str = setting("softmax", "what is averaged over the views", AVERAGES)

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise I3DError("--clips must be at least 1")
        if self.clip_frames < MIN_FRAMES:
            raise I3DError(f"--clip-frames must be at least {MIN_FRAMES}")
        if self.crops not in (1, 3):
            raise I3DError("--crops must be 1 (centre) or 3 (along the long side)")
        check_choice(self.average, AVERAGES, "--average")


@dataclass(frozen=True)
class BenchConfig:
    """What ``i3d bench`` times: one input shape, each inference path in a fresh process."""

    frames: int = setting(79, "frames per clip")
    size: int = setting(224, "frame height and width")
    batch_size: int = setting(1, "clips per forward pass")
    repeats: int = setting(3, "timed runs after one warm-up")
    weights: str | None = setting(None, "weights name or .safetensors file (default: i3d-kinetics-400)")

    def __post_init__(self) -> None:
        if self.frames < MIN_FRAMES or self.size < MIN_CROP:
            raise I3DError(f"--frames must be at least {MIN_FRAMES} and --size at least {MIN_CROP} (the network's "
                           f"last pool is 2x7x7), not {self.frames} and {self.size}")
        if self.batch_size < 1 or self.repeats < 1:
            raise I3DError(f"--batch-size and --repeats must be at least 1, not {self.batch_size} and "
                           f"{self.repeats}")


@dataclass(frozen=True)
class ExportOptions:
    """What graph ``i3d export`` writes."""

    stream: str = setting("rgb", "which network: rgb, flow, or joint (RGB and flow logits summed)",
                          ("rgb", "flow", "joint"))
    layout: str = setting("NCTHW", "input layout (NTHWC: TensorFlow's)", LAYOUTS)
    softmax: bool = setting(False, "output probabilities instead of logits")
    uint8_input: bool = setting(False, "RGB input as uint8 [0, 255], scaled in the graph", flag="--uint8")

    def __post_init__(self) -> None:
        check_choice(self.stream, ("rgb", "flow", "joint"), "stream")
        check_choice(self.layout, LAYOUTS, "layout")
        if self.uint8_input and self.stream == "flow":
            raise I3DError("uint8 input applies to RGB; flow input is float in [-1, 1]")

    @property
    def input_names(self) -> list[str]:
        return ["rgb", "flow"] if self.stream == "joint" else [self.stream]

    @property
    def output_name(self) -> str:
        return "probabilities" if self.softmax else "logits"


FVD_RESIZES = ("half-pixel", "tf1")
FVD_COVARIANCES = ("n", "n-1")
FVD_SQRTMS = ("scipy", "tfgan")


@dataclass(frozen=True)
class FvdProtocol:
    """Which clips an FVD takes from each set and how it computes the distance; recorded in every report.

    Each preset follows one published implementation step by step; ``source`` names the file and lines.
    """

    name: str
    frames: int | None  # frames per clip; None: every frame of each video (all must be equally long)
    stride: int = 1  # take every stride-th frame (StyleGAN-V's subsample_factor)
    max_videos: int | None = None  # the first min(N, max_videos) videos, in plain string order of their names
    real_start: str = "random"  # real clips: "random" (uniform, seeded) or "first" frame
    fake_start: str = "first"  # generated clips start at their first frame
    short_real: str = "drop"  # a real video shorter than the clip: "drop" it (before counting) or "error"
    resize: str = "half-pixel"  # to 224x224, aspect not kept: PyTorch trilinear, or TF1 resize_bilinear
    covariance: str = "n"  # divide by n (StyleGAN-V) or n - 1 (google-research, TF-GAN)
    sqrtm: str = "scipy"  # Tr sqrt(S_fake S_real): scipy.linalg.sqrtm, or TF-GAN's symmetric SVD roots
    frame_order: str = "string"  # frame files of a folder: plain string order of their names, or "natural"
    skip_first: int = 0  # frames dropped from the start of every video first (conditioning frames)
    seed: int = 0  # the random starts of real clips (StyleGAN-V never seeds them)
    source: str = ""

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise I3DError(f"--frames must be at least 1, not {self.frames}")
        if self.stride < 1 or self.skip_first < 0:
            raise I3DError("--stride must be at least 1 and --skip-first at least 0")
        if self.max_videos is not None and self.max_videos < 2:
            raise I3DError(f"--clips must be at least 2 (a covariance needs two), not {self.max_videos}")
        check_choice(self.resize, FVD_RESIZES, "resize")
        check_choice(self.covariance, FVD_COVARIANCES, "covariance")
        check_choice(self.sqrtm, FVD_SQRTMS, "sqrtm")
        check_choice(self.real_start, ("random", "first"), "real_start")
        check_choice(self.short_real, ("drop", "error"), "short_real")

    @property
    def span(self) -> int | None:
        """Frames a clip covers in the source video (after skip_first)."""
        return None if self.frames is None else self.frames * self.stride


_STYLEGAN_V = ("universome/stylegan-v src/metrics/frechet_video_distance.py:18-57 (compute_fvd), "
               "src/metrics/metric_main.py:115-131 (presets), src/training/dataset.py:283-324 and 397-406 "
               "(videos, frames, clip starts), src/metrics/metric_utils.py:122-127 (covariance / n)")
_GOOGLE = ("google-research/google-research frechet_video_distance/frechet_video_distance.py (preprocess: "
           "tf.image.resize_bilinear, 2 * x / 255 - 1; embedding RGB/inception_i3d/Mean:0), "
           "tensorflow/gan tensorflow_gan/python/eval/classifier_metrics.py (covariance / (n - 1), "
           "trace_sqrt_product)")

FVD_PROTOCOLS = {
    "stylegan-v-16f": FvdProtocol("stylegan-v-16f", 16, max_videos=2048, source=_STYLEGAN_V),
    "stylegan-v-128f": FvdProtocol("stylegan-v-128f", 128, max_videos=2048, source=_STYLEGAN_V),
    "stylegan-v-128f-subsample8f": FvdProtocol("stylegan-v-128f-subsample8f", 16, stride=8, max_videos=2048,
                                               source=_STYLEGAN_V),
    "google-research": FvdProtocol("google-research", None, real_start="first", short_real="error", resize="tf1",
                                   covariance="n-1", sqrtm="tfgan", frame_order="natural", source=_GOOGLE),
}
DEFAULT_FVD_PROTOCOL = "stylegan-v-16f"
