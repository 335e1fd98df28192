"""33 formula-defined 240x320 RGB frames (a UCF-Crime frame size): the anomaly preset's test video.

33 frames make two whole 16-frame snippets (the extractor needs more than 16)."""

from __future__ import annotations

import numpy as np


def anomaly_frames(count: int = 33, height: int = 240, width: int = 320) -> list[np.ndarray]:
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(count):
        channels = [np.sin(0.045 * x + 0.03 * y + 0.4 * t + c) * np.cos(0.021 * (x - y) + 0.2 * c * t)
                    for c in range(3)]
        frames.append(np.clip(np.stack(channels, axis=-1) * 110 + 128, 0, 255).astype(np.uint8))
    return frames
