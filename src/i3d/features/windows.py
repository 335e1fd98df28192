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
           "per_frame_windows", "plan_windows"]

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


def per_frame_windows(frames: Iterator[np.ndarray], width: int) -> Iterator[Window]:
    """Window t holds frames t - (W-1)//2 .. t + W//2, the first and last frame repeated past the ends;
    row t's span is the real frames in it. Streamed: at most W frames are held."""
    before, after = (width - 1) // 2, width // 2
    held: deque[np.ndarray] = deque()
    count = 0
    emitted = 0

    def window(t: int) -> Window:
        return Window(t, max(0, t - before), min(count, t + after + 1), np.stack(held))

    for frame in frames:
        if count == 0:
            held.extend([frame] * before)
        held.append(frame)
        count += 1
        if len(held) > width:
            held.popleft()
        if len(held) == width and count - 1 - after >= emitted:
            yield window(emitted)
            emitted += 1
    while emitted < count:  # past the end: the last frame repeated (also fills a video shorter than W)
        held.append(held[-1])
        while len(held) < width:
            held.append(held[-1])
        while len(held) > width:
            held.popleft()
        yield window(emitted)
        emitted += 1
