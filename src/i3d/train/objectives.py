"""Losses and metrics of the two kinds of training: single-label softmax and Charades-style multi-label."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def frame_logits(temporal_logits: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, C, T') network logits stretched to one per input frame by linear interpolation, (B, C, frames)."""
    return F.interpolate(temporal_logits, size=frames, mode="linear", align_corners=False)


def charades_loss(temporal_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Half per-frame binary cross-entropy (localisation), half on the max over time (classification).

    ``targets`` is (B, C, T) 0/1 per frame, as the Charades recipe trains I3D.
    """
    per_frame = frame_logits(temporal_logits, targets.shape[-1])
    localisation = F.binary_cross_entropy_with_logits(per_frame, targets)
    classification = F.binary_cross_entropy_with_logits(per_frame.amax(dim=2), targets.amax(dim=2))
    return 0.5 * localisation + 0.5 * classification


def top_k_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the precision-recall curve as a sum over positives of the precision at their rank
    (ties ranked pessimistically); NaN when there is no positive."""
    positives = positives.astype(bool)
    if not positives.any():
        return float("nan")
    order = np.lexsort((positives, -scores))  # equal scores: negatives first
    hits = positives[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def mean_average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Mean over classes with at least one positive of each class's average precision; (N, C) inputs."""
    values = [average_precision(scores[:, c], positives[:, c]) for c in range(scores.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")
