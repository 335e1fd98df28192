"""The settings of the commands, as dataclasses: the Python API takes them and the CLI builds its options
from them, so a field's help is the option's help. Plain data, no torch: ``i3d --help`` reads this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from i3d.architecture import MIN_FRAMES
from i3d.errors import I3DError


def setting(default: Any, help: str, choices: tuple | None = None, **argparse: Any) -> Any:
    """A dataclass field with the help (and choices) of the command-line option made from it."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, **argparse})


def check_choice(value: Any, choices: tuple, option: str) -> None:
    if value not in choices:
        raise I3DError(f"{option} must be one of {', '.join(map(str, choices))}, not {value!r}")


FLOW_METHODS = ("torch", "opencv")  # the batched PyTorch TV-L1, or OpenCV-contrib's Dual TV-L1
SOURCE_FORMATS = ("tf", "torch-port")  # DeepMind's TensorFlow checkpoints, the PyTorch port's .pt files
FLOW_STYLES = ("reference", "wheel")
ANIMATION_FORMATS = ("gif", "mp4")
FEATURE_FORMATS = ("npz", "npy")
ENGINES = ("local", "ray")
EXPORT_FORMATS = ("onnx", "torchscript")
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


@dataclass(frozen=True)
class FvdProtocol:
    """How clips are taken from a set of videos for FVD; recorded in every report."""

    frames: int = 16
    max_clips: int | None = None  # None: every video
    sampling: str = "first"  # "first" frames of each video, or a "random" window (seeded)
    seed: int = 0


FVD_PROTOCOLS = {
    "16f-all": FvdProtocol(16, None, "first"),
    "16f-2048-random": FvdProtocol(16, 2048, "random"),
    "128f-all": FvdProtocol(128, None, "first"),
}
