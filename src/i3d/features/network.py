"""The network side of feature extraction: windows in, per-window features (and optional extras) out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from i3d.model import MIN_FRAMES
from i3d.predict import build_model
from i3d.video.transforms import loop_pad, to_unit_range
from i3d.weights import LoadedWeights

EXTRAS = ("logits", "mixed_5c")


class FeatureNetwork:
    """One stream's pretrained I3D in its fast inference form.

    Per window: ``features`` (1024,), exactly what the logits layer sees (Mixed_5c, 2x7x7 VALID average
    pool, mean over time), so ``logits == features @ W.T + b``; optionally ``logits`` and ``mixed_5c``,
    the Mixed_5c map averaged over space only, (ceil(T / 8), 1024): one vector per 8 frames.
    """

    def __init__(self, weights: LoadedWeights, device: str | torch.device = "cpu", extras: Sequence[str] = ()):
        self.device = torch.device(device)
        self.model = build_model(weights, optimize=True).to(self.device)
        self.labels, self.modality, self.extras = weights.labels, weights.modality, tuple(extras)

    @torch.inference_mode()
    def run(self, clips: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Outputs for clips of equal length: uint8 RGB (T, H, W, 3) or float flow/RGB in [-1, 1]."""
        batch = np.stack([loop_pad(c, MIN_FRAMES) for c in clips])
        if batch.dtype == np.uint8:
            batch = to_unit_range(batch)
        x = torch.from_numpy(batch).permute(0, 4, 1, 2, 3).to(self.device)
        mixed_5c = self.model.extract_endpoints(x, ["Mixed_5c"])["Mixed_5c"]
        features = self.model.logits.features(mixed_5c)
        outputs = {"features": features}
        if "logits" in self.extras:
            outputs["logits"] = self.model.forward_head(features)
        if "mixed_5c" in self.extras:
            outputs["mixed_5c"] = mixed_5c.mean(dim=(3, 4)).transpose(1, 2)
        arrays = {k: v.float().cpu().numpy() for k, v in outputs.items()}
        return [{k: v[i] for k, v in arrays.items()} for i in range(len(clips))]
