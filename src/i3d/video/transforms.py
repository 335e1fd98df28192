"""The published RGB recipe as small pure functions on frames (H x W x C arrays) and clips (T x H x W x C)."""

from __future__ import annotations

import cv2
import numpy as np

SHORT_SIDE = 256
CROP = 224


def resize_short_side(image: np.ndarray, size: int = SHORT_SIDE) -> np.ndarray:
    """Bilinear (OpenCV INTER_LINEAR, half-pixel centres) so the shorter side is ``size``; aspect kept."""
    height, width = image.shape[:2]
    if height <= width:
        new_h, new_w = size, max(1, round(width * size / height))
    else:
        new_h, new_w = max(1, round(height * size / width)), size
    if (new_h, new_w) == (height, width):
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def center_crop(image: np.ndarray, size: int = CROP) -> np.ndarray:
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {height}x{width}")
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def to_unit_range(clip: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] to float32 [-1, 1]."""
    return clip.astype(np.float32) / 127.5 - 1.0


def loop_pad(clip: np.ndarray, min_frames: int) -> np.ndarray:
    """Repeat the clip from its start until it has ``min_frames`` frames (the policy for too-short input)."""
    if len(clip) >= min_frames:
        return clip
    return np.resize(clip, (min_frames, *clip.shape[1:]))
