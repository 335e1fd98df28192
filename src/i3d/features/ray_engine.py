"""The Ray engine: actors that each hold the network extract whole videos; the driver writes every file.

The driver ships the weights through Ray's object store, so worker nodes need i3d installed and the
videos at the same paths (a shared file system), nothing else. Outputs and the manifest are written by
the same code as the local engine's.

Nothing waits silently: an address that does not answer, workers that cannot start (no free CPUs or GPUs,
i3d missing on the nodes, videos not at the driver's paths) end the run in one line within a bounded time;
a worker or node lost mid-run has its video retried on the others, and a replacement is started.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from i3d.errors import I3DError, I3DNotice
from i3d.features.jobs import Job
from i3d.features.video import Outcome, describe_error, extract_video
from i3d.settings import ExtractionConfig
from i3d.weights.store import LoadedWeights

CONNECT_TIMEOUT_S = 60.0  # for joining a cluster that answers at its address
START_TIMEOUT_S = 180.0  # how long a run may have no working worker before it says why and stops
TRIES = 3  # a video whose worker is lost is tried this many times in all, then recorded as failed
PROBES = 8  # input paths each worker checks it can see, at start


class _Extractor:
    def __init__(self, weights: dict[str, LoadedWeights], config: ExtractionConfig, threads: int) -> None:
        import torch

        from i3d.devices import decodes_ahead
        from i3d.features.network import FeatureNetwork

        torch.set_num_threads(threads)
        self.network = FeatureNetwork(weights, config.device, config.extras, config.crops == "center",
                                      config.precision, config.runtime)
        self.config, self.decode_ahead = config, decodes_ahead(self.network.device)

    def ready(self, probes: list[str]) -> tuple[str, list[str]]:
        """This worker's host and the probed input paths it cannot see (the driver can)."""
        return socket.gethostname(), [path for path in probes if not os.path.exists(path)]

    def extract(self, path: str, name: str):
        try:
            return extract_video(Path(path), self.network.run, self.config, name, self.decode_ahead)
        except Exception as error:  # recorded in the manifest; the actor carries on
            return describe_error(error)


def gpu_share(config: ExtractionConfig, workers: int, cluster_gpus: float) -> tuple[float, ExtractionConfig]:
    """The GPUs each actor asks Ray for, and the settings it runs with. CUDA workers share the cluster's GPUs
    (fractions of one when there are more workers than GPUs: two actors on a one-GPU machine both start);
    an actor sees only the GPUs Ray gives it, so it runs on ``cuda`` (its first), whatever index was named."""
    if not str(config.device).startswith(("cuda", "auto")):
        return 0, config
    if cluster_gpus == 0:
        if str(config.device) == "auto":
            return 0, dataclasses.replace(config, device="cpu")
        raise I3DError(f"--device {config.device}: the Ray cluster has no GPUs (use --device cpu)")
    return min(1.0, cluster_gpus / workers), dataclasses.replace(config, device="cuda")


def check_address_answers(address: str, timeout: float = 5.0) -> None:
    """Ray's own connect waits without end on an address where nothing answers; a plain TCP connect does not."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise I3DError(f"--ray-address {address}: give HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error)).lower()
        raise I3DError(f"--ray-address {address}: the Ray cluster does not answer ({reason} within "
                       f"{timeout:g} s)") from None


def _connect(ray, address: str | None, cpus: int) -> bool:
    """Ray initialised for this run; whether it was started (and so must be shut down) here. Joining runs in a
    thread given a bounded time: Ray retries without end against a port that answers but is not Ray's."""
    if ray.is_initialized():
        return False
    if not address:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        return True
    check_address_answers(address)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's own retry chatter is not the user's business
    failure: list[BaseException] = []

    def join() -> None:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except BaseException as error:  # reported by the caller's thread
            failure.append(error)

    joining = threading.Thread(target=join, daemon=True)
    joining.start()
    joining.join(CONNECT_TIMEOUT_S)
    if joining.is_alive():
        raise I3DError(f"--ray-address {address}: something answers there, but no Ray cluster within "
                       f"{CONNECT_TIMEOUT_S:g} s (Ray's address is the head's GCS port, 6379 by default, or "
                       "ray://HEAD:10001)")
    if failure:
        error = failure[0]
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise I3DError(f"--ray-address {address}: cannot join the Ray cluster ({first})") from None
    return True


