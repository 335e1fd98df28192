"""The fused PyTorch form: an inference-only rewrite of a trained network that computes the same function
faster on CPU and GPU, on any device PyTorch runs.

Three levers, each exact up to float rounding: BatchNorm folded into the preceding convolution (in float64,
then cast to the form's dtype); the three 1x1 convolutions that read an inception block's input merged into
one wider convolution; and channels-last 3D memory layout, which oneDNN's and cuDNN's convolutions prefer.
On CUDA every call runs without TF32 (``i3d.devices.exact_cuda_math``). ``fuse(model)`` makes it; it follows
``.to(device)`` and ``.to(dtype)`` like any module.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from i3d.devices import exact_cuda_math
from i3d.networks.inception import (
    MAX_POOLS,
    InceptionBlock,
    InceptionI3d,
    Unit3d,
    max_pool_same,
    same_padding,
)
from i3d.networks.resnet3d import ConvBn, NonLocal, ResNet3d
from i3d.runtimes.form import DTYPE_PRECISIONS, InferenceForm


def fold_unit(unit: Unit3d, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one convolution with its (scale-free) BatchNorm folded in: computed in float64,
    returned in ``dtype`` (default: the convolution's) on its device."""
    weight = unit.conv3d.weight.detach()
    dtype = dtype or weight.dtype
    bias = unit.conv3d.bias.detach() if unit.conv3d.bias is not None else weight.new_zeros(weight.shape[0])
    norm = unit.batch_norm
    if norm is not None:
        inv_std = torch.rsqrt(norm.running_var.double() + norm.eps)
        weight = weight.double() * inv_std.view(-1, 1, 1, 1, 1)
        bias = norm.bias.double() - norm.running_mean.double() * inv_std
    return weight.to(dtype), bias.to(dtype)


