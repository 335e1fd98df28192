"""Frames with timestamps from a video file (PyAV, streamed) or a folder of images, resampled to a fixed rate."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from i3d.errors import I3DError, I3DNotice

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ogv", ".3gp"}
TARGET_FPS = 25.0
_EPS_S = 1e-6


def find_videos(folder: Path) -> list[Path]:
    """The videos under ``folder``, sorted, by the names they are found under.

    Links are followed, to folders outside too (a dataset of class folders linking into one store is a
    common layout); a link back into one of its own parent folders (a loop) is said once and not searched
    again. A video-named link that leads nowhere or in a loop is kept: it fails as an input of its own,
    with a manifest row, instead of vanishing. Dot-files and dot-folders (``._clip.mp4``, ``.cache``) are
    not the user's videos.
    """
    import os
    import warnings

    found: list[Path] = []

    def search(current: Path, parents: tuple[Path, ...]) -> None:
        real = Path(os.path.realpath(current))
        if real in parents:
            warnings.warn(f"{current}: a link back to {real} (a loop); not searched again", I3DNotice,
                          stacklevel=3)
            return
        try:
            entries = sorted(os.scandir(current), key=lambda entry: entry.name)
        except OSError as error:
            if not parents:
                raise I3DError(f"{current}: cannot list the folder ({error.strerror or error})") from None
            warnings.warn(f"{current}: cannot list the folder ({error.strerror or error}); its videos are left out",
                          I3DNotice, stacklevel=3)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                folder_entry = entry.is_dir()  # follows links
            except OSError:  # a link in a loop
                folder_entry = False
            if folder_entry:
                search(Path(entry.path), (*parents, real))
            elif Path(entry.name).suffix.lower() in VIDEO_SUFFIXES:
                found.append(Path(entry.path))

    search(folder, ())
    return sorted(found)

Frame = tuple[float, np.ndarray]  # (time in seconds, H x W x 3 uint8 RGB)


def pyav():
    """PyAV, imported where a video file is read or written: frame folders and arrays need none, so a machine
    without it (a bare GPU image) runs everything else."""
    try:
        import av
    except ImportError:
        raise I3DError("reading or writing a video file needs PyAV (pip install av); frame folders and .npy "
                       "arrays do not") from None
    return av


def upright_rgb(frame, reformatter=None) -> np.ndarray:
    """The frame as players and ffmpeg show it: RGB, turned by the stream's display matrix.

    ``frame.rotation`` is the matrix's counter-clockwise rotation (``av_display_rotation_get``); ffmpeg's
    command line turns the picture by it (a phone's portrait video says -90: shown turned 90 degrees
    clockwise), rounded to a multiple of 90 degrees as ffmpeg's autorotation does. Give the frames of one
    video one ``reformatter``: ``frame.to_ndarray(format="rgb24")`` sets up a new swscale context for every
    frame; a kept one converts the same bytes without (decoding, resizing and cropping bikes.mp4 took 0.76
    ms a frame instead of 1.18 on one core here, and far less than that under load).
    """
    reformatter = reformatter or pyav().video.reformatter.VideoReformatter()
    image = reformatter.reformat(frame, format="rgb24").to_ndarray()
    quarter_turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def iter_video_file(path: Path, start_s: float | None = None, end_s: float | None = None) -> Iterator[Frame]:
    """Decode one video stream as it plays; only the current frame is held."""
    av = pyav()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise I3DError(f"{path}: cannot open as a video ({_reason(error)})") from None
    with container:
        if not container.streams.video:
            raise I3DError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or TARGET_FPS)
        decoded, reformatter = 0, av.video.reformatter.VideoReformatter()
        try:
            if start_s:
                container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                time_s = frame.time if frame.time is not None else decoded / rate
                decoded += 1
                yield time_s, upright_rgb(frame, reformatter)
                if end_s is not None and time_s >= end_s:
                    break
        except av.error.FFmpegError as error:
            raise I3DError(f"{path}: decoding failed after {decoded} frames ({_reason(error)})") from None
        if decoded == 0:
            raise I3DError(f"{path}: no frame could be decoded")


def source_fps(path: Path) -> float | None:
    """The video stream's average frame rate as the container states it (None if it states none)."""
    av = pyav()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return float(rate) if rate else None
    except (av.error.FFmpegError, OSError, IndexError):
        return None


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)


def iter_image_folder(folder: Path, fps: float = TARGET_FPS) -> Iterator[Frame]:
    """Images in natural order (frame_2 before frame_10), one every 1/fps seconds."""
    files = image_files(folder)
    if not files:
        raise I3DError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for index, file in enumerate(files):
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise I3DError(f"{file}: cannot read as an image")
        yield index / fps, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resample_fps(
    frames: Iterable[Frame], fps: float = TARGET_FPS, start_s: float | None = None, end_s: float | None = None
) -> Iterator[np.ndarray]:
    """Sample-and-hold at ``fps``: output k shows whatever frame is on screen at ``start + k / fps``.

    Frames are dropped or repeated by their timestamps, never by counting, so variable frame rates work.
    The last frame stays on screen for one source frame interval (or until ``end_s``).
    """
    return (image for _, image in resample_fps_timed(frames, fps, start_s, end_s))


def resample_fps_timed(
    frames: Iterable[Frame], fps: float = TARGET_FPS, start_s: float | None = None, end_s: float | None = None
) -> Iterator[Frame]:
    """``resample_fps`` with each output's instant: (``start + k / fps``, the frame on screen then).

    The frame on screen at an instant is the last one whose timestamp is not after it (1 us tolerance).
    """
    shown: np.ndarray | None = None
    origin = start_s
    last_t = previous_t = None
    k = 0
    for time_s, image in frames:
        if origin is None:
            origin = time_s
        if shown is not None:
            while origin + k / fps < time_s - _EPS_S and (end_s is None or origin + k / fps < end_s - _EPS_S):
                yield origin + k / fps, shown
                k += 1
        if end_s is not None and time_s >= end_s - _EPS_S:
            break
        shown, previous_t, last_t = image, last_t, time_s
    if shown is None:
        return
    interval = last_t - previous_t if previous_t is not None and last_t > previous_t else 1 / fps
    stop = last_t + interval if end_s is None else min(end_s, last_t + interval)
    while origin + k / fps < stop - _EPS_S:
        yield origin + k / fps, shown
        k += 1


def source_fps_opencv(path: Path) -> float | None:
    """The frame rate OpenCV's FFmpeg backend states for the video (None if it states none)."""
    capture = cv2.VideoCapture(str(path))
    try:
        rate = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return float(rate) if rate and rate > 0 else None


def iter_video_file_opencv(path: Path) -> Iterator[Frame]:
    """Every frame as OpenCV's FFmpeg backend decodes it (BGR converted to RGB), with its position in seconds.

    Some extractors decode with OpenCV, whose colour conversion differs from PyAV's in the last bit; their
    presets decode the same way. A first frame that fails to read is skipped, as they skip it.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise I3DError(f"{path}: cannot open as a video (OpenCV)")
    decoded, first = 0, True
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                if first:
                    first = False
                    continue
                break
            first = False
            decoded += 1
            yield capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    if decoded == 0:
        raise I3DError(f"{path}: no frame could be decoded")
