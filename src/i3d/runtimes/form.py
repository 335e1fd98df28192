"""What every inference form shares: it says what it is, carries the weights' record, and refuses training."""

from __future__ import annotations

import torch
from torch import nn

from i3d.errors import I3DError

DTYPE_PRECISIONS = {torch.float64: "fp64", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class InferenceForm(nn.Module):
    """An inference-only form of a trained network, made once from its weights (later changes to the network
    are not seen: convert again). Same inputs and outputs as the network: ``forward``, ``extract_endpoints``
    (for the endpoints the form computes), ``forward_features``, ``pooled_features``, ``forward_head``."""

    runtime = "?"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.endpoints, self.final_endpoint = list(model.endpoints), model.final_endpoint
        self.num_classes, self.in_channels = model.num_classes, model.in_channels
        self.feature_dim, self.feature_map = model.feature_dim, model.feature_map
        self.labels = getattr(model, "labels", None)
        self.weights = getattr(model, "weights", None)  # the weights' record: name, file, sha256, recipe
        self.weights_meta = getattr(model, "weights_meta", None)
        self.architecture = type(model).__name__

    @property
    def precision(self) -> str:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def train(self, mode: bool = True) -> InferenceForm:
        if mode:
            raise I3DError(f"the {self.runtime} form is inference-only: train the plain network (i3d.create_model) "
                           "and convert it again")
        return super().train(False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The clip feature the classifier sees."""
        return self.pooled_features(self.extract_endpoints(x, [self.feature_map])[self.feature_map])

    def extra_repr(self) -> str:
        name = self.weights.name if self.weights is not None else "unnamed weights"
        return (f"{self.architecture}, runtime={self.runtime}, precision={self.precision}, device={self.device}, "
                f"weights={name}")

    def __repr__(self) -> str:  # one line: what runs, not every layer
        return f"{type(self).__name__}({self.extra_repr()})"
