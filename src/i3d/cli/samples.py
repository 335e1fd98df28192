"""``i3d samples``: the real sample videos the demo and the tests use."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands) -> None:
    actions = commands.add_parser("samples", help="the sample videos").add_subparsers(
        dest="action", required=True, metavar="ACTION", help="one of:")
    fetch = actions.add_parser("fetch", help="download and verify the sample videos")
    fetch.add_argument("--force", action="store_true", help="fetch again even if present")
    fetch.add_argument("--to", type=Path, default=None, metavar="FOLDER",
                       help="also copy them into FOLDER (made if missing), to try the commands on")
    fetch.set_defaults(run=run_fetch)


def run_fetch(args: argparse.Namespace) -> None:
    import shutil

    from i3d.errors import I3DError
    from i3d.files import atomic_path
    from i3d.video.samples import fetch_samples

    for path in fetch_samples(force=args.force):
        if args.to is None:
            print(path)
            continue
        try:
            args.to.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise I3DError(f"{args.to}: cannot make the folder ({error.strerror or error})") from None
        with atomic_path(args.to / path.name) as tmp:
            shutil.copyfile(path, tmp)
        print(args.to / path.name)