def _lost_reason(error: Exception) -> str:
    """The line of a Ray error that says why a worker is gone (its node died, it was killed, out of memory)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("The actor died because", "The actor is dead because", "Task was killed")):
            return line.rstrip(".")
    return lines[0].rstrip(".") if lines else type(error).__name__


def _start_failure(error: Exception) -> str:
    """Why an actor's creation failed, as the last line of its traceback (ModuleNotFoundError: ...)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception"))]
    if not errors:
        return _lost_reason(error)
    hint = " (install i3d, the driver's version, on every node)" if "ModuleNotFound" in errors[-1] else ""
    return errors[-1] + hint


class _Pool:
    """The run's actors: starting (their network loading), idle, or extracting one video each."""

    def __init__(self, ray, actor_class, workers: int, weights_ref, config: ExtractionConfig, threads: int,
                 probes: list[str]) -> None:
        self.ray, self.actor_class, self.weights_ref, self.config = ray, actor_class, weights_ref, config
        self.threads, self.probes, self.wanted = threads, probes, workers
        self.starting: dict = {}  # ready() ref -> actor
        self.running: dict = {}  # extract() ref -> (actor, job)
        self.idle: list = []
        self.started_ever = self.replacements = 0
        self.start_errors: list[str] = []
        for _ in range(workers):
            self.start_one()

    def start_one(self) -> None:
        actor = self.actor_class.remote(self.weights_ref, self.config, self.threads)
        self.starting[actor.ready.remote(self.probes)] = actor

    @property
    def working(self) -> int:
        return len(self.idle) + len(self.running)

    def replace(self) -> None:
        """A lost worker's successor; bounded, so a cluster that keeps killing workers cannot churn forever."""
        if self.replacements < 2 * self.wanted:
            self.replacements += 1
            self.start_one()

    def dispatch(self, queue: deque[Job]) -> None:
        while self.idle and queue:
            actor, job = self.idle.pop(), queue.popleft()
            self.running[actor.extract.remote(str(job.path), job.name)] = (actor, job)

    def close(self) -> None:
        for actor in [*self.starting.values(), *self.idle, *(a for a, _ in self.running.values())]:
            self.ray.kill(actor)


def worker_cpus(cpus_per_worker: int | None, gpus: float) -> int:
    """The CPUs each actor asks Ray for (and its network's threads): as given, else 1 for a CPU network
    (actors side by side, one video each, use the cores better than threads within one network) and 2 for a
    GPU one, whose next windows decode in a thread while the GPU runs the last (``decode_ahead``)."""
    if cpus_per_worker is not None:
        if cpus_per_worker < 1:
            raise I3DError("--ray-cpus-per-worker must be at least 1")
        return cpus_per_worker
    return 2 if gpus else 1


