"""Feature extraction over many videos: resume, failures recorded, decoding overlapped with the network.

Engines yield ``(job, VideoFeatures or error message)`` as videos finish; this module alone writes the
outputs and the manifest, so every engine's files are the same. Windows are batched within a video,
consecutive windows of equal length together, identically in every engine.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from i3d.errors import I3DError
from i3d.features.h5store import H5_NAME, H5Store
from i3d.features.jobs import Job, collect_jobs
from i3d.features.outputs import (
    MANIFEST,
    Manifest,
    ManifestRow,
    VideoFeatures,
    output_path,
    reusable_output,
    write_features,
)
from i3d.features.video import (
    Accumulator,
    DecodedVideo,
    Outcome,
    SharedBatches,
    describe_error,
    extract_video,
)
from i3d.files import check_writable, remove_stale_temporaries
from i3d.networks.architecture import FEATURE_DIM
from i3d.settings import ENGINES, ExtractionConfig

__all__ = ["ExtractionConfig", "ExtractionSummary", "extract_features", "local_engine"]


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
            put(("end", index, video.summary()))
        except Exception as error:  # one bad video must not stop the others
            put(("error", index, describe_error(error)))


def local_engine(jobs: Sequence[Job], run: Callable, config: ExtractionConfig,
                 decode_ahead: bool = False) -> Iterator[Outcome]:
    """Decoding in ``config.workers`` processes (None: as for a CPU network), windows through a bounded queue,
    the network here, its batches filled across videos. With no decoding process, ``decode_ahead`` decodes
    in a thread of this one (flow computed on the GPU, which stays in the network's process)."""
    if config.workers is None:
        config = dataclasses.replace(config, workers=config.decode_workers("cpu"))
    if config.workers == 0:
        for job in jobs:
            try:
                yield job, extract_video(job.path, run, config, job.name, decode_ahead)
            except Exception as error:
                yield job, describe_error(error)
        return
    pool = DecodingPool(jobs, config)
    by_index = {job.index: job for job in jobs}
    accumulators: dict[int, Accumulator] = {}
    batches = SharedBatches(run, config.windows_per_call)
    ended: dict[int, object] = {}  # videos decoded to the end whose last windows wait in a shared batch

    def finished() -> Iterator[Outcome]:
        for index in [i for i in ended if not batches.holds(accumulators[i])]:
            summary, accumulator = ended.pop(index), accumulators.pop(index)
            try:
                yield by_index[index], accumulator.result(summary)
            except Exception as error:
                yield by_index[index], describe_error(error)

    try:
        for kind, index, payload in pool.events():
            if kind == "start":
                accumulators[index] = Accumulator(run, config.windows_per_call)
            elif kind == "window":
                batches.add(accumulators[index], payload)
            elif kind == "end":
                ended[index] = payload
            else:  # error or died: its windows are not computed
                accumulator = accumulators.pop(index, None)
                if accumulator is not None:
                    batches.drop(accumulator)
                yield by_index[index], payload
            yield from finished()
        batches.flush()
        yield from finished()
    finally:
        pool.close()


class DecodingPool:
    """Decoding processes fed the jobs through one queue; their windows come back through a bounded one
    (so a fast decoder never holds more than a few batches). A process that dies (a crashing decoder)
    fails its video and is replaced."""

    def __init__(self, jobs: Sequence[Job], config: ExtractionConfig) -> None:
        self.config = config
        self.context = multiprocessing.get_context("spawn")
        self.tasks: multiprocessing.Queue = self.context.Queue()
        self.results: multiprocessing.Queue = self.context.Queue(maxsize=2 * config.batch_size + 2)
        for job in jobs:
            self.tasks.put((job.index, job.path, job.name))
        self.remaining = len(jobs)
        self.workers: dict[str, multiprocessing.Process] = {}
        self.current: dict[str, int] = {}  # worker name -> video it is decoding
        for _ in range(min(config.workers, len(jobs))):
            self._start_worker()

    def _start_worker(self) -> None:
        worker = self.context.Process(target=_decode_worker, args=(self.tasks, self.results, self.config,
                                                                   os.getpid()), daemon=True)
        worker.start()
        self.workers[worker.name] = worker

    def events(self) -> Iterator[tuple[str, int, object]]:
        """(kind, video index, payload): start, window, end (its summary), error (its text) or died, until
        every video has ended one way or another."""
        while self.remaining:
            try:
                kind, index, payload = self.results.get(timeout=1.0)
            except queue.Empty:
                yield from self._replace_dead_workers()
                continue
            if kind == "start":
                self.current[payload] = index
            elif kind in ("end", "error"):
                for name in [n for n, i in self.current.items() if i == index]:
                    del self.current[name]
                self.remaining -= 1
            yield kind, index, payload

    def _replace_dead_workers(self) -> Iterator[tuple[str, int, object]]:
        for name, worker in list(self.workers.items()):
            if worker.is_alive():
                continue
            del self.workers[name]
            if name in self.current:
                self.remaining -= 1
                yield "died", self.current.pop(name), f"decoding process died (exit code {worker.exitcode})"
            self._start_worker()

    def close(self) -> None:
        for _ in self.workers:
            self.tasks.put(None)
        for worker in self.workers.values():
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
        videos = f"{len(self.rows)} video" + ("s" if len(self.rows) != 1 else "")
        return (f"{videos}: {len(done)} done ({reused} from an earlier run), {self.failed} failed; "
                f"manifest {self.manifest}")


def run_record(config: ExtractionConfig, settings: dict, weights: dict[str, tuple[str, str]]) -> dict:
    """What the manifest's first line says about the run: enough to redo it or to tell its features apart."""
    from i3d.versions import software_versions

    return {"settings": settings, "format": config.fmt, "npy_layout": config.npy_layout, "preset": config.preset,
            "overrides": list(config.overrides),
            "weights": [{"stream": m, "name": n, "sha256": d} for m, (n, d) in weights.items()],
            "software": software_versions()}


def extract_features(
    inputs: Sequence[str | Path],
    outdir: Path,
    config: ExtractionConfig | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    ray_workers: int = 2,
    ray_start_timeout: float | None = None,
    progress: Callable[[Iterable[Outcome], int], Iterable[Outcome]] | None = None,
    ray_cpus_per_worker: int | None = None,
) -> ExtractionSummary:
    """Extract every input not already done; write one file per video (or one HDF5 file) and the manifest."""
    from i3d.devices import check_precision, compute_record, parse_device
    from i3d.factory import resolve_weights
    from i3d.runtimes import choose_runtime

    config = config or ExtractionConfig()
    # A Ray cluster's GPUs are its workers', not this machine's: there each worker resolves and checks the
    # device (a CPU-only head node may drive GPU workers); here only a CPU is this machine's to check.
    workers_decide = engine == "ray" and str(config.device) != "cpu"
    if not workers_decide:
        check_precision(config.precision, config.device)
    if engine not in ENGINES:
        raise I3DError(f"--engine must be one of {', '.join(ENGINES)}")
    if outdir.exists() and not outdir.is_dir():
        raise I3DError(f"{outdir}: is a file; --output is the folder for the features")
    jobs = collect_jobs(inputs)
    weights = {m: resolve_weights(config.weights if m == "rgb" else config.flow_weights, m) for m in config.modalities}
    named = {m: (w.name, w.sha256) for m, w in weights.items()}
    if "mixed_5c" in config.extras and any(w.layout is not None for w in weights.values()):
        raise I3DError("--mixed-5c is the Inception network's last map; the ResNet-50 family has none (its features "
                       "are pooled from res5)")
    settings = config.settings([digest for _, digest in named.values()])
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        check_writable(outdir / MANIFEST)
    except OSError as error:
        raise I3DError(f"{outdir}: cannot write there ({error.strerror or error})") from None
    remove_stale_temporaries(outdir)
    record = {**run_record(config, settings, named),
              "runtime": config.runtime if workers_decide else choose_runtime(config.runtime, config.precision,
                                                                              config.device),
              **compute_record(config.device if workers_decide else parse_device(config.device))}
    writer = FeatureWriter(outdir, config, settings, Manifest(outdir, record), len(jobs),
                           sum(w.feature_dim for w in weights.values()))
    todo = [job for job in jobs if not writer.reuse(job)]
    started = time.perf_counter()
    if todo:
        names_of = _names_of_each_file(todo)  # several names (links) of one file: computed once, written to each
        outcomes = _engine_outcomes([names[0] for names in names_of.values()], weights, config, engine,
                                    ray_address, ray_workers, ray_start_timeout, ray_cpus_per_worker)
        if progress is not None:
            outcomes = progress(outcomes, len(names_of))
        try:
            for job, outcome in outcomes:
                for named in names_of[_file_of(job)]:
                    writer.add(named, outcome)
        finally:
            writer.commit()
    summary = ExtractionSummary(writer.finished_rows(), writer.manifest.path, time.perf_counter() - started)
    writer.manifest.finish(summary.rows)
    return summary


def _file_of(job: Job) -> Path:
    try:
        return job.path.resolve()
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13): its own input, failing as such
        return job.path.absolute()


