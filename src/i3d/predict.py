"""Video in, Kinetics (or any label set) scores out: the RGB stream end to end."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from i3d.batching import batches, made_ahead
from i3d.devices import (
    check_precision,
    clips_per_call,
    compute_record,
    decodes_ahead,
    network_input,
    parse_device,
    stack_on,
)
from i3d.errors import I3DError
from i3d.factory import create_model
from i3d.networks.architecture import MIN_FRAMES
from i3d.runtimes import choose_runtime, for_inference
from i3d.streams import check_stream, stream_modalities
from i3d.video.inputs import is_array_file, load_clip_array
from i3d.video.samples import sample_path
from i3d.video.transforms import loop_pad

__all__ = ["Classifier", "Prediction"]

WINDOW_FRAMES = 250  # 10 s at 25 fps: bounds memory on long videos; the reference sample is 79 frames


@dataclass
class Prediction:
    logits: np.ndarray  # (num_classes,), in label order
    labels: list[str]
    frames: int  # frames seen by the network (25 fps), before any loop padding
    windows: int
    multi_label: bool = False  # classes scored independently (Charades): sigmoid, not softmax
    precision: str = "fp32"  # what the network computed in
    runtime: str = "torch"  # which runtime ran it: torch or openvino
    compute: dict | None = None  # where: the device, and whether TF32 was allowed there (compute_record)

    @property
    def probabilities(self) -> np.ndarray:
        logits = torch.from_numpy(self.logits).double()
        return (torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, 0)).numpy()

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
            "multi_label": self.multi_label,
            "precision": self.precision,
            "runtime": self.runtime,
            **(self.compute or {}),
            "top": [{"label": label, "probability": p, "logit": logit} for label, p, logit in self.top(k)],
        })

    def to_text(self, k: int = 20) -> str:
        heading = "Top classes and probabilities" + (" (each its own sigmoid: multi-label)" if self.multi_label else "")
        lines = [f"Norm of logits: {self.norm:f}", "", heading]
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


def _call_key(clip: np.ndarray) -> tuple:
    """Clips that can share a network call: one dtype, one shape once loop-padded to MIN_FRAMES."""
    return clip.dtype.str, max(len(clip), MIN_FRAMES), *clip.shape[1:]


class _Waiting:
    def __init__(self, clips: Sequence[np.ndarray], modality: str) -> None:
        self.clips, self.modality = clips, modality
        self.key = (modality, _call_key(clips[0]))
        self.logits: np.ndarray | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.logits is not None or self.error is not None

    def result(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return self.logits


class SharedCalls:
    """Network calls shared by threads: a thread that finds the network idle runs its clips together with
    every waiting clip of the same shape (up to ``max_clips``), and goes on running what waits until its
    own clips are done; the other threads wait for their logits. No thread waits on purpose for company:
    clips gather while the network is busy."""

    def __init__(self, run: Callable[[list[np.ndarray], str], np.ndarray], max_clips: int) -> None:
        self.run, self.max_clips = run, max_clips
        self.condition = threading.Condition()
        self.waiting: list[_Waiting] = []
        self.running = False
        self.calls: Counter[int] = Counter()  # network calls by their number of clips (bounded: a server's)

    def __call__(self, clips: Sequence[np.ndarray], modality: str) -> np.ndarray:
        mine = _Waiting(clips, modality)
        with self.condition:
            self.waiting.append(mine)
            while not mine.done and self.running:
                self.condition.wait()
            if mine.done:
                return mine.result()
            self.running = True  # the network is this thread's until its own clips are done
        try:
            while not mine.done:
                self._one_call(mine.key)
        finally:
            with self.condition:
                self.running = False
                self.condition.notify_all()
        return mine.result()

    def _one_call(self, key: tuple) -> None:
        """One network call: the waiting clips of ``key``, oldest first, as many as fit."""
        with self.condition:
            taken, count = [], 0
            for waiting in self.waiting:
                if waiting.key == key and (not taken or count + len(waiting.clips) <= self.max_clips):
                    taken.append(waiting)
                    count += len(waiting.clips)
            for waiting in taken:
                self.waiting.remove(waiting)
        try:
            logits = self.run([clip for waiting in taken for clip in waiting.clips], taken[0].modality)
        except BaseException as error:  # each thread of the call raises it
            logits = error
        with self.condition:
            start = 0
            for waiting in taken:
                if isinstance(logits, BaseException):
                    waiting.error = logits
                else:
                    waiting.logits, start = logits[start : start + len(waiting.clips)], start + len(waiting.clips)
            self.calls[count] += 1
            self.condition.notify_all()


class Classifier:
    """Pretrained weights plus the matching preprocessing; ``predict`` takes a path (or the sample).

    ``stream`` is ``rgb``, ``flow`` (TV-L1 flow input, computed or read from a saved file) or ``joint``:
    the sum of the RGB and flow logits with equal weight, as the reference fuses the two streams.
    ``batch_size`` clips of a video (windows, views) go through the network together: by default 4 on CUDA,
    where a lone clip leaves the device idle, and 1 on the CPU, where batching gains nothing and holds more.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "auto",
        stream: str = "rgb",
        flow_weights: str | Path | None = None,
        flow_method: str = "torch",
        precision: str = "fp32",
        runtime: str = "auto",
        batch_size: int | None = None,
        flow_options: dict | None = None,
    ) -> None:
        """``flow_options``: RAFT's ``raft_weights`` and ``raft_iterations`` with ``flow_method="raft"``."""
        stream = check_stream(stream)
        self.stream, self.device, self.flow_method = stream, parse_device(device), flow_method
        check_precision(precision, self.device)
        self.precision, self.runtime = precision, choose_runtime(runtime, precision, self.device)
        self.batch_size = clips_per_call(self.device, batch_size)
        self._shared: SharedCalls | None = None  # set by share_calls
        self.models = {m: for_inference(create_model(weights if m == "rgb" else flow_weights, stream=m),
                                        self.runtime, precision, self.device)
                       for m in stream_modalities(stream)}
        self.weights = {m: model.weights for m, model in self.models.items()}  # the records: name, file, sha256
        if len({tuple(w.labels) for w in self.weights.values()}) > 1:
            raise I3DError("the RGB and flow weights have different label sets; their logits cannot be summed")
        self.labels = next(iter(self.weights.values())).labels
        self.multi_label = any(w.multi_label for w in self.weights.values())
        self.transforms = {m: w.transforms(flow_method, str(self.device), flow_options)
                           for m, w in self.weights.items()}

    def clip_logits(self, clip: np.ndarray, modality: str = "rgb") -> np.ndarray:
        """Logits of one clip (T, 224, 224, C) float in [-1, 1] (or uint8 RGB); clips under 9 frames are
        loop-padded."""
        return self.batch_logits([clip], modality)[0]

    def batch_logits(self, clips: Sequence[np.ndarray], modality: str = "rgb") -> np.ndarray:
        """Logits (N, classes) of clips of one length, in one network call (shared with other threads' clips
        once ``share_calls`` was called)."""
        if self._shared is not None:
            return self._shared(clips, modality)
        return self._network_call(clips, modality)

    @torch.inference_mode()
    def _network_call(self, clips: Sequence[np.ndarray], modality: str) -> np.ndarray:
        batch = stack_on(self.device, [loop_pad(clip, MIN_FRAMES) for clip in clips])
        return self.models[modality](network_input(batch)).float().cpu().numpy()

    def share_calls(self, max_clips: int) -> None:
        """Let threads predicting at once (a server's requests) share network calls, up to ``max_clips``
        clips per call: on a GPU one call of many clips costs little more than one of a single clip."""
        self._shared = SharedCalls(self._network_call, max_clips)

    def batched_logits(self, clips: Iterable[np.ndarray], modality: str = "rgb"
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(clip, logits) of each clip in order, the clips gathered ``batch_size`` at a time; a clip of another
        length or dtype than those gathered starts a new call. Holds at most one batch of clips."""
        for batch in batches(clips, self.batch_size, _call_key):
            yield from zip(batch, self.batch_logits(batch, modality))

    def _clips(self, modality: str, path: Path, start_s, end_s, window_frames: int) -> Iterable[np.ndarray]:
        if is_array_file(path):  # windowed like a video, so a saved flow file predicts what computing it does
            clip = load_clip_array(path, channels=3 if modality == "rgb" else 2)
            return (clip[i : i + window_frames] for i in range(0, len(clip), window_frames))
        return windows(self.transforms[modality].frames(path, start_s, end_s), window_frames)

    def _stream_logits(self, modality: str, path: Path, start_s, end_s, window_frames: int) -> tuple:
        total, frames, count = None, 0, 0
        clips = self._clips(modality, path, start_s, end_s, window_frames)
        if decodes_ahead(self.device):  # the next batch decodes while the GPU runs this one
            clips = made_ahead(clips, self.batch_size)
        for clip, logits in self.batched_logits(clips, modality):
            logits = logits.astype(np.float64) * len(clip)
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
        if not np.isfinite(summed).all():
            names = " and ".join(w.name for w in self.weights.values())
            raise I3DError(f"the weights {names} give non-finite scores on {path.name}: the weights are damaged "
                           "(check them with `i3d weights verify`, or convert them again)")
        return Prediction(summed.astype(np.float32), self.labels, frames, count, self.multi_label, self.precision,
                          self.runtime, compute_record(self.device))
