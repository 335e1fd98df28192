"""Fréchet Video Distance with the TF-Hub I3D, by the protocols papers publish, in batch or streaming.

``compute_fvd(real, fake, protocol)`` reproduces a preset of ``i3d.settings.FVD_PROTOCOLS`` step by step
(``clips.py`` says which videos and frames, ``embed.py`` how they are resized, ``distance.py`` how the
distance is taken); ``FrechetVideoDistance`` is the same metric for training loops, with running sums
all-reduced across processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from i3d.batching import batches
from i3d.devices import compute_record
from i3d.errors import I3DError
from i3d.fvd.clips import Selection, clip_indices, iter_clips, list_videos, planned_clips
from i3d.fvd.distance import (
    KVD_SUBSET_SIZE,
    KVD_SUBSETS,
    GaussianStats,
    frechet_distance,
    fvd_from_stats,
    kernel_distance,
    kernel_distance_full,
)
from i3d.fvd.embed import VideoEmbedder, check_videos, preprocess, tf1_bilinear_matrix
from i3d.fvd.metric import FrechetVideoDistance
from i3d.settings import DEFAULT_FVD_PROTOCOL, FVD_FAMILIES, FVD_PROTOCOLS, FvdProtocol
from i3d.versions import software_versions

__all__ = ["FVD_PROTOCOLS", "FrechetVideoDistance", "FvdProtocol", "FvdReport", "GaussianStats", "Selection",
           "VideoEmbedder", "clip_indices", "compute_fvd", "frechet_distance", "fvd", "fvd_from_stats",
           "get_protocol", "iter_clips", "kernel_distance", "list_videos", "preprocess", "set_statistics",
           "tf1_bilinear_matrix"]


def get_protocol(name: str = DEFAULT_FVD_PROTOCOL, **overrides) -> FvdProtocol:
    """A preset by name, with settings overridden (``max_videos``, ``frames``, ``stride``, ``skip_first``, ``seed``)."""
    if name not in FVD_PROTOCOLS:
        raise I3DError(f"unknown FVD protocol {name!r}; known: {', '.join(FVD_PROTOCOLS)}")
    return replace(FVD_PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None})


def _batches(clips: Iterable[tuple[str, np.ndarray]], size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """Clips of one shape batched together (each clip is resized on its own, so batching never changes a
    number)."""
    for batch in batches(clips, size, key=lambda named: named[1].shape):
        yield [name for name, _ in batch], np.stack([clip for _, clip in batch])


def _protocol_record(protocol: FvdProtocol) -> dict:
    return {k: v for k, v in asdict(protocol).items() if k != "source"}


def saved_statistics(source: Path, protocol: FvdProtocol, embedder: VideoEmbedder) -> tuple[GaussianStats, dict]:
    """A ``.stats.npz`` written for the same protocol, weights and precision, and its metadata; refused
    otherwise, in one line."""
    stats, metadata = GaussianStats.load(source)
    saved = metadata.get("protocol")
    wanted = _protocol_record(protocol)
    if not isinstance(saved, dict) or {k: saved.get(k) for k in wanted} != wanted:
        differing = sorted(k for k in wanted if not isinstance(saved, dict) or saved.get(k) != wanted[k])
        raise I3DError(f"{source}: statistics of another protocol (differs in {', '.join(differing) or 'all'}); "
                       f"recompute them with --protocol {protocol.name}")
    if metadata.get("weights_sha256") != embedder.weights["sha256"]:
        raise I3DError(f"{source}: statistics of other weights (sha256 {metadata.get('weights_sha256')}, "
                       f"these are {embedder.weights['sha256']})")
    saved_precision = metadata.get("precision")
    if saved_precision != embedder.precision:
        raise I3DError(f"{source}: statistics computed in {saved_precision}, not {embedder.precision}: "
                       f"recompute them with --precision {embedder.precision}, or use --precision "
                       f"{saved_precision}")
    return stats, metadata


def check_set(source: Path, protocol: FvdProtocol, embedder: VideoEmbedder,
              value_range: tuple[float, float] = (0.0, 255.0)) -> None:
    """Everything about a set that is known without embedding it, checked before either set is embedded: a
    statistics file's protocol, weights and precision; how many videos there are; an array's shape, dtype
    and values (read one video at a time). What only decoding shows is said when that video is decoded."""
    if source.name.endswith(".stats.npz"):
        saved_statistics(source, protocol, embedder)
        return
    videos = list_videos(source, protocol)
    if len(videos) < 2:
        raise I3DError(f"{source}: {len(videos)} video; FVD needs at least 2 per set")
    for video in videos:
        if video.array is not None:
            check_videos(np.array(video.array[None]), video.name, value_range)  # a copy: memmaps are read-only


def set_statistics(source: Path, protocol: FvdProtocol, embedder: VideoEmbedder, real: bool, run: int = 0,
                   value_range: tuple[float, float] = (0.0, 255.0), keep: bool = True,
                   progress: Callable[[int], None] | None = None) -> tuple[GaussianStats, Selection | None, dict]:
    """Statistics of one set: embedded by the protocol, or read from a ``.stats.npz`` written for the same protocol
    and weights. Returns (stats, selection or None, stats-file metadata)."""
    if source.name.endswith(".stats.npz"):
        stats, metadata = saved_statistics(source, protocol, embedder)
        return stats, None, metadata
    selection = Selection(str(source))
    stats = GaussianStats(kept=[] if keep else None)
    for names, batch in _batches(iter_clips(source, protocol, real, run, selection), embedder.batch_size):
        stats.add(embedder.embed(batch, value_range, name=names[0] if len(names) == 1 else f"{names[0]}..."))
        if progress is not None:
            progress(len(names))
    if stats.count < 2:
        raise I3DError(f"{source}: {stats.count} clip(s) to compare; FVD needs at least 2 per set"
                       + (f" ({len(selection.dropped)} videos shorter than the clip were dropped)"
                          if selection.dropped else ""))
    return stats, selection, {}


@dataclass
class FvdReport:
    fvd: float
    protocol: dict
    real: dict
    fake: dict
    weights: dict
    seed: int
    runs: list[float] = field(default_factory=list)
    fvd_std: float | None = None
    kvd: float | None = None
    kvd_subsets: int | None = None
    kvd_subset_size: int | None = None
    warnings: list[str] = field(default_factory=list)
    compute: dict = field(default_factory=dict)  # the device, and whether TF32 was allowed there
    family: str = ""  # whose published numbers this one can be compared with
    software: dict = field(default_factory=software_versions)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_text(self) -> str:
        p = self.protocol
        spread = f" +- {self.fvd_std:.4f} over {len(self.runs)} runs" if len(self.runs) > 1 else ""
        lines = [f"FVD: {self.fvd:.4f}{spread}  ({self.real['clips_used']} real, {self.fake['clips_used']} fake "
                 f"clips, protocol {p['name']}, seed {self.seed})"]
        if self.kvd is not None:
            lines.append(f"KVD: {self.kvd:.6f}  ({self.kvd_subsets} subsets of {self.kvd_subset_size})")
        lines.append(f"protocol: {p['frames'] or 'all'} frames every {p['stride']}, skip {p['skip_first']}, "
                     f"{p['max_videos'] or 'all'} videos, real start {p['real_start']}, resize {p['resize']}, "
                     f"covariance / {p['covariance']}, sqrtm {p['sqrtm']}, BatchNorm eps {p['batch_norm_eps']:g}")
        if self.family:
            lines.append(f"comparable with: {self.family}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def compute_fvd(
    real: Path,
    fake: Path,
    protocol: FvdProtocol | str = DEFAULT_FVD_PROTOCOL,
    embedder: VideoEmbedder | None = None,
    runs: int = 1,
    value_range: tuple[float, float] = (0.0, 255.0),
    kvd: bool = True,
    kvd_subsets: int = KVD_SUBSETS,
    kvd_subset_size: int = KVD_SUBSET_SIZE,
    save_stats: Path | None = None,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> FvdReport:
    """FVD (and KVD) of two sets by the protocol; ``runs`` draws the real clips with seeds seed, seed+1, ...

    Generated clips start at frame 0, so they are embedded once; real clips are embedded per run.
    ``progress(n)`` is called as clips are embedded; ``total(n)`` once, with how many there will be at most.
    """
    for given in (real, fake):
        if not isinstance(given, (str, os.PathLike)):
            raise I3DError(f"compute_fvd takes paths (a folder of videos, an .npy/.npz array, a .stats.npz), not "
                           f"{type(given).__name__}; for videos in memory use i3d.fvd.fvd(real, fake) or "
                           "FrechetVideoDistance")
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if runs < 1:
        raise I3DError(f"--runs must be at least 1, not {runs}")
    if runs > 1 and Path(real).name.endswith(".stats.npz"):
        raise I3DError(f"{real}: saved statistics are one draw of the real clips; --runs needs the real videos")
    embedder = embedder or VideoEmbedder(resize=protocol.resize, batch_norm_eps=protocol.batch_norm_eps)
    check_embedder(embedder, protocol)
    for source in (Path(real), Path(fake)):  # both sets, before either is embedded
        check_set(source, protocol, embedder, value_range)
    if total is not None:
        total(planned_clips(Path(fake), protocol) + runs * planned_clips(Path(real), protocol))
    fake_stats, fake_selection, _ = set_statistics(Path(fake), protocol, embedder, False, 0, value_range, kvd,
                                                   progress)
    values, kvd_value, subset, real_selection, first_real = [], None, None, None, None
    for run in range(runs):
        real_stats, selection, _ = set_statistics(Path(real), protocol, embedder, True, run, value_range, kvd,
                                                  progress)
        real_selection = real_selection or selection
        values.append(fvd_from_stats(real_stats, fake_stats, protocol.covariance, protocol.sqrtm))
        if run == 0:
            if save_stats is not None and selection is not None:
                real_stats.save(save_stats, {"protocol": _protocol_record(protocol), "source": str(real),
                                             "weights_sha256": embedder.weights["sha256"],
                                             "precision": embedder.precision, "run": 0})
            real_embeddings, fake_embeddings = real_stats.embeddings, fake_stats.embeddings
            if kvd and real_embeddings is not None and fake_embeddings is not None:
                if protocol.kvd == "full":
                    kvd_value, kvd_subsets = kernel_distance_full(real_embeddings, fake_embeddings), 1
                    subset = min(len(real_embeddings), len(fake_embeddings))
                else:
                    kvd_value, subset = kernel_distance(real_embeddings, fake_embeddings, kvd_subsets,
                                                        kvd_subset_size, protocol.seed)
            first_real = real_stats
    warnings = _warnings(protocol, first_real, fake_stats, real_selection, fake_selection, kvd, kvd_value)
    real_record = real_selection.summary() if real_selection else {"source": str(real), "clips_used": first_real.count,
                                                                   "from_statistics": True}
    report = FvdReport(
        float(np.mean(values)), {**asdict(protocol)}, real_record, fake_selection.summary() if fake_selection else {},
        embedder.weights, protocol.seed, values, float(np.std(values, ddof=1)) if runs > 1 else None,
        kvd_value, kvd_subsets if kvd_value is not None else None, subset, warnings, compute_record(embedder.device),
        FVD_FAMILIES.get(protocol.name, "no published family: settings of your own"))
    return report


def _warnings(protocol: FvdProtocol, real: GaussianStats, fake: GaussianStats, real_selection: Selection | None,
              fake_selection: Selection | None, kvd: bool, kvd_value: float | None) -> list[str]:
    warnings = []
    wanted = protocol.max_videos
    for name, stats in (("real", real), ("fake", fake)):
        if wanted is not None and stats.count < wanted:
            warnings.append(f"{stats.count} {name} clips where {protocol.name} takes {wanted}: the number is not "
                            "comparable with published ones (FVD is biased by the sample size)")
        if stats.count <= len(stats.total):
            warnings.append(f"{stats.count} {name} clips for {len(stats.total)}-d embeddings: the covariance is "
                            f"singular (rank < {len(stats.total)}); the square root is taken as {protocol.sqrtm} "
                            "does, on the singular matrices, without regularisation")
    for selection in (real_selection, fake_selection):
        if selection is not None and len(selection.frame_sizes) > 1:
            warnings.append(f"{selection.source}: videos of {len(selection.frame_sizes)} frame sizes; each clip is "
                            f"resized to 224x224 on its own, as {protocol.name} resizes every clip")
    for selection in (real_selection, fake_selection):
        if selection is not None and selection.shared:
            count = len(selection.shared)
            warnings.append(f"{selection.source}: {count} {'name leads' if count == 1 else 'names lead'} to a file "
                            f"another name of the set leads to (links, e.g. {selection.shared[0]}); each counts as a "
                            "video of the set, as FVD implementations reading the folder count it")
    if real_selection is not None and real_selection.dropped:
        warnings.append(f"{len(real_selection.dropped)} real videos shorter than the clip were dropped, as "
                        f"{protocol.name} does (e.g. {real_selection.dropped[0]})")
    if kvd and kvd_value is None:
        warnings.append("no KVD: a statistics file holds no embeddings")
    return warnings


def check_embedder(embedder: VideoEmbedder, protocol: FvdProtocol) -> None:
    """An embedder made for another protocol gives another number: refused before any video is embedded."""
    if embedder.resize != protocol.resize:
        raise I3DError(f"the embedder resizes {embedder.resize}, the protocol {protocol.resize}")
    if embedder.batch_norm_eps is not None and embedder.batch_norm_eps != protocol.batch_norm_eps:
        raise I3DError(f"the embedder's BatchNorm epsilon is {embedder.batch_norm_eps:g}, {protocol.name}'s "
                       f"{protocol.batch_norm_eps:g}")


def fvd(real: np.ndarray, fake: np.ndarray, embedder: VideoEmbedder | None = None,
        protocol: str = "google-research") -> float:
    """FVD between two sets of whole (N, T, H, W, 3) videos with values in [0, 255], as the protocol's
    reference code computes it from tensors (google-research: TF1 resize, covariance / (n - 1), TF-GAN square
    root; videogpt: PyTorch's bilinear resize and BatchNorm eps 1e-5, the rest the same)."""
    chosen = get_protocol(protocol)
    embedder = embedder or VideoEmbedder(resize=chosen.resize, batch_norm_eps=chosen.batch_norm_eps)
    check_embedder(embedder, chosen)
    real_stats, fake_stats = GaussianStats(), GaussianStats()
    real_stats.add(embedder.embed(real, name="real"))
    fake_stats.add(embedder.embed(fake, name="fake"))
    return fvd_from_stats(real_stats, fake_stats, chosen.covariance, chosen.sqrtm)
