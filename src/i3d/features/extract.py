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
from dataclasses import dataclass
from pathlib import Path

from i3d.architecture import FEATURE_DIM
from i3d.errors import I3DError
from i3d.features.core import (
    Accumulator,
    DecodedVideo,
    ExtractionConfig,
    Outcome,
    describe_error,
    extract_video,
)
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
from i3d.files import check_writable, remove_stale_temporaries
from i3d.settings import ENGINES

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
                accumulators[index] = Accumulator(run, config.windows_per_call)
            elif kind == "window":
                accumulators[index].add(payload)
            else:
                for name in [n for n, i in current.items() if i == index]:
                    del current[name]
                accumulator = accumulators.pop(index)
                remaining -= 1
                try:
                    yield by_index[index], accumulator.result(payload) if kind == "end" else payload
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
    progress: Callable[[Iterable[Outcome], int], Iterable[Outcome]] | None = None,
) -> ExtractionSummary:
    """Extract every input not already done; write one file per video (or one HDF5 file) and the manifest."""
    from i3d.factory import resolve_weights
    from i3d.features.network import FeatureNetwork

    config = config or ExtractionConfig()
    if engine not in ENGINES:
        raise I3DError(f"--engine must be one of {', '.join(ENGINES)}")
    if outdir.exists() and not outdir.is_dir():
        raise I3DError(f"{outdir}: is a file; --output is the folder for the features")
    jobs = collect_jobs(inputs)
    weights = {m: resolve_weights(config.weights if m == "rgb" else config.flow_weights, m) for m in config.modalities}
    named = {m: (w.name, w.sha256) for m, w in weights.items()}
    settings = config.settings([digest for _, digest in named.values()])
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        check_writable(outdir / MANIFEST)
    except OSError as error:
        raise I3DError(f"{outdir}: cannot write there ({error.strerror or error})") from None
    remove_stale_temporaries(outdir)
    manifest = Manifest(outdir, run_record(config, settings, named))
    store = H5Store(outdir / H5_NAME) if config.fmt == "h5" else None
    dim = FEATURE_DIM * len(config.modalities)
    rows: list[ManifestRow | None] = [None] * len(jobs)
    todo = []
    for job in jobs:
        reused = _reusable(outdir, job, config, settings, dim, store)
        if reused is None:
            todo.append(job)
            continue
        earlier = manifest.earlier.get(str(job.path), {})
        for key in ("frames", "source_fps", "duration_s", "dropped_frames"):
            if getattr(reused, key) is None and earlier.get(key) is not None:
                setattr(reused, key, earlier[key])
        reused.input, reused.output = str(job.path), _output_name(job, config)
        rows[job.index] = reused
    started = time.perf_counter()
    committing: dict[str, tuple[Job, ManifestRow]] = {}

    def commit() -> None:
        try:
            done = store.commit()
        except OSError as error:  # e.g. a full disk: these videos are failed, the committed file is intact
            done, reason = [], f"cannot write {store.path} ({error.strerror or error})"
            for job, row in committing.values():
                failed = ManifestRow(row.input, "failed", error=reason)
                manifest.append(failed)
                rows[job.index] = failed
            store.pending.clear()
            committing.clear()
        for name in done:
            job, row = committing.pop(name)
            manifest.append(row)
            rows[job.index] = row

    if todo:
        if engine == "ray":
            from i3d.features.ray_engine import ray_engine

            outcomes: Iterable[Outcome] = ray_engine(todo, weights, config, ray_address, ray_workers)
        else:
            network = FeatureNetwork(weights, config.device, config.extras, config.crops == "center")
            outcomes = local_engine(todo, network.run, config)
        if progress is not None:
            outcomes = progress(outcomes, len(todo))
        try:
            for job, outcome in outcomes:
                if isinstance(outcome, str):
                    row = ManifestRow(str(job.path), "failed", error=outcome)
                elif store is not None:
                    store.add(job.name, outcome, settings)
                    committing[job.name] = (job, _row(job, outcome, config))
                    if store.due:
                        commit()
                    continue
                else:
                    row = _write(outdir, job, outcome, config, settings)
                manifest.append(row)
                rows[job.index] = row
        finally:
            if store is not None:
                commit()
    summary = ExtractionSummary([r for r in rows if r is not None], manifest.path, time.perf_counter() - started)
    manifest.finish(summary.rows)
    return summary


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