def _names_of_each_file(jobs: Sequence[Job]) -> dict[Path, list[Job]]:
    names: dict[Path, list[Job]] = {}
    for job in jobs:
        names.setdefault(_file_of(job), []).append(job)
    return names


def _engine_outcomes(jobs: Sequence[Job], weights: dict, config: ExtractionConfig, engine: str,
                     ray_address: str | None, ray_workers: int, ray_start_timeout: float | None,
                     ray_cpus_per_worker: int | None) -> Iterable[Outcome]:
    if engine == "ray":
        from i3d.features.ray_engine import START_TIMEOUT_S, ray_engine

        return ray_engine(jobs, weights, config, ray_address, ray_workers, ray_cpus_per_worker,
                          start_timeout=ray_start_timeout or START_TIMEOUT_S)
    from i3d.devices import decodes_ahead
    from i3d.features.network import FeatureNetwork

    network = FeatureNetwork(weights, config.device, config.extras, config.crops == "center",
                             config.precision, config.runtime)
    return local_engine(jobs, network.run, dataclasses.replace(config, workers=config.decode_workers(network.device)),
                        decode_ahead=decodes_ahead(network.device))


class FeatureWriter:
    """Where each video's outcome goes: its own file (npz, npy) or the run's HDF5 file (committed in groups),
    and a manifest row appended as soon as the output is whole; outputs an earlier run left are reused."""

    def __init__(self, outdir: Path, config: ExtractionConfig, settings: dict, manifest: Manifest,
                 count: int, dim: int | None = None) -> None:
        self.outdir, self.config, self.settings, self.manifest = outdir, config, settings, manifest
        self.store = H5Store(outdir / H5_NAME) if config.fmt == "h5" else None
        self.dim = dim or FEATURE_DIM * len(config.modalities)
        self.rows: list[ManifestRow | None] = [None] * count
        self.committing: dict[str, tuple[Job, ManifestRow]] = {}

    def reuse(self, job: Job) -> bool:
        """Whether an earlier run's output of this video is whole and made with the same settings."""
        reused = _reusable(self.outdir, job, self.config, self.settings, self.dim, self.store)
        if reused is None:
            return False
        earlier = self.manifest.earlier.get(str(job.path), {})
        for key in ("frames", "source_fps", "duration_s", "dropped_frames"):
            if getattr(reused, key) is None and earlier.get(key) is not None:
                setattr(reused, key, earlier[key])
        reused.input, reused.output = str(job.path), _output_name(job, self.config)
        self.rows[job.index] = reused
        return True

    def add(self, job: Job, outcome: VideoFeatures | str) -> None:
        if isinstance(outcome, str):
            self._record(job, ManifestRow(str(job.path), "failed", error=outcome))
        elif self.store is not None:
            self.store.add(job.name, outcome, self.settings)
            self.committing[job.name] = (job, _row(job, outcome, self.config))
            if self.store.due:
                self.commit()
        else:
            self._record(job, _write(self.outdir, job, outcome, self.config, self.settings))

    def _record(self, job: Job, row: ManifestRow) -> None:
        self.manifest.append(row)
        self.rows[job.index] = row

    def commit(self) -> None:
        """The HDF5 file's pending videos made durable, then their rows; a failed write fails those videos
        and leaves the committed file intact."""
        if self.store is None:
            return
        try:
            done = self.store.commit()
        except OSError as error:  # e.g. a full disk
            done, reason = [], f"cannot write {self.store.path} ({error.strerror or error})"
            for job, row in self.committing.values():
                self._record(job, ManifestRow(row.input, "failed", error=reason))
            self.store.pending.clear()
            self.committing.clear()
        for name in done:
            job, row = self.committing.pop(name)
            self._record(job, row)

    def finished_rows(self) -> list[ManifestRow]:
        return [row for row in self.rows if row is not None]


