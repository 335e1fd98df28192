"""The OpenVINO form: a trained network compiled by OpenVINO's CPU plugin, the faster CPU runtime
(benchmarks/bench_precision.py) and the one int8 form (NNCF post-training quantisation, calibrated on the
sample videos).

``openvino_form(model, precision)`` makes it: it computes the logits and the feature map (any batch, frame
count and frame size) of float tensors on the CPU. The network reaches OpenVINO through ``torch.export``;
the converted network is cached in ``$I3D_HOME/compiled/`` by a hash of the weights, the precision and the
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
from i3d.networks.architecture import MIN_FRAMES, MIN_SIZE
from i3d.networks.inception import InceptionI3d
from i3d.runtimes.form import InferenceForm

PRECISIONS = ("fp32", "bf16", "int8")


def precision_hint(precision: str) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT, always named (its CPU plugin's default is bf16 where the CPU has
    it). int8: the layers NNCF left unquantised run in bf16 where the CPU has it natively, f32 elsewhere."""
    if precision == "int8":
        from i3d.devices import cpu_flags

        return "bf16" if {"avx512_bf16", "amx_bf16"} & cpu_flags() else "f32"
    return {"fp32": "f32", "bf16": "bf16"}[precision]


CALIBRATION_FRAMES = 32
GRAPH = "exported-edgepool"  # in cached files' names: converted from torch.export, max-pools padded with the edge


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
    digest.update(layout.to_json().encode() if layout is not None else f"inception-i3d eps {model.batch_norm_eps!r}"
                  .encode())  # the epsilon is no tensor of the state either (the VideoGPT family's FVD changes it)
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


class _WithWeights(nn.Module):
    """The network's outputs with every tensor of its state as an input after the clips: one converted graph
    then serves every set of weights of an architecture, each substituted in as constants (milliseconds)
    where converting a network takes seconds."""

    def __init__(self, model: InceptionI3d) -> None:
        super().__init__()
        self.outputs = _Outputs(model)
        self.names = list(self.outputs.state_dict())

    def forward(self, clips: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.func.functional_call(self.outputs, dict(zip(self.names, tensors)), (clips,))


_CORE = None


def openvino_core():
    """The process's one OpenVINO Core, with a tiny compiled network held until the process ends.

    oneTBB, OpenVINO's thread pool, destroys its hwloc view of the machine on a worker thread whenever its
    last user goes away (governor::release_resources), and does not build it again for the next user; at
    process exit that destruction races the libraries' static destructors. Either corrupts the heap on
    some machines ("free(): invalid next size", a SIGSEGV later in a long process): a predict run aborted at
    exit in 3 of 3 runs under glibc's malloc check, in 0 of 3 with a TBB user held for the whole process.
    Every OpenVINO use here goes through this function first, so that user exists before any other.
    """
    global _CORE
    if _CORE is None:
        import ctypes

        import numpy as np
        import openvino
        import openvino.opset13 as ops

        core = openvino.Core()
        value = ops.parameter([1], np.float32)
        keeper = core.compile_model(openvino.Model([ops.relu(value)], [value]), "CPU", {"INFERENCE_NUM_THREADS": 1})
        keeper(np.zeros(1, np.float32))  # its threads started: TBB has a user from now on
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(keeper))  # never freed, not even at interpreter exit
        _CORE = core
    return _CORE


def _save_atomically(network, folder: Path, key: str) -> Path:
    import openvino

    path, partial = folder / f"{key}.xml", folder / f"{key}.partial.xml"
    openvino.save_model(network, str(partial), compress_to_fp16=False)
    partial.with_suffix(".bin").replace(path.with_suffix(".bin"))
    partial.replace(path)  # the .xml last: a reader never finds an .xml without its weights
    return path


def architecture_key(model: InceptionI3d) -> str:
    """What the converted graph depends on besides the weights' values: the network, its classes, channels and
    BatchNorm epsilon (no tensor of the state), the graph's form and OpenVINO's version."""
    import openvino

    layout = getattr(model, "layout", None)
    network = (f"resnet-{hashlib.sha256(layout.to_json().encode()).hexdigest()[:12]}" if layout is not None
               else f"inception-eps{model.batch_norm_eps:g}")
    version = openvino.__version__.split("-")[0]
    return f"graph-{network}-{model.num_classes}cls-{model.in_channels}ch-{GRAPH}-openvino-{version}"


