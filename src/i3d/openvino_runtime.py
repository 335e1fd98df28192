"""The network run by OpenVINO's CPU plugin, behind the same model object: the faster CPU runtime measured
(benchmarks/bench_precision.py; figures in the README), and the one int8 form (NNCF post-training
quantisation, calibrated on the sample videos).

``use_openvino_inference(model, precision)`` attaches it as the model's inference form: in eval mode with
autograd off, a model on the CPU runs the compiled network (logits and the Mixed_5c map, any batch, frame
count and frame size); anything else (training, gradients, another device, another endpoint) runs PyTorch.
The converted network is cached in ``$I3D_HOME/compiled/`` by a hash of the weights, the precision and the
OpenVINO version, so only the first process converts (seconds; int8 also calibrates, once).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from i3d.download import cache_dir, file_lock
from i3d.errors import I3DError, I3DNotice
from i3d.inference import PRECISIONS, FusedInference
from i3d.model import InceptionI3d

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def precision_hint(precision: str) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT, always named (its CPU plugin's default is bf16 where the CPU has
    it). int8: the layers NNCF left unquantised run in bf16 where the CPU has it natively, f32 elsewhere."""
    if precision == "int8":
        from i3d.devices import cpu_flags

        return "bf16" if {"avx512_bf16", "amx_bf16"} & cpu_flags() else "f32"
    return HINTS[precision]
CALIBRATION_FRAMES = 32
GRAPH = "edgepool"  # what the converted graph is, in cached files' names: max-pools pad with the edge (not -inf)


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class _Outputs(nn.Module):
    """What the compiled network returns: the logits and the Mixed_5c map (features are taken from it)."""

    def __init__(self, model: InceptionI3d) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.model.extract_endpoints(clips, [self.model.feature_map])[self.model.feature_map]
        return self.model.forward_head(self.model.pooled_features(feature_map)), feature_map


def weights_digest(model: InceptionI3d) -> str:
    digest = hashlib.sha256()
    layout = getattr(model, "layout", None)  # a ResNet-50's input normalisation is no tensor of its state
    digest.update(layout.to_json().encode() if layout is not None else b"inception-i3d")
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def calibration_clips(model: InceptionI3d) -> list[np.ndarray]:
    """32-frame clips of the sample videos by the published recipe (fetched on first use): what int8's
    activation ranges are measured on."""
    from i3d.video.preset import VideoTransform
    from i3d.video.recipe import recipe_for
    from i3d.video.samples import SAMPLES, sample_path

    transform = VideoTransform(recipe_for("rgb" if model.in_channels == 3 else "flow"))
    clips = []
    for name in SAMPLES:
        frames = np.stack(list(transform.frames(sample_path(name))))
        for start in range(0, len(frames) - CALIBRATION_FRAMES + 1, CALIBRATION_FRAMES):
            clips.append(frames[start : start + CALIBRATION_FRAMES].transpose(3, 0, 1, 2)[None].copy())
    return clips


def converted_network(model: InceptionI3d, precision: str) -> Path:
    """The model as OpenVINO IR (int8: quantised), converted on first use and cached; the .xml file."""
    import openvino

    version = openvino.__version__.split("-")[0]
    key = f"{weights_digest(model)}-{precision}-{model.in_channels}ch-{GRAPH}-openvino-{version}"
    folder = cache_dir() / "compiled"
    path = folder / f"{key}.xml"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / f".{key}.lock"):
        if path.exists():
            return path
        warnings.warn(f"converting the network for OpenVINO ({precision}), once for these weights"
                      + (" (int8: calibrating on the sample videos, about a minute)" if precision == "int8" else ""),
                      I3DNotice, stacklevel=4)
        plain = copy.deepcopy(model).eval()  # the plain network: no inference form of its own
        plain.__dict__.pop("inference_form", None)
        example = torch.zeros(1, model.in_channels, 16, 224, 224)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            network = openvino.convert_model(_Outputs(plain).eval(), example_input=example,
                                             input=[openvino.PartialShape([-1, model.in_channels, -1, -1, -1])])
        if precision == "int8":
            import logging

            import nncf

            logging.getLogger("nncf").setLevel(logging.ERROR)
            clips = calibration_clips(model)
            with _stdout_to_stderr():  # NNCF's progress bars: never into a command's output (predict --json)
                network = nncf.quantize(network, nncf.Dataset(clips), subset_size=len(clips),
                                        preset=nncf.QuantizationPreset.MIXED)
        partial = folder / f"{key}.partial.xml"
        openvino.save_model(network, str(partial), compress_to_fp16=False)
        partial.with_suffix(".bin").replace(path.with_suffix(".bin"))
        partial.replace(path)  # the .xml last: a reader never finds an .xml without its weights
    return path


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def compile_for_sizes(core, network, sizes: list[tuple[int, ...]], config: dict) -> object:
    """``network`` compiled on the CPU for inputs of these sizes (every axis but the batch, one per input).

    Should OpenVINO refuse a size (2026.4 refused the int8 network at most frame counts while the max-pools
    padded with -inf: its int8 Pad transformation threw), the network is compiled with its sizes free, as
    converted: the same function, its convolutions in f32 or bf16.
    """
    fixed = network.clone()
    fixed.reshape({port.any_name: [-1, *size] for port, size in zip(fixed.inputs, sizes)})
    try:
        return core.compile_model(fixed, "CPU", config)
    except RuntimeError:
        return core.compile_model(network, "CPU", config)