def ray_engine(
    jobs: Sequence[Job], weights: dict[str, LoadedWeights], config: ExtractionConfig, address: str | None, workers: int,
    cpus_per_worker: int | None = None, start_timeout: float = START_TIMEOUT_S,
) -> Iterator[Outcome]:
    """Each video extracted by one actor; outcomes as videos finish. Workers lost mid-run are replaced and
    their videos retried; a run with no working worker for ``start_timeout`` seconds stops, saying why.
    ``cpus_per_worker``: see ``worker_cpus``."""
    try:
        import ray
        from ray.exceptions import RayError, RayTaskError
    except ImportError:
        raise I3DError("--engine ray needs Ray: pip install 'i3d[ray]'") from None
    if workers < 1:
        raise I3DError("--ray-workers must be at least 1")
    may_use_gpus = str(config.device).startswith(("cuda", "auto"))
    started_here = _connect(ray, address, workers * worker_cpus(cpus_per_worker, may_use_gpus))
    pool = None
    try:
        resources = ray.cluster_resources()
        gpus, config = gpu_share(config, workers, resources.get("GPU", 0))
        cpus_per_worker = worker_cpus(cpus_per_worker, gpus)
        _check_cluster_fits(resources, cpus_per_worker, gpus)
        actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus, max_restarts=0)(_Extractor)
        probes = [str(job.path.absolute()) for job in jobs if job.path.exists()][:PROBES]
        pool = _Pool(ray, actor_class, workers, ray.put(weights), config, cpus_per_worker, probes)
        queue, tries = deque(jobs), Counter()
        idle_since = time.monotonic()  # since when no worker has been working
        while queue or pool.running:
            pool.dispatch(queue)
            refs = [*pool.starting, *pool.running]
            if not refs:
                why = "every Ray worker was lost and none can be started" if pool.started_ever else \
                    "no Ray worker could start"
                raise I3DError(_stopped_line(pool, len(queue), why))
            done, _ = ray.wait(refs, num_returns=1, timeout=1.0)
            if not done:
                if pool.working == 0 and time.monotonic() - idle_since > start_timeout:
                    raise I3DError(_stopped_line(pool, len(queue), _why_no_worker(
                        ray, pool, start_timeout, cpus_per_worker, gpus)))
                continue
            ref = done[0]
            if ref in pool.starting:
                actor = pool.starting.pop(ref)
                try:
                    host, unseen = ray.get(ref)
                except RayError as error:
                    pool.start_errors.append(_start_failure(error))
                    warnings.warn(f"a Ray worker could not start: {pool.start_errors[-1]}", I3DNotice, stacklevel=2)
                    continue
                if unseen and len(unseen) == len(probes):
                    ray.kill(actor)
                    pool.start_errors.append(f"the videos are not at the driver's paths on {host} (no {unseen[0]})")
                    warnings.warn(f"a Ray worker on {host} is not used: {pool.start_errors[-1]}", I3DNotice,
                                  stacklevel=2)
                    continue
                pool.started_ever += 1
                pool.idle.append(actor)
                continue
            actor, job = pool.running.pop(ref)
            try:
                outcome = ray.get(ref)
            except RayTaskError as error:  # extract() records its own errors; this is Ray failing to return one
                yield job, f"Ray: {_start_failure(error)}"
                pool.idle.append(actor)
                continue
            except RayError as error:  # its worker or node is gone (RayActorError and the like)
                tries[job.index] += 1
                reason = _lost_reason(error)
                if tries[job.index] >= TRIES:
                    yield job, f"its Ray worker was lost {TRIES} times ({reason})"
                else:
                    queue.appendleft(job)
                    warnings.warn(f"a Ray worker was lost ({reason}); {job.path.name} goes to another worker",
                                  I3DNotice, stacklevel=2)
                pool.replace()
                if pool.working == 0:
                    idle_since = time.monotonic()
                continue
            pool.idle.append(actor)
            yield job, outcome
    finally:
        if pool is not None:
            pool.close()
        if started_here:
            ray.shutdown()


def _check_cluster_fits(resources: dict, cpus: int, gpus: float) -> None:
    """A cluster that could never hold one worker is said at once, not after the start timeout."""
    for name, need in (("CPU", cpus), ("GPU", gpus)):
        have = resources.get(name, 0)
        if need and have < need:
            raise I3DError(f"the Ray cluster has {have:g} {name}s in all and each worker asks for {need:g} (add "
                           f"nodes, or fewer --ray-workers on GPUs)")


def _why_no_worker(ray, pool: _Pool, waited: float, cpus: int, gpus: float) -> str:
    what = "every Ray worker was lost and none restarted" if pool.started_ever else "no Ray worker started"
    total, free = ray.cluster_resources(), ray.available_resources()
    for name, need in (("CPU", cpus), ("GPU", gpus)):
        if need and free.get(name, 0) < need:
            return (f"{what} within {waited:g} s: each asks for {need:g} {name} and the cluster has "
                    f"{free.get(name, 0):g} of {total.get(name, 0):g} free (other work holds them)")
    return (f"{what} within {waited:g} s though the cluster has room (the network may still be loading: raise "
            "--ray-start-timeout, or see the nodes' logs under /tmp/ray/session_latest/logs)")


def _stopped_line(pool: _Pool, left: int, why: str) -> str:
    causes = "; ".join(dict.fromkeys(pool.start_errors))
    return (f"{why}" + (f" ({causes})" if causes else "") + f"; {left} video{'s' if left != 1 else ''} not done: "
            "the manifest keeps every finished one, and rerunning the command does the rest")
