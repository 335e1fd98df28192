"""One output file per video, written atomically, and the manifest: one row per input.

The manifest is appended a line at a time as videos finish (so a killed run shows how far it got) and
rewritten atomically at the end with exactly one row per input, in input order. A rerun trusts an
output only if it loads and was made with the same settings; everything else is done again.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from i3d.features.jobs import Job
from i3d.files import atomic_path
from i3d.settings import FEATURE_FORMATS
from i3d.video.decode import TARGET_FPS

FORMATS = FEATURE_FORMATS
MANIFEST = "manifest.jsonl"


@dataclass
class VideoFeatures:
    """Everything extracted from one video, window by window."""

    windows: list[tuple[int, int]]  # (start, end) frames at 25 fps, end exclusive
    arrays: dict[str, np.ndarray]  # "features" (W, D), optional "logits" (W, C), "mixed_5c" (sum T', 1024)
    frames: int
    source_fps: float | None
    dropped_frames: int = 0

    @property
    def duration_s(self) -> float:
        return self.frames / TARGET_FPS


@dataclass
class ManifestRow:
    input: str
    status: str  # "done" or "failed"
    output: str | None = None  # relative to the output folder
    frames: int | None = None
    source_fps: float | None = None
    duration_s: float | None = None
    windows: int | None = None
    dropped_frames: int | None = None
    error: str | None = None
    reused: bool = False  # the output was already there from an earlier run

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def output_path(outdir: Path, job: Job, fmt: str) -> Path:
    return outdir / f"{job.name}.{fmt}"


def window_arrays(windows: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    starts = np.array([s for s, _ in windows], dtype=np.int64)
    ends = np.array([e for _, e in windows], dtype=np.int64)
    return {"window_start_frame": starts, "window_end_frame": ends,
            "window_start_s": starts / TARGET_FPS, "window_end_s": ends / TARGET_FPS}


def write_features(path: Path, result: VideoFeatures, fmt: str, settings: dict) -> None:
    """``npz``: features, extras, windows (frames and seconds), fps and the settings; ``npy``: features only."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        if fmt == "npy":
            np.save(file, result.arrays["features"])
        else:
            np.savez(file, **result.arrays, **window_arrays(result.windows), fps=np.float64(TARGET_FPS),
                     source_fps=np.float64(result.source_fps or np.nan), frames=np.int64(result.frames),
                     duration_s=np.float64(result.duration_s), dropped_frames=np.int64(result.dropped_frames),
                     settings=np.array(json.dumps(settings, sort_keys=True)))
        file.flush()
        os.fsync(file.fileno())


def reusable_output(path: Path, fmt: str, settings: dict, feature_dim: int) -> ManifestRow | None:
    """The manifest row of an earlier run's output, if it loads and matches ``settings``; else None."""
    if not path.is_file():
        return None
    try:
        if fmt == "npy":
            features = np.load(path, allow_pickle=False)
            ok = isinstance(features, np.ndarray) and features.ndim == 2 and features.shape[1] == feature_dim
            return ManifestRow("", "done", windows=len(features), reused=True) if ok else None
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data["settings"])) != json.loads(json.dumps(settings, sort_keys=True)):
                return None
            features = data["features"]
            if features.ndim != 2 or features.shape[1] != feature_dim or len(data["window_start_frame"]) != len(
                    features):
                return None
            source_fps = float(data["source_fps"])
            return ManifestRow("", "done", frames=int(data["frames"]),
                               source_fps=None if np.isnan(source_fps) else source_fps,
                               duration_s=float(data["duration_s"]), windows=len(features),
                               dropped_frames=int(data["dropped_frames"]), reused=True)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


class Manifest:
    def __init__(self, outdir: Path) -> None:
        self.path = outdir / MANIFEST
        self.earlier = {row["input"]: row for row in self._read()}

    def _read(self) -> Iterable[dict]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:  # a line torn by a kill mid-write is skipped
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def append(self, row: ManifestRow) -> None:
        with open(self.path, "a") as file:
            file.write(row.to_json() + "\n")
            file.flush()
            os.fsync(file.fileno())

    def finish(self, rows: Iterable[ManifestRow]) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(row.to_json() + "\n" for row in rows))
