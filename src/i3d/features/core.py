"""One video end to end, shared by every engine: the extraction settings, decoding into windows,
batching windows through the network, and the error text a failed video records.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from i3d.architecture import MIN_CROP
from i3d.errors import I3DError
from i3d.features.jobs import Job
from i3d.features.outputs import VideoFeatures
from i3d.features.windows import Window, WindowSpec, iter_windows, plan_windows
from i3d.settings import FEATURE_FORMATS
from i3d.streams import canonical_stream, stream_modalities
from i3d.video.decode import (
    TARGET_FPS,
    iter_image_folder,
    iter_video_file,
    iter_video_file_opencv,
    resample_fps_timed,
    source_fps,
)
from i3d.video.transforms import CROP, RESIZERS, SHORT_SIDE, crop_mirrored, crop_views

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


CROPS = ("center", "3", "10")
CROP_COUNTS = {"center": 1, "3": 3, "10": 10}
DECODERS = ("pyav", "opencv")


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
    fps: float | None = TARGET_FPS  # frames sampled at this rate by their timestamps; None: every decoded frame
    size: int = SHORT_SIDE  # short side after resizing, before cropping
    crop_size: int = CROP
    crops: str = "center"  # center, 3 (along the long side) or 10 (TenCrop: corners, centre, mirrored)
    per_frame: int | None = None  # one feature per sampled frame from a centred window of this many frames
    decoder: str = "pyav"  # pyav, or opencv (cv2.VideoCapture) as some extractors decode
    resize: str = "opencv"  # opencv: INTER_LINEAR, long side rounded; pil: PIL bilinear, long side floored
    needs_next_frame: bool = False  # a window is taken only if the frame after it exists (video_features)
    npy_layout: str = "rows"  # --format npy: rows (windows x D) or columns (D x windows, as MS-TCN loads them)
    preset: str | None = None
    overrides: tuple[str, ...] = ()  # the settings given explicitly on top of the preset

    def __post_init__(self) -> None:
        if self.fmt not in FEATURE_FORMATS:
            raise I3DError(f"--format must be one of {', '.join(FEATURE_FORMATS)}")
        if self.fmt == "npy" and self.extras:
            raise I3DError("--format npy holds the features only; use npz or h5 for logits or Mixed_5c maps")
        if self.batch_size < 1 or self.workers < 0:
            raise I3DError("--batch-size must be at least 1 and --workers at least 0")
        if self.fps is not None and not self.fps > 0:
            raise I3DError(f"--fps must be a rate above 0 or `native`, not {self.fps}")
        if self.size < 1 or self.crop_size < 1:
            raise I3DError("--size and --crop-size must be at least 1")
        if self.crop_size < MIN_CROP:
            raise I3DError(f"--crop-size {self.crop_size} is too small: the network's last pool is 7x7 at 1/32 of "
                           f"the input, so crops need at least {MIN_CROP} px")
        if self.crop_size > self.size:
            raise I3DError(f"--crop-size {self.crop_size} is larger than the resized frame's short side "
                           f"(--size {self.size})")
        if self.crops not in CROPS:
            raise I3DError(f"--crops must be one of {', '.join(CROPS)}, not {self.crops!r}")
        if self.per_frame is not None and self.per_frame < 1:
            raise I3DError(f"--per-frame must be at least 1 frame, not {self.per_frame}")
        if "mixed_5c" in self.extras and (self.crops != "center" or self.per_frame is not None):
            raise I3DError("--mixed-5c is for windows with the centre crop (not with --crops or --per-frame)")
        if self.decoder not in DECODERS:
            raise I3DError(f"decoder must be one of {', '.join(DECODERS)}")
        if self.resize not in RESIZERS:
            raise I3DError(f"resize must be one of {', '.join(RESIZERS)}")
        object.__setattr__(self, "stream", canonical_stream(self.stream))
        if self.flow_dir is not None and self.crops != "center":
            raise I3DError("saved flow inputs (--flow-dir) are centre crops; --crops needs the flow computed")

    @property
    def modalities(self) -> list[str]:
        return stream_modalities(self.stream)

    @property
    def crop_count(self) -> int:
        return CROP_COUNTS[self.crops]

    @property
    def windows_per_call(self) -> int:
        """--batch-size counts clips through the network: a window's crops always share one call."""
        return max(1, self.batch_size // self.crop_count)

    def settings(self, weights_sha256: list[str]) -> dict:
        """What an output depends on; a rerun into the same folder with other settings is refused."""
        flow = {"flow_method": self.flow_method if self.flow_dir is None else f"saved in {self.flow_dir}"}
        sampling = {"fps": self.fps, "size": self.size, "crop_size": self.crop_size, "crops": self.crops,
                    "per_frame": self.per_frame, "decoder": self.decoder, "resize": self.resize,
                    "needs_next_frame": self.needs_next_frame}
        defaults = ExtractionConfig.__dataclass_fields__
        changed = {k: v for k, v in sampling.items() if v != defaults[k].default}  # older outputs stay valid
        return {**asdict(self.spec), "extras": sorted(self.extras), "stream": self.stream,
                "weights": weights_sha256, **(flow if self.stream != "rgb" else {}), **changed}


SPEC_FIELDS = ("clip_len", "step", "last")


def config_from_preset(preset: str | None = None, **given) -> ExtractionConfig:
    """The extraction settings of a named protocol (``features.presets``), with ``given`` settings on top.

    ``given`` holds ExtractionConfig fields and the window fields clip_len, step and last; the manifest
    records the preset and which settings were given.
    """
    from i3d.features.presets import PRESETS

    values: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise I3DError(f"unknown --preset {preset!r}; known: {', '.join(PRESETS)} (see --list-presets)")
        values.update(PRESETS[preset].settings)
        values.update(PRESETS[preset].output)
    values.update(given)
    spec = {k: values.pop(k) for k in SPEC_FIELDS if k in values}
    base = values.pop("spec", WindowSpec())
    spec = WindowSpec(**{**{k: getattr(base, k) for k in SPEC_FIELDS}, **spec})
    return ExtractionConfig(spec=spec, preset=preset, overrides=tuple(sorted(given)) if preset else (), **values)


class DecodedVideo:
    """The windows of one video, streamed, and afterwards its sampled frames' times and dropped frames.

    A frame is the crops of one sampled instant, (crops, size, size, channels): RGB (uint8), flow (float in
    [-1, 1], computed with TV-L1 or read from a saved file), or both (float, RGB in [-1, 1] first).
    """

    def __init__(self, path: Path, spec: WindowSpec, config: ExtractionConfig | None = None, name: str = "") -> None:
        self.path, self.spec, self.frames = path, spec, 0
        self.config = config or ExtractionConfig(spec)
        self.name = name or path.stem
        self.source_fps = source_fps(path) if path.is_file() else TARGET_FPS
        self.times: list[float] = []

    def _decoded(self) -> Iterator[tuple[float, np.ndarray]]:
        config = self.config
        if not self.path.exists():
            raise I3DError(f"{self.path}: no such file or folder")
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
        """The resized frames, recording each one's time; with ``needs_next_frame`` the last one is held back."""
        held = None
        for time_s, image in self._decoded():
            if held is not None:
                yield held
            self.times.append(time_s)
            held = image
        if held is not None and not self.config.needs_next_frame:
            yield held

    def _rgb_views(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        return (crop_views(frame, self.config.crop_size, self.config.crops) for frame in frames)

    def _flow(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        from i3d.video.flow import FLOW_BOUND, FlowComputer, to_grey
        from i3d.video.inputs import load_clip_array

        if self.config.flow_dir is not None:
            saved = Path(self.config.flow_dir) / f"{self.name}.npy"
            if not saved.is_file():
                raise I3DError(f"{saved}: no saved flow for {self.path}")
            return (frame[None] for frame in load_clip_array(saved, channels=2))
        computer = FlowComputer(self.config.flow_method, self.config.device)
        fields = computer.fields(to_grey(frame) for frame in frames)
        # a mirrored crop of a flow field points the other way along x
        sign = np.array([[-1.0, 1.0] if m else [1.0, 1.0] for m in crop_mirrored(self.config.crops)],
                        np.float32)[:, None, None, :]
        return ((crop_views(np.clip(f, -FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND, self.config.crop_size,
                            self.config.crops) * sign).astype(np.float32) for f in fields)

    def _frames(self) -> Iterator[np.ndarray]:
        if self.config.stream == "rgb":
            return self._rgb_views(self._timed())
        if self.config.stream == "flow":
            return self._flow(self._timed())
        return self._both()

    def _both(self) -> Iterator[np.ndarray]:
        resized = self._timed()
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


def per_frame_windows(frames: Iterator[np.ndarray], width: int) -> Iterator[Window]:
    """Window t holds frames t - (W-1)//2 .. t + W//2, the first and last frame repeated past the ends;
    row t's span is the real frames in it. Streamed: at most W frames are held."""
    before, after = (width - 1) // 2, width // 2
    held: deque[np.ndarray] = deque()
    count = 0
    emitted = 0

    def window(t: int) -> Window:
        return Window(t, max(0, t - before), min(count, t + after + 1), np.stack(held))

    for frame in frames:
        if count == 0:
            held.extend([frame] * before)
        held.append(frame)
        count += 1
        if len(held) > width:
            held.popleft()
        if len(held) == width and count - 1 - after >= emitted:
            yield window(emitted)
            emitted += 1
    while emitted < count:  # past the end: the last frame repeated (also fills a video shorter than W)
        held.append(held[-1])
        while len(held) < width:
            held.append(held[-1])
        while len(held) > width:
            held.popleft()
        yield window(emitted)
        emitted += 1


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

    def result(self, video: VideoSummary) -> VideoFeatures:
        self.flush()
        arrays = {"features": np.stack([o["features"] for o in self.outputs])}
        if "logits" in self.outputs[0]:
            arrays["logits"] = np.stack([o["logits"] for o in self.outputs])
        if "mixed_5c" in self.outputs[0]:
            arrays["mixed_5c"] = np.concatenate([o["mixed_5c"] for o in self.outputs])
            arrays["mixed_5c_window"] = np.concatenate(
                [np.full(len(o["mixed_5c"]), i, dtype=np.int64) for i, o in enumerate(self.outputs)])
        return VideoFeatures(self.spans, arrays, video.frames, video.source_fps, video.dropped_frames, video.times,
                             video.interval, video.sample_fps, video.per_frame)


def extract_video(path: Path, run: Callable, config: ExtractionConfig, name: str = "") -> VideoFeatures:
    """Decode and extract one video in this process (the Ray engine's unit of work)."""
    video = DecodedVideo(path, config.spec, config, name)
    accumulator = Accumulator(run, config.windows_per_call)
    for window in video.windows():
        accumulator.add(window)
    return accumulator.result(video.summary())


def describe_error(error: BaseException) -> str:
    return str(error) if isinstance(error, I3DError) else f"{type(error).__name__}: {error}"


