"""The inflated ResNet-50 (Wang et al., "Non-local Neural Networks", CVPR 2018) in every published layout.

One module for PyTorchVideo's ``i3d_r50``, MMAction2's ``ResNet3d`` I3D configs and the Caffe2 models of
facebookresearch/video-nonlocal-net (which pytorch-resnet3d and the anomaly-detection features use): the
layouts differ only in what ``i3d.networks.architecture.ResNetLayout`` records. Inputs are (B, 3, T, H, W) RGB in
[-1, 1], as for the Inception network; the source's own normalisation is applied inside.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from i3d.networks.architecture import (
    RESNET_BLOCKS,
    RESNET_ENDPOINTS,
    RESNET_FEATURE_DIM,
    RESNET_WIDTHS,
    ResNetLayout,
)
from i3d.networks.inception import EndpointNetwork


class BatchNorm(nn.BatchNorm3d):
    """BatchNorm3d without the step counter: checkpoints of all three sources map onto the same tensors."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__(channels, eps=eps)
        self.register_buffer("num_batches_tracked", None)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        # BatchNorm's own loader inserts a step counter into the state dict; this one has none to load.
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args)


class ConvBn(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel, stride=1, padding=0, eps: float = 1e-5,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = BatchNorm(out_channels, eps)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class NonLocal(nn.Module):
    """The space-time non-local block: ``x + BN(out(attention(theta(x), phi(x)) g(x)))``.

    ``pool_first`` max-pools x (1x2x2) before phi and g, as Caffe2 does; otherwise after them, as mmcv does.
    The Gaussian form compares x with itself (no theta, no phi), as mmcv's ``mode='gaussian'``.
    """

    def __init__(self, channels: int, layout: ResNetLayout) -> None:
        super().__init__()
        inner = channels // 2
        self.mode, self.scale, self.pool_first = layout.nonlocal_mode, layout.nonlocal_scale, layout.nonlocal_pool_first
        if self.mode != "gaussian":
            self.theta = nn.Conv3d(channels, inner, 1)
            self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.out = nn.Conv3d(inner, channels, 1, bias=layout.nonlocal_out_bias)
        self.bn = BatchNorm(channels, layout.bn_eps)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(x, (1, 2, 2), (1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if self.mode == "gaussian":
            theta, phi, g = x.flatten(2), self._pool(x).flatten(2), self._pool(self.g(x)).flatten(2)
        else:
            theta = self.theta(x).flatten(2)
            if self.pool_first:
                pooled = self._pool(x)
                phi, g = self.phi(pooled).flatten(2), self.g(pooled).flatten(2)
            else:
                phi, g = self._pool(self.phi(x)).flatten(2), self._pool(self.g(x)).flatten(2)
        affinity = theta.transpose(1, 2) @ phi  # (B, THW, THW')
        if self.mode == "dot_product":
            attention = affinity / affinity.shape[-1]
        else:
            if self.mode == "embedded_gaussian" and self.scale:
                affinity = affinity * theta.shape[1] ** -0.5
            attention = affinity.softmax(dim=-1)
        y = (g @ attention.transpose(1, 2)).view(b, g.shape[1], t, h, w)
        return x + self.bn(self.out(y))


class Bottleneck(nn.Module):
    """1x1 (or 3x1x1 where inflated), 1x3x3 (carrying the spatial stride), 1x1; projection shortcut."""

    def __init__(self, in_channels: int, width: int, stride: int, temporal_kernel: int, nonlocal_block: bool,
                 layout: ResNetLayout) -> None:
        super().__init__()
        eps, out_channels = layout.bn_eps, width * 4
        self.conv_a = ConvBn(in_channels, width, (temporal_kernel, 1, 1), 1, (temporal_kernel // 2, 0, 0), eps)
        self.conv_b = ConvBn(width, width, (1, 3, 3), (1, stride, stride), (0, 1, 1), eps)
        self.conv_c = ConvBn(width, out_channels, 1, eps=eps, relu=False)
        self.shortcut = (ConvBn(in_channels, out_channels, 1, (1, stride, stride), eps=eps, relu=False)
                         if stride != 1 or in_channels != out_channels else None)
        self.nonlocal_block = NonLocal(out_channels, layout) if nonlocal_block else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(x) if self.shortcut is not None else x
        x = F.relu(self.conv_c(self.conv_b(self.conv_a(x))) + residual)
        return self.nonlocal_block(x) if self.nonlocal_block is not None else x


def window_coverage(size: int, kernel: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(size,) weights w such that sum_x w[x] f[x] is the mean, over every stride-1 window of
    k = min(kernel, size) positions, of the window's mean: position x lies in c(x) of the n = size - k + 1
    windows, and w = c / (n k)."""
    position = torch.arange(size, device=device, dtype=dtype)
    extent = position[-1] + 1  # the size as a 0-d tensor: tensor arithmetic, where arithmetic on it would branch
    k = extent.clamp(max=kernel)
    n = extent - k + 1
    covered = torch.minimum(position, n - 1) - (position - (k - 1)).clamp(min=0) + 1
    return covered / (n * k)


class ResNet3d(EndpointNetwork):
    """The inflated ResNet-50 of one layout. ``forward`` maps (B, 3, T, H, W) in [-1, 1] to logits.

    Endpoints: stem, res2, res3, res4, res5, Logits (``final_endpoint`` builds up to one of them).
    ``forward_features`` gives the 2048-d clip feature the classifier sees.
    """

    feature_dim = RESNET_FEATURE_DIM
    feature_map = "res5"  # the endpoint the clip feature is pooled from

    def __init__(self, layout: ResNetLayout, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.0,
                 final_endpoint: str = "Logits") -> None:
        super().__init__()
        if final_endpoint not in RESNET_ENDPOINTS:
            raise ValueError(f"unknown endpoint {final_endpoint!r}; known: {', '.join(RESNET_ENDPOINTS)}")
        if in_channels != 3:
            raise ValueError("the ResNet-50 I3D family has RGB weights only (3 input channels)")
        self.layout, self.num_classes, self.in_channels = layout, num_classes, in_channels
        self.final_endpoint = final_endpoint
        self.endpoints = RESNET_ENDPOINTS[: RESNET_ENDPOINTS.index(final_endpoint) + 1]
        # [-1, 1] -> (x01 - mean) / std, as one per-channel affine map: x * scale + shift.
        std = torch.tensor(layout.std)
        self.register_buffer("input_scale", (0.5 / std).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((0.5 - torch.tensor(layout.mean)) / std).view(1, 3, 1, 1, 1),
                             persistent=False)
        self.stem = ConvBn(3, 64, layout.stem_kernel, layout.stem_stride, tuple(k // 2 for k in layout.stem_kernel),
                           layout.bn_eps)
        channels = 64
        for index, stage in enumerate(RESNET_ENDPOINTS[1:5]):
            if stage not in self.endpoints:
                break
            width = RESNET_WIDTHS[index]
            blocks = []
            for block in range(RESNET_BLOCKS[index]):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(Bottleneck(channels, width, stride, layout.temporal_kernels[index][block],
                                         bool(layout.nonlocal_blocks[index][block]), layout))
                channels = width * 4
            self.add_module(stage, nn.Sequential(*blocks))
        self.dropout = nn.Dropout(dropout)
        if "Logits" in self.endpoints:
            self.fc = nn.Linear(RESNET_FEATURE_DIM, num_classes)

    def _run(self, x: torch.Tensor, wanted: Iterable[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        wanted = set(wanted)
        last = max((self.endpoints.index(n) for n in wanted), default=len(self.endpoints) - 1)
        taken: dict[str, torch.Tensor] = {}
        layout = self.layout
        for name in self.endpoints[: last + 1]:
            if name == "stem":
                x = x * self.input_scale.to(x.dtype) + self.input_shift.to(x.dtype)
                x = F.max_pool3d(self.stem(x), layout.pool1_kernel, layout.pool1_stride, layout.pool1_padding)
            elif name == "Logits":
                x = self.fc(self.dropout(self.pooled_features(x)))
            else:
                x = getattr(self, name)(x)
                if name == "res2":
                    x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1))  # pool2: halves time after res2
            if name in wanted:
                taken[name] = x
        return x, taken

    def pooled_features(self, res5: torch.Tensor) -> torch.Tensor:
        """(B, 2048): the source's average pool over res5 (its kernel cut to res5's size), then the mean over
        the windows it leaves: a weighted sum of res5 whose weights are computed from its size, with no branch
        on the size, so ``torch.export`` records one graph for every clip size (the OpenVINO form's)."""
        pool = self.layout.head_pool
        if pool is None:
            return res5.mean(dim=(2, 3, 4))
        exact = torch.float64 if res5.dtype == torch.float64 else torch.float32
        time, height, width = (window_coverage(size, kernel, res5.device, exact)
                               for kernel, size in zip(pool, res5.shape[2:]))
        weighted = res5.to(exact) * time[:, None, None] * height[:, None] * width
        return weighted.sum(dim=(2, 3, 4)).to(res5.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 2048-d clip feature the classifier sees (res5, the source's pooling)."""
        return self.pooled_features(self.extract_endpoints(x, ["res5"])["res5"])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def temporal_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_classes, T') logits of each res5 time step (space averaged); their mean is ``forward``
        for a globally pooled layout."""
        res5 = self.extract_endpoints(x, ["res5"])["res5"].mean(dim=(3, 4))
        return torch.einsum("bft,cf->bct", res5, self.fc.weight) + self.fc.bias[:, None]

    def replace_logits(self, num_classes: int) -> None:
        """A freshly initialised classifier for ``num_classes`` (for fine-tuning)."""
        self.fc = nn.Linear(RESNET_FEATURE_DIM, num_classes).to(self.stem.conv.weight.device)
        self.num_classes = num_classes
