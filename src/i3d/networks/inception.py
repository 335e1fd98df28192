"""Inception-v1 I3D (Carreira & Zisserman, CVPR 2017), layer for layer as DeepMind's Sonnet reference.

Module and parameter names follow the reference variable scopes (``Mixed_4b.Branch_1.Conv3d_0b_3x3``),
so every checkpoint converter is a plain name map. Inputs are ``(B, C, T, H, W)`` in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from i3d.networks.architecture import (
    BATCH_NORM_EPS,
    BATCH_NORM_MOMENTUM,
    ENDPOINTS,
    FEATURE_DIM,
    INCEPTION_CHANNELS,
    MAX_POOLS,
    MIN_FRAMES,
)

__all__ = ["ENDPOINTS", "FEATURE_DIM", "INCEPTION_CHANNELS", "MAX_POOLS", "MIN_FRAMES", "InceptionI3d",
           "Unit3d", "InceptionBlock", "EndpointNetwork", "BatchNormNoScale", "avg_pool3d", "max_pool_same", "pad_same",
           "same_padding"]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding along one axis: (before, after); the odd pixel goes after.

    Integer arithmetic only (floor division, no modulo), without a comparison where ``kernel >= stride``
    (every layer of I3D), so the same code exports with symbolic sizes (any frames, height and width).
    """
    # (ceil(size / stride) - 1) * stride + kernel - size, by floor division of positive numbers alone: no
    # modulo, and no negative numerator (ONNX's integer division truncates where Python's floors)
    total = kernel - 1 if stride == 1 else ((size + stride - 1) // stride - 1) * stride + kernel - size
    if kernel < stride:
        total = max(total, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], value: float | None = 0.0) -> torch.Tensor:
    """Pad a (B, C, T, H, W) tensor as TF "SAME" would before a VALID conv or pool; ``value`` None repeats
    the edge."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        pads.extend(same_padding(size, k, s))
    if all(isinstance(p, int) and p == 0 for p in pads):  # a symbolic pad (export) is always applied
        return x
    return F.pad(x, pads, mode="replicate") if value is None else F.pad(x, pads, value=value)


def max_pool_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Max-pool with TF "SAME" padding (which pads with -inf, so padding never wins a max). The edge is repeated
    instead: SAME pads less than a kernel, so every window holding padding also holds the edge it repeats,
    and each max is the same. Unlike -inf, an edge survives int8 quantisation (OpenVINO 2026.4 failed to
    compile the int8 network at most frame counts on the -inf pad)."""
    return F.max_pool3d(pad_same(x, kernel, stride, value=None), kernel, stride)


def avg_pool3d(x: torch.Tensor, kernel: Sequence[int], stride: int = 1) -> torch.Tensor:
    """``F.avg_pool3d``, also for bfloat16 and float16 on the CPU, which has no such kernel for them: there
    the pool runs in float32 (exact for a mean of at most a few hundred values) and returns the input's dtype."""
    if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
        return F.avg_pool3d(x.float(), kernel, stride=stride).to(x.dtype)
    return F.avg_pool3d(x, kernel, stride=stride)


class BatchNormNoScale(nn.Module):
    """Sonnet's BatchNorm as I3D uses it: a learnt offset, no scale, eps 1e-3 (``eps`` is a plain attribute: the
    VideoGPT family's FVD runs the same weights with PyTorch's 1e-5)."""

    def __init__(self, channels: int, eps: float = BATCH_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, None, self.bias,
            self.training, BATCH_NORM_MOMENTUM, self.eps,
        )


class Unit3d(nn.Module):
    """Conv3d with TF "SAME" padding, then BatchNorm and ReLU (the reference's ``Unit3D``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int] = (1, 1, 1),
        stride: Sequence[int] = (1, 1, 1),
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=bias)
        self.batch_norm = BatchNormNoScale(out_channels) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        return F.relu(x) if self.relu else x


class Branch(nn.Sequential):
    """One branch of an inception block; a Sequential so parameter names read ``Branch_1.Conv3d_0b_3x3``."""


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; maxpool->1x1) concatenated on channels."""

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = channels
        self.Branch_0 = Branch()
        self.Branch_0.add_module("Conv3d_0a_1x1", Unit3d(in_channels, c0))
        self.Branch_1 = Branch()
        self.Branch_1.add_module("Conv3d_0a_1x1", Unit3d(in_channels, c1a))
        self.Branch_1.add_module("Conv3d_0b_3x3", Unit3d(c1a, c1b, (3, 3, 3)))
        self.Branch_2 = Branch()
        self.Branch_2.add_module("Conv3d_0a_1x1", Unit3d(in_channels, c2a))
        self.Branch_2.add_module("Conv3d_0b_3x3", Unit3d(c2a, c2b, (3, 3, 3)))
        self.Branch_3 = Branch()
        self.Branch_3.add_module("Conv3d_0b_1x1", Unit3d(in_channels, c3))
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(pooled)], dim=1)


