"""``i3d evaluate``: top-1/top-5 accuracy over a labelled list of videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d.cli.options import add_settings, add_weights, build_settings
from i3d.errors import I3DError


def add_parser(commands) -> None:
    from i3d.settings import EvaluationProtocol, InferenceSettings

    parser = commands.add_parser("evaluate", help="top-1/top-5 accuracy over a labelled list of videos")
    parser.add_argument("list", type=Path, help="CSV of path,label[,start_s,end_s] (label: class name or index)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="JSON report")
    add_settings(parser, EvaluationProtocol)
    add_weights(parser)
    add_settings(parser, InferenceSettings)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def with_path(path: str, error: str) -> str:
    """A failed item's line: its path, then why (once), as one printable line."""
    from i3d.errors import one_line

    return one_line(error if error.startswith(path) else f"{path}: {error}")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from i3d.evaluate import evaluate
    from i3d.files import atomic_path, check_writable
    from i3d.settings import EvaluationProtocol, InferenceSettings

    if args.output is not None:
        check_writable(args.output)
    protocol = build_settings(args, EvaluationProtocol)
    run_on = build_settings(args, InferenceSettings)
    report = evaluate(args.list, protocol, args.weights, run_on.device, run_on.precision, run_on.runtime,
                      batch_size=run_on.batch_size,
                      progress=lambda videos, total: tqdm(videos, total=total, unit="video", disable=args.quiet))
    for failure in report.failures:
        print(f"failed: {with_path(failure['path'], failure['error'])}", file=sys.stderr)
    if args.output is not None:
        with atomic_path(args.output) as tmp:
            tmp.write_text(report.to_json() + "\n")
    if not report.evaluated:  # the report is still written: it lists each failure
        raise I3DError(report.summary())
    print(report.summary())
    return 1 if report.failed else 0
