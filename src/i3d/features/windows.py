"""Cutting a stream of 25 fps frames into fixed-length windows, with a stated policy for the last one.

Window ``i`` starts at frame ``i * step`` and holds ``clip_len`` frames. Where the video ends inside a
window, ``last`` decides: ``keep`` runs the network on the frames there are (it is fully convolutional in
time; windows under 9 frames are loop-padded as in ``i3d predict``), ``repeat`` pads with the last frame
up to ``clip_len``, ``drop`` leaves those frames out (the manifest counts them). A final partial window
whose frames all lie in the previous window is never emitted. A video shorter than one window always
gets one window of everything it has, whatever the policy: dropping it would lose the whole video.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from i3d.settings import DEFAULT_CLIP_LEN, DEFAULT_STEP, LAST_WINDOW_POLICIES, WindowSpec

__all__ = ["DEFAULT_CLIP_LEN", "DEFAULT_STEP", "LAST_WINDOW_POLICIES", "Window", "WindowSpec", "iter_windows",
           "plan_windows"]

@dataclass
class Window:
    index: int
    start: int  # first frame (25 fps, from the video's first frame)
    end: int  # one past the last real frame
    frames: np.ndarray  # (n, H, W, C): the real frames, plus repeats of the last under the repeat policy


def plan_windows(total_frames: int, spec: WindowSpec) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of every window of a ``total_frames`` video, and the number of frames dropped."""
    spans, start = [], 0
    while start + spec.clip_len <= total_frames:
        spans.append((start, start + spec.clip_len))
        start += spec.step
    tail_is_new = start < total_frames and (not spans or spans[-1][1] < total_frames)
    if tail_is_new and (spec.last != "drop" or not spans):
        spans.append((start, total_frames))
        tail_is_new = False
    dropped = total_frames - max(start, spans[-1][1] if spans else 0) if tail_is_new else 0
    return spans, dropped


def iter_windows(frames: Iterable[np.ndarray], spec: WindowSpec) -> Iterator[Window]:
    """The windows of ``plan_windows``, streamed: at most ``clip_len`` frames are held."""
    held: deque[np.ndarray] = deque()
    start = index = count = 0
    last_end = 0
    for frame in frames:
        if count >= start:
            held.append(frame)
        count += 1
        if count == start + spec.clip_len:
            yield Window(index, start, count, np.stack(held))
            index, last_end = index + 1, count
            start += spec.step
            for _ in range(min(spec.step, len(held))):
                held.popleft()
    if start < count and (index == 0 or last_end < count) and (spec.last != "drop" or index == 0):
        clip = np.stack(held)
        if spec.last == "repeat":
            clip = np.concatenate([clip, np.repeat(clip[-1:], spec.clip_len - len(clip), axis=0)])
        yield Window(index, start, count, clip)
