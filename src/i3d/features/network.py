"""The network side of feature extraction: windows in, per-window features (and optional extras) out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from i3d.devices import check_precision, network_input, parse_device, stack_on
from i3d.errors import I3DError
from i3d.factory import create_model
from i3d.networks.architecture import MIN_FRAMES
from i3d.runtimes import choose_runtime, for_inference
from i3d.video.transforms import loop_pad
from i3d.weights.store import LoadedWeights


class FeatureNetwork:
    """The pretrained I3D of each stream in its fast inference form.

    Per window: ``features``, exactly what the logits layer sees (Mixed_5c, 2x7x7 VALID average pool,
    mean over time; 1024 per stream, RGB then flow when both), so ``logits == features @ W.T + b`` per
    stream; optionally ``logits`` (the streams' sum, the reference's fusion) and ``mixed_5c``, the
    Mixed_5c map averaged over space only, (ceil(T / 8), 1024 per stream): one vector per 8 frames.
    Window frames carry the streams' channels side by side: RGB (3, uint8 or [-1, 1]), flow (2), or 5.
    """

    def __init__(self, weights: dict[str, LoadedWeights], device: str | torch.device = "auto",
                 extras: Sequence[str] = (), squeeze_crops: bool = True, precision: str = "fp32",
                 runtime: str = "auto") -> None:
        self.device = parse_device(device)
        check_precision(precision, self.device)
        self.runtime = choose_runtime(runtime, precision, self.device)
        self.models = {m: for_inference(create_model(w, stream=m), self.runtime, precision, self.device)
                       for m, w in weights.items()}
        self.labels = next(iter(weights.values())).labels
        self.dim = sum(model.feature_dim for model in self.models.values())
        if "mixed_5c" in extras and any(model.feature_map != "Mixed_5c" for model in self.models.values()):
            raise I3DError("--mixed-5c is the Inception network's last map; the ResNet-50 family has none "
                           "(its features are pooled from res5)")
        self.names = " and ".join(w.name for w in weights.values())
        self.extras, self.squeeze_crops = tuple(extras), squeeze_crops

    @torch.inference_mode()
    def run(self, clips: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Outputs for windows of equal length, each (T, crops, H, W, C); a window's crops run in the same batch.

        Outputs carry a crop axis (window, crops, ...) unless there is one crop (``squeeze_crops``).
        """
        crops = clips[0].shape[1]
        batch = stack_on(self.device, [loop_pad(clip[:, k], MIN_FRAMES) for clip in clips for k in range(crops)])
        x = network_input(batch)
        start, parts = 0, {"features": [], "logits": [], "mixed_5c": []}
        for modality, model in self.models.items():
            channels = 3 if modality == "rgb" else 2
            mixed_5c = model.extract_endpoints(x[:, start : start + channels], [model.feature_map])[model.feature_map]
            start += channels
            features = model.pooled_features(mixed_5c)
            parts["features"].append(features)
            if "logits" in self.extras:
                parts["logits"].append(model.forward_head(features))
            if "mixed_5c" in self.extras:
                parts["mixed_5c"].append(mixed_5c.mean(dim=(3, 4)).transpose(1, 2))
        outputs = {"features": torch.cat(parts["features"], dim=-1)}
        if parts["logits"]:
            outputs["logits"] = sum(parts["logits"])
        if parts["mixed_5c"]:
            outputs["mixed_5c"] = torch.cat(parts["mixed_5c"], dim=-1)
        arrays = {k: v.float().cpu().numpy() for k, v in outputs.items()}
        if not all(np.isfinite(v).all() for v in arrays.values()):
            raise I3DError(f"the weights {self.names} give non-finite features: the weights are damaged (check "
                           "them with `i3d weights verify`, or convert them again)")
        if crops == 1 and self.squeeze_crops:
            return [{k: v[i] for k, v in arrays.items()} for i in range(len(clips))]
        return [{k: v[i * crops : (i + 1) * crops] for k, v in arrays.items()} for i in range(len(clips))]