def _output_name(job: Job, config: ExtractionConfig) -> str:
    return f"{H5_NAME}:/{job.name}" if config.fmt == "h5" else f"{job.name}.{config.fmt}"


def _reusable(outdir: Path, job: Job, config: ExtractionConfig, settings: dict, dim: int,
              store: H5Store | None) -> ManifestRow | None:
    if store is None:
        return reusable_output(output_path(outdir, job, config.fmt), config.fmt, settings, dim)
    stored = store.reusable(job.name, settings, dim)
    if stored is None:
        return None
    fps = stored["source_fps"]
    return ManifestRow("", "done", frames=int(stored["frames"]), source_fps=None if fps != fps else fps,
                       duration_s=float(stored["duration_s"]), windows=int(stored["windows"]),
                       dropped_frames=int(stored["dropped_frames"]), reused=True)


def _row(job: Job, result: VideoFeatures, config: ExtractionConfig) -> ManifestRow:
    return ManifestRow(str(job.path), "done", _output_name(job, config), result.frames, result.source_fps,
                       result.duration_s, len(result.windows), result.dropped_frames)


def _write(outdir: Path, job: Job, result: VideoFeatures, config: ExtractionConfig, settings: dict) -> ManifestRow:
    """One video's file; a write that fails (full disk, permissions) fails that video only."""
    path = output_path(outdir, job, config.fmt)
    try:
        write_features(path, result, config.fmt, settings, config.npy_layout)
    except OSError as error:
        return ManifestRow(str(job.path), "failed", error=f"cannot write {path} ({error.strerror or error})")
    return _row(job, result, config)