def converted_graph(model: InceptionI3d) -> Path:
    """The architecture's graph as OpenVINO IR, its weights as inputs: converted from ``torch.export`` once per
    architecture and cached; the .xml file."""
    import openvino

    key = architecture_key(model)
    folder = cache_dir() / "compiled"
    path = folder / f"{key}.xml"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / f".{key}.lock"):
        if path.exists():
            return path
        warnings.warn("converting the network for OpenVINO, once for its architecture (seconds)", I3DNotice,
                      stacklevel=5)
        openvino_core()  # before OpenVINO's first use in the process
        holder = _WithWeights(copy.deepcopy(model).float().eval())
        try:
            program = exported_program(holder, model.in_channels,
                                       [t.float() for t in holder.outputs.state_dict().values()])
            with warnings.catch_warnings():  # torch's own deprecation notes while OpenVINO reads the program
                warnings.simplefilter("ignore")
                network = openvino.convert_model(program)
        except Exception as error:  # noqa: BLE001 (torch.export's and OpenVINO's many kinds): said in one line
            reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise I3DError(f"OpenVINO could not convert the {type(model).__name__} network with torch "
                           f"{torch.__version__} ({reason[:160]}); use --runtime fused") from None
        return _save_atomically(network, folder, key)


def network_with_weights(model: InceptionI3d, core) -> object:
    """The architecture's converted graph with this model's tensors substituted for its weight inputs."""
    import openvino

    network = core.read_model(str(converted_graph(model)))
    tensors = [t.detach().float().cpu().contiguous().numpy() for t in model.state_dict().values()]
    parameters = list(network.get_parameters())
    if len(parameters) != len(tensors) + 1:
        raise I3DError(f"{converted_graph(model)}: a graph of {len(parameters) - 1} weights for a network of "
                       f"{len(tensors)}; delete it to convert again")
    for parameter, values in zip(parameters[1:], tensors):
        if not parameter.get_partial_shape().compatible(openvino.PartialShape(list(values.shape))):
            raise I3DError(f"{converted_graph(model)}: its weights' shapes differ from the network's; delete it to "
                           "convert again")
        constant = openvino.op.Constant(values)
        for target in list(parameter.output(0).get_target_inputs()):
            target.replace_source_output(constant.output(0))
        network.remove_parameter(parameter)
    network.validate_nodes_and_infer_types()
    return network


def converted_network(model: InceptionI3d, precision: str, core) -> object:
    """The model for OpenVINO: the architecture's graph with these weights (fp32, bf16), quantised and cached
    per weights for int8 (NNCF's calibration on the sample videos takes a minute, once)."""
    network = network_with_weights(model, core)
    if precision != "int8":
        return network
    import openvino

    version = openvino.__version__.split("-")[0]
    key = f"{weights_digest(model)}-int8-{model.in_channels}ch-{GRAPH}-openvino-{version}"
    folder = cache_dir() / "compiled"
    path = folder / f"{key}.xml"
    if not path.exists():
        with file_lock(folder / f".{key}.lock"):
            if not path.exists():
                import logging

                import nncf

                warnings.warn("quantising the network to int8, once for these weights (calibrating on the sample "
                              "videos, about a minute)", I3DNotice, stacklevel=4)
                logging.getLogger("nncf").setLevel(logging.ERROR)
                clips = calibration_clips(model)
                with _stdout_to_stderr():  # NNCF's progress bars: never into a command's output (predict --json)
                    network = nncf.quantize(network, nncf.Dataset(clips), subset_size=len(clips),
                                            preset=nncf.QuantizationPreset.MIXED)
                _save_atomically(network, folder, key)
    return core.read_model(str(path))


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


