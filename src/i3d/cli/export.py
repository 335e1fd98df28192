"""``i3d export``: PyTorch (torch.export .pt2), ONNX or OpenVINO graphs with dynamic batch and frames."""

from __future__ import annotations

import argparse
from pathlib import Path

from i3d.cli.options import add_settings, build_settings
from i3d.errors import I3DError


def add_parser(commands) -> None:
    from i3d.settings import EXPORT_FORMATS, ExportOptions

    parser = commands.add_parser("export", help="export to PyTorch's .pt2 (torch.export), ONNX or OpenVINO (fp32 "
                                 "or int8), with dynamic batch and frames")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="(default: onnx)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the file to write")
    parser.add_argument("--weights", default=None, help="RGB weights (default: i3d-kinetics-400)")
    parser.add_argument("--flow-weights", default=None, help="flow weights, for --stream flow or joint")
    add_settings(parser, ExportOptions)
    parser.add_argument("--int8", action="store_true",
                        help="openvino: quantise to int8 (NNCF post-training quantisation; needs --calibration)")
    parser.add_argument("--calibration", type=Path, default=None, metavar="LIST",
                        help="videos to calibrate int8 activations on: a list of paths (one per line or a CSV)")
    parser.add_argument("--no-check", action="store_true", help="skip running the export against PyTorch")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from i3d.export import export
    from i3d.files import check_writable
    from i3d.settings import ExportOptions

    check_writable(args.output)
    if args.int8 and (args.format != "openvino" or args.calibration is None):
        raise I3DError("--int8 needs --format openvino and --calibration LIST (videos to calibrate on)")
    if args.calibration is not None and not args.int8:
        raise I3DError("--calibration is for --int8")
    options = build_settings(args, ExportOptions)
    if options.stream != "rgb" and args.flow_weights is None:
        raise I3DError(f"the {options.stream} graph needs --flow-weights (a converted flow .safetensors file)")
    weights = ([args.weights] if options.stream != "flow" else []) + ([args.flow_weights] if options.stream != "rgb"
                                                                       else [])
    calibration = ()
    if args.int8:
        from i3d.export import calibration_clips

        calibration = calibration_clips(args.calibration)
        print(f"calibrating int8 on {len(calibration)} clips of 32 frames from {args.calibration}", flush=True)
    result = export(weights, args.output, args.format, options, () if args.no_check else (10, 17), calibration)
    inputs = ", ".join(f"{n} {_input_shape(n, options.layout)}" for n in options.input_names)
    print(f"wrote {result.path} ({args.format}; inputs {inputs}; output {options.output_name} (B, "
          f"{len(result.labels)}))")
    if result.max_abs_diff is not None:
        print(f"checked against PyTorch on random clips of {result.check_frames} frames: "
              f"max |difference| {result.max_abs_diff:.2e}")


def _input_shape(stream: str, layout: str) -> str:
    channels = "3" if stream == "rgb" else "2"
    return "(B, T, 224, 224, " + channels + ")" if layout == "NTHWC" else f"(B, {channels}, T, 224, 224)"
