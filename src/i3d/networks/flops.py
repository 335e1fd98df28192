"""How much arithmetic a clip costs each network: the figure benchmarks set their speed against."""


from __future__ import annotations

import math

import torch
from torch import nn

from i3d.networks.architecture import ResNetLayout
from i3d.networks.inception import InceptionI3d
from i3d.networks.resnet3d import ResNet3d


def gflops_per_clip(frames: int = 79, size: int = 224, in_channels: int = 3, layout: ResNetLayout | None = None
                    ) -> float:
    """Multiply-adds x 2 of every convolution, counted by hooks on a meta-device run (no real compute), of the
    Inception network, or of the ResNet-50 of ``layout``."""
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += 2 * output.numel() * math.prod(module.weight.shape[1:])

    with torch.device("meta"):
        model = InceptionI3d(in_channels=in_channels) if layout is None else ResNet3d(layout)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv3d)]
    model(torch.empty(1, in_channels, frames, size, size, device="meta"))
    for handle in handles:
        handle.remove()
    return total / 1e9