def convolutions_run_in(compiled) -> dict[str, int]:
    """How many convolutions of an OpenVINO compiled network run in each precision (f32, bf16, u8...), by
    OpenVINO's own account of the graph it compiled: what the precision asked for became."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            precision = info["runtimePrecision"].astype(str)
            counts[precision] = counts.get(precision, 0) + 1
    return counts


class CompiledNetwork(nn.Module):
    """The compiled network in the shape of the fused form: forward, extract_endpoints, forward_features.

    One compiled network per clip size (frames, height, width; any batch), the last ``SIZES_KEPT`` kept:
    with those fixed, OpenVINO folds the "SAME" padding into the convolutions and only then runs the int8
    network's convolutions in int8 (with the frame count free it ran them in bf16 or f32, quantisation
    error without int8's speed); bf16 and fp32 are faster too (4 x 16 frames: 0.65 s against 0.78 in fp32
    here), and compiling for one size takes 0.3-0.6 s against 2.5 s for any size.
    """

    SIZES_KEPT = 4

    def __init__(self, model: InceptionI3d, precision: str) -> None:
        super().__init__()
        import openvino

        self.model, self.precision = model, precision
        self.core = openvino.Core()
        self.network = self.core.read_model(str(converted_network(model, precision)))
        self.config = {"INFERENCE_PRECISION_HINT": precision_hint(precision),
                       "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        self.by_size: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self.lock = threading.Lock()  # calls from threads (a server's pool) take turns

    def compiled_for(self, size: tuple[int, ...]) -> object:
        """The network compiled for clips of ``size`` (frames, height, width), compiled on first use."""
        compiled = self.by_size.pop(size, None)
        if compiled is None:
            compiled = compile_for_sizes(self.core, self.network, [(self.model.in_channels, *size)], self.config)
        self.by_size[size] = compiled
        while len(self.by_size) > self.SIZES_KEPT:
            self.by_size.popitem(last=False)
        return compiled

    def convolutions_run_in(self, size: tuple[int, ...]) -> dict[str, int]:
        """``convolutions_run_in`` of the network compiled for clips of ``size`` (frames, height, width)."""
        with self.lock:
            return convolutions_run_in(self.compiled_for(size))

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.lock:
            results = self.compiled_for(tuple(x.shape[2:]))(x.detach().to(torch.float32).contiguous().numpy())
        logits, mixed_5c = (torch.from_numpy(np.array(results[i])).to(x.dtype) for i in (0, 1))
        return logits, mixed_5c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._outputs(x)[0]

    def extract_endpoints(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        if set(names) <= {self.model.feature_map, "Logits"}:
            logits, feature_map = self._outputs(x)
            return {name: logits if name == "Logits" else feature_map for name in names}
        return self.model._run(x, names)[1]  # other endpoints: PyTorch, as the model itself computes them

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.pooled_features(self._outputs(x)[1])


class OpenVinoInference:
    """The inference form that runs a CPU model through OpenVINO, rebuilt when a weight changes; on another
    device (or while a weight cannot be vouched for) the fused PyTorch form runs instead."""

    def __init__(self, precision: str) -> None:
        self.precision = precision
        self.cached: tuple[tuple, CompiledNetwork] | None = None
        self.fallback = FusedInference(PRECISIONS.get(precision))

    def __call__(self, model: InceptionI3d) -> nn.Module | None:
        fingerprint = FusedInference.fingerprint(model)
        if fingerprint is None or next(model.parameters()).device.type != "cpu" or model.final_endpoint != "Logits":
            return self.fallback(model)
        if self.cached is None or self.cached[0] != fingerprint:
            self.cached = (fingerprint, CompiledNetwork(model, self.precision))
        return self.cached[1]

    def __deepcopy__(self, memo: dict) -> OpenVinoInference:
        return OpenVinoInference(self.precision)


def use_openvino_inference(model: InceptionI3d, precision: str = "fp32") -> InceptionI3d:
    """Make ``model`` run through OpenVINO in eval mode with autograd off (see the module's docstring)."""
    if precision not in HINTS:
        raise I3DError(f"OpenVINO runs fp32, bf16 or int8, not {precision}")
    if not openvino_available():
        raise I3DError("the OpenVINO runtime needs OpenVINO: pip install 'i3d[openvino]'")
    model.__dict__.pop("_detached_form", None)
    model.__dict__["inference_form"] = OpenVinoInference(precision)
    return model
