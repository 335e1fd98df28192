"""An inference-only rewrite of a trained I3D that computes the same function faster on CPU and GPU.

Three levers, each exact up to float rounding: BatchNorm folded into the preceding convolution (in
float64, then cast to the model's dtype); the three 1x1 convolutions that read an inception block's input
merged into one wider convolution; and channels-last 3D memory layout, which oneDNN's convolutions prefer.
``use_fused_inference(model)`` attaches it to a network, which then runs it whenever it is in eval mode
with autograd off; ``optimize_for_inference(model)`` gives the rewritten module itself.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from i3d.architecture import ResNetLayout
from i3d.model import BATCH_NORM_EPS, MAX_POOLS, InceptionBlock, InceptionI3d, Unit3d, max_pool_same, same_padding
from i3d.resnet3d import ResNet3d, fold_batch_norm


def fold_unit(unit: Unit3d, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one convolution with its (scale-free) BatchNorm folded in: computed in float64,
    returned in ``dtype`` (default: the convolution's) on its device."""
    weight = unit.conv3d.weight.detach()
    dtype = dtype or weight.dtype
    bias = unit.conv3d.bias.detach() if unit.conv3d.bias is not None else weight.new_zeros(weight.shape[0])
    norm = unit.batch_norm
    if norm is not None:
        inv_std = torch.rsqrt(norm.running_var.double() + BATCH_NORM_EPS)
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


class FastI3d(nn.Module):
    """Same inputs, outputs and endpoints as the ``InceptionI3d`` it was built from; inference only.

    ``compute_dtype`` (default: the model's) is what the convolutions run in: ``torch.bfloat16`` on a
    float32 model gives bf16 convolutions with the classifier still in float32; outputs come back in the
    input's dtype, so float32 in gives float32 out.
    """

    def __init__(self, model: InceptionI3d, channels_last: bool = True, compute_dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        self.endpoints, self.channels_last = model.endpoints, channels_last
        self.num_classes, self.in_channels = model.num_classes, model.in_channels
        self.compute_dtype = compute_dtype or next(model.parameters()).dtype
        self.layers = nn.ModuleDict()
        for name in self.endpoints:
            layer = getattr(model, name, None)
            if isinstance(layer, Unit3d):
                self.layers[name] = FoldedConv.from_units(layer, dtype=self.compute_dtype)
            elif isinstance(layer, InceptionBlock):
                self.layers[name] = FastInception(layer, dtype=self.compute_dtype)
        self.logits = copy.deepcopy(model.Logits) if "Logits" in self.endpoints else None
        self.head_dtype = next(model.parameters()).dtype  # the classifier stays in the model's own dtype
        self.eval()

    def _run(self, x: torch.Tensor, wanted: set[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        source = x.dtype
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
                x = self.logits(x.to(self.head_dtype))
            else:
                x = torch.softmax(x, dim=-1)
            if name in wanted:
                taken[name] = x
        return x, taken

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, set())[0]

    def extract_endpoints(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        unknown = [n for n in names if n not in self.endpoints]
        if unknown:
            raise ValueError(f"endpoints {unknown} not in this network")
        return {n: t.contiguous() for n, t in self._run(x, set(names))[1].items()}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.features(self._run(x, {"Mixed_5c"})[1]["Mixed_5c"])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits.head(features)


def optimize_for_inference(model: InceptionI3d | ResNet3d, channels_last: bool = True) -> nn.Module:
    """The fast inference form of ``model`` (eval-mode semantics: running BatchNorm statistics)."""
    if isinstance(model, ResNet3d):
        return fold_batch_norm(model, None, channels_last)
    return FastI3d(model, channels_last)


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class FusedInference:
    """The fused form of one network, built on first use and rebuilt whenever any parameter or buffer
    changed (replaced, moved to another device or dtype, or written in place: tensor version counters),
    so it never computes with stale weights. ``compute_dtype`` None follows the model's dtype."""

    def __init__(self, compute_dtype: torch.dtype | None = None) -> None:
        self.compute_dtype = compute_dtype
        self.cached: tuple[tuple, FastI3d] | None = None

    @staticmethod
    def fingerprint(model: InceptionI3d) -> tuple | None:
        """Identity, version counter, storage, device and dtype of every weight; None if one cannot say (an
        inference tensor, made under ``torch.inference_mode``, keeps no version counter)."""
        tensors = [*model.parameters(), *model.buffers()]
        if any(t.is_inference() for t in tensors):
            return None
        return tuple((id(t), t._version, t.data_ptr(), t.device, t.dtype) for t in tensors)

    def __call__(self, model: InceptionI3d) -> FastI3d | None:
        fingerprint = self.fingerprint(model)
        if fingerprint is None:
            return None
        if self.cached is None or self.cached[0] != fingerprint:
            channels_last = next(model.parameters()).device.type != "mps"
            form = (fold_batch_norm(model, self.compute_dtype, channels_last) if isinstance(model, ResNet3d)
                    else FastI3d(model, channels_last, self.compute_dtype))
            self.cached = (fingerprint, form)
        return self.cached[1]

    def __deepcopy__(self, memo: dict) -> FusedInference:
        return FusedInference(self.compute_dtype)  # a copy of the model has weights of its own


def use_fused_inference(model: InceptionI3d, enabled: bool = True, precision: str | None = None) -> InceptionI3d:
    """Make ``model`` run its fused form in eval mode with autograd off (``model.fast_inference``); the
    plain form stays for training, gradients, tracing and export. Returns the model.

    ``precision`` (fp32, bf16, fp16) is what the convolutions compute in, whatever the model's dtype; None
    follows the model (``model.to(torch.bfloat16)`` then computes in bf16). Inputs and outputs keep their
    dtype either way. Which precision a device runs usefully is ``i3d.devices.check_precision``'s to say.
    """
    model.__dict__.pop("_detached_form", None)
    if enabled:  # not a submodule: not in state_dict, not moved by .to()
        model.__dict__["inference_form"] = FusedInference(PRECISIONS[precision] if precision else None)
    else:
        model.__dict__.pop("inference_form", None)
    return model


def gflops_per_clip(frames: int = 79, size: int = 224, in_channels: int = 3, layout: ResNetLayout | None = None
                    ) -> float:
    """Multiply-adds x 2 of every convolution, counted by hooks on a meta-device run (no real compute), of the
    Inception network, or of the ResNet-50 of ``layout``."""
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        weight = module.weight
        total += 2 * output.numel() * math.prod(weight.shape[1:])

    with torch.device("meta"):
        model = InceptionI3d(in_channels=in_channels) if layout is None else ResNet3d(layout)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv3d)]
    model(torch.empty(1, in_channels, frames, size, size, device="meta"))
    for handle in handles:
        handle.remove()
    return total / 1e9
