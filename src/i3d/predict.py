"""Video in, Kinetics (or any label set) scores out: the RGB stream end to end."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from i3d.errors import I3DError
from i3d.inference import optimize_for_inference
from i3d.model import MIN_FRAMES, InceptionI3d
from i3d.video.inputs import is_array_file, load_clip_array, rgb_input_frames
from i3d.video.samples import sample_path
from i3d.video.transforms import loop_pad, to_unit_range
from i3d.weights import LoadedWeights, resolve_weights

WINDOW_FRAMES = 250  # 10 s at 25 fps: bounds memory on long videos; the reference sample is 79 frames


def load_model(name: str | Path | None = None, optimize: bool = False) -> torch.nn.Module:
    """Pretrained I3D in eval mode, (B, C, T, H, W) in [-1, 1] -> logits (B, num_classes).

    ``optimize=True`` returns the faster inference-only form (same outputs, no training).
    """
    return build_model(resolve_weights(name), optimize)


def build_model(weights: LoadedWeights, optimize: bool = False) -> torch.nn.Module:
    model = InceptionI3d(weights.num_classes, weights.in_channels)
    model.load_state_dict(weights.state_dict)
    model.eval()
    return optimize_for_inference(model) if optimize else model


@dataclass
class Prediction:
    logits: np.ndarray  # (num_classes,), in label order
    labels: list[str]
    frames: int  # frames seen by the network (25 fps), before any loop padding
    windows: int

    @property
    def probabilities(self) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.logits).double(), 0).numpy()

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self.logits))

    def top(self, k: int = 20) -> list[tuple[str, float, float]]:
        """(label, probability, logit), best first."""
        order = np.argsort(-self.logits, kind="stable")[:k]
        probabilities = self.probabilities
        return [(self.labels[i], float(probabilities[i]), float(self.logits[i])) for i in order]

    def to_json(self, k: int = 20) -> str:
        return json.dumps({
            "labels": self.labels,
            "logits": [float(v) for v in self.logits],
            "norm": self.norm,
            "frames": self.frames,
            "windows": self.windows,
            "top": [{"label": label, "probability": p, "logit": logit} for label, p, logit in self.top(k)],
        })

    def to_text(self, k: int = 20) -> str:
        lines = [f"Norm of logits: {self.norm:f}", "", "Top classes and probabilities"]
        lines += [f"{p:.6g} {logit:.6g} {label}" for label, p, logit in self.top(k)]
        return "\n".join(lines)


def windows(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Consecutive stacks of up to ``size`` frames; only one stack is ever held."""
    held: list[np.ndarray] = []
    for frame in frames:
        held.append(frame)
        if len(held) == size:
            yield np.stack(held)
            held = []
    if held:
        yield np.stack(held)


STREAMS = ("rgb", "flow", "joint")
DEFAULT_FLOW_WEIGHTS = "flow_imagenet"


def load_stream_weights(weights: str | Path | None, modality: str) -> LoadedWeights:
    if modality == "flow" and weights is None:
        from i3d.weights import REGISTRY, installed_path

        if not installed_path(DEFAULT_FLOW_WEIGHTS).exists():
            raise I3DError(
                "no flow weights installed: convert DeepMind's flow checkpoint with `i3d weights convert "
                f".../flow_imagenet/model.ckpt.index --name {DEFAULT_FLOW_WEIGHTS}`, or give --flow-weights FILE "
                f"({REGISTRY[DEFAULT_FLOW_WEIGHTS].provenance})")
        weights = DEFAULT_FLOW_WEIGHTS
    loaded = resolve_weights(weights)
    if loaded.modality != modality:
        raise I3DError(f"weights {weights or 'default'} are for the {loaded.modality} stream, not {modality}")
    return loaded


class Classifier:
    """Pretrained weights plus the matching preprocessing; ``predict`` takes a path (or the sample).

    ``stream`` is ``rgb``, ``flow`` (TV-L1 flow input, computed or read from a saved file) or ``joint``:
    the sum of the RGB and flow logits with equal weight, as the reference fuses the two streams.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        stream: str = "rgb",
        flow_weights: str | Path | None = None,
        flow_method: str = "torch",
    ) -> None:
        if stream not in STREAMS:
            raise I3DError(f"stream must be one of {', '.join(STREAMS)}, not {stream!r}")
        self.stream, self.device, self.flow_method = stream, torch.device(device), flow_method
        modalities = ["rgb", "flow"] if stream == "joint" else [stream]
        loaded = {m: load_stream_weights(weights if m == "rgb" else flow_weights, m) for m in modalities}
        if len({tuple(w.labels) for w in loaded.values()}) > 1:
            raise I3DError("the RGB and flow weights have different label sets; their logits cannot be summed")
        self.labels = next(iter(loaded.values())).labels
        self.models = {m: build_model(w, optimize=True).to(self.device) for m, w in loaded.items()}

    @torch.inference_mode()
    def clip_logits(self, clip: np.ndarray, modality: str = "rgb") -> np.ndarray:
        """Logits of one clip (T, 224, 224, C) float in [-1, 1]; clips under 9 frames are loop-padded."""
        clip = loop_pad(clip, MIN_FRAMES)
        batch = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).unsqueeze(0).to(self.device)
        return self.models[modality](batch)[0].float().cpu().numpy()

    def _clips(self, modality: str, path: Path, start_s, end_s, window_frames: int) -> Iterable[np.ndarray]:
        if is_array_file(path):  # windowed like a video, so a saved flow file predicts what computing it does
            clip = load_clip_array(path, channels=3 if modality == "rgb" else 2)
            return (clip[i : i + window_frames] for i in range(0, len(clip), window_frames))
        if modality == "rgb":
            return (to_unit_range(w) for w in windows(rgb_input_frames(path, start_s, end_s), window_frames))
        from i3d.video.flow import FlowComputer, flow_input_frames

        computer = FlowComputer(self.flow_method, str(self.device))
        return windows(flow_input_frames(path, start_s, end_s, computer), window_frames)

    def _stream_logits(self, modality: str, path: Path, start_s, end_s, window_frames: int) -> tuple:
        total, frames, count = None, 0, 0
        for clip in self._clips(modality, path, start_s, end_s, window_frames):
            logits = self.clip_logits(clip, modality).astype(np.float64) * len(clip)
            total = logits if total is None else total + logits
            frames, count = frames + len(clip), count + 1
        if total is None:
            raise I3DError(f"{path}: no frames in the requested span")
        return total / frames, frames, count

    def predict(
        self,
        source: str | Path | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        window_frames: int = WINDOW_FRAMES,
        flow: str | Path | None = None,
    ) -> Prediction:
        """Logits of a whole video: one pass if it fits a window, else the frame-weighted mean over windows.

        ``flow`` is a saved flow input (``i3d flow``'s .npy) to use instead of computing it.
        """
        path = Path(source) if source is not None else sample_path()
        if flow is not None and self.stream == "rgb":
            raise I3DError("a flow file is for --stream flow or joint")
        summed, frames, count = None, 0, 0
        for modality in self.models:
            source_path = Path(flow) if modality == "flow" and flow is not None else path
            if modality == "flow" and self.stream == "joint" and is_array_file(path) and flow is None:
                raise I3DError(f"{path} is an RGB array; the joint stream needs the flow too (--flow FILE.npy)")
            logits, frames, count = self._stream_logits(modality, source_path, start_s, end_s, window_frames)
            summed = logits if summed is None else summed + logits
        return Prediction(summed.astype(np.float32), self.labels, frames, count)