class Logits(nn.Module):
    """2x7x7 VALID average pool, dropout, 1x1x1 conv with bias, averaged over time.

    The conv is linear, so averaging the pooled map first gives the same logits and exposes the 1024-d
    clip feature: ``logits == feature @ W.T + b``. Inputs larger than 224 also average over space.
    """

    def __init__(self, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.Conv3d_0c_1x1 = Unit3d(FEATURE_DIM, num_classes, batch_norm=False, relu=False, bias=True)

    def _pooled(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        # An exported graph states its minimum sizes instead (i3d.networks.architecture MIN_FRAMES, MIN_SIZE).
        if not torch.compiler.is_compiling() and (mixed_5c.shape[2] < 2 or min(mixed_5c.shape[3:]) < 7):
            raise ValueError(f"Mixed_5c map {tuple(mixed_5c.shape[2:])} is smaller than the 2x7x7 pool")
        return self.dropout(avg_pool3d(mixed_5c, (2, 7, 7)))

    def features(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        return self._pooled(mixed_5c).mean(dim=(2, 3, 4))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        conv = self.Conv3d_0c_1x1.conv3d
        return F.linear(features, conv.weight.flatten(1), conv.bias)

    def forward(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(mixed_5c))

    def per_time(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        """(B, num_classes, T') logits before the mean over time, for per-frame (Charades) training."""
        pooled = self._pooled(mixed_5c).mean(dim=(3, 4))
        conv = self.Conv3d_0c_1x1.conv3d
        return torch.einsum("bft,cf->bct", pooled, conv.weight.flatten(1)) + conv.bias[:, None]


class EndpointNetwork(nn.Module):
    """What both network families share: ``forward`` and ``extract_endpoints`` over their ``_run(x, wanted)``.
    The same code runs in every mode, dtype and device; faster forms are separate objects (``i3d.runtimes``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def extract_endpoints(self, x: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs of the named endpoints, computing only as far as the deepest one."""
        names = list(names)
        unknown = [n for n in names if n not in self.endpoints]
        if unknown:
            raise ValueError(f"endpoints {unknown} not in this network (built up to {self.final_endpoint})")
        return self._run(x, names)[1]


class InceptionI3d(EndpointNetwork):
    """The I3D network. ``forward`` maps (B, C, T, H, W) in [-1, 1] to logits (B, num_classes).

    ``final_endpoint`` builds the network only up to that endpoint (as the reference does);
    ``forward`` then returns that endpoint's output.

    A plain ``nn.Module``: ``.to(dtype)`` (float64, float32, bfloat16, float16), ``.to(device)``, train and
    eval, autograd on or off all run this same code. ``i3d.runtimes`` makes faster inference-only forms of it.
    """

    feature_dim = FEATURE_DIM
    feature_map = "Mixed_5c"  # the endpoint the clip feature is pooled from

    def __init__(
        self,
        num_classes: int = 400,
        in_channels: int = 3,
        dropout: float = 0.0,
        final_endpoint: str = "Logits",
    ) -> None:
        super().__init__()
        if final_endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {final_endpoint!r}; known: {', '.join(ENDPOINTS)}")
        self.num_classes, self.in_channels, self.final_endpoint = num_classes, in_channels, final_endpoint
        self.endpoints = ENDPOINTS[: ENDPOINTS.index(final_endpoint) + 1]
        channels = in_channels
        for name in self.endpoints:
            if name == "Conv3d_1a_7x7":
                layer, channels = Unit3d(channels, 64, (7, 7, 7), (2, 2, 2)), 64
            elif name == "Conv3d_2b_1x1":
                layer, channels = Unit3d(channels, 64), 64
            elif name == "Conv3d_2c_3x3":
                layer, channels = Unit3d(channels, 192, (3, 3, 3)), 192
            elif name in INCEPTION_CHANNELS:
                layer = InceptionBlock(channels, INCEPTION_CHANNELS[name])
                channels = layer.out_channels
            elif name == "Logits":
                layer = Logits(num_classes, dropout)
            else:  # max-pools and Predictions hold no parameters
                continue
            self.add_module(name, layer)

    def _run(self, x: torch.Tensor, wanted: Iterable[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        wanted = set(wanted)
        last = max((self.endpoints.index(n) for n in wanted), default=len(self.endpoints) - 1)
        taken: dict[str, torch.Tensor] = {}
        for name in self.endpoints[: last + 1]:
            if name in MAX_POOLS:
                x = max_pool_same(x, *MAX_POOLS[name])
            elif name == "Predictions":
                x = torch.softmax(x, dim=-1)
            else:
                x = getattr(self, name)(x)
            if name in wanted:
                taken[name] = x
        return x, taken

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1024-d clip feature the logits layer sees (Mixed_5c, 2x7x7 pool, mean over time)."""
        return self.Logits.features(self.extract_endpoints(x, ["Mixed_5c"])["Mixed_5c"])

    def pooled_features(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        """(B, 1024) from the Mixed_5c map: what ``forward_features`` returns."""
        return self.Logits.features(mixed_5c)

    def temporal_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_classes, T') logits, one per 8 input frames less one; their mean over time is ``forward``."""
        return self.Logits.per_time(self.extract_endpoints(x, ["Mixed_5c"])["Mixed_5c"])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.Logits.head(features)

    @property
    def batch_norm_eps(self) -> float:
        """The epsilon every BatchNorm of the network adds to the variance (1e-3, as trained)."""
        return next(m.eps for m in self.modules() if isinstance(m, BatchNormNoScale))

    @batch_norm_eps.setter
    def batch_norm_eps(self, eps: float) -> None:
        for module in self.modules():
            if isinstance(module, BatchNormNoScale):
                module.eps = eps

    def replace_logits(self, num_classes: int) -> None:
        """A freshly initialised classifier for ``num_classes`` (for fine-tuning)."""
        self.Logits.Conv3d_0c_1x1 = Unit3d(FEATURE_DIM, num_classes, batch_norm=False, relu=False, bias=True)
        self.num_classes = num_classes
