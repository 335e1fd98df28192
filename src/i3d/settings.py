"""The settings of the commands, as dataclasses: the Python API takes them and the CLI builds its options
from them, so a field's help is the option's help. Plain data, no torch: ``i3d --help`` reads this module.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i3d.errors import SettingError
from i3d.networks.architecture import MIN_CROP, MIN_FRAMES
from i3d.streams import check_stream, stream_modalities
from i3d.video.recipe import RGB_RECIPE


def setting(default: Any = dataclasses.MISSING, help: str = "", choices: tuple | None = None, **argparse: Any) -> Any:
    """A dataclass field with the help (and choices) of the command-line option made from it.

    ``default_text`` replaces the default in the help where the value alone would mislead (None meaning
    "the protocol's"); ``none_word`` is the word the option takes for None (``--fps native``); ``flag`` and
    ``metavar`` name the option where the field's name would not.
    """
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, **argparse})


def option_name(field: dataclasses.Field) -> str:
    """The command-line flag of a settings field: ``batch_size`` is ``--batch-size`` unless it says otherwise."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def invalid(settings: Any, name: str, problem: str) -> SettingError:
    """The error of a field of a settings dataclass (an instance or the class), named as the field."""
    return SettingError(name, problem, option_name(settings.__dataclass_fields__[name]))


def check_choice(settings: Any, name: str, choices: tuple) -> None:
    value = getattr(settings, name)
    if value not in choices:
        raise invalid(settings, name, f"must be one of {', '.join(map(str, choices))}, not {value!r}")


FLOW_METHODS = ("torch", "opencv", "raft")  # the batched PyTorch TV-L1, OpenCV-contrib's Dual TV-L1, or RAFT
FLOW_METHOD_HELP = "torch: the batched PyTorch TV-L1; opencv: OpenCV-contrib's TV-L1; raft: RAFT-large"
RAFT_WEIGHTS_HELP = "RAFT weights: raft-sintel, raft-things, raft-kitti, or a converted .safetensors file"
RAFT_ITERATIONS_HELP = "RAFT's refinement iterations (video_features: 20, torchvision: 12)"
# clip: clipped to +-20 px and divided by 20 (the published I3D recipe); video-features: RAFT on the padded
# frames, clipped to +-20, then round(128 + 255/40 x) and 2u/255 - 1 as video_features feeds its flow I3D
FLOW_ENCODINGS = ("clip", "video-features")
# DeepMind's TF checkpoints, the PyTorch port, the Keras ports; then the ResNet-50 I3D family's sources
SOURCE_FORMATS = ("tf", "torch-port", "keras-h5", "pytorchvideo", "mmaction2", "caffe2", "pytorch-resnet3d")
FLOW_STYLES = ("reference", "wheel")
ANIMATION_FORMATS = ("gif", "mp4")
FEATURE_FORMATS = ("npz", "npy", "h5")
ENGINES = ("local", "ray")
EXPORT_FORMATS = ("onnx", "pt2", "openvino")  # pt2: torch.export's program
LAYOUTS = ("NCTHW", "NTHWC")  # NTHWC is the layout of DeepMind's TensorFlow graph
BENCH_PATHS = ("default", "eager", "fused", "openvino", "onnxruntime", "cuda")
AVERAGES = ("softmax", "logits")
LAST_WINDOW_POLICIES = ("keep", "repeat", "drop")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
RUNTIMES = ("auto", "eager", "fused", "openvino")
PRECISION_HELP = ("what the network computes in: fp32 (within 1e-4 of the reference), bf16 (CPUs with native bf16, "
                  "CUDA 8.0+), fp16 (CUDA), int8 (CPU, OpenVINO)")
RUNTIME_HELP = ("auto: OpenVINO on a CPU (the faster runtime there), PyTorch's fused form elsewhere; fused; openvino; "
                "eager: the plain network")
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
        for name in ("clip_len", "step"):
            if getattr(self, name) < 1:
                raise invalid(self, name, f"must be at least 1, not {getattr(self, name)}")
        check_choice(self, "last", LAST_WINDOW_POLICIES)