class FoldedConv(nn.Module):
    """Convolution + bias (+ ReLU) with TF "SAME" padding resolved per input size."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: tuple[int, ...], relu: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.stride, self.relu = stride, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], self.weight.shape[2:], self.stride)]
        if all(lo == hi for lo, hi in pads):
            y = F.conv3d(x, self.weight, self.bias, self.stride, padding=tuple(lo for lo, _ in pads))
        else:
            flat = [p for lo_hi in reversed(pads) for p in lo_hi]
            y = F.conv3d(F.pad(x, flat), self.weight, self.bias, self.stride)
        return F.relu_(y) if self.relu else y

    @classmethod
    def from_units(cls, *units: Unit3d, dtype: torch.dtype | None = None) -> FoldedConv:
        folded = [fold_unit(u, dtype) for u in units]
        return cls(torch.cat([w for w, _ in folded]), torch.cat([b for _, b in folded]), units[0].stride,
                   units[0].relu)


def fast_max_pool(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """TF "SAME" max-pool without the padded copy.

    TF pads the odd pixel after; with a stride above 1 that is exactly ``padding=before`` with
    ``ceil_mode`` (the padding being implicit -inf). A purely spatial pool on a channels-last tensor runs
    as PyTorch's 2D pool over (B*T, C, H, W), several times faster than the 3D one.
    """
    pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride)]
    if any(lo != hi and s == 1 for (lo, hi), s in zip(pads, stride)):  # ceil_mode cannot express it
        return max_pool_same(x, kernel, stride)
    before = tuple(lo for lo, _ in pads)
    if kernel[0] == stride[0] == 1 and x.is_contiguous(memory_format=torch.channels_last_3d):
        batch, channels, frames, height, width = x.shape
        images = x.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        pooled = F.max_pool2d(images, kernel[1:], stride[1:], before[1:], ceil_mode=True)
        pooled = pooled.reshape(batch, frames, channels, *pooled.shape[2:]).permute(0, 2, 1, 3, 4)
        return pooled.contiguous(memory_format=torch.channels_last_3d)
    return F.max_pool3d(x, kernel, stride, before, ceil_mode=True)


class FastInception(nn.Module):
    def __init__(self, block: InceptionBlock, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        heads = [block.Branch_0.Conv3d_0a_1x1, block.Branch_1.Conv3d_0a_1x1, block.Branch_2.Conv3d_0a_1x1]
        self.split = [u.conv3d.out_channels for u in heads]
        self.heads = FoldedConv.from_units(*heads, dtype=dtype)
        self.branch_1 = FoldedConv.from_units(block.Branch_1.Conv3d_0b_3x3, dtype=dtype)
        self.branch_2 = FoldedConv.from_units(block.Branch_2.Conv3d_0b_3x3, dtype=dtype)
        self.branch_3 = FoldedConv.from_units(block.Branch_3.Conv3d_0b_1x1, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) else None
        b0, b1, b2 = (b.contiguous(memory_format=layout or torch.contiguous_format)
                      for b in torch.split(self.heads(x), self.split, dim=1))
        branches = [b0, self.branch_1(b1), self.branch_2(b2), self.branch_3(fast_max_pool(x, (3, 3, 3), (1, 1, 1)))]
        if layout is None:
            return torch.cat(branches, dim=1)
        # torch.cat would return a channels-first tensor; writing into slices keeps channels-last.
        shape = (x.shape[0], sum(b.shape[1] for b in branches), *x.shape[2:])
        out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)
        start = 0
        for branch in branches:
            out[:, start : start + branch.shape[1]] = branch
            start += branch.shape[1]
        return out


class FusedI3d(InferenceForm):
    """The fused form of an ``InceptionI3d``: same inputs, outputs and endpoints; inference only.

    The convolutions run in the form's dtype (``precision``), the classifier in the network's own: fused in
    bf16 from a float32 network, bf16 convolutions feed a float32 classifier. Outputs come back in the
    input's dtype, so float32 in gives float32 out.
    """

    runtime = "fused"

    def __init__(self, model: InceptionI3d, channels_last: bool = True, compute_dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__(model)
        self.channels_last = channels_last
        compute_dtype = compute_dtype or next(model.parameters()).dtype
        self.layers = nn.ModuleDict()
        for name in self.endpoints:
            layer = getattr(model, name, None)
            if isinstance(layer, Unit3d):
                self.layers[name] = FoldedConv.from_units(layer, dtype=compute_dtype)
            elif isinstance(layer, InceptionBlock):
                self.layers[name] = FastInception(layer, dtype=compute_dtype)
        self.logits = copy.deepcopy(model.Logits).eval() if "Logits" in self.endpoints else None
        self.requires_grad_(False)
        self.eval()

    @property
    def compute_dtype(self) -> torch.dtype:
        return next(self.layers.parameters()).dtype

    @property
    def precision(self) -> str:
        return DTYPE_PRECISIONS.get(self.compute_dtype, str(self.compute_dtype))

    def _run(self, x: torch.Tensor, wanted: set[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        source = x.dtype
        with exact_cuda_math(x.device):
            x, taken = self._run_layers(x.to(self.compute_dtype), wanted)
        return x.to(source), {name: t.to(source) for name, t in taken.items()}

    def _run_layers(self, x: torch.Tensor, wanted: set[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        last = max((self.endpoints.index(n) for n in wanted), default=len(self.endpoints) - 1)
        taken = {}
        for name in self.endpoints[: last + 1]:
            if name in self.layers:
                x = self.layers[name](x)
            elif name in MAX_POOLS:
                x = fast_max_pool(x, *MAX_POOLS[name])
            elif name == "Logits":
                x = self.logits(x.to(self.logits.Conv3d_0c_1x1.conv3d.weight.dtype))
            else:
                x = torch.softmax(x, dim=-1)
            if name in wanted:
                taken[name] = x
        return x, taken

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, set())[0]

    def extract_endpoints(self, x: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        names = list(names)
        unknown = [n for n in names if n not in self.endpoints]
        if unknown:
            raise ValueError(f"endpoints {unknown} not in this network")
        return {n: t.contiguous() for n, t in self._run(x, set(names))[1].items()}

    def pooled_features(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        head = self.logits.Conv3d_0c_1x1.conv3d.weight.dtype
        return self.logits.features(mixed_5c.to(head)).to(mixed_5c.dtype)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        head = self.logits.Conv3d_0c_1x1.conv3d.weight.dtype
        return self.logits.head(features.to(head)).to(features.dtype)


class FusedResNet(InferenceForm):
    """The fused form of a ``ResNet3d``: every BatchNorm folded into the convolution before it (running
    statistics), weights in the form's dtype, channels-last memory; in and out in the input's dtype."""

    runtime = "fused"

    def __init__(self, model: ResNet3d, channels_last: bool = True, compute_dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__(model)
        network = copy.deepcopy(model).eval()
        for module in list(network.modules()):
            pairs = [(module, "conv", "bn")] if isinstance(module, ConvBn) else \
                [(module, "out", "bn")] if isinstance(module, NonLocal) else []
            for owner, conv_name, bn_name in pairs:
                setattr(owner, conv_name, _folded_conv(getattr(owner, conv_name), getattr(owner, bn_name)))
                setattr(owner, bn_name, nn.Identity())
        if compute_dtype is not None:
            network = network.to(compute_dtype)
        if channels_last:
            network = network.to(memory_format=torch.channels_last_3d)
        self.network, self.channels_last = network, channels_last
        self.requires_grad_(False)
        self.eval()

    @property
    def precision(self) -> str:
        dtype = self.network.stem.conv.weight.dtype
        return DTYPE_PRECISIONS.get(dtype, str(dtype))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.network.stem.conv.weight.dtype)
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with exact_cuda_math(x.device):
            return self.network._run(self._prepare(x))[0].to(x.dtype)

    def extract_endpoints(self, x: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        with exact_cuda_math(x.device):
            taken = self.network.extract_endpoints(self._prepare(x), names)
        return {k: v.to(x.dtype).contiguous() for k, v in taken.items()}

    def pooled_features(self, res5: torch.Tensor) -> torch.Tensor:
        return self.network.pooled_features(res5)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.network.forward_head(features.to(self.network.fc.weight.dtype)).to(features.dtype)


def _folded_conv(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> nn.Conv3d:
    """``conv`` followed by ``bn`` (running statistics) as one convolution, the fold computed in float64."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    folded = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       bias=True).to(device=conv.weight.device, dtype=conv.weight.dtype)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(bn.running_mean, dtype=torch.float64)
    with torch.no_grad():
        folded.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1, 1))
        folded.bias.copy_((bias - bn.running_mean.double()) * scale + bn.bias.double())
    return folded


COMPUTE_DTYPES = {name: dtype for dtype, name in DTYPE_PRECISIONS.items()}  # fp32 -> torch.float32, ...


def fuse(model: InceptionI3d | ResNet3d, precision: str | None = None, channels_last: bool | None = None
         ) -> FusedI3d | FusedResNet:
    """The fused form of a trained network (its eval-mode function: running BatchNorm statistics), on the
    network's device; ``precision`` (fp32, bf16, fp16, fp64) is what its convolutions compute in (default:
    the network's dtype). Channels-last memory everywhere but Apple's MPS, which lacks 3D channels-last."""
    if precision is not None and precision not in COMPUTE_DTYPES:
        raise ValueError(f"the fused form computes in {', '.join(COMPUTE_DTYPES)}, not {precision!r}")
    dtype = COMPUTE_DTYPES[precision] if precision else None
    if channels_last is None:
        channels_last = next(model.parameters()).device.type != "mps"
    if isinstance(model, ResNet3d):
        return FusedResNet(model, channels_last, dtype)
    return FusedI3d(model, channels_last, dtype)
