"""Which videos of a set an FVD protocol takes, and which frames of each: the points where published
implementations differ, each as its source does it.

Videos: the entries of a folder (frame folders or video files, dot-files skipped) in plain string order
of their names (``sorted`` of the names: ``v10`` before ``v2``), or the items of an (N, T, H, W, 3) array
in order. Frames of a frame folder: plain string order of the file names for StyleGAN-V
(src/training/dataset.py:283, 299 and 319 sort the paths), natural order (``2`` before ``10``) otherwise.

Clips: after ``skip_first`` frames, ``frames`` frames ``stride`` apart. A real clip starts at a uniformly
random frame ``r`` with 0 <= r <= available - frames * stride + stride - 1 (dataset.py:403's
``random.randint`` bounds), drawn in video order from a generator seeded by (seed, run); a generated clip
starts at its first frame (frechet_video_distance.py:39). A real video shorter than frames * stride is
dropped before the first ``max_videos`` are counted (dataset.py:323-324, with discard_short_videos);
a short generated video is an error (dataset.py:400's assertion). StyleGAN-V's own starts are unseeded
(Python's ``random`` in data-loader workers), so its runs differ; ours are reproducible by the seed.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from i3d.errors import I3DError, no_such_input
from i3d.settings import FvdProtocol
from i3d.video.decode import IMAGE_SUFFIXES, VIDEO_SUFFIXES, pyav, upright_rgb


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class VideoSource:
    """One video of a set: a frame folder, a video file, or an item of an array."""

    def __init__(self, name: str, path: Path | None = None, array: np.ndarray | None = None,
                 frame_order: str = "string") -> None:
        self.name, self.path, self.array, self.frame_order = name, path, array, frame_order
        self._files: list[Path] | None = None

    def _frame_files(self) -> list[Path]:
        if self._files is None:
            files = [p for p in self.path.iterdir()
                     if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
            key = (lambda p: p.name) if self.frame_order == "string" else (lambda p: _natural_key(p.name))
            self._files = sorted(files, key=key)
        return self._files

    def frame_count(self) -> int:
        if self.array is not None:
            return len(self.array)
        if self.path.is_dir():
            return len(self._frame_files())
        av = pyav()
        try:
            with av.open(str(self.path)) as container:
                return sum(1 for _ in container.decode(video=0))
        except (av.error.FFmpegError, OSError, IndexError) as error:
            raise I3DError(f"{self.path}: cannot read as a video ({error})") from None

    def frames(self, indices: list[int]) -> np.ndarray:
        """The frames at ``indices`` (increasing), (len, H, W, 3) uint8 RGB."""
        if self.array is not None:
            return np.asarray(self.array[indices])
        if self.path.is_dir():
            from PIL import Image

            images = []
            for index in indices:
                file = self._frame_files()[index]
                try:
                    with Image.open(file) as image:
                        image = image.convert("RGB") if image.mode not in ("RGB", "L") else image
                        pixels = np.asarray(image)
                except OSError as error:
                    raise I3DError(f"{file}: cannot read as an image ({error})") from None
                images.append(np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels)
            return _stack(images, self.name)
        av = pyav()
        wanted, images, reformatter = set(indices), [], av.video.reformatter.VideoReformatter()
        with av.open(str(self.path)) as container:
            for position, frame in enumerate(container.decode(video=0)):
                if position in wanted:
                    images.append(upright_rgb(frame, reformatter))
                if position >= indices[-1]:
                    break
        return _stack(images, self.name)


def _stack(images: list[np.ndarray], name: str) -> np.ndarray:
    if len({image.shape for image in images}) > 1:
        raise I3DError(f"{name}: its frames differ in size ({', '.join(sorted({str(i.shape) for i in images}))})")
    return np.stack(images)


def shared_names(videos: list[VideoSource]) -> list[str]:
    """Names of a folder set that lead (links) to a file an earlier name leads to: each still counts as a video
    of the set, as every FVD implementation that reads the folder counts it; the report says how many."""
    seen, shared = set(), []
    for video in videos:
        if video.path is None:
            continue
        try:
            key = video.path.resolve()
        except OSError:  # a link loop: decoding it says so
            continue
        if key in seen:
            shared.append(video.name)
        seen.add(key)
    return shared


def planned_clips(source: Path, protocol: FvdProtocol) -> int:
    """How many clips a set gives at most (fewer where short real videos are dropped); 0 for statistics."""
    if source.name.endswith(".stats.npz"):
        return 0
    count = len(list_videos(source, protocol))
    return count if protocol.max_videos is None else min(count, protocol.max_videos)


def list_videos(source: Path, protocol: FvdProtocol) -> list[VideoSource]:
    """The set's videos in the protocol's order."""
    if not source.exists():
        raise no_such_input(source)
    if source.is_dir():
        try:
            entries = sorted(p.name for p in source.iterdir() if not p.name.startswith("."))
        except PermissionError:
            raise I3DError(f"{source}: cannot list the folder (permission denied)") from None
        videos = [VideoSource(f"{source}/{name}", source / name, frame_order=protocol.frame_order) for name in entries
                  if (source / name).is_dir() or (source / name).suffix.lower() in VIDEO_SUFFIXES]
        if not videos:
            raise I3DError(f"{source}: holds no videos or frame folders")
        return videos
    if source.suffix.lower() not in (".npy", ".npz"):
        raise I3DError(f"{source}: give a folder of videos or frame folders, an .npy/.npz array or a .stats.npz")
    try:
        if source.suffix.lower() == ".npy":
            data = np.load(source, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(source, allow_pickle=False) as archive:
                if not archive.files:
                    raise I3DError(f"{source}: an empty .npz (no array in it)")
                data = archive[archive.files[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise I3DError(f"{source}: not a readable array ({error})") from None
    if data.ndim != 5 or data.shape[-1] != 3:
        raise I3DError(f"{source}: shape {data.shape}; expected (N, T, H, W, 3)")
    if 0 in data.shape:
        raise I3DError(f"{source}: shape {data.shape} holds no pixels")
    return [VideoSource(f"{source}[{i}]", array=data[i]) for i in range(len(data))]


def clip_indices(frame_count: int, protocol: FvdProtocol, real: bool, rng: np.random.Generator) -> list[int] | None:
    """Frame indices of the clip, or None when the video is too short for it."""
    available = frame_count - protocol.skip_first
    if protocol.frames is None:
        return list(range(protocol.skip_first, frame_count)) if available > 0 else None
    span, stride = protocol.span, protocol.stride
    if available < span:
        return None
    start = 0
    if real and protocol.real_start == "random":
        start = int(rng.integers(0, available - span + stride - 1 + 1))
    return [protocol.skip_first + start + stride * k for k in range(protocol.frames)]


@dataclass
class Selection:
    """What a set gave: the videos found, those used, those dropped as too short."""

    source: str
    found: int = 0
    used: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    frame_starts: list[int] = field(default_factory=list)
    frame_sizes: set[tuple[int, int]] = field(default_factory=set)
    shared: list[str] = field(default_factory=list)  # names leading to a file an earlier name of the set leads to

    def summary(self) -> dict:
        return {"source": self.source, "videos_found": self.found, "clips_used": len(self.used),
                "dropped_short": len(self.dropped), "dropped_examples": self.dropped[:10],
                "frame_sizes": sorted(f"{w}x{h}" for h, w in self.frame_sizes),
                "names_sharing_a_file": len(self.shared), "shared_examples": self.shared[:10]}


def iter_clips(source: Path, protocol: FvdProtocol, real: bool, run: int = 0,
               selection: Selection | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(name, clip) of each video the protocol takes from the set, in order."""
    selection = selection if selection is not None else Selection(str(source))
    videos = list_videos(source, protocol)
    selection.found = len(videos)
    selection.shared = shared_names(videos)
    rng = np.random.default_rng([protocol.seed, run])
    limit = protocol.max_videos
    lengths = set()
    for video in videos:
        if limit is not None and len(selection.used) == limit:
            break
        count = video.frame_count()
        indices = clip_indices(count, protocol, real, rng)
        if indices is None:
            need = protocol.skip_first + (protocol.span or 1)
            if real and protocol.short_real == "drop":
                selection.dropped.append(video.name)
                continue
            raise I3DError(f"{video.name}: {count} frames, the protocol takes {need} "
                           f"({'a generated' if not real else 'a real'} video shorter than the clip is an error "
                           f"in {protocol.name})")
        if protocol.frames is None:
            lengths.add(len(indices))
            if len(lengths) > 1:
                raise I3DError(f"{video.name}: {len(indices)} frames, other videos of the set have "
                               f"{min(lengths - {len(indices)})}; {protocol.name} embeds whole videos of one "
                               "length (give --frames to take the first N)")
        selection.used.append(video.name)
        selection.frame_starts.append(indices[0])
        clip = video.frames(indices)
        selection.frame_sizes.add(clip.shape[1:3])
        yield video.name, clip
