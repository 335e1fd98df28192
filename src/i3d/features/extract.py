"""Feature extraction over many videos: resume, failures recorded, decoding overlapped with the network.

Engines yield ``(job, VideoFeatures or error message)`` as videos finish; this module alone writes the
outputs and the manifest, so every engine's files are the same. Windows are batched within a video,
consecutive windows of equal length together, identically in every engine.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from i3d.errors import I3DError
from i3d.features.jobs import Job, collect_jobs
from i3d.features.outputs import (
    FORMATS,
    Manifest,
    ManifestRow,
    VideoFeatures,
    output_path,
    reusable_output,
    write_features,
)
from i3d.features.windows import Window, WindowSpec, iter_windows, plan_windows
from i3d.files import remove_stale_temporaries
from i3d.model import FEATURE_DIM
from i3d.settings import ENGINES
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


def _decode_worker(
    tasks: multiprocessing.Queue, results: multiprocessing.Queue, config: ExtractionConfig, parent_pid: int
) -> None:
    """A decoding process: for each task, the video's windows in order, then its end or its error.

    It exits when its parent is gone (killed, even by SIGKILL) instead of waiting on the queues forever.
    """

    def exchange(action: Callable[[], object]) -> object:
        while True:
            try:
                return action()
            except (queue.Full, queue.Empty):
                if os.getppid() != parent_pid:
                    os._exit(1)

    def put(item: tuple) -> None:
        exchange(lambda: results.put(item, timeout=1.0))

    while (task := exchange(lambda: tasks.get(timeout=1.0))) is not None:
        index, path, name = task
        put(("start", index, multiprocessing.current_process().name))
        try:
            video = DecodedVideo(path, config.spec, config, name)
            for window in video.windows():
                put(("window", index, window))
            put(("end", index, (video.frames, video.source_fps, video.dropped_frames)))
        except Exception as error:  # one bad video must not stop the others
            put(("error", index, describe_error(error)))


def local_engine(jobs: Sequence[Job], run: Callable, config: ExtractionConfig) -> Iterator[Outcome]:
    """Decoding in ``config.workers`` processes, windows through a bounded queue, the network here."""
    if config.workers == 0:
        for job in jobs:
            try:
                yield job, extract_video(job.path, run, config, job.name)
            except Exception as error:
                yield job, describe_error(error)
        return
    context = multiprocessing.get_context("spawn")
    tasks: multiprocessing.Queue = context.Queue()
    results: multiprocessing.Queue = context.Queue(maxsize=2 * config.batch_size + 2)  # bounds held windows
    for job in jobs:
        tasks.put((job.index, job.path, job.name))
    by_index = {job.index: job for job in jobs}
    workers: dict[str, multiprocessing.Process] = {}
    current: dict[str, int] = {}  # worker name -> video it is decoding
    accumulators: dict[int, Accumulator] = {}

    def start_worker() -> None:
        worker = context.Process(target=_decode_worker, args=(tasks, results, config, os.getpid()),
                                 daemon=True)
        worker.start()
        workers[worker.name] = worker

    for _ in range(min(config.workers, len(jobs))):
        start_worker()
    remaining = len(jobs)
    try:
        while remaining:
            try:
                kind, index, payload = results.get(timeout=1.0)
            except queue.Empty:
                for name, worker in list(workers.items()):
                    if not worker.is_alive():  # killed by a crashing decoder: fail its video, replace it
                        del workers[name]
                        if name in current:
                            accumulators.pop(current[name], None)
                            remaining -= 1
                            yield by_index[current.pop(name)], f"decoding process died (exit code {worker.exitcode})"
                        start_worker()
                continue
            if kind == "start":
                current[payload] = index
                accumulators[index] = Accumulator(run, config.batch_size)
            elif kind == "window":
                accumulators[index].add(payload)
            else:
                for name in [n for n, i in current.items() if i == index]:
                    del current[name]
                accumulator = accumulators.pop(index)
                remaining -= 1
                try:
                    yield by_index[index], accumulator.result(*payload) if kind == "end" else payload
                except Exception as error:
                    yield by_index[index], describe_error(error)
    finally:
        for _ in workers:
            tasks.put(None)
        for worker in workers.values():
            worker.join(timeout=2)
            if worker.is_alive():
                worker.terminate()


@dataclass
class ExtractionSummary:
    rows: list[ManifestRow]
    manifest: Path
    seconds: float

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.rows)

    def line(self) -> str:
        done = [r for r in self.rows if r.status == "done"]
        reused = sum(r.reused for r in done)
        return (f"{len(self.rows)} videos: {len(done)} done ({reused} from an earlier run), {self.failed} failed; "
                f"manifest {self.manifest}")


def extract_features(
    inputs: Sequence[str | Path],
    outdir: Path,
    config: ExtractionConfig | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    ray_workers: int = 2,
    progress: Callable[[Iterable[Outcome], int], Iterable[Outcome]] | None = None,
) -> ExtractionSummary:
    """Extract every input not already done; write one file per video and the manifest."""
    from i3d.download import sha256_of
    from i3d.factory import DEFAULT_FLOW_WEIGHTS, load_stream_weights
    from i3d.features.network import FeatureNetwork
    from i3d.weights import weights_file

    config = config or ExtractionConfig()
    if engine not in ENGINES:
        raise I3DError(f"--engine must be one of {', '.join(ENGINES)}")
    jobs = collect_jobs(inputs)
    weights, digests = {}, []
    for modality in config.modalities:
        name = config.weights if modality == "rgb" else config.flow_weights
        if modality == "flow" and name is None:
            name = DEFAULT_FLOW_WEIGHTS
        weights[modality] = load_stream_weights(name, modality)
        digests.append(sha256_of(weights_file(name)))
    settings = config.settings(digests)
    outdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(outdir)
    manifest = Manifest(outdir)
    rows: list[ManifestRow | None] = [None] * len(jobs)
    todo = []
    for job in jobs:
        reused = reusable_output(output_path(outdir, job, config.fmt), config.fmt, settings,
                                 FEATURE_DIM * len(config.modalities))
        if reused is None:
            todo.append(job)
            continue
        earlier = manifest.earlier.get(str(job.path), {})
        for key in ("frames", "source_fps", "duration_s", "dropped_frames"):
            if getattr(reused, key) is None and earlier.get(key) is not None:
                setattr(reused, key, earlier[key])
        reused.input, reused.output = str(job.path), f"{job.name}.{config.fmt}"
        rows[job.index] = reused
    started = time.perf_counter()
    if todo:
        if engine == "ray":
            from i3d.features.ray_engine import ray_engine

            outcomes: Iterable[Outcome] = ray_engine(todo, weights, config, ray_address, ray_workers)
        else:
            network = FeatureNetwork(weights, config.device, config.extras)  # one model per stream
            outcomes = local_engine(todo, network.run, config)
        if progress is not None:
            outcomes = progress(outcomes, len(todo))
        for job, outcome in outcomes:
            row = ManifestRow(str(job.path), "failed", error=outcome) if isinstance(outcome, str) else \
                _write(outdir, job, outcome, config, settings)
            manifest.append(row)
            rows[job.index] = row
    summary = ExtractionSummary([r for r in rows if r is not None], manifest.path, time.perf_counter() - started)
    manifest.finish(summary.rows)
    return summary


def _write(outdir: Path, job: Job, result: VideoFeatures, config: ExtractionConfig, settings: dict) -> ManifestRow:
    write_features(output_path(outdir, job, config.fmt), result, config.fmt, settings)
    return ManifestRow(str(job.path), "done", f"{job.name}.{config.fmt}", result.frames, result.source_fps,
                       result.duration_s, len(result.windows), result.dropped_frames)