@dataclass(frozen=True)
class EvaluationProtocol:
    """The multi-clip, multi-crop testing protocol of ``i3d evaluate``."""

    clips: int = setting(1, "clips per video, uniformly spaced")
    clip_frames: int = setting(250, "frames per clip at 25 fps (250: a whole 10 s Kinetics clip in one pass)")
    crops: int = setting(1, "1: centre crop; 3: start, centre and end of the long side", (1, 3))
    average: str = setting("softmax", "what is averaged over the views", AVERAGES)

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise invalid(self, "clips", f"must be at least 1, not {self.clips}")
        if self.clip_frames < MIN_FRAMES:
            raise invalid(self, "clip_frames", f"must be at least {MIN_FRAMES}, not {self.clip_frames}")
        if self.crops not in (1, 3):
            raise invalid(self, "crops", f"must be 1 (centre) or 3 (along the long side), not {self.crops}")
        check_choice(self, "average", AVERAGES)


@dataclass(frozen=True)
class BenchConfig:
    """What ``i3d bench`` times: one input shape, each inference path in a fresh process."""

    frames: int = setting(79, "frames per clip")
    size: int = setting(224, "frame height and width")
    batch_size: int = setting(1, "clips per forward pass")
    repeats: int = setting(3, "timed runs after one warm-up")
    weights: str | None = setting(None, "weights name or .safetensors file (default: i3d-kinetics-400)")
    precision: str = setting("fp32", PRECISION_HELP + "; for the default and openvino paths", PRECISIONS)
    runtime: str = setting("auto", RUNTIME_HELP + "; for the default path", RUNTIMES)

    def __post_init__(self) -> None:
        check_choice(self, "precision", PRECISIONS)
        check_choice(self, "runtime", RUNTIMES)
        if self.frames < MIN_FRAMES:
            raise invalid(self, "frames", f"must be at least {MIN_FRAMES} (the network's last pool is 2x7x7), "
                          f"not {self.frames}")
        if self.size < MIN_CROP:
            raise invalid(self, "size", f"must be at least {MIN_CROP} (the network's last pool is 2x7x7), not "
                          f"{self.size}")
        for name in ("batch_size", "repeats"):
            if getattr(self, name) < 1:
                raise invalid(self, name, f"must be at least 1, not {getattr(self, name)}")


@dataclass(frozen=True)
class ExportOptions:
    """What graph ``i3d export`` writes."""

    stream: str = setting("rgb", "which network: rgb, flow, or joint (RGB and flow logits summed)",
                          ("rgb", "flow", "joint"))
    layout: str = setting("NCTHW", "input layout (NTHWC: TensorFlow's)", LAYOUTS)
    softmax: bool = setting(False, "output probabilities instead of logits")
    uint8_input: bool = setting(False, "RGB input as uint8 [0, 255], scaled in the graph", flag="--uint8")

    def __post_init__(self) -> None:
        check_choice(self, "stream", ("rgb", "flow", "joint"))
        check_choice(self, "layout", LAYOUTS)
        if self.uint8_input and self.stream == "flow":
            raise invalid(self, "uint8_input", "applies to RGB; flow input is float in [-1, 1]")

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
    frames: int | None = setting(help="frames per clip; None: every frame of each video (all equally long)",
                                 default_text="the protocol's; google-research: every frame")
    stride: int = setting(1, "take every K-th frame (StyleGAN-V's subsample_factor)", metavar="K",
                          default_text="the protocol's")
    max_videos: int | None = setting(None, "videos taken from each set (the first N, in plain string order of "
                                     "their names)", flag="--videos", metavar="N", default_text="the protocol's")
    real_start: str = "random"  # real clips: "random" (uniform, seeded) or "first" frame
    fake_start: str = "first"  # generated clips start at their first frame
    short_real: str = "drop"  # a real video shorter than the clip: "drop" it (before counting) or "error"
    resize: str = "half-pixel"  # to 224x224, aspect not kept: PyTorch trilinear, or TF1 resize_bilinear
    covariance: str = "n"  # divide by n (StyleGAN-V) or n - 1 (google-research, TF-GAN)
    sqrtm: str = "scipy"  # Tr sqrt(S_fake S_real): scipy.linalg.sqrtm, or TF-GAN's symmetric SVD roots
    frame_order: str = "string"  # frame files of a folder: plain string order of their names, or "natural"
    skip_first: int = setting(0, "frames dropped from the start of every video first (conditioning frames)",
                              metavar="K")
    batch_norm_eps: float = 1e-3  # the network's BatchNorm epsilon: TF-Hub's 1e-3, or the VideoGPT family's 1e-5
    kvd: str = "subsets"  # KVD over 100 random subsets (StyleGAN-V), or once over the whole sets ("full", sklearn)
    seed: int = setting(0, "seed of the real clips' random starts (StyleGAN-V never seeds them)")
    source: str = ""

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise invalid(self, "frames", f"must be at least 1, not {self.frames}")
        if self.stride < 1:
            raise invalid(self, "stride", f"must be at least 1, not {self.stride}")
        if self.skip_first < 0:
            raise invalid(self, "skip_first", f"must be at least 0, not {self.skip_first}")
        if self.seed < 0:
            raise invalid(self, "seed", f"must be at least 0, not {self.seed}")
        if self.max_videos is not None and self.max_videos < 2:
            raise invalid(self, "max_videos", f"must be at least 2 (a covariance needs two), not {self.max_videos}")
        check_choice(self, "resize", FVD_RESIZES)
        check_choice(self, "covariance", FVD_COVARIANCES)
        check_choice(self, "sqrtm", FVD_SQRTMS)
        check_choice(self, "real_start", ("random", "first"))
        check_choice(self, "short_real", ("drop", "error"))
        check_choice(self, "kvd", ("subsets", "full"))

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

