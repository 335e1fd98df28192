"""``i3d bench``: speed and memory of each inference path on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from i3d.cli.options import add_settings, build_settings


def add_parser(commands) -> None:
    from i3d.settings import BENCH_PATHS, BenchConfig

    parser = commands.add_parser("bench", help="speed and memory of each inference path on this machine")
    add_settings(parser, BenchConfig)
    parser.add_argument("--paths", default=None, help=f"comma-separated of {', '.join(BENCH_PATHS)} "
                        "(default: default, eager, fused, openvino, onnxruntime, and cuda when present)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import json

    from i3d.bench import HEADER, bench, default_paths, to_dict
    from i3d.files import check_writable
    from i3d.settings import BenchConfig

    if args.json is not None:
        check_writable(args.json)
    config = build_settings(args, BenchConfig)
    paths = args.paths.split(",") if args.paths else default_paths()
    from i3d.weights.registry import DEFAULT_WEIGHTS

    print(f"{config.batch_size} x {config.frames} frames x {config.size}x{config.size} through "
          f"{config.weights or DEFAULT_WEIGHTS}, {config.repeats} timed runs after one warm-up, each path in a "
          "fresh process")
    print(HEADER)
    results = []
    for path in paths:
        result = bench(path.strip(), config)
        results.append(to_dict(result, config))
        print(result.row(), flush=True)
    if args.json is not None:
        from i3d.files import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n")
