"""``--format h5``: one HDF5 file for the whole run, a group per video keyed by its output name.

HDF5 is not safe against a kill in the middle of a write (the file's own structures can be left torn),
so the file is never written in place: finished videos wait in memory and are committed together
(every 16 videos, every 30 s, and at the end) by copying the file, adding their groups to the copy,
syncing it and renaming it over the original. A kill at any moment leaves the last committed file
whole; the manifest reports a video only after the commit that holds it, so every reported group is
complete and readable, and a rerun redoes exactly the unreported ones.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from i3d.features.outputs import VideoFeatures, scalar_arrays, window_arrays
from i3d.files import atomic_path

H5_NAME = "features.h5"
COMMIT_VIDEOS = 16
COMMIT_SECONDS = 30.0


class H5Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[tuple[str, VideoFeatures, dict]] = []
        self.last_commit = time.monotonic()

    def reusable(self, name: str, settings: dict, feature_dim: int) -> dict | None:
        """The stored video's scalars, if its group is there, complete and made with ``settings``."""
        if not self.path.is_file():
            return None
        import h5py

        try:
            with h5py.File(self.path, "r") as file:
                if name not in file:
                    return None
                group = file[name]
                if json.loads(group.attrs["settings"]) != json.loads(json.dumps(settings, sort_keys=True)):
                    return None
                features = group["features"]
                if features.shape[-1] != feature_dim or len(group["window_start_frame"]) != features.shape[0]:
                    return None
                return {key: group.attrs[key].item() for key in ("frames", "source_fps", "duration_s",
                                                                 "dropped_frames")} | {"windows": features.shape[0]}
        except (OSError, KeyError, ValueError):
            return None

    def add(self, name: str, result: VideoFeatures, settings: dict) -> None:
        self.pending.append((name, result, settings))

    @property
    def due(self) -> bool:
        return len(self.pending) >= COMMIT_VIDEOS or time.monotonic() - self.last_commit >= COMMIT_SECONDS

    def commit(self) -> list[str]:
        """Write the pending videos into a copy of the file and rename it over the original; their names."""
        import h5py

        if not self.pending:
            return []
        with atomic_path(self.path) as tmp:
            if self.path.is_file():
                shutil.copyfile(self.path, tmp)
            with h5py.File(tmp, "a") as file:
                for name, result, settings in self.pending:
                    if name in file:
                        del file[name]
                    group = file.create_group(name)
                    for key, array in {**result.arrays, **window_arrays(result)}.items():
                        group.create_dataset(key, data=array)
                    for key, value in scalar_arrays(result, settings).items():
                        group.attrs[key] = value.item() if key != "settings" else str(value)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        names = [name for name, _, _ in self.pending]
        self.pending, self.last_commit = [], time.monotonic()
        return names