_VIDEOGPT = ("songweige/TATS@03bbce1d tats/fvd/fvd.py:17-27 (preprocess: F.interpolate bilinear, "
             "align_corners=False, to 224x224; 2x/255-1), :44-47 (TF-GAN's SVD square root, eps 1e-10), :50-53 "
             "(trace_sqrt_product), :56-86 (unbiased covariance), :89-100 (frechet_distance), :103-116 "
             "(polynomial_mmd: sklearn's polynomial kernel, unbiased, the whole sets), :119-127 (batches of "
             "16), :130-136 (compute_fvd); tats/fvd/pytorch_i3d.py:81 (BatchNorm3d eps 1e-5), :338-348 (logits "
             "averaged over time); tats/fvd/convert_tf_pretrained.py:100 (TF-Hub has no BatchNorm scale: ones); "
             "the same steps as wilson1yan/VideoGPT videogpt/fvd/fvd.py")

_CD_FVD = ("cd-fvd 0.1.1 (PyPI sdist) cdfvd/third_party/i3d/utils.py:13-25 (preprocess_i3d: the VideoGPT "
           "family's resize and scaling), :28-47 (TATS's network file), cdfvd/third_party/i3d/pytorch_i3d.py:76 "
           "(BatchNorm eps 1e-5); cdfvd/fvd.py:33-42 (logits in batches of 16), :92-98 (scipy.linalg.sqrtm of "
           "S_real S_fake), cdfvd/utils/metric_utils.py:125-136 (covariance / n): the family's network with "
           "StyleGAN-V's distance")

FVD_PROTOCOLS = {
    "stylegan-v-16f": FvdProtocol("stylegan-v-16f", 16, max_videos=2048, source=_STYLEGAN_V),
    "stylegan-v-128f": FvdProtocol("stylegan-v-128f", 128, max_videos=2048, source=_STYLEGAN_V),
    "stylegan-v-128f-subsample8f": FvdProtocol("stylegan-v-128f-subsample8f", 16, stride=8, max_videos=2048,
                                               source=_STYLEGAN_V),
    "google-research": FvdProtocol("google-research", None, real_start="first", short_real="error", resize="tf1",
                                   covariance="n-1", sqrtm="tfgan", frame_order="natural", source=_GOOGLE),
    "videogpt": FvdProtocol("videogpt", None, real_start="first", short_real="error", resize="half-pixel",
                            covariance="n-1", sqrtm="tfgan", frame_order="natural", batch_norm_eps=1e-5, kvd="full",
                            source=_VIDEOGPT),
    "cd-fvd": FvdProtocol("cd-fvd", None, real_start="first", short_real="error", resize="half-pixel",
                          covariance="n", sqrtm="scipy", frame_order="natural", batch_norm_eps=1e-5, kvd="full",
                          source=_CD_FVD),
}
# What decides each protocol's number, and whose published numbers it can be compared with.
FVD_FAMILIES = {
    "stylegan-v-16f": "StyleGAN-V and the papers that use its code (16-frame clips of 2048 videos, covariance / n)",
    "stylegan-v-128f": "StyleGAN-V and the papers that use its code (128-frame clips of 2048 videos)",
    "stylegan-v-128f-subsample8f": "StyleGAN-V and the papers that use its code (every 8th of 128 frames)",
    "google-research": "the original FVD (Unterthiner et al. 2018): TF1 resize, whole videos, covariance / (n - 1)",
    "videogpt": "VideoGPT and TATS: PyTorch bilinear resize, BatchNorm eps 1e-5, whole videos, covariance / (n - 1)",
    "cd-fvd": "cd-fvd's I3D mode: VideoGPT's resize and network, StyleGAN-V's distance (covariance / n, scipy sqrtm)",
}
DEFAULT_FVD_PROTOCOL = "stylegan-v-16f"


