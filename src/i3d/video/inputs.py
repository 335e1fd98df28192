"""What a user may point at: a video file, a folder of frames, or a preprocessed ``.npy`` array."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from i3d.errors import I3DError, no_such_input
from i3d.video.decode import TARGET_FPS, iter_image_folder, iter_video_file, resample_fps
from i3d.video.transforms import CROP, SHORT_SIDE, center_crop, resize_short_side

ARRAY_SUFFIXES = {".npy"}


def is_array_file(path: Path) -> bool:
    return path.suffix.lower() in ARRAY_SUFFIXES


def rgb_input_frames(
    path: Path, start_s: float | None = None, end_s: float | None = None, folder_fps: float = TARGET_FPS,
    fps: float | None = TARGET_FPS, short_side: int = SHORT_SIDE, crop: int = CROP,
) -> Iterator[np.ndarray]:
    """224x224 uint8 RGB centre crops at 25 fps (``fps`` None: the video's own rate) from a video file or an
    image folder, streamed."""
    return (center_crop(frame, crop) for frame in rgb_resized_frames(path, start_s, end_s, folder_fps, fps, short_side))


def rgb_resized_frames(
    path: Path, start_s: float | None = None, end_s: float | None = None, folder_fps: float = TARGET_FPS,
    fps: float | None = TARGET_FPS, short_side: int = SHORT_SIDE,
) -> Iterator[np.ndarray]:
    """uint8 RGB frames at 25 fps, short side 256, before any crop, streamed."""
    for name, value in (("--start", start_s), ("--end", end_s)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise I3DError(f"{name} {value}: not a time in the video (seconds from its start, 0 or more)")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise I3DError(f"--end ({end_s}) must be after --start ({start_s})")
    if not path.exists():
        raise no_such_input(path)
    if path.is_dir():
        frames = iter_image_folder(path, folder_fps)
    elif path.stat().st_size == 0:
        raise I3DError(f"{path}: empty file")
    else:
        frames = iter_video_file(path, start_s, end_s)
    if fps is None:  # every frame at the video's own rate (the ResNet-50 sources sample frames by index)
        kept = (image for time, image in frames
                if (start_s is None or time >= start_s) and (end_s is None or time < end_s))
        return (resize_short_side(frame, short_side) for frame in kept)
    return (resize_short_side(frame, short_side) for frame in resample_fps(frames, fps, start_s, end_s))


def load_clip_array(path: Path, channels: int) -> np.ndarray:
    """A preprocessed clip, (1, T, 224, 224, C) or (T, 224, 224, C) float in [-1, 1], as (T, 224, 224, C)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise I3DError(f"{path}: not a readable .npy array ({error})") from None
    if array.ndim == 5 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 4 or array.shape[1:] != (CROP, CROP, channels):
        raise I3DError(f"{path}: shape {array.shape}; expected (1, T, {CROP}, {CROP}, {channels}) "
                       f"or (T, {CROP}, {CROP}, {channels})")
    if array.dtype.kind != "f":
        raise I3DError(f"{path}: dtype {array.dtype}; expected float values in [-1, 1]")
    if not np.isfinite(array).all():
        raise I3DError(f"{path}: contains NaN or infinite values")
    if array.size and (array.min() < -1.0 - 1e-5 or array.max() > 1.0 + 1e-5):
        raise I3DError(f"{path}: values span [{array.min():.3g}, {array.max():.3g}]; expected [-1, 1]")
    if len(array) == 0:
        raise I3DError(f"{path}: holds no frames")
    return array.astype(np.float32, copy=False)
