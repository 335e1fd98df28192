"""One output file per video, written atomically, and the manifest: one row per input.

The manifest is appended a line at a time as videos finish (so a killed run shows how far it got) and
rewritten atomically at the end with exactly one row per input, in input order. A rerun trusts an
output only if it loads and was made with the same settings; everything else is done again.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from i3d.errors import I3DNotice
from i3d.features.jobs import Job
from i3d.files import atomic_path, atomic_write_text
from i3d.networks.architecture import FEATURE_DIM
from i3d.video.decode import TARGET_FPS

MANIFEST = "manifest.jsonl"


@dataclass
class VideoFeatures:
    """Everything extracted from one video, row by row (a window, or a sampled frame with --per-frame)."""

    windows: list[tuple[int, int]]  # (start, end) sampled frames of each row, end exclusive
    arrays: dict[str, np.ndarray]  # "features" (W, D) or (W, crops, D), optional "logits", "mixed_5c"
    frames: int
    source_fps: float | None
    dropped_frames: int = 0
    times: list[float] | None = None  # when each sampled frame is shown (seconds of the source video)
    interval: float = 1 / TARGET_FPS  # how long the last sampled frame stays
    sample_fps: float | None = TARGET_FPS  # None: the video's own frames (native rate)
    per_frame: bool = False

    def time_of(self, index: int) -> float:
        """The instant sampled frame ``index`` is shown; ``index == frames`` is the end of the last one."""
        origin = self.times[0] if self.times else 0.0
        if self.sample_fps is not None:
            return origin + index / self.sample_fps
        if index < len(self.times):
            return self.times[index]
        return self.times[-1] + self.interval * (index - len(self.times) + 1)

    @property
    def duration_s(self) -> float:
        if self.sample_fps is not None:
            return self.frames / self.sample_fps
        return self.time_of(self.frames) - self.time_of(0) if self.frames else 0.0


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


def window_arrays(result: VideoFeatures) -> dict[str, np.ndarray]:
    """Each row's span in sampled frames and in seconds of the source video (and, per frame, its own instant)."""
    starts = np.array([s for s, _ in result.windows], dtype=np.int64)
    ends = np.array([e for _, e in result.windows], dtype=np.int64)
    if result.sample_fps is not None and (not result.times or result.times[0] == 0.0):
        start_s, end_s = starts / result.sample_fps, ends / result.sample_fps
    else:
        start_s = np.array([result.time_of(int(s)) for s in starts], dtype=np.float64)
        end_s = np.array([result.time_of(int(e)) for e in ends], dtype=np.float64)
    arrays = {"window_start_frame": starts, "window_end_frame": ends, "window_start_s": start_s,
              "window_end_s": end_s}
    if result.per_frame:
        arrays["frame_time_s"] = np.array([result.time_of(i) for i in range(len(result.windows))], dtype=np.float64)
    return arrays


def stream_arrays(result: VideoFeatures, settings: dict) -> dict[str, np.ndarray]:
    """With both streams, each stream's features on its own too (``rgb``, ``flow``: video_features' layout);
    the flow stream is the Inception network's, 1024-d, last."""
    if settings.get("stream") != "joint":
        return {}
    features = result.arrays["features"]
    return {"rgb": features[..., :-FEATURE_DIM], "flow": features[..., -FEATURE_DIM:]}


def scalar_arrays(result: VideoFeatures, settings: dict) -> dict[str, np.ndarray]:
    return {"fps": np.float64(result.sample_fps if result.sample_fps is not None else np.nan),
            "source_fps": np.float64(result.source_fps or np.nan), "frames": np.int64(result.frames),
            "duration_s": np.float64(result.duration_s), "dropped_frames": np.int64(result.dropped_frames),
            "settings": np.array(json.dumps(settings, sort_keys=True))}


def write_features(path: Path, result: VideoFeatures, fmt: str, settings: dict, npy_layout: str = "rows") -> None:
    """``npz``: features, extras, row spans (frames and seconds), fps and the settings; ``npy``: features only,
    rows x D or (``columns``) D x rows."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        if fmt == "npy":
            features = result.arrays["features"]
            np.save(file, np.ascontiguousarray(features.T) if npy_layout == "columns" else features)
        else:
            np.savez(file, **result.arrays, **stream_arrays(result, settings), **window_arrays(result),
                     **scalar_arrays(result, settings))
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
    """``manifest.jsonl``: a first line ``{"run": ...}`` (the settings, weights, software of the run), then a
    row per input. An output folder holds one run's settings: another run into it is refused."""

    def __init__(self, outdir: Path, run: dict | None = None) -> None:
        self.path = outdir / MANIFEST
        lines = list(self._read())
        self.earlier_run = next((line["run"] for line in lines if "run" in line), None)
        self.earlier = {row["input"]: row for row in lines if "input" in row}
        self.run = run
        if run is not None:
            self._check_same_run(run)
            atomic_write_text(self.path, "".join(json.dumps(x) + "\n" for x in [{"run": run}, *self.earlier.values()]))

    def _check_same_run(self, run: dict) -> None:
        earlier = self.earlier_run
        if earlier is None:
            return
        differing = sorted(k for k in set(earlier["settings"]) | set(run["settings"])
                           if earlier["settings"].get(k) != run["settings"].get(k))
        if earlier.get("format") != run.get("format"):
            differing.insert(0, "format")
        if differing:
            from i3d.errors import I3DError

            detail = ", ".join(f"{k} {earlier['settings'].get(k, earlier.get(k))!r} -> "
                               f"{run['settings'].get(k, run.get(k))!r}" for k in differing)
            raise I3DError(f"{self.path.parent}: holds features made with other settings ({detail}); "
                           "give another output folder, or the same settings to resume")

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
        """Rewrite in input order, one row per input. Where that cannot be written (a full disk), the appended
        manifest already holds every row: it is kept, in the order the videos finished."""
        header = [json.dumps({"run": self.run}) + "\n"] if self.run is not None else []
        try:
            atomic_write_text(self.path, "".join(header + [row.to_json() + "\n" for row in rows]))
        except OSError as error:
            warnings.warn(f"{self.path} could not be rewritten in input order ({error.strerror or error}); it keeps "
                          "every row, in the order the videos finished", I3DNotice, stacklevel=2)
