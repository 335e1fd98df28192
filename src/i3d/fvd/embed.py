"""The FVD embedding: clips in [0, 255] -> 224x224 in [-1, 1] by the protocol's resize -> 400 I3D logits.

StyleGAN-V (its TorchScript detector called with rescale=True, resize=True, return_features=True,
src/metrics/frechet_video_distance.py:23): uint8 / 255 * 2 - 1 in float32, then trilinear interpolation to
(T, 224, 224) with half-pixel centres (``align_corners=False``), no antialias, aspect not kept; the
time axis keeps its length, so this is bilinear within each frame. google-research
(frechet_video_distance.py, preprocess): TF1 ``resize_bilinear`` (no half-pixel offset) of the [0, 255]
values to 224x224, then 2 * x / 255 - 1. Both embed with the TF-Hub I3D's logits averaged over time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from i3d.devices import parse_device
from i3d.errors import I3DError
from i3d.networks.architecture import MIN_FRAMES

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


def to_0_255(videos: torch.Tensor, value_range: tuple[float, float] = (0.0, 255.0)) -> torch.Tensor:
    """uint8 as is; float in ``value_range`` mapped linearly onto [0, 255] (float32)."""
    if videos.dtype == torch.uint8:
        return videos.float()
    low, high = value_range
    return (videos.float() - low) * (255.0 / (high - low))


def preprocess(videos: torch.Tensor, resize: str = "half-pixel", value_range: tuple[float, float] = (0.0, 255.0),
               size: int = FVD_SIZE) -> torch.Tensor:
    """(N, T, H, W, 3) -> (N, 3, T, size, size) float32 in [-1, 1], by the protocol's resize."""
    frames = to_0_255(videos, value_range).permute(0, 4, 1, 2, 3)  # N, C, T, H, W
    if resize == "tf1":
        n, c, t, h, w = frames.shape
        rows = tf1_bilinear_matrix(h, size).to(frames.device, torch.float32)
        cols = tf1_bilinear_matrix(w, size).to(frames.device, torch.float32)
        resized = torch.einsum("oh,ncthw,pw->nctop", rows, frames, cols)
        return 2.0 * resized / 255.0 - 1.0
    scaled = frames / 255.0 * 2.0 - 1.0
    return F.interpolate(scaled, size=(scaled.shape[2], size, size), mode="trilinear", align_corners=False)


def check_videos(videos: np.ndarray | torch.Tensor, name: str, value_range: tuple[float, float]) -> torch.Tensor:
    """A set's clips as a tensor, refusing what would give a silently wrong number."""
    dtype = getattr(videos, "dtype", None)
    if isinstance(videos, np.ndarray) and videos.dtype.kind not in "uif":
        raise I3DError(f"{name}: dtype {videos.dtype}; videos must be uint8 [0, 255] or float in "
                       f"[{value_range[0]:g}, {value_range[1]:g}]")
    videos = torch.as_tensor(videos)
    if videos.is_complex() or videos.dtype == torch.bool:
        raise I3DError(f"{name}: dtype {dtype}; videos must be uint8 [0, 255] or float in "
                       f"[{value_range[0]:g}, {value_range[1]:g}]")
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise I3DError(f"{name}: shape {tuple(videos.shape)}; expected (N, T, H, W, 3)")
    if 0 in videos.shape:
        raise I3DError(f"{name}: shape {tuple(videos.shape)} holds no pixels")
    if videos.dtype != torch.uint8:
        if not videos.is_floating_point():
            low, high = int(videos.min()), int(videos.max())
            if low < 0 or high > 255:
                raise I3DError(f"{name}: integer values span [{low}, {high}]; expected [0, 255]")
            return videos.to(torch.uint8)
        if not torch.isfinite(videos).all():
            raise I3DError(f"{name}: contains NaN or infinite values")
        low, high = float(videos.min()), float(videos.max())
        slack = 1e-3 * (value_range[1] - value_range[0])
        if low < value_range[0] - slack or high > value_range[1] + slack:
            raise I3DError(f"{name}: values span [{low:.4g}, {high:.4g}], outside the stated range "
                           f"[{value_range[0]:g}, {value_range[1]:g}] (--range)")
    return videos


class VideoEmbedder:
    """The TF-Hub I3D's 400 logits of clips, in batches, on any device, by a protocol's preprocessing."""

    def __init__(self, weights: str | Path | None = None, device: str = "auto", batch_size: int = 8,
                 resize: str = "half-pixel", precision: str = "fp32", runtime: str = "auto",
                 batch_norm_eps: float | None = None) -> None:
        """``batch_norm_eps``: the BatchNorm epsilon a protocol runs the weights with (the VideoGPT family's
        PyTorch I3D uses 1e-5 where TF-Hub's network uses 1e-3); None keeps the weights' own."""
        from i3d.devices import check_precision
        from i3d.factory import create_model
        from i3d.runtimes import choose_runtime, for_inference

        if batch_size < 1:
            raise I3DError(f"--batch-size must be at least 1, not {batch_size}")
        self.device, self.batch_size, self.resize = parse_device(device), batch_size, resize
        check_precision(precision, self.device)
        self.precision, self.runtime = precision, choose_runtime(runtime, precision, self.device)
        model = create_model(weights, stream="rgb")
        if batch_norm_eps is not None:
            if not hasattr(model, "batch_norm_eps"):
                raise I3DError(f"{model.weights.name}: a BatchNorm epsilon is a setting of the Inception network's "
                               "protocols; these weights are a ResNet-50's")
            model.batch_norm_eps = batch_norm_eps
        self.batch_norm_eps = getattr(model, "batch_norm_eps", None)
        self.model = for_inference(model, self.runtime, precision, self.device)
        record = model.weights
        self.weights = {"name": record.name, "sha256": record.sha256,
                        "source_sha256": record.metadata.get("source_sha256", ""), "precision": precision,
                        "runtime": self.runtime}
        self.dimension = record.num_classes

    @torch.inference_mode()
    def embed(self, videos: np.ndarray | torch.Tensor, value_range: tuple[float, float] = (0.0, 255.0),
              name: str = "videos") -> np.ndarray:
        """(N, T, H, W, 3) uint8, or float in ``value_range`` -> (N, 400) float64 (of float32 logits)."""
        videos = check_videos(videos, name, value_range)
        if videos.shape[1] < MIN_FRAMES:
            raise I3DError(f"{name}: {videos.shape[1]} frames per video; I3D needs at least {MIN_FRAMES}")
        out = []
        for start in range(0, len(videos), self.batch_size):
            batch = preprocess(videos[start : start + self.batch_size].to(self.device), self.resize, value_range)
            logits = self.model(batch).float().cpu().numpy().astype(np.float64)
            if not np.isfinite(logits).all():
                raise I3DError(f"the weights {self.weights['name']} give non-finite logits on {name}: the weights are "
                               "damaged (check them with `i3d weights verify`, or convert them again)")
            out.append(logits)
        return np.concatenate(out) if out else np.zeros((0, self.dimension))
