"""``i3d samples``: the real sample videos the demo and the tests use."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    actions = commands.add_parser("samples", help="the sample videos").add_subparsers(
        dest="action", required=True, metavar="ACTION", help="one of:")
    fetch = actions.add_parser("fetch", help="download and verify the sample videos")
    fetch.add_argument("--force", action="store_true", help="fetch again even if present")
    fetch.set_defaults(run=run_fetch)


def run_fetch(args: argparse.Namespace) -> None:
    from i3d.video.samples import fetch_samples

    for path in fetch_samples(force=args.force):
        print(path)
