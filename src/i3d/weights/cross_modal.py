"""Cross-modal initialisation: a flow network from RGB weights, for fine-tuning where no flow weights exist.

The first convolution's kernel is summed over the three colour channels and halved into each of the two
flow channels, so an input whose channels all carry the same image gets the same response from both
networks (a plain average, as TSN does, would scale it by 2/3). Every other tensor is copied.
"""

from __future__ import annotations

import torch

from i3d.networks.architecture import FIRST_CONV_WEIGHT


def flow_state_dict_from_rgb(rgb: dict[str, torch.Tensor], flow_channels: int = 2) -> dict[str, torch.Tensor]:
    state = {name: tensor.clone() for name, tensor in rgb.items()}
    kernel = rgb[FIRST_CONV_WEIGHT]
    summed = kernel.double().sum(dim=1, keepdim=True)
    state[FIRST_CONV_WEIGHT] = (summed / flow_channels).repeat(1, flow_channels, 1, 1, 1).to(kernel.dtype)
    return state
