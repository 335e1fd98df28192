"""FVD as a streaming metric for training loops: ``update`` with batches, ``compute`` at the end.

Only running sums are kept (float64 count, sum and sum of outer products per set: 1.3 MB for 400-d
logits, whatever the number of videos). Under torch.distributed each process updates with its own
videos and ``compute`` all-reduces the sums first, so every process gets the number one process would
compute on all the videos. The method names are torchmetrics' (update, compute, reset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from i3d.devices import all_reduce_sum
from i3d.errors import I3DError
from i3d.fvd.clips import clip_indices
from i3d.fvd.distance import GaussianStats, fvd_from_stats
from i3d.fvd.embed import VideoEmbedder
from i3d.settings import DEFAULT_FVD_PROTOCOL, FVD_PROTOCOLS, FvdProtocol


class FrechetVideoDistance:
    """``update(videos, real=True|False)`` with (N, T, H, W, 3) uint8 or float in ``value_range``;
    ``compute()`` gives FVD by the protocol (its clip rule, resize, covariance and square root).

    Videos longer than the protocol's clip are cut by its rule: real ones from a random start (seeded),
    generated ones from frame 0. ``update_embeddings`` takes precomputed (N, 400) logits instead.
    """

    def __init__(self, protocol: FvdProtocol | str = DEFAULT_FVD_PROTOCOL, weights: str | Path | None = None,
                 device: str = "auto", batch_size: int = 8, value_range: tuple[float, float] = (0.0, 255.0),
                 seed: int | None = None, embedder: VideoEmbedder | None = None) -> None:
        if isinstance(protocol, str):
            if protocol not in FVD_PROTOCOLS:
                raise I3DError(f"unknown FVD protocol {protocol!r}; known: {', '.join(FVD_PROTOCOLS)}")
            protocol = FVD_PROTOCOLS[protocol]
        self.protocol, self.value_range = protocol, value_range
        self.embedder = embedder or VideoEmbedder(weights, device, batch_size, protocol.resize,
                                                  batch_norm_eps=protocol.batch_norm_eps)
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() \
            else 0
        self._rng = np.random.default_rng([protocol.seed if seed is None else seed, rank])
        self.reset()

    def reset(self) -> None:
        self.real, self.fake = GaussianStats(), GaussianStats()

    def _clips(self, videos: np.ndarray | torch.Tensor, real: bool) -> np.ndarray | torch.Tensor:
        if self.protocol.frames is None:
            return videos
        picked = [clip_indices(len(video), self.protocol, real, self._rng) for video in videos]
        if any(p is None for p in picked):
            raise I3DError(f"videos of {videos.shape[1]} frames; the protocol takes "
                           f"{self.protocol.skip_first + self.protocol.span}")
        if isinstance(videos, torch.Tensor):
            return torch.stack([video[p] for video, p in zip(videos, picked)])
        return np.stack([np.asarray(video)[p] for video, p in zip(videos, picked)])

    def update(self, videos: np.ndarray | torch.Tensor, real: bool) -> None:
        if isinstance(videos, torch.Tensor):  # stays where it is: a generator's CUDA output is embedded there
            videos = videos.detach()
        embeddings = self.embedder.embed(self._clips(videos, real), self.value_range,
                                         name="real videos" if real else "generated videos")
        self.update_embeddings(embeddings, real)

    def update_embeddings(self, embeddings: np.ndarray | torch.Tensor, real: bool) -> None:
        (self.real if real else self.fake).add(np.asarray(torch.as_tensor(embeddings).double().cpu()))

    def _reduced(self, stats: GaussianStats, dimension: int) -> GaussianStats:
        """The sums over every process (the local ones unchanged)."""
        total = stats.total if stats.total is not None else np.zeros(dimension)
        outer = stats.outer if stats.outer is not None else np.zeros((dimension, dimension))
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return GaussianStats(stats.count, total, outer)
        flat = all_reduce_sum(torch.from_numpy(np.concatenate([[float(stats.count)], total, outer.ravel()])),
                              self.embedder.device).numpy()
        return GaussianStats(int(round(flat[0])), flat[1 : 1 + dimension], flat[1 + dimension :].reshape(dimension,
                                                                                                          dimension))

    def compute(self) -> float:
        dimension = self.embedder.dimension
        real, fake = self._reduced(self.real, dimension), self._reduced(self.fake, dimension)
        for name, stats in (("real", real), ("generated", fake)):
            if stats.count < 2:
                raise I3DError(f"{stats.count} {name} video(s) so far; FVD needs at least 2 of each")
        return fvd_from_stats(real, fake, self.protocol.covariance, self.protocol.sqrtm)
