"""``i3d doctor``: one screen on what this installation is (versions, devices, CPU, cache, weights, kernels,
missing extras); ``--json`` for a bug report."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    parser = commands.add_parser("doctor", help="what this installation is: versions, devices, CPU, cache, weights, "
                                 "kernels, missing extras (paste --json into a bug report)")
    parser.add_argument("--json", action="store_true", help="the same as one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import json

    from i3d.environment import report, to_text

    info = report()
    print(json.dumps(info, indent=2) if args.json else to_text(info))
