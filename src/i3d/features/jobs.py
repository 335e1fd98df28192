"""What to extract: the inputs a user named, expanded to videos, each with its own output path."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from i3d.errors import I3DError
from i3d.lists import read_list
from i3d.video.decode import VIDEO_SUFFIXES, find_videos

LIST_SUFFIXES = {".txt", ".csv", ".lst"}


@dataclass(frozen=True)
class Job:
    index: int
    path: Path
    name: str  # output name relative to the output folder, without suffix ("sub/video")


def collect_jobs(inputs: Sequence[str | Path]) -> list[Job]:
    """Videos from files, folders (searched recursively) and list files, in the order given, each once.

    Every name is an input of its own, links included: a class folder of links into one store of videos
    gets one output per link (``extract_features`` computes a file that several names lead to once).
    """
    named: list[tuple[Path, str]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            if not os.access(given, os.R_OK | os.X_OK):
                raise I3DError(f"{given}: cannot list the folder (permission denied)")
            found = find_videos(given)
            if not found:
                raise I3DError(f"{given}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) in this folder")
            named += [(p, p.relative_to(given).with_suffix("").as_posix()) for p in found]
        elif given.suffix.lower() in LIST_SUFFIXES:
            if not given.is_file():
                raise I3DError(f"{given}: no such list file")
            named += [(row.path, row.path.stem) for row in read_list(given, labelled=False)]
        else:
            named.append((given, given.stem))  # a missing or broken file fails on its own, in the manifest
    seen: dict[Path, str] = {}
    owners: dict[str, Path] = {}
    for path, name in named:
        if path.absolute() in seen:  # the same name given twice (not two names of one file: those are two inputs)
            continue
        if name in owners:
            raise I3DError(f"{owners[name]} and {path} would both write {name}.npz; "
                           "give their folder instead, so outputs keep the folder structure")
        seen[path.absolute()], owners[name] = name, path
    if not seen:
        raise I3DError("no inputs")
    return [Job(i, owners[name], name) for i, name in enumerate(seen.values())]
