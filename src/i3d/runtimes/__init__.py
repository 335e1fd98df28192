"""How a network is run: the one place a runtime is chosen and an inference form made.

Runtimes: ``eager`` (the plain network itself), ``fused`` (PyTorch, BatchNorm folded, channels-last: any
device), ``openvino`` (OpenVINO's CPU plugin: fp32, bf16, int8) and ``auto``: OpenVINO on a CPU, the fused
form elsewhere (which of the two is faster on a CPU depends on the CPU: docs/performance.md). Every form
takes the plain network's input, gives its output, and says what it is (``runtime``, ``precision``,
``device``, its repr).
"""

from __future__ import annotations

import torch
from torch import nn

from i3d.devices import check_precision, parse_device
from i3d.errors import I3DError
from i3d.settings import RUNTIMES


def choose_runtime(runtime: str, precision: str = "fp32", device: str | torch.device = "cpu") -> str:
    """The runtime ``runtime`` means for ``precision`` on ``device``: ``auto`` is OpenVINO on a CPU where it
    is installed (the faster CPU runtime, and the one int8 form), the fused PyTorch form elsewhere."""
    from i3d.runtimes.openvino import PRECISIONS as OPENVINO_PRECISIONS
    from i3d.runtimes.openvino import openvino_available

    if runtime not in RUNTIMES:
        raise I3DError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    on_cpu = parse_device(device).type == "cpu"
    if runtime == "auto":
        runtime = "openvino" if on_cpu and precision in OPENVINO_PRECISIONS and openvino_available() else "fused"
    if runtime == "openvino" and not on_cpu:
        raise I3DError("--runtime openvino runs on the CPU; on a GPU use --runtime fused (or auto)")
    if precision == "int8" and runtime != "openvino":
        raise I3DError("--precision int8 runs through OpenVINO (--runtime openvino or auto, on a CPU)")
    if runtime == "eager" and precision != "fp32":
        raise I3DError(f"--runtime eager is the plain network in float32; for {precision} use --runtime fused "
                       "(or move the plain network there yourself: model.to(torch.bfloat16))")
    return runtime


def for_inference(model: nn.Module, runtime: str = "auto", precision: str = "fp32",
                  device: str | torch.device | None = None) -> nn.Module:
    """The inference form of a trained network (eval-mode function) on ``device`` (default: the network's):
    the plain network itself (``eager``), its fused form, or its OpenVINO form, in ``precision``. A snapshot:
    convert again after changing the network's weights."""
    device = parse_device(device if device is not None else next(model.parameters()).device)
    check_precision(precision, device)
    runtime = choose_runtime(runtime, precision, device)
    if runtime == "eager":
        return model.to(device).eval()
    if runtime == "openvino":
        from i3d.runtimes.openvino import openvino_form

        return openvino_form(model.eval(), precision)
    from i3d.runtimes.fused import fuse

    return fuse(model.eval().to(device), precision)
