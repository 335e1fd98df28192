"""``i3d features``: per-window (or per-frame) I3D features of many videos, by a named published protocol
or by explicit settings; resumable, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d.cli.evaluate import with_path
from i3d.cli.options import add_device, add_flow_options, add_settings, add_weights, given_settings, positive_int
from i3d.errors import I3DError

SAMPLING_FLAGS = ("fps", "size", "crop_size", "crops", "per_frame", "stream", "format")


def _fps(text: str) -> float | str:
    if text == "native":
        return "native"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frames per second or `native`, not {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a rate above 0 or `native`, not {text}")
    return value


def add_parser(commands) -> None:
    from i3d.settings import ENGINES, FEATURE_FORMATS, WindowSpec

    parser = commands.add_parser(
        "features", help="per-window 1024-d features of many videos, by published protocols (resumable)",
        description="Features by a named protocol (--preset, see --list-presets) or explicit settings; options given "
        "explicitly override the preset's. Defaults: 25 fps, short side 256, centre crop 224, 64-frame windows.")
    parser.add_argument("inputs", nargs="*", help="video files, folders (searched recursively), .txt/.csv lists")
    parser.add_argument("-o", "--output", type=Path, default=None, help="output folder (manifest.jsonl there)")
    parser.add_argument("--preset", default=None, help="a published protocol's settings (see --list-presets)")
    parser.add_argument("--list-presets", action="store_true", help="the presets, their settings and sources")
    parser.add_argument("--fps", type=_fps, default=None,
                        help="frames per second taken by their timestamps, or `native`: every decoded frame "
                        "(default: 25)")
    parser.add_argument("--size", type=positive_int, default=None, help="short side before cropping (default: 256)")
    parser.add_argument("--crop-size", type=positive_int, default=None, help="crop side (default: 224)")
    parser.add_argument("--crops", choices=("center", "3", "10"), default=None,
                        help="center; 3 along the long side; 10: corners, centre and their mirrors (TenCrop); "
                        "3 and 10 add a crop axis: (windows, crops, 1024) (default: center)")
    parser.add_argument("--per-frame", type=positive_int, default=None, metavar="W",
                        help="one feature per sampled frame from the W frames centred on it (ends repeat the "
                        "first/last frame), instead of windows")
    add_settings(parser, WindowSpec)
    parser.add_argument("--format", choices=FEATURE_FORMATS, default=None,
                        help="npz (one file per video), npy (features only), h5 (one HDF5 file for the run) "
                        "(default: npz)")
    parser.add_argument("--stream", choices=("rgb", "flow", "joint", "both"), default=None,
                        help="joint: RGB and flow features side by side (2048-d), logits summed; `both` is its old "
                        "name (default: rgb)")
    add_flow_options(parser)
    parser.add_argument("--flow-dir", type=Path, default=None,
                        help="saved flow inputs (`i3d flow`) named <output name>.npy, instead of computing flow")
    parser.add_argument("--logits", action="store_true", help="also the logits of every window")
    parser.add_argument("--mixed-5c", action="store_true", help="also Mixed_5c averaged over space: T/8 x 1024")
    parser.add_argument("--batch-size", type=positive_int, default=4,
                        help="clips per network call; the crops of a window always share one (default: 4)")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (0: decode inline; default: 1)")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="(default: local)")
    parser.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    parser.add_argument("--ray-workers", type=positive_int, default=2,
                        help="Ray actors, each holding the network (default: 2)")
    add_weights(parser)
    add_device(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def list_presets() -> None:
    from i3d.features.presets import PRESETS

    for preset in PRESETS.values():
        settings = ", ".join(f"{k} {v if v is not None else 'native'}" for k, v in {**preset.settings,
                                                                                   **preset.output}.items())
        print(f"{preset.name}: {preset.description}")
        print(f"    settings: {settings}")
        print(f"    source: {preset.source}")
        print(f"    checked against: {preset.verified}" + (f"; note: {preset.notes}" if preset.notes else ""))


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        list_presets()
        return 0
    if not args.inputs or args.output is None:
        raise I3DError("features: give INPUTS and -o OUTPUT (or --list-presets)")
    from tqdm import tqdm

    from i3d.features import extract_features
    from i3d.features.core import config_from_preset
    from i3d.settings import WindowSpec

    given = given_settings(args, WindowSpec)
    for name in SAMPLING_FLAGS:
        value = getattr(args, name)
        if value is not None:
            given["fmt" if name == "format" else name] = None if value == "native" else value
    extras = tuple(name for name, wanted in (("logits", args.logits), ("mixed_5c", args.mixed_5c)) if wanted)
    config = config_from_preset(args.preset, **given, extras=extras, batch_size=args.batch_size,
                                weights=args.weights, device=args.device, workers=args.workers,
                                flow_weights=args.flow_weights, flow_method=args.flow_method, flow_dir=args.flow_dir)

    def progress(outcomes, total):
        bar = tqdm(outcomes, total=total, unit="video", disable=args.quiet)
        seconds = windows = 0.0
        for job, outcome in bar:
            if not isinstance(outcome, str):
                seconds, windows = seconds + outcome.duration_s, windows + len(outcome.windows)
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"{seconds / elapsed:.2f} video-s/s, {windows / elapsed:.2f} rows/s")
            else:
                bar.write(f"failed: {with_path(str(job.path), outcome)}", file=sys.stderr)
            yield job, outcome

    summary = extract_features(args.inputs, args.output, config, args.engine, args.ray_address, args.ray_workers,
                               progress)
    print(summary.line())
    return 1 if summary.failed else 0
