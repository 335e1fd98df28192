"""Formula-made video sets that a reference run and a test both make, bit for bit."""

from __future__ import annotations

import numpy as np


def video_sets(count: int = 16, frames: int = 16, height: int = 72, width: int = 96) -> tuple[np.ndarray, ...]:
    """Moving colour gratings, each video its own direction and speed (real), and the same with a coarser
    grating and a phase drift (fake): uint8 (N, T, H, W, 3)."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    sets = []
    for fake in (0, 1):
        videos = []
        for i in range(count):
            angle, speed = 2 * np.pi * i / count, 0.2 + 0.05 * i
            wave = (0.15 + 0.1 * fake) * (np.cos(angle) * x + np.sin(angle) * y) + speed * t + fake * 0.3 * t ** 1.5
            channels = [np.sin(wave + phase) for phase in (0.0, 2.1, 4.2)]
            videos.append(np.round(127.5 * (1 + np.stack(channels, axis=-1))).astype(np.uint8))
        sets.append(np.stack(videos))
    return tuple(sets)
