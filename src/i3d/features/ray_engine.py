"""The Ray engine: actors that each hold the network extract whole videos; the driver writes every file.

The driver ships the weights through Ray's object store, so worker nodes need i3d installed and the
videos at the same paths (a shared file system), nothing else. Outputs and the manifest are written by
the same code as the local engine's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from i3d.errors import I3DError
from i3d.features.jobs import Job
from i3d.features.video import Outcome, describe_error, extract_video
from i3d.settings import ExtractionConfig
from i3d.weights.store import LoadedWeights


class _Extractor:
    def __init__(self, weights: dict[str, LoadedWeights], config: ExtractionConfig, threads: int) -> None:
        import torch

        from i3d.features.network import FeatureNetwork

        torch.set_num_threads(threads)
        self.network = FeatureNetwork(weights, config.device, config.extras, config.crops == "center",
                                  config.precision, config.runtime)
        self.config = config

    def extract(self, index: int, path: str, name: str):
        from pathlib import Path

        try:
            return index, extract_video(Path(path), self.network.run, self.config, name)
        except Exception as error:  # recorded in the manifest; the actor carries on
            return index, describe_error(error)


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


def ray_engine(
    jobs: Sequence[Job], weights: dict[str, LoadedWeights], config: ExtractionConfig, address: str | None, workers: int,
    cpus_per_worker: int = 1,
) -> Iterator[Outcome]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise I3DError("--engine ray needs Ray: pip install 'i3d[ray]'") from None
    if workers < 1:
        raise I3DError("--ray-workers must be at least 1")
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers * cpus_per_worker, include_dashboard=False, log_to_driver=False)
    try:
        gpus, config = gpu_share(config, workers, ray.cluster_resources().get("GPU", 0))
        actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus)(_Extractor)
        weights_ref = ray.put(weights)
        pool = ActorPool([actor.remote(weights_ref, config, cpus_per_worker) for _ in range(workers)])
        by_index = {job.index: job for job in jobs}
        def submit(actor, job: Job):
            return actor.extract.remote(job.index, str(job.path), job.name)

        for index, outcome in pool.map_unordered(submit, jobs):
            yield by_index[index], outcome
    finally:
        if started_here:
            ray.shutdown()
