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


class Classifier:
    """Pretrained weights plus the matching preprocessing; ``predict`` takes a path (or the sample)."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        loaded = resolve_weights(weights)
        if loaded.modality != "rgb":
            raise I3DError(f"weights {weights} are for the {loaded.modality} stream; this classifier takes RGB")
        self.labels, self.device = loaded.labels, torch.device(device)
        self.model = build_model(loaded, optimize=True).to(self.device)

    @torch.inference_mode()
    def clip_logits(self, clip: np.ndarray) -> np.ndarray:
        """Logits of one clip (T, 224, 224, 3) float in [-1, 1]; clips under 9 frames are loop-padded."""
        clip = loop_pad(clip, MIN_FRAMES)
        batch = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).unsqueeze(0).to(self.device)
        return self.model(batch)[0].float().cpu().numpy()

    def predict(
        self,
        source: str | Path | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        window_frames: int = WINDOW_FRAMES,
    ) -> Prediction:
        """Logits of a whole video: one pass if it fits a window, else the frame-weighted mean over windows."""
        path = Path(source) if source is not None else sample_path()
        if is_array_file(path):
            clips: Iterable[np.ndarray] = [load_clip_array(path, channels=3)]
        else:
            clips = (to_unit_range(w) for w in windows(rgb_input_frames(path, start_s, end_s), window_frames))
        total, frames, count = None, 0, 0
        for clip in clips:
            logits = self.clip_logits(clip).astype(np.float64) * len(clip)
            total = logits if total is None else total + logits
            frames, count = frames + len(clip), count + 1
        if total is None:
            raise I3DError(f"{path}: no frames in the requested span")
        return Prediction((total / frames).astype(np.float32), self.labels, frames, count)
