"""``i3d`` subcommands. Every user mistake surfaces as one ``i3d: error: ...`` line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d.errors import I3DError


def cmd_predict(args: argparse.Namespace) -> None:
    from i3d.predict import Classifier

    if args.top_k < 1:
        raise I3DError("--top-k must be at least 1")
    classifier = Classifier(args.weights, args.device, args.stream, args.flow_weights, args.flow_method)
    prediction = classifier.predict(args.input, args.start, args.end, flow=args.flow)
    print(prediction.to_json(args.top_k) if args.json else prediction.to_text(args.top_k))


def cmd_weights_list(args: argparse.Namespace) -> None:
    from i3d.weights import REGISTRY, installed_path

    for name, info in REGISTRY.items():
        path = installed_path(name)
        state = f"installed at {path}" if path.exists() else "not installed"
        print(f"{name}  [{info.modality}, {info.num_classes} classes]  {state}")
        print(f"    {info.description}")
        print(f"    source: {info.source}; sha256 {info.source_sha256 or '-'}; licence: {info.license}")


def cmd_weights_fetch(args: argparse.Namespace) -> None:
    from i3d.weights import fetch_weights, installed_path

    path = installed_path(args.name)
    if path.exists() and not args.force and args.source is None:
        print(f"{args.name} already installed at {path}")
        return
    print(f"{args.name} installed at {fetch_weights(args.name, args.source)}")


def cmd_weights_convert(args: argparse.Namespace) -> None:
    from i3d.weights.convert import convert_weights

    converted = convert_weights(args.source, args.output, args.name, args.labels, args.scope, args.source_format)
    if converted.labels_note:
        print(f"note: {converted.labels_note}")
    print(f"{converted.modality} I3D, {converted.num_classes} classes, written to {converted.path}")


def cmd_weights_flow_from_rgb(args: argparse.Namespace) -> None:
    from i3d.weights import resolve_weights, save_weights
    from i3d.weights.cross_modal import flow_state_dict_from_rgb

    rgb = resolve_weights(args.rgb)
    if rgb.modality != "rgb":
        raise I3DError(f"{args.rgb} holds {rgb.modality} weights; cross-modal initialisation starts from RGB")
    origin = rgb.metadata.get("name", str(args.rgb))
    save_weights(args.output, flow_state_dict_from_rgb(rgb.state_dict), rgb.labels, "flow",
                 name=args.output.stem, provenance=f"cross-modal initialisation from {origin}")
    print(f"flow I3D initialised from {args.rgb or 'the default RGB weights'}, written to {args.output}")


def cmd_weights_inflate(args: argparse.Namespace) -> None:
    from i3d.weights.inflate import inflate_file

    classes = inflate_file(args.source, args.output, args.labels)
    print(f"I3D inflated from 2D Inception-v1 ({classes} classes), written to {args.output}")


def cmd_train(args: argparse.Namespace) -> None:
    from i3d.train import TrainConfig, load_config, train
    from i3d.train.config import parse_value

    given = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__}
    config = load_config(args.config, {k: parse_value(k, v) for k, v in given.items() if v is not None})
    train(config, resume=args.resume)


def cmd_flow(args: argparse.Namespace) -> None:
    import numpy as np

    from i3d.files import atomic_path
    from i3d.video.flow import FlowComputer, flow_input_frames

    if args.input.suffix.lower() == ".npy":
        raise I3DError(f"{args.input}: give a video file or a frame folder; flow is computed from frames")
    computer = FlowComputer(args.method, args.device, args.batch_size)
    fields = list(flow_input_frames(args.input, args.start, args.end, computer))
    if not fields:
        raise I3DError(f"{args.input}: no frames in the requested span")
    frames = np.stack(fields)
    with atomic_path(args.output) as tmp, open(tmp, "wb") as file:
        np.save(file, frames)
    print(f"wrote {args.output}: {frames.shape} float32 in [-1, 1] ({args.method} TV-L1, 25 fps)")


def cmd_visualize(args: argparse.Namespace) -> None:
    from i3d.visualize import visualize

    for path in visualize(args.input, args.output, args.frames, args.stream, args.weights, args.flow_weights,
                          args.flow_method, args.flow_style, args.format, args.top_k):
        print(path)


def cmd_samples_fetch(args: argparse.Namespace) -> None:
    from i3d.video.samples import fetch_samples

    for path in fetch_samples(force=args.force):
        print(path)


def cmd_fvd(args: argparse.Namespace) -> None:
    from dataclasses import asdict, replace

    from i3d.fvd import PROTOCOLS, FvdReport, VideoEmbedder, fvd_from_stats, set_stats

    protocol = PROTOCOLS[args.protocol]
    if args.frames is not None:
        protocol = replace(protocol, frames=args.frames)
    if args.clips is not None:
        protocol = replace(protocol, max_clips=args.clips)
    embedder = VideoEmbedder(args.weights, args.device, args.batch_size)
    real = set_stats(embedder, Path(args.real), protocol)
    if args.save_stats is not None:
        real.save(args.save_stats, source=str(args.real), protocol=str(asdict(protocol)))
    fake = set_stats(embedder, Path(args.fake), protocol)
    report = FvdReport(fvd_from_stats(real, fake), str(args.real), str(args.fake), real.count, fake.count,
                       asdict(protocol), embedder.weights_sha256)
    if args.output is not None:
        args.output.write_text(report.to_json() + "\n")
    print(f"FVD: {report.fvd:.4f}  ({real.count} real, {fake.count} fake, protocol {args.protocol})")


def cmd_export(args: argparse.Namespace) -> None:
    from i3d.export import ExportOptions, export
    from i3d.weights import resolve_weights

    options = ExportOptions(args.stream, args.layout, args.softmax, args.uint8)
    if args.stream != "rgb" and args.flow_weights is None:
        raise I3DError(f"the {args.stream} graph needs --flow-weights (a converted flow .safetensors file)")
    weights = [resolve_weights(args.weights)] if args.stream != "flow" else []
    if args.stream != "rgb":
        weights.append(resolve_weights(args.flow_weights))
    result = export(weights, args.output, args.format, options, () if args.no_check else (10, 17))
    inputs = ", ".join(f"{n} {_input_shape(n, args.layout)}" for n in options.input_names)
    print(f"wrote {result.path} ({args.format}; inputs {inputs}; output {options.output_name} (B, "
          f"{len(result.labels)}))")
    if result.max_abs_diff is not None:
        print(f"checked against PyTorch on random clips of {result.check_frames} frames: "
              f"max |difference| {result.max_abs_diff:.2e}")


def _input_shape(stream: str, layout: str) -> str:
    channels = "3" if stream == "rgb" else "2"
    return "(B, T, 224, 224, " + channels + ")" if layout == "NTHWC" else f"(B, {channels}, T, 224, 224)"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from i3d.evaluate import EvaluationProtocol, evaluate
    from i3d.files import atomic_path

    protocol = EvaluationProtocol(args.clips, args.clip_frames, args.crops, args.average)
    report = evaluate(args.list, protocol, args.weights, args.device,
                      progress=lambda videos, total: tqdm(videos, total=total, unit="video", disable=args.quiet))
    for failure in report.failures:
        print(f"failed: {_with_path(failure['path'], failure['error'])}", file=sys.stderr)
    if args.output is not None:
        with atomic_path(args.output) as tmp:
            tmp.write_text(report.to_json() + "\n")
    print(report.summary())
    if not report.evaluated:
        raise I3DError(f"{args.list}: none of the {report.failed} videos could be read")
    return 1 if report.failed else 0


def _with_path(path: str, error: str) -> str:
    return error if error.startswith(path) else f"{path}: {error}"


def cmd_features(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from i3d.features import ExtractionConfig, WindowSpec, extract_features

    extras = tuple(name for name, wanted in (("logits", args.logits), ("mixed_5c", args.mixed_5c)) if wanted)
    config = ExtractionConfig(WindowSpec(args.clip_len, args.step, args.last_window), args.format, extras,
                              args.batch_size, args.weights, args.device, args.workers, args.stream,
                              args.flow_weights, args.flow_method, args.flow_dir)

    def progress(outcomes, total):
        bar = tqdm(outcomes, total=total, unit="video", disable=args.quiet)
        seconds = windows = 0.0
        for job, outcome in bar:
            if not isinstance(outcome, str):
                seconds, windows = seconds + outcome.duration_s, windows + len(outcome.windows)
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"{seconds / elapsed:.2f} video-s/s, {windows / elapsed:.2f} windows/s")
            else:
                bar.write(f"failed: {_with_path(str(job.path), outcome)}", file=sys.stderr)
            yield job, outcome

    summary = extract_features(args.inputs, args.output, config, args.engine, args.ray_address, args.ray_workers,
                               progress)
    print(summary.line())
    return 1 if summary.failed else 0


def cmd_bench(args: argparse.Namespace) -> None:
    import json

    from i3d.bench import HEADER, BenchConfig, bench, default_paths, to_dict

    config = BenchConfig(args.frames, args.size, args.batch_size, args.repeats, args.weights)
    paths = args.paths.split(",") if args.paths else default_paths()
    print(f"{config.batch_size} x {config.frames} frames x {config.size}x{config.size}, "
          f"{config.repeats} timed runs after one warm-up, each path in a fresh process")
    print(HEADER)
    results = []
    for path in paths:
        result = bench(path.strip(), config)
        results.append(to_dict(result, config))
        print(result.row(), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    from i3d.weights.registry import DEFAULT_WEIGHTS

    parser = argparse.ArgumentParser(prog="i3d", description="I3D video action recognition.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="classify a video, a frame folder or a .npy clip")
    predict.add_argument(
        "input", nargs="?", help="video file, frame folder or .npy (default: the bigbuckbunny.mp4 sample)")
    predict.add_argument("--weights", default=None, help=f"registry name or .safetensors file ({DEFAULT_WEIGHTS})")
    predict.add_argument("--top-k", type=int, default=20)
    predict.add_argument("--start", type=float, default=None, help="clip start, seconds")
    predict.add_argument("--end", type=float, default=None, help="clip end, seconds")
    predict.add_argument("--json", action="store_true", help="one JSON object: logits, labels, norm, top")
    predict.add_argument("--stream", choices=("rgb", "flow", "joint"), default="rgb",
                         help="joint: RGB and flow logits summed, as the reference does")
    predict.add_argument("--flow-weights", default=None, help="flow weights (default: flow_imagenet, if converted)")
    predict.add_argument("--flow", default=None, help="a saved flow input (.npy from `i3d flow`) for INPUT")
    predict.add_argument("--flow-method", choices=("torch", "opencv"), default="torch", help="TV-L1 backend")
    predict.add_argument("--device", default="cpu")
    predict.set_defaults(run=cmd_predict)

    weights = commands.add_parser("weights", help="list or fetch pretrained weights").add_subparsers(
        dest="action", required=True)
    weights.add_parser("list", help="known weights and whether installed").set_defaults(run=cmd_weights_list)
    fetch = weights.add_parser("fetch", help="download, verify and convert weights")
    fetch.add_argument("name", nargs="?", default=DEFAULT_WEIGHTS)
    fetch.add_argument("--source", type=Path, default=None, help="an already downloaded source file (offline)")
    fetch.add_argument("--force", action="store_true", help="fetch again even if installed")
    fetch.set_defaults(run=cmd_weights_fetch)
    from i3d.weights.convert import SOURCE_FORMATS

    convert = weights.add_parser("convert", help="convert a DeepMind TF checkpoint or a PyTorch-port state dict")
    convert.add_argument("source", type=Path, help="model.ckpt(.index) of DeepMind, or a .pt of the PyTorch port")
    convert.add_argument("-o", "--output", type=Path, default=None, help="the .safetensors to write")
    convert.add_argument("--name", default=None, help="a registry name (rgb_imagenet, flow_imagenet, ...): "
                         "installs it so `--weights NAME` finds it")
    convert.add_argument("--labels", type=Path, default=None, help="class names, one per line, in logit order")
    convert.add_argument("--scope", choices=("RGB", "Flow"), default=None, help="the stream, if both are there")
    convert.add_argument("--source-format", choices=SOURCE_FORMATS, default=None, help="default: from the file")
    convert.set_defaults(run=cmd_weights_convert)
    cross = weights.add_parser("flow-from-rgb", help="a flow network initialised from RGB weights (cross-modal)")
    cross.add_argument("rgb", nargs="?", default=None, help=f"RGB weights ({DEFAULT_WEIGHTS})")
    cross.add_argument("-o", "--output", type=Path, required=True)
    cross.set_defaults(run=cmd_weights_flow_from_rgb)

    inflate = weights.add_parser("inflate", help="I3D weights from a 2D Inception-v1 (torchvision GoogLeNet)")
    inflate.add_argument("source", type=Path, help="GoogLeNet state dict (.pth, .pt or .safetensors)")
    inflate.add_argument("-o", "--output", type=Path, required=True, help="I3D weights (.safetensors)")
    inflate.add_argument("--labels", type=Path, default=None, help="class names of its classifier, one per line")
    inflate.set_defaults(run=cmd_weights_inflate)

    from i3d.train.config import TrainConfig

    train = commands.add_parser("train", help="fine-tune or train one stream (torchrun for several processes)",
                                description="Every setting of the config file can be overridden: --name VALUE.")
    train.add_argument("config", type=Path, nargs="?", default=None, help="YAML or TOML settings")
    train.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    for name in TrainConfig.__dataclass_fields__:
        train.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar="VALUE")
    train.set_defaults(run=cmd_train)

    flow = commands.add_parser("flow", help="the TV-L1 flow input of a video, saved for reuse")
    flow.add_argument("input", type=Path, help="video file or frame folder")
    flow.add_argument("-o", "--output", type=Path, required=True, help=".npy: (T, 224, 224, 2) float32 in [-1, 1]")
    flow.add_argument("--method", choices=("torch", "opencv"), default="torch",
                      help="torch: the batched PyTorch TV-L1 (default); opencv: OpenCV-contrib's")
    flow.add_argument("--start", type=float, default=None)
    flow.add_argument("--end", type=float, default=None)
    flow.add_argument("--batch-size", type=int, default=8, help="frame pairs per batch (torch)")
    flow.add_argument("--device", default="cpu")
    flow.set_defaults(run=cmd_flow)

    from i3d.visualize import ANIMATION_FORMATS, FLOW_STYLES

    visual = commands.add_parser("visualize", help="animations of the RGB and flow inputs, chart of top classes")
    visual.add_argument("input", type=Path, help="video file or frame folder")
    visual.add_argument("-o", "--output", type=Path, required=True, help="folder for the pictures")
    visual.add_argument("--frames", type=int, default=32, help="frames shown and classified (25 fps)")
    visual.add_argument("--stream", choices=("rgb", "flow", "joint"), default="rgb", help="whose predictions")
    visual.add_argument("--format", choices=ANIMATION_FORMATS, default="gif")
    visual.add_argument("--flow-style", choices=FLOW_STYLES, default="reference",
                        help="reference: (x, y, 0) + 0.5 as DeepMind shows it; wheel: hue = direction")
    visual.add_argument("--flow-method", choices=("torch", "opencv"), default="torch")
    visual.add_argument("--top-k", type=int, default=10)
    visual.add_argument("--weights", default=None)
    visual.add_argument("--flow-weights", default=None)
    visual.set_defaults(run=cmd_visualize)

    from i3d.fvd import PROTOCOLS

    fvd = commands.add_parser("fvd", help="Frechet Video Distance between two sets of videos")
    fvd.add_argument("real", help="folder of videos or frame folders, (N, T, H, W, 3) .npy/.npz, or .stats.npz")
    fvd.add_argument("fake", help="the same forms as REAL")
    fvd.add_argument("--protocol", choices=sorted(PROTOCOLS), default="16f-all")
    fvd.add_argument("--frames", type=int, default=None, help="override the protocol's frames per clip")
    fvd.add_argument("--clips", type=int, default=None, help="override the protocol's number of clips")
    fvd.add_argument("--batch-size", type=int, default=8)
    fvd.add_argument("--device", default="cpu")
    fvd.add_argument("--weights", default=None)
    fvd.add_argument("--save-stats", type=Path, default=None, help="write REAL's statistics (.stats.npz) for reuse")
    fvd.add_argument("-o", "--output", type=Path, default=None, help="JSON report")
    fvd.set_defaults(run=cmd_fvd)

    from i3d.export import FORMATS, LAYOUTS, STREAMS

    export = commands.add_parser("export", help="export to ONNX or TorchScript (dynamic batch and frames)")
    export.add_argument("--format", choices=FORMATS, default="onnx")
    export.add_argument("-o", "--output", type=Path, required=True)
    export.add_argument("--stream", choices=STREAMS, default="rgb", help="joint: RGB and flow logits summed")
    export.add_argument("--weights", default=None, help=f"RGB weights ({DEFAULT_WEIGHTS})")
    export.add_argument("--flow-weights", default=None, help="flow weights, for --stream flow or joint")
    export.add_argument("--layout", choices=LAYOUTS, default="NCTHW", help="input layout (NTHWC: TensorFlow's)")
    export.add_argument("--softmax", action="store_true", help="output probabilities instead of logits")
    export.add_argument("--uint8", action="store_true", help="RGB input as uint8 [0, 255], scaled in the graph")
    export.add_argument("--no-check", action="store_true", help="skip running the export against PyTorch")
    export.set_defaults(run=cmd_export)

    from i3d.evaluate import AVERAGES

    evaluate = commands.add_parser("evaluate", help="top-1/top-5 accuracy over a labelled list of videos")
    evaluate.add_argument("list", type=Path, help="CSV of path,label (label: class name or index)")
    evaluate.add_argument("-o", "--output", type=Path, default=None, help="JSON report")
    evaluate.add_argument("--clips", type=int, default=1, help="clips per video, uniformly spaced")
    evaluate.add_argument("--clip-frames", type=int, default=250, help="frames per clip at 25 fps")
    evaluate.add_argument("--crops", type=int, default=1, help="1: centre crop; 3: crops along the long side")
    evaluate.add_argument("--average", choices=AVERAGES, default="softmax", help="what is averaged over views")
    evaluate.add_argument("--weights", default=None)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=cmd_evaluate)

    from i3d.features.extract import ENGINES
    from i3d.features.outputs import FORMATS as FEATURE_FORMATS
    from i3d.features.windows import DEFAULT_CLIP_LEN, DEFAULT_STEP, LAST_WINDOW_POLICIES

    features = commands.add_parser("features", help="per-window 1024-d features of many videos (resumable)")
    features.add_argument("inputs", nargs="+", help="video files, folders (searched recursively), .txt/.csv lists")
    features.add_argument("-o", "--output", type=Path, required=True, help="output folder (manifest.jsonl there)")
    features.add_argument("--clip-len", type=int, default=DEFAULT_CLIP_LEN, help="frames per window (25 fps)")
    features.add_argument("--step", type=int, default=DEFAULT_STEP, help="frames from one window to the next")
    features.add_argument("--last-window", choices=LAST_WINDOW_POLICIES, default="keep",
                          help="a final partial window: run as is, pad with its last frame, or drop it")
    features.add_argument("--format", choices=FEATURE_FORMATS, default="npz")
    features.add_argument("--stream", choices=("rgb", "flow", "both"), default="rgb",
                          help="both: RGB and flow features side by side (2048-d), logits summed")
    features.add_argument("--flow-weights", default=None, help="flow weights (default: flow_imagenet, if converted)")
    features.add_argument("--flow-method", choices=("torch", "opencv"), default="torch", help="TV-L1 backend")
    features.add_argument("--flow-dir", type=Path, default=None,
                          help="saved flow inputs (`i3d flow`) named <output name>.npy, instead of computing flow")
    features.add_argument("--logits", action="store_true", help="also the logits of every window")
    features.add_argument("--mixed-5c", action="store_true", help="also Mixed_5c averaged over space: T/8 x 1024")
    features.add_argument("--batch-size", type=int, default=4, help="windows per network call")
    features.add_argument("--workers", type=int, default=1, help="decoding processes (0: decode inline)")
    features.add_argument("--engine", choices=ENGINES, default="local")
    features.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    features.add_argument("--ray-workers", type=int, default=2, help="Ray actors, each holding the network")
    features.add_argument("--weights", default=None)
    features.add_argument("--device", default="cpu")
    features.add_argument("--quiet", action="store_true", help="no progress bar")
    features.set_defaults(run=cmd_features)

    from i3d.bench import PATHS

    bench = commands.add_parser("bench", help="speed and memory of each inference path on this machine")
    bench.add_argument("--frames", type=int, default=79)
    bench.add_argument("--size", type=int, default=224)
    bench.add_argument("--batch-size", type=int, default=1)
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--paths", default=None, help=f"comma-separated of {', '.join(PATHS)} "
                       "(default: eager, optimized, onnxruntime, and cuda when present)")
    bench.add_argument("--weights", default=None)
    bench.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    bench.set_defaults(run=cmd_bench)

    samples = commands.add_parser("samples", help="the sample videos").add_subparsers(dest="action", required=True)
    samples_fetch = samples.add_parser("fetch", help="download and verify the sample videos")
    samples_fetch.add_argument("--force", action="store_true")
    samples_fetch.set_defaults(run=cmd_samples_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)  # commands over many items return 1 when some of them failed
    except I3DError as error:
        print(f"i3d: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("i3d: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
