"""Export to PyTorch's own format (``torch.export``, ``.pt2``), ONNX or OpenVINO IR: one stream or the
two-stream sum, any batch size and number of frames.

Every format starts from one ``torch.export`` program of the plain network (``InceptionI3d``), not an
inference form: runtimes fold BatchNorm themselves, and the plain network's TF "SAME" padding is integer
arithmetic on the input size, recorded symbolically, so the parity-dependent padding of the strided layers
stays right for every number of frames.
"""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from i3d.errors import I3DError
from i3d.factory import Weights, build_model, resolve_weights
from i3d.files import atomic_path
from i3d.networks.inception import MIN_FRAMES, InceptionI3d
from i3d.settings import EXPORT_FORMATS, ExportOptions
from i3d.video.transforms import CROP

PIXEL_MEAN = PIXEL_SCALE = 127.5  # uint8 [0, 255] -> [-1, 1]


class ExportGraph(nn.Module):
    """Layout change, optional uint8 scaling, the stream networks (logits summed), optional softmax."""

    def __init__(self, streams: Sequence[InceptionI3d], options: ExportOptions) -> None:
        super().__init__()
        self.streams = nn.ModuleList(streams)
        self.options = options

    def forward(self, *clips: torch.Tensor) -> torch.Tensor:
        logits = None
        for name, network, clip in zip(self.options.input_names, self.streams, clips):
            if self.options.layout == "NTHWC":
                clip = clip.permute(0, 4, 1, 2, 3)
            if name == "rgb" and self.options.uint8_input:
                clip = (clip.float() - PIXEL_MEAN) / PIXEL_SCALE
            out = network(clip)
            logits = out if logits is None else logits + out
        return torch.softmax(logits, dim=-1) if self.options.softmax else logits


@dataclass
class ExportResult:
    path: Path
    options: ExportOptions
    labels: list[str]
    max_abs_diff: float | None = None  # exported vs PyTorch on a check clip
    check_frames: list[int] = field(default_factory=list)


def build_export_graph(weights: Sequence[Weights], options: ExportOptions) -> ExportGraph:
    """The graph for ``options.stream`` from one set of weights per input (rgb then flow for joint)."""
    weights = [resolve_weights(w) for w in weights]
    if len(weights) != len(options.input_names):
        raise I3DError(f"the {options.stream} graph needs {len(options.input_names)} set(s) of weights")
    for name, loaded in zip(options.input_names, weights):
        if loaded.modality != name:
            raise I3DError(f"the {name} input needs {name} weights, got {loaded.modality} weights")
    if len({tuple(w.labels) for w in weights}) > 1:
        raise I3DError("the two streams have different label sets; their logits cannot be summed")
    return ExportGraph([build_model(w) for w in weights], options).eval()


