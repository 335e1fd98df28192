"""Fréchet Video Distance with the TF-Hub I3D, computed as the reference implementation does.

Reference embedding (google-research/frechet_video_distance): every frame resized to 224x224 with TF1's
``resize_bilinear`` (no crop, legacy corner-aligned-at-0 sampling, no half-pixel offset), values mapped
from [0, 255] to [-1, 1], the 400 Kinetics logits averaged over time. The distance is that of the two
Gaussian fits (mean, unbiased covariance) of the embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from i3d.errors import I3DError
from i3d.files import atomic_path
from i3d.model import MIN_FRAMES
from i3d.settings import FVD_PROTOCOLS, FvdProtocol
from i3d.versions import software_versions
from i3d.video.decode import image_files, iter_image_folder, iter_video_file

FVD_SIZE = 224


def tf1_bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of TF1 ``resize_bilinear`` (align_corners=False, half_pixel_centers=False).

    Output pixel i samples the input at ``i * n_in / n_out`` (no half-pixel shift), clamped at the end.
    """
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    weights[torch.arange(n_out), lo] += 1 - frac
    weights[torch.arange(n_out), hi] += frac
    return weights


def fvd_preprocess(videos: torch.Tensor, size: int = FVD_SIZE) -> torch.Tensor:
    """(N, T, H, W, 3) values in [0, 255] -> (N, 3, T, size, size) in [-1, 1], the reference's way."""
    n, t, h, w, c = videos.shape
    rows = tf1_bilinear_matrix(h, size).to(videos.device, torch.float32)
    cols = tf1_bilinear_matrix(w, size).to(videos.device, torch.float32)
    frames = videos.float().permute(0, 4, 1, 2, 3)  # N, C, T, H, W
    resized = torch.einsum("oh,ncthw,pw->nctop", rows, frames, cols)
    return 2.0 * resized / 255.0 - 1.0


@dataclass
class GaussianStats:
    """Running sums in float64, so statistics of a set computed in batches equal those computed at once."""

    count: int = 0
    total: np.ndarray | None = None
    outer: np.ndarray | None = None

    def add(self, embeddings: np.ndarray) -> None:
        e = embeddings.astype(np.float64)
        self.total = e.sum(0) if self.total is None else self.total + e.sum(0)
        self.outer = e.T @ e if self.outer is None else self.outer + e.T @ e
        self.count += len(e)

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    @property
    def covariance(self) -> np.ndarray:
        if self.count < 2:
            raise I3DError(f"{self.count} video(s): a covariance needs at least 2")
        mean = self.mean
        return (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)

    def save(self, path: Path, **metadata: str) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as file:  # a file object: savez adds no suffix
            np.savez(file, count=self.count, total=self.total, outer=self.outer, metadata=json.dumps(metadata))

    @classmethod
    def load(cls, path: Path) -> GaussianStats:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(int(data["count"]), data["total"], data["outer"])
        except (OSError, KeyError, ValueError) as error:
            raise I3DError(f"{path}: not a statistics file written by --save-stats ({error})") from None


def _drop_rounding_noise(eigenvalues: np.ndarray) -> np.ndarray:
    threshold = len(eigenvalues) * np.finfo(np.float64).eps * max(float(np.abs(eigenvalues).max()), 1e-300)
    return np.where(eigenvalues > threshold, eigenvalues, 0.0)


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), all in float64.

    Tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    S_a^(1/2) S_b S_a^(1/2), found with ``eigh``: no complex residue to discard (as ``scipy.linalg.sqrtm``
    leaves). Eigenvalues below the rank threshold (n * float64 eps * the largest) are rounding noise of a
    singular covariance (fewer videos than dimensions) and count as 0: their square roots would otherwise
    add up to a spurious 1e-4 between identical sets.
    """
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(_drop_rounding_noise(values))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(_drop_rounding_noise(np.linalg.eigvalsh((middle + middle.T) / 2))).sum()
    diff = mean_a - mean_b
    distance = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    return max(distance, 0.0)  # a squared distance: below 0 only by rounding (-1e-14 between near-equal sets)


def fvd_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    return frechet_distance(a.mean, a.covariance, b.mean, b.covariance)


Protocol, PROTOCOLS = FvdProtocol, FVD_PROTOCOLS  # earlier names


class VideoEmbedder:
    """I3D logits of uint8 videos, in batches, on any device."""

    def __init__(self, weights: str | Path | None = None, device: str = "cpu", batch_size: int = 8) -> None:
        from i3d.factory import build_model
        from i3d.weights import resolve_weights

        loaded = resolve_weights(weights)
        if loaded.modality != "rgb":
            raise I3DError("FVD embeds RGB video; these weights are for the flow stream")
        self.device, self.batch_size = torch.device(device), batch_size
        self.model = build_model(loaded, optimize=True).to(self.device)
        self.weights_sha256 = loaded.metadata.get("source_sha256", "")

    @torch.inference_mode()
    def embed(self, videos: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, T, H, W, 3) uint8 (or float in [0, 255]) -> (N, 400) float64."""
        videos = torch.as_tensor(videos)
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise I3DError(f"videos must be (N, T, H, W, 3); got {tuple(videos.shape)}")
        if videos.shape[1] < MIN_FRAMES:
            raise I3DError(f"{videos.shape[1]} frames per video; I3D needs at least {MIN_FRAMES}")
        out = []
        for start in range(0, len(videos), self.batch_size):
            batch = fvd_preprocess(videos[start : start + self.batch_size].to(self.device))
            out.append(self.model(batch).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 400))

    def stats(self, batches: Iterable[np.ndarray]) -> GaussianStats:
        stats = GaussianStats()
        for batch in batches:
            stats.add(self.embed(batch))
        return stats