class OpenVinoForm(InferenceForm):
    """The network compiled by OpenVINO in the shape of the network: forward, extract_endpoints (logits and the
    feature map), forward_features, pooled_features, forward_head. Float tensors on the CPU in, float32
    computed (fp32), bf16 or int8 inside, the input's dtype out; it follows no ``.to()`` that would change
    that, and says so.

    One compiled network per clip size (frames, height, width; any batch), the last ``SIZES_KEPT`` kept:
    with those fixed, OpenVINO folds the "SAME" padding into the convolutions and only then runs the int8
    network's convolutions in int8 (with the frame count free it ran them in bf16 or f32); bf16 and fp32 are
    faster too, and compiling for one size takes a fraction of a second against seconds for any size.
    """

    runtime = "openvino"
    SIZES_KEPT = 4

    def __init__(self, model: InceptionI3d, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise I3DError(f"OpenVINO runs fp32, bf16 or int8, not {precision}")
        if not openvino_available():
            raise I3DError("the OpenVINO runtime needs OpenVINO: pip install openvino")
        if model.final_endpoint != "Logits":
            raise I3DError("the OpenVINO form is of a whole network (built up to its Logits); use the fused form "
                           "(runtime='fused') for a truncated one")
        super().__init__(model)
        self.network = copy.deepcopy(model).float().cpu().eval()  # its head: features and logits from the map
        self.network.requires_grad_(False)
        self._precision = precision
        self.core = openvino_core()
        self.converted = converted_network(self.network, precision, self.core)
        self.config = {"INFERENCE_PRECISION_HINT": precision_hint(precision),
                       "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        self.by_size: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self.lock = threading.Lock()  # calls from threads (a server's pool) take turns
        self.eval()

    @property
    def precision(self) -> str:
        return self._precision

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _apply(self, fn, recurse: bool = True) -> OpenVinoForm:
        """``.to()``, ``.cuda()``, ``.half()``...: a no-op where nothing would change, else one line."""
        try:
            probe = fn(torch.zeros(1))
        except Exception:  # noqa: BLE001 (e.g. .cuda() where there is none): refused below all the same
            probe = None
        if probe is None or probe.dtype != torch.float32 or probe.device.type != "cpu":
            raise I3DError("the OpenVINO form runs on the CPU from float32 weights (precision set when it is made): "
                           "for another device or dtype use the plain network (i3d.create_model) or "
                           "runtime='fused'")
        return self

    def compiled_for(self, size: tuple[int, ...]) -> object:
        """The network compiled for clips of ``size`` (frames, height, width), compiled on first use."""
        compiled = self.by_size.pop(size, None)
        if compiled is None:
            compiled = compile_for_sizes(self.core, self.converted, [(self.in_channels, *size)], self.config)
        self.by_size[size] = compiled
        while len(self.by_size) > self.SIZES_KEPT:
            self.by_size.popitem(last=False)
        return compiled

    def convolutions_run_in(self, size: tuple[int, ...]) -> dict[str, int]:
        """``convolutions_run_in`` of the network compiled for clips of ``size`` (frames, height, width)."""
        with self.lock:
            return convolutions_run_in(self.compiled_for(size))

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.device.type != "cpu" or not x.is_floating_point():
            raise I3DError(f"the OpenVINO form takes float tensors on the CPU, not {x.dtype} on {x.device}")
        if x.requires_grad and torch.is_grad_enabled():
            raise I3DError("the OpenVINO form is inference-only (no gradients): use the plain network "
                           "(i3d.create_model) for gradients")
        with self.lock:
            results = self.compiled_for(tuple(x.shape[2:]))(x.detach().to(torch.float32).contiguous().numpy())
        logits, feature_map = (torch.from_numpy(np.array(results[i])).to(x.dtype) for i in (0, 1))
        return logits, feature_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._outputs(x)[0]

    def extract_endpoints(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        names = list(names)
        if not set(names) <= {self.feature_map, "Logits"}:
            raise I3DError(f"the OpenVINO form computes Logits and {self.feature_map}; for {', '.join(names)} use "
                           "the plain network (i3d.create_model) or runtime='fused'")
        logits, feature_map = self._outputs(x)
        return {name: logits if name == "Logits" else feature_map for name in names}

    def pooled_features(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.network.pooled_features(feature_map.float()).to(feature_map.dtype)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.network.forward_head(features.float()).to(features.dtype)


def exported_program(module: nn.Module, in_channels: int, weights: list[torch.Tensor]) -> torch.export.ExportedProgram:
    """``module`` as ``torch.export`` records it (PyTorch's current export format, and what OpenVINO's PyTorch
    frontend converts from): the clips' batch, frames and frame size free, then ``weights``, inputs of fixed
    shape. The example's sizes leave no axis of any layer at 1 (torch.export would fix such an axis to the
    example's size)."""
    example = torch.zeros(2, in_channels, 40, 256, 288)
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=MIN_FRAMES)
    height, width = torch.export.Dim("height", min=MIN_SIZE), torch.export.Dim("width", min=MIN_SIZE)
    dynamic = ({0: batch, 2: frames, 3: height, 4: width}, (None,) * len(weights))  # the weights: one *args entry
    # An axis of size 1 (the 7x7 pool's output at 224 pixels) is no special case in this network. Pooling's
    # shape rule before torch 2.13 rounded its division by branching on the remainder (div_rtn), which export
    # turned into parity guards on every clip size; torch 2.13's rule is floor division, put in its place.
    from unittest import mock

    import torch._meta_registrations as shape_rules

    with warnings.catch_warnings(), torch.fx.experimental._config.patch(backed_size_oblivious=True), \
            mock.patch.object(shape_rules, "div_rtn", lambda x, y: x // y, create=True):
        warnings.simplefilter("ignore")
        return torch.export.export(module, (example, *weights), dynamic_shapes=dynamic)


def openvino_form(model: InceptionI3d, precision: str = "fp32") -> OpenVinoForm:
    """The OpenVINO form of a trained network (see ``OpenVinoForm``)."""
    return OpenVinoForm(model, precision)
