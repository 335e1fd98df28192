"""Known values for checkpoints written in each source's own layout, and a formula-defined input.

Shared by the tests and by tests/data/resnet3d/make_references.py, which ran each source's own model code
on the same values in a throwaway environment and kept the logits: defined by formula, so neither side
ships 100 MB of weights and both compute exactly the same numbers.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

FRAMES, SIZE = 8, 224


def tensor_values(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values of one source tensor, from its name and shape alone."""
    count = math.prod(shape)
    phase = (zlib.crc32(name.encode()) % 1000) * 0.01
    wave = np.sin(np.arange(count, dtype=np.float64) * 0.37 + phase).reshape(shape)
    leaf = name.rsplit(".", 1)[-1].rsplit("_", 1)[-1]
    if name.endswith(("running_var", "_riv")):
        values = 1.0 + 0.5 * wave**2
    elif name.endswith(("running_mean", "_rm")):
        values = 0.1 * wave
    elif len(shape) == 1 and "nonlocal" in name.replace("_", "") and "bn" in name and leaf in ("weight", "s"):
        values = 0.02 * wave  # the BatchNorm closing a non-local block: every source starts it at zero
    elif len(shape) == 1:  # BatchNorm scale (weight / _s) or a bias
        values = 1.0 + 0.2 * wave if leaf in ("weight", "s") else 0.1 * wave
    elif len(shape) == 2 or shape[0] == 400:  # the classifier: logits of a few units
        values = 0.003 * wave
    elif any(part in name for part in ("theta", "phi")):  # non-local affinities that stay finite without softmax
        values = wave * 0.1 * math.sqrt(4.0 / math.prod(shape[1:]))
    else:  # a convolution: He-like scale for its fan-in (a sine's variance is 1/2)
        values = wave * math.sqrt(4.0 / math.prod(shape[1:]))
    return values.astype(np.float32)


def clip_input(frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """(1, 3, T, H, W) float32 RGB in [-1, 1]: the project's input convention."""
    c, t, h, w = np.meshgrid(np.arange(3), np.arange(frames), np.arange(size), np.arange(size), indexing="ij")
    clip = np.sin(0.05 * h + 0.07 * w + 0.3 * t + c) * np.cos(0.02 * (h - w))
    return clip[None].astype(np.float32)
