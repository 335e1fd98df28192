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


def resize_short_side_pil(image: np.ndarray, size: int = SHORT_SIDE) -> np.ndarray:
    """PIL's bilinear resize (antialiased when shrinking) with the long side ``int(size * long / short)``
    (rounded down), as torchvision's old PIL ``resize`` and video_features' ``ResizeImproved`` compute it."""
    from PIL import Image

    height, width = image.shape[:2]
    if (width <= height and width == size) or (height <= width and height == size):
        return image
    new_w, new_h = (size, int(size * height / width)) if width < height else (int(size * width / height), size)
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))


def resize_340x256_lanczos(image: np.ndarray, size: int = SHORT_SIDE) -> np.ndarray:
    """Exactly 340 x 256 (aspect not kept), PIL's Lanczos (``ANTIALIAS``), as the ResNet-50 anomaly-detection
    extractor resizes (GowthamGottimukkala/I3D_Feature_Extraction_resnet extract_features.py:13); ``size``
    is 256 by construction."""
    from PIL import Image

    if image.shape[:2] == (256, 340):
        return image
    return np.asarray(Image.fromarray(image).resize((340, 256), Image.LANCZOS))


RESIZERS = {"opencv": resize_short_side, "pil": resize_short_side_pil, "pil-lanczos-340x256": resize_340x256_lanczos}


def crop_offsets(height: int, width: int, size: int, crops: str) -> list[tuple[int, int, bool]]:
    """(top, left, mirrored) of each crop: ``center``; ``3`` along the long side (start, centre, end);
    ``10``: torchvision's TenCrop: corners TL, TR, BL, BR and centre (rounded as its ``center_crop``),
    then the same five of the horizontally mirrored frame; ``10-oversample``: the same crops in Caffe's
    oversample order, as the ResNet-50 anomaly extractor takes them (extract_features.py:30-46): TL, TR,
    centre (rounded down), BL, BR, then the same positions of the mirrored frame."""
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {height}x{width}")
    top, left = (height - size) // 2, (width - size) // 2
    if crops == "center":
        return [(top, left, False)]
    if crops == "3":
        if width >= height:
            return [(top, 0, False), (top, left, False), (top, width - size, False)]
        return [(0, left, False), (top, left, False), (height - size, left, False)]
    if crops == "10-oversample":
        five = [(0, 0), (0, width - size), (top, left), (height - size, 0), (height - size, width - size)]
        return [(t, x, False) for t, x in five] + [(t, x, True) for t, x in five]
    centre = (int(round((height - size) / 2.0)), int(round((width - size) / 2.0)))
    five = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), centre]
    return [(t, x, False) for t, x in five] + [(t, x, True) for t, x in five]


def crop_mirrored(crops: str) -> list[bool]:
    """Which crops of ``crop_offsets`` are mirrored."""
    return [False] * 5 + [True] * 5 if crops.startswith("10") else [False] * (3 if crops == "3" else 1)


def crop_views(image: np.ndarray, size: int, crops: str) -> np.ndarray:
    """(n, size, size, C): the crops of one frame; a mirrored crop is taken from the mirrored frame."""
    views = []
    mirrored = None
    for top, left, mirror in crop_offsets(image.shape[0], image.shape[1], size, crops):
        if mirror:
            mirrored = image[:, ::-1] if mirrored is None else mirrored
            views.append(mirrored[top : top + size, left : left + size])
        else:
            views.append(image[top : top + size, left : left + size])
    return np.stack(views)


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
