"""The preprocessing that goes with a set of weights, as one callable: ``weights.transforms()``.

``i3d predict`` feeds the network through exactly this object, so a library user who calls
``REGISTRY[name].transforms()`` gets the published recipe bit for bit, as torchvision users do.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from i3d.devices import network_input
from i3d.errors import I3DError
from i3d.video.inputs import rgb_input_frames
from i3d.video.recipe import Preprocessing
from i3d.video.transforms import center_crop, resize_short_side, to_unit_range


class VideoTransform:
    """A video file, frame folder or uint8 frames -> the network's input, by the weights' recipe.

    ``transform(path)`` or ``transform(frames)`` returns a (1, C, T, crop, crop) float32 tensor;
    ``frames`` is (T, H, W, 3) uint8 RGB already at the recipe's frame rate. ``transform.frames(path)``
    streams the same input one (crop, crop, C) frame at a time, for videos too long to hold.
    """

    def __init__(self, recipe: Preprocessing, flow_method: str = "torch", device: str | torch.device = "cpu",
                 flow_options: dict | None = None) -> None:
        """``flow_options``: RAFT's ``raft_weights`` and ``raft_iterations`` (``i3d.video.flow.FlowComputer``)."""
        self.recipe, self.flow_method, self.device = recipe, flow_method, str(device)
        self.flow_options = dict(flow_options or {})
        if recipe.value_range != (-1.0, 1.0):
            raise I3DError(f"value range {recipe.value_range} is not implemented; I3D weights use [-1, 1]")

    def __repr__(self) -> str:
        r = self.recipe
        rate = f"{r.fps:g} fps" if r.fps is not None else "native rate"
        every = f", every {r.frame_stride} frames" if r.frame_stride > 1 else ""
        return (f"VideoTransform({r.modality}: {rate}{every}, short side {r.short_side}, centre crop {r.crop}, "
                f"{r.channel_order} in [{r.value_range[0]:g}, {r.value_range[1]:g}])")

    def _flow_computer(self):
        from i3d.video.flow import FlowComputer

        return FlowComputer(self.flow_method, self.device, **self.flow_options)

    def uint8_frames(self, source: Path, start_s: float | None = None, end_s: float | None = None):
        """RGB crops as uint8 (before scaling): the cheapest form to move between processes."""
        r = self.recipe
        frames = rgb_input_frames(Path(source), start_s, end_s, fps=r.fps, short_side=r.short_side, crop=r.crop)
        return itertools.islice(frames, 0, None, r.frame_stride)

    def frames(self, source: str | Path, start_s: float | None = None, end_s: float | None = None
               ) -> Iterator[np.ndarray]:
        """(crop, crop, C) float32 frames in the value range, streamed from a video file or frame folder."""
        r = self.recipe
        if r.modality == "rgb":
            return (to_unit_range(frame) for frame in self.uint8_frames(Path(source), start_s, end_s))
        from i3d.video.flow import flow_input_frames

        return flow_input_frames(Path(source), start_s, end_s, self._flow_computer(), fps=r.fps,
                                 short_side=r.short_side, crop=r.crop, bound=r.flow_bound)

    def from_frames(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB at the recipe's rate -> (T, crop, crop, C) float32."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise I3DError(f"frames must be (T, H, W, 3) uint8 RGB; got {frames.shape} {frames.dtype}")
        r = self.recipe
        resized = [resize_short_side(frame, r.short_side) for frame in frames[:: r.frame_stride]]
        if r.modality == "rgb":
            return to_unit_range(np.stack([center_crop(frame, r.crop) for frame in resized]))
        from i3d.video.flow import flow_from_frames

        return np.stack(list(flow_from_frames(resized, self._flow_computer(), r.crop, r.flow_bound)))

    def __call__(self, video: str | Path | np.ndarray | torch.Tensor, start_s: float | None = None,
                 end_s: float | None = None) -> torch.Tensor:
        if isinstance(video, (str, Path)):
            held = list(self.frames(video, start_s, end_s))
            if not held:
                raise I3DError(f"{video}: no frames in the requested span")
            clip = np.stack(held)
        else:
            clip = self.from_frames(video.numpy() if isinstance(video, torch.Tensor) else video)
        return network_input(torch.from_numpy(clip[None]))  # laid out as predict feeds it: the same logits
