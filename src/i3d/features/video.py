"""One video end to end, shared by every engine: decoded into windows (``DecodedVideo``), the windows
batched through the network (``Accumulator``), and the error text a failed video records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from i3d.batching import Batcher, made_ahead
from i3d.errors import I3DError, no_such_input
from i3d.features.jobs import Job
from i3d.features.outputs import VideoFeatures
from i3d.features.windows import Window, WindowSpec, iter_windows, per_frame_windows, plan_windows
from i3d.settings import ExtractionConfig
from i3d.video.decode import (
    TARGET_FPS,
    iter_image_folder,
    iter_video_file,
    iter_video_file_opencv,
    resample_fps_timed,
    source_fps,
    source_fps_opencv,
)
from i3d.video.transforms import RESIZERS, crop_mirrored, crop_views

Outcome = tuple[Job, "VideoFeatures | str"]


@dataclass(frozen=True)
class VideoSummary:
    frames: int
    source_fps: float | None
    dropped_frames: int
    times: list[float]  # when each sampled frame is shown, seconds of the source video
    interval: float  # how long the last one stays
    sample_fps: float | None  # None: every decoded frame (native rate)
    per_frame: bool


class DecodedVideo:
    """The windows of one video, streamed, and afterwards its sampled frames' times and dropped frames.

    A frame is the crops of one sampled instant, (crops, size, size, channels): RGB (uint8), flow (float in
    [-1, 1], computed with TV-L1 or read from a saved file), or both (float, RGB in [-1, 1] first).
    """

    def __init__(self, path: Path, spec: WindowSpec, config: ExtractionConfig | None = None, name: str = "") -> None:
        self.path, self.spec, self.frames = path, spec, 0
        self.config = config or ExtractionConfig(spec)
        self.name = name or path.stem
        rate_of = source_fps_opencv if self.config.decoder == "opencv" else source_fps  # as the frames are decoded
        self.source_fps = rate_of(path) if path.is_file() else TARGET_FPS
        self.times: list[float] = []

    def _decoded(self) -> Iterator[tuple[float, np.ndarray]]:
        config = self.config
        if not self.path.exists():
            raise no_such_input(self.path)
        if self.path.is_dir():
            frames = iter_image_folder(self.path)
        elif config.decoder == "opencv":
            frames = iter_video_file_opencv(self.path)
        else:
            if self.path.stat().st_size == 0:
                raise I3DError(f"{self.path}: empty file")
            frames = iter_video_file(self.path)
        if config.fps is not None:
            frames = resample_fps_timed(frames, config.fps)
        resize = RESIZERS[config.resize]
        return ((time_s, resize(image, config.size)) for time_s, image in frames)

    def _timed(self) -> Iterator[np.ndarray]:
        """The resized frames, recording each one's time."""
        for time_s, image in self._decoded():
            self.times.append(time_s)
            yield image

    def _rgb_views(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        return (crop_views(frame, self.config.crop_size, self.config.crops) for frame in frames)

    def _flow(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        from i3d.video.flow import FLOW_BOUND, FlowComputer, video_features_encoding
        from i3d.video.inputs import load_clip_array

        config = self.config
        if config.flow_dir is not None:
            saved = Path(config.flow_dir) / f"{self.name}.npy"
            if not saved.is_file():
                raise I3DError(f"{saved}: no saved flow for {self.path}")
            return (frame[None] for frame in load_clip_array(saved, channels=2))
        video_features = config.flow_encoding == "video-features"
        computer = FlowComputer(config.flow_method, config.device, raft_weights=config.raft_weights,
                                raft_iterations=config.raft_iterations, raft_padded=video_features)
        if video_features:  # encoded after the crop, as video_features does (extract_i3d.py:57-62)
            fields = (video_features_encoding(f) for f in computer.fields(frames))
        else:
            fields = computer.fields(frames, FLOW_BOUND)  # in [-1, 1]
        # a mirrored crop of a flow field points the other way along x
        sign = np.array([[-1.0, 1.0] if m else [1.0, 1.0] for m in crop_mirrored(config.crops)],
                        np.float32)[:, None, None, :]
        return ((crop_views(f, config.crop_size, config.crops) * sign).astype(np.float32) for f in fields)

    def _frames(self) -> Iterator[np.ndarray]:
        """Each sampled frame's crops; with ``needs_next_frame`` the last frame only gives the flow before it."""
        resized = self._timed()
        if self.config.stream == "rgb":
            frames = self._rgb_views(resized)
        elif self.config.stream == "flow":
            frames = self._flow(resized)
        else:
            frames = self._both(resized)
        return _all_but_last(frames) if self.config.needs_next_frame else frames

    def _both(self, resized: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        if self.config.flow_dir is None:  # flow needs the same resized frames: compute both from one decode
            import itertools

            for_rgb, for_flow = itertools.tee(resized)
            rgb, flow = self._rgb_views(for_rgb), self._flow(for_flow)
        else:
            rgb, flow = self._rgb_views(resized), self._flow(iter(()))
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
        if self.config.per_frame is None:
            yield from iter_windows(self._counted(), self.spec)
        else:
            yield from per_frame_windows(self._counted(), self.config.per_frame)
        if self.frames == 0:
            raise I3DError(f"{self.path}: no frames could be decoded")

    @property
    def dropped_frames(self) -> int:
        return 0 if self.config.per_frame is not None else plan_windows(self.frames, self.spec)[1]

    def summary(self) -> VideoSummary:
        """What the outputs need to know about the video once its windows are done (sent between processes)."""
        return VideoSummary(self.frames, self.source_fps, self.dropped_frames, self.times[: max(self.frames, 1)],
                            self.frame_interval(), self.config.fps, self.config.per_frame is not None)

    def frame_interval(self) -> float:
        """How long the last sampled frame stays on screen."""
        if self.config.fps is not None:
            return 1.0 / self.config.fps
        if len(self.times) > 1 and self.times[-1] > self.times[-2]:
            return self.times[-1] - self.times[-2]
        return 1.0 / (self.source_fps or TARGET_FPS)


def _window_length(window: Window) -> int:
    return len(window.frames)


class Accumulator:
    """Collects one video's window outputs, batching consecutive windows of equal length."""

    def __init__(self, run: Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]], batch_size: int) -> None:
        self.run = run
        self.batcher: Batcher[Window] = Batcher(batch_size, _window_length)
        self.spans: list[tuple[int, int]] = []
        self.outputs: list[dict[str, np.ndarray]] = []

    def add(self, window: Window) -> None:
        for batch in self.batcher.add(window):
            self._compute(batch)

    def _compute(self, batch: list[Window]) -> None:
        self.outputs += self.run([w.frames for w in batch])
        self.spans += [(w.start, w.end) for w in batch]

    def result(self, video: VideoSummary) -> VideoFeatures:
        if self.batcher.held:
            self._compute(self.batcher.flush())
        arrays = {"features": np.stack([o["features"] for o in self.outputs])}
        if "logits" in self.outputs[0]:
            arrays["logits"] = np.stack([o["logits"] for o in self.outputs])
        if "mixed_5c" in self.outputs[0]:
            arrays["mixed_5c"] = np.concatenate([o["mixed_5c"] for o in self.outputs])
            arrays["mixed_5c_window"] = np.concatenate(
                [np.full(len(o["mixed_5c"]), i, dtype=np.int64) for i, o in enumerate(self.outputs)])
        return VideoFeatures(self.spans, arrays, video.frames, video.source_fps, video.dropped_frames, video.times,
                             video.interval, video.sample_fps, video.per_frame)


class SharedBatches:
    """Windows of equal length batched across videos (a short video's windows fill a batch with the next
    video's), each output handed back to its own video's ``Accumulator``; a video's result waits only for the
    batch holding its last windows."""

    def __init__(self, run: Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]], batch_size: int) -> None:
        self.run = run
        self.batcher: Batcher[tuple[Accumulator, Window]] = Batcher(batch_size, lambda owned: len(owned[1].frames))

    def add(self, accumulator: Accumulator, window: Window) -> None:
        for batch in self.batcher.add((accumulator, window)):
            self._compute(batch)

    def holds(self, accumulator: Accumulator) -> bool:
        return any(owner is accumulator for owner, _ in self.batcher.held)

    def drop(self, accumulator: Accumulator) -> None:
        """A video that failed: its windows are not computed."""
        self.batcher.drop(lambda owned: owned[0] is accumulator)

    def flush(self) -> None:
        if self.batcher.held:
            self._compute(self.batcher.flush())

    def _compute(self, batch: list[tuple[Accumulator, Window]]) -> None:
        outputs = self.run([w.frames for _, w in batch])
        for (owner, window), output in zip(batch, outputs):
            owner.outputs.append(output)
            owner.spans.append((window.start, window.end))


def _all_but_last(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    held = None
    for frame in frames:
        if held is not None:
            yield held
        held = frame


def extract_video(path: Path, run: Callable, config: ExtractionConfig, name: str = "",
                  decode_ahead: bool = False) -> VideoFeatures:
    """Decode and extract one video in this process (the Ray engine's unit of work). ``decode_ahead``: the
    next batch of windows is decoded by a thread while the network runs this one (a GPU's network waits on
    decoding otherwise; a CPU's takes every core, so there it would only compete)."""
    video = DecodedVideo(path, config.spec, config, name)
    accumulator = Accumulator(run, config.windows_per_call)
    windows = video.windows()
    for window in made_ahead(windows, config.windows_per_call) if decode_ahead else windows:
        accumulator.add(window)
    return accumulator.result(video.summary())


def describe_error(error: BaseException) -> str:
    return str(error) if isinstance(error, I3DError) else f"{type(error).__name__}: {error}"