def example_inputs(options: ExportOptions, frames: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random clips in the graph's input layout and dtype."""
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for name in options.input_names:
        channels = 3 if name == "rgb" else 2
        shape = (batch, channels, frames, CROP, CROP)
        if name == "rgb" and options.uint8_input:
            clip = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        else:
            clip = torch.rand(shape, generator=generator) * 2 - 1
        inputs.append(clip.permute(0, 2, 3, 4, 1).contiguous() if options.layout == "NTHWC" else clip)
    return tuple(inputs)


def _dynamic_axes(options: ExportOptions) -> tuple[int, int]:
    """(batch axis, frames axis) of the inputs."""
    return 0, 1 if options.layout == "NTHWC" else 2


def require(module: str, extra: str = "export"):
    """Import an optional dependency, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise I3DError(f"this needs the {module} package: pip install 'i3d[{extra}]'") from None


EXAMPLE_FRAMES = 40  # no axis of any layer at size 1, which torch.export would fix to the example's


def exported_program(graph: ExportGraph, options: ExportOptions) -> torch.export.ExportedProgram:
    """The graph as ``torch.export`` records it: batch and frames free, 224x224 crops."""
    batch_axis, frames_axis = _dynamic_axes(options)
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=MIN_FRAMES)
    dynamic = tuple({batch_axis: batch, frames_axis: frames} for _ in options.input_names)
    # An axis of size 1 (the 7x7 pool's output at 224 pixels) is no special case in this network.
    with warnings.catch_warnings(), torch.fx.experimental._config.patch(backed_size_oblivious=True):
        warnings.simplefilter("ignore")
        return torch.export.export(graph, example_inputs(options, EXAMPLE_FRAMES, batch=2),
                                   dynamic_shapes={"clips": dynamic})


def export_pt2(graph: ExportGraph, path: Path, options: ExportOptions, metadata: dict[str, str]) -> None:
    """``torch.export``'s program, loaded with ``torch.export.load(path).module()``; the metadata in i3d.json."""
    torch.export.save(exported_program(graph, options), str(path), extra_files={"i3d.json": json.dumps(metadata)})


def export_onnx(graph: ExportGraph, path: Path, options: ExportOptions, metadata: dict[str, str]) -> None:
    onnx = require("onnx")
    require("onnxscript")  # torch.onnx's exporter is written in it

    # The exporter warns about every torchvision operator it cannot register; I3D uses none of them.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch_axis, frames_axis = _dynamic_axes(options)
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=MIN_FRAMES)
    dynamic = tuple({batch_axis: batch, frames_axis: frames} for _ in options.input_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, example_inputs(options, 16), input_names=options.input_names,
            output_names=[options.output_name], dynamic_shapes={"clips": dynamic}, dynamo=True, verbose=False,
        )
    model = program.model_proto
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def export_openvino(graph: ExportGraph, path: Path, options: ExportOptions, metadata: dict[str, str],
                    calibration: Sequence[np.ndarray] = ()) -> None:
    """An OpenVINO IR (``.xml`` + ``.bin``), converted from the ``torch.export`` program; with ``calibration``
    clips, quantised to int8 by NNCF's post-training quantisation (activations calibrated on those clips)."""
    import openvino

    from i3d.runtimes.openvino import openvino_core

    openvino_core()  # before OpenVINO's first use in the process
    model = openvino.convert_model(exported_program(graph, options))
    for port, name in zip(model.inputs, options.input_names):
        port.set_names({name})
    model.outputs[0].set_names({options.output_name})
    if calibration:
        nncf = require("nncf", "int8")
        import logging as _logging

        _logging.getLogger("nncf").setLevel(_logging.ERROR)
        dataset = nncf.Dataset(list(calibration), lambda clip: clip[None])
        model = nncf.quantize(model, dataset, subset_size=len(calibration), preset=nncf.QuantizationPreset.MIXED)
    for key, value in metadata.items():
        model.set_rt_info(value, ["i3d", key])
    bin_path = path.with_suffix(".bin")
    with atomic_path(path) as xml_tmp, atomic_path(bin_path) as bin_tmp:
        openvino.save_model(model, str(xml_tmp), compress_to_fp16=False)
        Path(str(xml_tmp)[: -len(".xml")] + ".bin").replace(bin_tmp)  # save_model names the weights beside it


def calibration_clips(list_file: Path, frames: int = 32, limit: int = 64) -> list[np.ndarray]:
    """(3, frames, 224, 224) float32 clips by the recipe, from the start of each listed video (a list of
    paths, one per line or a CSV's first column), for int8 calibration."""
    from i3d.lists import read_list
    from i3d.video.inputs import rgb_input_frames
    from i3d.video.transforms import loop_pad, to_unit_range

    clips = []
    for row in read_list(list_file, labelled=False)[:limit]:
        taken = [f for _, f in zip(range(frames), rgb_input_frames(row.path))]
        if not taken:
            raise I3DError(f"{row.path}: no frames to calibrate with")
        clip = loop_pad(to_unit_range(np.stack(taken)), frames)
        clips.append(np.ascontiguousarray(clip.transpose(3, 0, 1, 2)))
    return clips