FEATURE_CROPS = ("center", "3", "10", "10-oversample")
CROP_COUNTS = {"center": 1, "3": 3, "10": 10, "10-oversample": 10}
DECODERS = ("pyav", "opencv")
# OpenCV INTER_LINEAR with the long side rounded; PIL bilinear, floored; PIL Lanczos to exactly 340x256 (the
# anomaly-detection extractor's, aspect not kept)
RESIZE_METHODS = ("opencv", "pil", "pil-lanczos-340x256")
NPY_LAYOUTS = ("rows", "columns")
FEATURE_STREAMS = ("rgb", "flow", "joint")


@dataclass(frozen=True)
class ExtractionConfig:
    """How ``i3d features`` samples, crops and batches videos; the options of the command, field by field.

    ``spec`` (the windows) has options of its own (``WindowSpec``); the fields without help are set by the
    presets only.
    """

    spec: WindowSpec = field(default_factory=WindowSpec)
    fmt: str = setting("npz", "npz (one file per video), npy (features only), h5 (one HDF5 file for the run)",
                       FEATURE_FORMATS, flag="--format")
    extras: tuple[str, ...] = ()  # "logits", "mixed_5c": the options --logits and --mixed-5c
    batch_size: int = setting(4, "clips per network call; the crops of a window always share one")
    weights: str | None = setting(None, "RGB weights: a registry name (`i3d weights list`) or a .safetensors file",
                                  default_text="i3d-kinetics-400")
    device: str = setting("auto", "auto (CUDA where available), cpu, cuda or cuda:N")
    precision: str = setting("fp32", PRECISION_HELP, PRECISIONS)
    runtime: str = setting("auto", RUNTIME_HELP, RUNTIMES)
    workers: int | None = setting(None, "decoding processes (0: decode inline)",
                                  default_text="1 on a CPU; on a GPU one per core left, up to 8")
    stream: str = setting("rgb", "joint: RGB and flow features side by side (2048-d), logits summed",
                          FEATURE_STREAMS)
    flow_weights: str | None = setting(None, "flow weights", default_text="flow_imagenet, once converted")
    flow_method: str = setting("torch", FLOW_METHOD_HELP, FLOW_METHODS)
    raft_weights: str | None = setting(None, RAFT_WEIGHTS_HELP, default_text="raft-sintel")
    raft_iterations: int | None = setting(None, RAFT_ITERATIONS_HELP, default_text="20")
    flow_dir: Path | None = setting(None, "saved flow inputs (`i3d flow`) named <output name>.npy, instead of "
                                    "computing flow")
    fps: float | None = setting(RGB_RECIPE.fps, "frames per second taken by their timestamps, or `native`: every "
                                "decoded frame", none_word="native")
    size: int = setting(RGB_RECIPE.short_side, "short side before cropping")
    crop_size: int = setting(RGB_RECIPE.crop, "crop side")
    crops: str = setting("center", "center; 3 along the long side; 10: corners, centre and their mirrors "
                         "(TenCrop); 10-oversample: corners and centre of the frame, then of the mirrored frame "
                         "(Caffe's oversample); 3 and 10 add a crop axis: (windows, crops, D)", FEATURE_CROPS)
    per_frame: int | None = setting(None, "one feature per sampled frame from the W frames centred on it (ends "
                                    "repeat the first/last frame), instead of windows", metavar="W")
    decoder: str = "pyav"  # pyav, or opencv (cv2.VideoCapture) as some extractors decode
    resize: str = "opencv"  # one of RESIZE_METHODS
    needs_next_frame: bool = False  # a window is taken only if the frame after it exists (video_features)
    npy_layout: str = "rows"  # --format npy: rows (windows x D) or columns (D x windows, as MS-TCN loads them)
    flow_encoding: str = "clip"  # one of FLOW_ENCODINGS
    preset: str | None = None
    overrides: tuple[str, ...] = ()  # the settings given explicitly on top of the preset

    def __post_init__(self) -> None:
        check_choice(self, "fmt", FEATURE_FORMATS)
        if self.fmt == "npy" and self.extras:
            raise invalid(self, "fmt", "npy holds the features only; use npz or h5 for logits or Mixed_5c maps")
        if self.batch_size < 1:
            raise invalid(self, "batch_size", f"must be at least 1, not {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise invalid(self, "workers", f"must be at least 0, not {self.workers}")
        if self.fps is not None and not self.fps > 0:
            raise invalid(self, "fps", f"must be a rate above 0 or `native`, not {self.fps}")
        for name in ("size", "crop_size"):
            if getattr(self, name) < 1:
                raise invalid(self, name, f"must be at least 1, not {getattr(self, name)}")
        if self.crop_size < MIN_CROP:
            raise invalid(self, "crop_size", f"{self.crop_size} is too small: the network's last pool is 7x7 at "
                          f"1/32 of the input, so crops need at least {MIN_CROP} px")
        if self.crop_size > self.size:
            raise invalid(self, "crop_size", f"{self.crop_size} is larger than the resized frame's short side "
                          f"(size {self.size})")
        check_choice(self, "crops", FEATURE_CROPS)
        if self.per_frame is not None and self.per_frame < 1:
            raise invalid(self, "per_frame", f"must be at least 1 frame, not {self.per_frame}")
        if "mixed_5c" in self.extras and (self.crops != "center" or self.per_frame is not None):
            raise invalid(self, "extras", "mixed_5c is for windows with the centre crop (not with crops or "
                          "per_frame)")
        check_choice(self, "decoder", DECODERS)
        check_choice(self, "resize", RESIZE_METHODS)
        if self.resize == "pil-lanczos-340x256" and self.size != 256:
            raise invalid(self, "size", f"is 256 with the 340x256 resize (its frames are 256 high), not {self.size}")
        check_choice(self, "npy_layout", NPY_LAYOUTS)
        check_choice(self, "flow_method", FLOW_METHODS)
        check_choice(self, "flow_encoding", FLOW_ENCODINGS)
        if self.flow_method != "raft" and (self.raft_weights is not None or self.raft_iterations is not None):
            raise invalid(self, "raft_weights", f"is for --flow-method raft, not {self.flow_method}")
        if self.raft_iterations is not None and self.raft_iterations < 1:
            raise invalid(self, "raft_iterations", f"must be at least 1, not {self.raft_iterations}")
        check_choice(self, "precision", PRECISIONS)
        check_choice(self, "runtime", RUNTIMES)
        object.__setattr__(self, "stream", check_stream(self.stream))
        if self.flow_dir is not None and self.crops != "center":
            raise invalid(self, "flow_dir", "holds centre crops; other crops need the flow computed")

    @property
    def modalities(self) -> list[str]:
        return stream_modalities(self.stream)

    @property
    def crop_count(self) -> int:
        return CROP_COUNTS[self.crops]

    @property
    def windows_per_call(self) -> int:
        """batch_size counts clips through the network: a window's crops always share one call."""
        return max(1, self.batch_size // self.crop_count)

    def decode_workers(self, device: str) -> int:
        """The decoding processes for the network on ``device`` (given, or chosen). On a CPU one: the network
        already takes every core, and one decoder keeps up with it. A GPU runs the network many times faster
        than one decoder (docs/performance.md), so every core but the one feeding the GPU decodes, up to 8.
        Flow computed on a GPU is the exception: it runs where the frames are decoded, so decoding stays in
        this process, with one CUDA context and one compilation of the flow kernels, not one per worker."""
        if self.workers is not None:
            return self.workers
        if not str(device).startswith("cuda"):
            return 1
        if "flow" in self.modalities and self.flow_dir is None:
            return 0
        return max(1, min(8, (os.cpu_count() or 2) - 1))

    def settings(self, weights_sha256: list[str]) -> dict:
        """What an output depends on; a rerun into the same folder with other settings is refused."""
        flow = {"flow_method": self.flow_method if self.flow_dir is None else f"saved in {self.flow_dir}"}
        if self.flow_method == "raft" and self.flow_dir is None:
            flow.update(raft_weights=self.raft_weights or "raft-sintel", raft_iterations=self.raft_iterations or 20)
        if self.flow_encoding != "clip":
            flow["flow_encoding"] = self.flow_encoding
        sampling = {"fps": self.fps, "size": self.size, "crop_size": self.crop_size, "crops": self.crops,
                    "per_frame": self.per_frame, "decoder": self.decoder, "resize": self.resize,
                    "needs_next_frame": self.needs_next_frame, "precision": self.precision}
        defaults = ExtractionConfig.__dataclass_fields__
        changed = {k: v for k, v in sampling.items() if v != defaults[k].default}  # older outputs stay valid
        return {**dataclasses.asdict(self.spec), "extras": sorted(self.extras), "stream": self.stream,
                "weights": weights_sha256, **(flow if self.stream != "rgb" else {}), **changed}


MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class ServeConfig:
    """What ``i3d serve`` loads and how much it takes; the options of the command, field by field."""

    weights: str | None = setting(None, "RGB weights: a registry name (`i3d weights list`) or a .safetensors file",
                                  default_text="i3d-kinetics-400")
    device: str = setting("auto", "auto (CUDA where available), cpu, cuda or cuda:N")
    precision: str = setting("fp32", PRECISION_HELP, PRECISIONS)
    runtime: str = setting("auto", RUNTIME_HELP, RUNTIMES)
    max_upload_mb: float = setting(200.0, "uploads past this are refused with 413 while streaming")
    queue_size: int = setting(4, "requests waiting or running per process; the next gets 429", flag="--queue")
    threads: int | None = None  # predictions running at once in this process: 4 on CUDA (their clips share
    # network calls), 1 on the CPU (the network takes every core)
    timeout_s: float = setting(300.0, "seconds per prediction (504 past it)", flag="--timeout")
    upload_idle_s: float = setting(30.0, "seconds an upload may send nothing before it is dropped with 408",
                                   flag="--upload-idle-timeout")
    token: str | None = None  # every /v1/ call must send "Authorization: Bearer <token>" (--token, I3D_SERVE_TOKEN)

    def __post_init__(self) -> None:
        check_choice(self, "precision", PRECISIONS)
        check_choice(self, "runtime", RUNTIMES)
        for name in ("max_upload_mb", "timeout_s", "upload_idle_s"):
            value = getattr(self, name)
            if not 0 < value < float("inf"):
                raise invalid(self, name, f"must be above 0, not {value}")
        for name in ("queue_size", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise invalid(self, name, f"must be at least 1, not {getattr(self, name)}")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise invalid(self, "token", f"must be at least {MIN_TOKEN_LENGTH} characters, not {len(self.token)} "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")



@dataclass(frozen=True)
class InferenceSettings:
    """Where and how a command runs the network: its device, precision, runtime and clips per call."""

    device: str = setting("auto", "auto (CUDA where available), cpu, cuda or cuda:N")
    precision: str = setting("fp32", PRECISION_HELP, PRECISIONS)
    runtime: str = setting("auto", RUNTIME_HELP, RUNTIMES)
    batch_size: int | None = setting(None, "clips of a video (windows, views) per network call",
                                     default_text="4 on CUDA, 1 on the CPU")

    def __post_init__(self) -> None:
        check_choice(self, "precision", PRECISIONS)
        check_choice(self, "runtime", RUNTIMES)
        if self.batch_size is not None and self.batch_size < 1:
            raise invalid(self, "batch_size", f"must be at least 1, not {self.batch_size}")
