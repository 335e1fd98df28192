"""``i3d features``: per-window 1024-d features of many videos, resumable, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d.cli.evaluate import with_path
from i3d.cli.options import add_device, add_flow_options, add_settings, add_weights, build_settings, positive_int


def add_parser(commands) -> None:
    from i3d.settings import ENGINES, FEATURE_FORMATS, WindowSpec

    parser = commands.add_parser("features", help="per-window 1024-d features of many videos (resumable)")
    parser.add_argument("inputs", nargs="+", help="video files, folders (searched recursively), .txt/.csv lists")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (manifest.jsonl there)")
    add_settings(parser, WindowSpec)
    parser.add_argument("--format", choices=FEATURE_FORMATS, default="npz", help="one file per video (default: npz)")
    parser.add_argument("--stream", choices=("rgb", "flow", "joint", "both"), default="rgb",
                        help="joint: RGB and flow features side by side (2048-d), logits summed; `both` is its old "
                        "name (default: rgb)")
    add_flow_options(parser)
    parser.add_argument("--flow-dir", type=Path, default=None,
                        help="saved flow inputs (`i3d flow`) named <output name>.npy, instead of computing flow")
    parser.add_argument("--logits", action="store_true", help="also the logits of every window")
    parser.add_argument("--mixed-5c", action="store_true", help="also Mixed_5c averaged over space: T/8 x 1024")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="windows per network call (default: 4)")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (0: decode inline; default: 1)")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="(default: local)")
    parser.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    parser.add_argument("--ray-workers", type=positive_int, default=2,
                        help="Ray actors, each holding the network (default: 2)")
    add_weights(parser)
    add_device(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from i3d.features import ExtractionConfig, extract_features
    from i3d.settings import WindowSpec

    extras = tuple(name for name, wanted in (("logits", args.logits), ("mixed_5c", args.mixed_5c)) if wanted)
    config = ExtractionConfig(build_settings(args, WindowSpec), args.format, extras, args.batch_size, args.weights,
                              args.device, args.workers, args.stream, args.flow_weights, args.flow_method,
                              args.flow_dir)

    def progress(outcomes, total):
        bar = tqdm(outcomes, total=total, unit="video", disable=args.quiet)
        seconds = windows = 0.0
        for job, outcome in bar:
            if not isinstance(outcome, str):
                seconds, windows = seconds + outcome.duration_s, windows + len(outcome.windows)
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"{seconds / elapsed:.2f} video-s/s, {windows / elapsed:.2f} windows/s")
            else:
                bar.write(f"failed: {with_path(str(job.path), outcome)}", file=sys.stderr)
            yield job, outcome

    summary = extract_features(args.inputs, args.output, config, args.engine, args.ray_address, args.ray_workers,
                               progress)
    print(summary.line())
    return 1 if summary.failed else 0