def export(
    weights: Sequence[Weights],
    path: Path,
    format: str = "onnx",
    options: ExportOptions | None = None,
    check_frames: Sequence[int] = (MIN_FRAMES + 1, MIN_FRAMES + 8),
    calibration: Sequence[np.ndarray] = (),
) -> ExportResult:
    """Write the exported graph atomically, then run it on random clips against PyTorch.

    The check uses two frame counts of different parity, since TF "SAME" padding differs between them.
    """
    options = options or ExportOptions()
    if format not in EXPORT_FORMATS:
        raise I3DError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
    weights = [resolve_weights(w) for w in weights]
    graph = build_export_graph(weights, options)
    labels = weights[0].labels
    metadata = {
        "i3d_stream": options.stream,
        "i3d_layout": options.layout,
        "i3d_input": "uint8 [0, 255]" if options.uint8_input else "float [-1, 1]",
        "i3d_output": options.output_name,
        "i3d_weights": json.dumps([w.name for w in weights]),
        "labels": json.dumps(labels),
    }
    if calibration and (format != "openvino" or options.stream != "rgb" or options.layout != "NCTHW"
                        or options.uint8_input):
        raise I3DError("int8 quantisation is for --format openvino of the RGB stream (NCTHW, float input)")
    if format == "openvino":
        if path.suffix != ".xml":
            raise I3DError(f"{path}: an OpenVINO model is an .xml file (its weights go beside it in a .bin)")
        export_openvino(graph, path, options, metadata, calibration)
    else:
        with atomic_path(path) as tmp:
            (export_onnx if format == "onnx" else export_pt2)(graph, tmp, options, metadata)
    result = ExportResult(path, options, labels, check_frames=list(check_frames))
    if check_frames:
        result.max_abs_diff = max(check_export(graph, path, format, options, n) for n in check_frames)
    return result


def run_exported(path: Path, format: str, inputs: Sequence[torch.Tensor]) -> np.ndarray:
    """Run an exported file: ONNX under ONNX Runtime (CPU), OpenVINO IR on its CPU plugin (float32 asked, as
    it would otherwise compute in bfloat16 where the CPU has it; compiled for the inputs' clip size, the only
    way its int8 convolutions run in int8), pt2 as ``torch.export.load(path).module()``."""
    if format == "openvino":
        return openvino_for_size(path, [tuple(x.shape[1:]) for x in inputs])([x.numpy() for x in inputs])[0]
    if format == "onnx":
        onnxruntime = require("onnxruntime")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
        return session.run(None, feeds)[0]
    with torch.no_grad():
        return torch.export.load(str(path)).module()(*inputs).numpy()


def openvino_for_size(path: Path, sizes: Sequence[tuple[int, ...]], hint: str = "f32"):
    """An exported OpenVINO IR compiled on the CPU for inputs of these sizes (all but the batch axis, one per
    input): with the frame count left free, OpenVINO 2026.4 ran the int8 IR's convolutions in f32
    (quantisation error without int8's speed); with it fixed, it folds the "SAME" padding and runs them in
    int8 (``i3d.runtimes.openvino.compile_for_sizes``)."""
    from i3d.runtimes.openvino import compile_for_sizes, openvino_core

    core = openvino_core()
    return compile_for_sizes(core, core.read_model(str(path)), list(sizes), {"INFERENCE_PRECISION_HINT": hint})


def check_export(graph: ExportGraph, path: Path, format: str, options: ExportOptions, frames: int) -> float:
    """Max |exported - PyTorch| on a random batch of two clips of ``frames`` frames."""
    inputs = example_inputs(options, frames, batch=2, seed=frames)
    with torch.no_grad():
        expected = graph(*inputs).numpy()
    return float(np.abs(run_exported(path, format, inputs) - expected).max())
