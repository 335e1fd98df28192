"""Devices named by users: checked once, with one line saying what is wrong and what to use instead."""

from __future__ import annotations

import torch

from i3d.errors import I3DError


def parse_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps``...: refused if PyTorch does not know it or this machine lacks it."""
    if isinstance(device, torch.device):
        parsed = device
    else:
        try:
            parsed = torch.device(str(device))
        except RuntimeError:
            raise I3DError(f"--device {device}: not a device PyTorch knows (cpu, cuda, cuda:N, mps)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise I3DError(f"--device {device}: this machine has no CUDA device PyTorch can use "
                           f"(torch {torch.__version__}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise I3DError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices "
                           f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise I3DError(f"--device {device}: Apple's MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps", "xpu", "meta"):
        raise I3DError(f"--device {device}: this build of PyTorch cannot run I3D on {parsed.type}; use cpu or cuda")
    return parsed