def fvd(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, embedder: VideoEmbedder | None = None
) -> float:
    """FVD between two sets of (N, T, H, W, 3) videos with values in [0, 255]."""
    embedder = embedder or VideoEmbedder()
    return fvd_from_stats(embedder.stats([np.asarray(real)]), embedder.stats([np.asarray(fake)]))


def _clip(frames: np.ndarray, protocol: FvdProtocol, rng: np.random.Generator, name: str) -> np.ndarray:
    if len(frames) < protocol.frames:
        raise I3DError(f"{name}: {len(frames)} frames, the protocol takes {protocol.frames}")
    start = 0 if protocol.sampling == "first" else int(rng.integers(0, len(frames) - protocol.frames + 1))
    return frames[start : start + protocol.frames]


def _read_video(path: Path, limit: int | None) -> np.ndarray:
    frames = iter_image_folder(path) if path.is_dir() else iter_video_file(path)
    held = []
    for _, image in frames:
        held.append(image)
        if limit is not None and len(held) == limit:
            break
    return np.stack(held)


def iter_clip_batches(source: Path, protocol: FvdProtocol, batch_size: int = 16) -> Iterator[np.ndarray]:
    """Clips of a set, batch by batch: an .npy/.npz array (N, T, H, W, 3), or a folder of videos or frame folders."""
    rng = np.random.default_rng(protocol.seed)
    if not source.exists():
        raise I3DError(f"{source}: no such file or folder")
    if source.suffix in (".npy", ".npz"):
        try:
            data = np.load(source, mmap_mode="r", allow_pickle=False) if source.suffix == ".npy" else np.load(source)
            if source.suffix == ".npz":
                data = data[data.files[0]]
        except (OSError, ValueError) as error:
            raise I3DError(f"{source}: not a readable array ({error})") from None
        if data.ndim != 5 or data.shape[-1] != 3:
            raise I3DError(f"{source}: shape {data.shape}; expected (N, T, H, W, 3)")
        items: Iterable = (np.asarray(video) for video in data)
        count = len(data)
    else:
        paths = sorted(p for p in source.iterdir() if p.is_dir() and image_files(p) or p.is_file())
        if not paths:
            raise I3DError(f"{source}: holds no videos or frame folders")
        limit = protocol.frames if protocol.sampling == "first" else None
        items, count = (_read_video(p, limit) for p in paths), len(paths)
    chosen = count if protocol.max_clips is None else min(count, protocol.max_clips)
    batch: list[np.ndarray] = []
    for index, video in enumerate(items):
        if index == chosen:
            break
        batch.append(_clip(video, protocol, rng, f"{source} item {index}"))
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


@dataclass
class FvdReport:
    fvd: float
    real: str
    fake: str
    real_count: int
    fake_count: int
    protocol: dict
    weights_sha256: str
    software: dict = field(default_factory=software_versions)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def set_stats(embedder: VideoEmbedder, source: Path, protocol: FvdProtocol) -> GaussianStats:
    if source.suffix == ".stats" or source.name.endswith(".stats.npz"):
        return GaussianStats.load(source)
    return embedder.stats(iter_clip_batches(source, protocol, embedder.batch_size))
