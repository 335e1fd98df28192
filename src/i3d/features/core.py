"""One video end to end, shared by every engine: the extraction settings, decoding into windows,
batching windows through the network, and the error text a failed video records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from i3d.errors import I3DError
from i3d.features.jobs import Job
from i3d.features.outputs import FORMATS, VideoFeatures
from i3d.features.windows import Window, WindowSpec, iter_windows, plan_windows
from i3d.streams import canonical_stream, stream_modalities
from i3d.video.decode import TARGET_FPS, source_fps
from i3d.video.inputs import rgb_input_frames

Outcome = tuple[Job, "VideoFeatures | str"]


@dataclass(frozen=True)
class ExtractionConfig:
    spec: WindowSpec = field(default_factory=WindowSpec)
    fmt: str = "npz"
    extras: tuple[str, ...] = ()
    batch_size: int = 4
    weights: str | None = None
    device: str = "cpu"
    workers: int = 1  # decoding processes beside the network; 0 decodes in the network's process
    stream: str = "rgb"  # rgb, flow or joint (both side by side)
    flow_weights: str | None = None
    flow_method: str = "torch"
    flow_dir: Path | None = None  # saved flow inputs (`i3d flow`), <flow_dir>/<output name>.npy

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise I3DError(f"--format must be one of {', '.join(FORMATS)}")
        if self.fmt == "npy" and self.extras:
            raise I3DError("--format npy holds the features only; use npz for logits or Mixed_5c maps")
        if self.batch_size < 1 or self.workers < 0:
            raise I3DError("--batch-size must be at least 1 and --workers at least 0")
        object.__setattr__(self, "stream", canonical_stream(self.stream))

    @property
    def modalities(self) -> list[str]:
        return stream_modalities(self.stream)

    def settings(self, weights_sha256: list[str]) -> dict:
        """What an output depends on; a rerun with other settings redoes the video."""
        flow = {"flow_method": self.flow_method if self.flow_dir is None else f"saved in {self.flow_dir}"}
        return {**asdict(self.spec), "extras": sorted(self.extras), "stream": self.stream,
                "weights": weights_sha256, **(flow if self.stream != "rgb" else {})}


class DecodedVideo:
    """The windows of one video, streamed, and afterwards its frame count and dropped frames.

    Frames carry the configured streams' channels side by side: RGB crops (uint8), flow (float in
    [-1, 1], computed with TV-L1 or read from a saved file), or both (float, RGB in [-1, 1] first).
    """

    def __init__(self, path: Path, spec: WindowSpec, config: ExtractionConfig | None = None, name: str = "") -> None:
        self.path, self.spec, self.frames = path, spec, 0
        self.config = config or ExtractionConfig(spec)
        self.name = name or path.stem
        self.source_fps = source_fps(path) if path.is_file() else TARGET_FPS

    def _flow(self) -> Iterator[np.ndarray]:
        from i3d.video.flow import FlowComputer, flow_input_frames
        from i3d.video.inputs import load_clip_array

        if self.config.flow_dir is not None:
            saved = Path(self.config.flow_dir) / f"{self.name}.npy"
            if not saved.is_file():
                raise I3DError(f"{saved}: no saved flow for {self.path}")
            return iter(load_clip_array(saved, channels=2))
        return flow_input_frames(self.path, computer=FlowComputer(self.config.flow_method, self.config.device))

    def _frames(self) -> Iterator[np.ndarray]:
        if self.config.stream == "rgb":
            return rgb_input_frames(self.path)
        if self.config.stream == "flow":
            return self._flow()
        return self._both()

    def _both(self) -> Iterator[np.ndarray]:
        rgb, flow = rgb_input_frames(self.path), self._flow()
        for rgb_frame in rgb:
            flow_frame = next(flow, None)
            if flow_frame is None:
                raise I3DError(f"{self.path}: the saved flow has fewer frames than the video")
            yield np.concatenate([rgb_frame.astype(np.float32) / 127.5 - 1, flow_frame], axis=-1)
        if next(flow, None) is not None:
            raise I3DError(f"{self.path}: the saved flow has more frames than the video")

    def _counted(self) -> Iterator[np.ndarray]:
        for frame in self._frames():
            self.frames += 1
            yield frame

    def windows(self) -> Iterator[Window]:
        yield from iter_windows(self._counted(), self.spec)
        if self.frames == 0:
            raise I3DError(f"{self.path}: no frames could be decoded")

    @property
    def dropped_frames(self) -> int:
        return plan_windows(self.frames, self.spec)[1]


class Accumulator:
    """Collects one video's window outputs, batching consecutive windows of equal length."""

    def __init__(self, run: Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]], batch_size: int) -> None:
        self.run, self.batch_size = run, batch_size
        self.pending: list[Window] = []
        self.spans: list[tuple[int, int]] = []
        self.outputs: list[dict[str, np.ndarray]] = []

    def add(self, window: Window) -> None:
        if self.pending and len(self.pending[0].frames) != len(window.frames):
            self.flush()
        self.pending.append(window)
        if len(self.pending) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.outputs += self.run([w.frames for w in self.pending])
            self.spans += [(w.start, w.end) for w in self.pending]
            self.pending = []

    def result(self, frames: int, fps: float | None, dropped: int) -> VideoFeatures:
        self.flush()
        arrays = {"features": np.stack([o["features"] for o in self.outputs])}
        if "logits" in self.outputs[0]:
            arrays["logits"] = np.stack([o["logits"] for o in self.outputs])
        if "mixed_5c" in self.outputs[0]:
            arrays["mixed_5c"] = np.concatenate([o["mixed_5c"] for o in self.outputs])
            arrays["mixed_5c_window"] = np.concatenate(
                [np.full(len(o["mixed_5c"]), i, dtype=np.int64) for i, o in enumerate(self.outputs)])
        return VideoFeatures(self.spans, arrays, frames, fps, dropped)


def extract_video(path: Path, run: Callable, config: ExtractionConfig, name: str = "") -> VideoFeatures:
    """Decode and extract one video in this process (the Ray engine's unit of work)."""
    video = DecodedVideo(path, config.spec, config, name)
    accumulator = Accumulator(run, config.batch_size)
    for window in video.windows():
        accumulator.add(window)
    return accumulator.result(video.frames, video.source_fps, video.dropped_frames)


def describe_error(error: BaseException) -> str:
    return str(error) if isinstance(error, I3DError) else f"{type(error).__name__}: {error}"


