"""The flow input of I3D: TV-L1 optical flow between consecutive 25 fps frames, the published recipe, or
RAFT (``method="raft"``), the flow of video_features and of most recent work.

Frames are resampled to 25 fps and resized to short side 256 exactly as for RGB, converted to grey
(OpenCV's BT.601 weights), and flow is computed at that resolution (the one the reference weights were
trained on) between frame k and frame k + 1. Values are clipped to [-20, 20] pixels and divided by 20;
the centre 224x224 crop is kept, as for RGB. T frames give T - 1 flow fields; the last is repeated so
the flow input has T frames like the RGB input, and the two streams line up frame for frame.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import cv2
import numpy as np
import torch

from i3d.devices import exact_cuda_math, parse_device
from i3d.errors import I3DError, I3DNotice
from i3d.settings import FLOW_METHODS
from i3d.video.decode import TARGET_FPS
from i3d.video.flow import built_kernels
from i3d.video.flow.tvl1_torch import EAGER_KERNELS, TVL1Params, tvl1_flow
from i3d.video.inputs import rgb_resized_frames
from i3d.video.transforms import CROP, SHORT_SIDE, center_crop

FLOW_BOUND = 20.0  # pixels
DEFAULT_BATCH = 8  # pairs at once on a CPU: more only adds memory (the CPU goes through them in chunks)
RAFT_BATCH = 4  # RAFT's: its correlation volume grows with the square of the frame's area
BYTES_PER_PAIR_PIXEL = 256  # what TV-L1 holds for one pair, per pixel of the finest level, with headroom
MAX_DEVICE_BATCH = 256


RAFT_BYTES_PER_PAIR_PIXEL = 4096  # RAFT-large's encoders and correlation pyramid at 256x344, with headroom


def pairs_per_batch(device: torch.device, height: int, width: int, method: str = "torch") -> int:
    """Frame pairs per batch: DEFAULT_BATCH on a CPU (RAFT_BATCH for RAFT); on a GPU as many as half its free
    memory holds (an accelerator is only busy with many pairs at once), at most MAX_DEVICE_BATCH."""
    if device.type != "cuda":
        return RAFT_BATCH if method == "raft" else DEFAULT_BATCH
    per_pixel = RAFT_BYTES_PER_PAIR_PIXEL if method == "raft" else BYTES_PER_PAIR_PIXEL
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(MAX_DEVICE_BATCH, free // 2 // (per_pixel * height * width)))


def to_grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def opencv_tvl1(firsts: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """OpenCV-contrib's Dual TV-L1 with its default parameters: (B, H, W) uint8 -> (B, H, W, 2)."""
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    return np.stack([solver.calc(a, b, None) for a, b in zip(firsts, seconds)])


BUILD_VARIABLE = "I3D_BUILD_KERNELS"  # 0: never build on first use (the plain kernels run instead)


def kernels_for(device: torch.device, fused: bool = True) -> Mapping[str, Callable]:
    """TV-L1's kernels for ``device``. On a CPU the fused ones built for it, loaded in milliseconds; built on
    first use where they are missing and a compiler exists (about a minute, once per machine; `i3d setup`
    does it ahead). On CUDA the same kernels compiled for it by ``torch.compile`` (Triton), once per process
    and device. Else the plain kernels, the same results to float rounding and several times slower.
    ``I3D_BUILD_KERNELS=0`` keeps the plain kernels rather than build or compile any."""
    if not fused or device.type not in ("cpu", "cuda"):
        return EAGER_KERNELS
    may_build = os.environ.get(BUILD_VARIABLE, "1") != "0"
    if device.type == "cuda":
        built = compiled_on(device) if may_build else None
        if built is None and may_build:
            warnings.warn(f"TV-L1 runs its plain kernels on {device} (same results, slower): torch.compile "
                          "could not compile them for it (is Triton installed?)", I3DNotice, stacklevel=2)
        return built or EAGER_KERNELS
    built = built_kernels.load()
    if built is None and may_build:
        built = build_on_first_use()
    if built is not None:
        return built
    warnings.warn("TV-L1 runs its plain kernels (same results, slower): the fused ones are not built for this "
                  "machine and could not be built here; `i3d setup` says why", I3DNotice, stacklevel=2)
    return EAGER_KERNELS


_COMPILED: dict[torch.device, Mapping[str, Callable] | None] = {}  # per CUDA device, for the whole process


def compiled_on(device: torch.device) -> Mapping[str, Callable] | None:
    """The kernels compiled for a CUDA device, once per process (every video's FlowComputer shares them);
    None where torch.compile cannot compile for it."""
    device = torch.device(device.type, device.index if device.index is not None else torch.cuda.current_device())
    if device not in _COMPILED:
        from i3d.video.flow import aot  # Inductor's imports, only where they are used

        warnings.warn(f"compiling TV-L1's kernels for {device}, once per process", I3DNotice, stacklevel=3)
        _COMPILED[device] = aot.compile_kernels(device)
    return _COMPILED[device]


def build_on_first_use() -> Mapping[str, Callable] | None:
    """Build the fused kernels in a child process (the compiler's imports stay out of this one), once: a
    second process waits on the lock and loads what the first built."""
    import subprocess
    import sys

    from i3d.download import cache_dir, file_lock

    try:
        lock = cache_dir() / "kernels" / ".build.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError:  # a cache that cannot be written keeps the plain kernels
        return None
    failed = built_kernels.kernel_dir().with_name(built_kernels.kernel_dir().name + ".failed")
    with file_lock(lock):
        built = built_kernels.load()
        if built is not None or failed.exists():  # built meanwhile, or tried before: not a minute every call
            return built
        warnings.warn("building TV-L1's fused kernels for this CPU, once (about a minute on 2 cores; `i3d setup` "
                      "does it ahead)", I3DNotice, stacklevel=3)
        done = subprocess.run([sys.executable, "-m", "i3d.video.flow.aot", "--if-missing", "--quiet"],
                              capture_output=True, text=True)
        built = built_kernels.load()
        if built is None:  # `i3d setup` tries again, and shows why
            failed.write_text(done.stderr[-2000:] or "the build left no kernels\n")
        return built


class FlowComputer:
    """Optical flow over batches of frame pairs: TV-L1 (``torch``: the batched PyTorch one; ``opencv``:
    OpenCV-contrib's) or RAFT (``raft``, with ``raft_weights`` by name or path and ``raft_iterations``).

    RAFT runs on frames padded to multiples of 8 (replicate, as princeton-vl's InputPadder does); its flow is
    cropped back to the frame unless ``raft_padded``, which keeps the padded field as video_features does.
    """

    def __init__(self, method: str = "torch", device: str = "auto", batch_size: int | None = None,
                 compile: bool = True, raft_weights: str | None = None, raft_iterations: int | None = None,
                 raft_padded: bool = False) -> None:
        """``batch_size``: frame pairs at once; None sizes it to the device (``pairs_per_batch``)."""
        if method not in FLOW_METHODS:
            raise I3DError(f"flow method must be one of {', '.join(FLOW_METHODS)}, not {method!r}")
        if batch_size is not None and batch_size < 1:
            raise I3DError(f"--batch-size must be at least 1, not {batch_size}")
        if method != "raft" and (raft_weights is not None or raft_iterations is not None):
            raise I3DError(f"--raft-weights and --raft-iterations are for the RAFT flow method, not {method}")
        self.method, self.device, self.batch_size = method, parse_device(device), batch_size
        self.kernels = kernels_for(self.device, compile) if method == "torch" else EAGER_KERNELS
        self.raft, self.raft_padded = None, raft_padded
        if method == "raft":
            from i3d.video.flow.raft import ITERATIONS

            self.raft_iterations = ITERATIONS if raft_iterations is None else raft_iterations
            if self.raft_iterations < 1:
                raise I3DError(f"--raft-iterations must be at least 1, not {self.raft_iterations}")
            self.raft = raft_network(raft_weights, self.device)

    def prepared(self, frame: np.ndarray) -> np.ndarray:
        """A frame as the method takes it: grey for TV-L1, RGB (H, W, 3) uint8 for RAFT."""
        if self.method != "raft":
            return to_grey(frame) if frame.ndim == 3 else frame
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise I3DError("RAFT computes flow from RGB frames, not grey ones")
        return frame

    def pairs(self, firsts: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """Flow (N, H, W, 2) in pixels from each of ``firsts`` to the same pair's ``seconds`` (grey (N, H, W)
        uint8 frames for TV-L1, RGB (N, H, W, 3) for RAFT)."""
        return self._pairs(firsts, seconds).cpu().numpy()

    def _pairs(self, firsts: np.ndarray, seconds: np.ndarray) -> torch.Tensor:
        """As ``pairs``, left where it was computed (the device's memory)."""
        if self.method == "opencv":
            return torch.from_numpy(opencv_tvl1(firsts, seconds))
        first = torch.from_numpy(firsts).to(self.device)
        second = torch.from_numpy(seconds).to(self.device)
        if self.method == "raft":
            return self._raft(first, second)
        return tvl1_flow(first, second, TVL1Params(), self.kernels)

    def _raft(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        from i3d.video.flow.raft import pad_to_eight, unpad

        height, width = first.shape[1:3]
        # NCHW in memory, as the source feeds it: a channels-last input takes other kernels (1e-5 px apart)
        images = pad_to_eight(torch.cat([first, second]).permute(0, 3, 1, 2).float().contiguous())
        with torch.inference_mode(), exact_cuda_math(self.device):  # TF32 would move the flow by far more
            flow = self.raft(*images.chunk(2), self.raft_iterations)
        if not self.raft_padded:
            flow = unpad(flow, height, width)
        return flow.permute(0, 2, 3, 1)

    def fields(self, frames: Iterable[np.ndarray], bound: float | None = None,
               crop: int | None = None) -> Iterator[np.ndarray]:
        """Flow (H, W, 2) from each frame to the next, then the last one again; batched, streamed. Frames are
        RGB (H, W, 3) uint8, or grey (H, W) for TV-L1.

        In pixels; with ``bound``, clipped to [-bound, bound] and divided by it, and with ``crop`` the centre
        crop x crop: done to each batch where it was computed, so a GPU sends back one finished batch.
        """

        def finished(batch: torch.Tensor) -> np.ndarray:
            if bound is not None:
                batch = batch.clamp(-bound, bound) / bound
            if crop is not None:
                batch = center_crop(batch.movedim(0, 2), crop).movedim(2, 0)
            return batch.contiguous().cpu().numpy()

        held: list[np.ndarray] = []
        last = None
        for frame in frames:
            held.append(self.prepared(frame))
            if self.batch_size is None:
                self.batch_size = pairs_per_batch(self.device, *frame.shape[:2], self.method)
            if len(held) == self.batch_size + 1:
                for field in finished(self._pairs(np.stack(held[:-1]), np.stack(held[1:]))):
                    yield (last := field)
                held = held[-1:]
        if len(held) > 1:
            for field in finished(self._pairs(np.stack(held[:-1]), np.stack(held[1:]))):
                yield (last := field)
        if last is not None:
            yield last
        elif held:  # a single frame: no motion to measure
            yield finished(torch.zeros((1, *self._flow_size(held[0]), 2)))[0]

    def _flow_size(self, frame: np.ndarray) -> tuple[int, int]:
        """The flow field's height and width for frames like ``frame`` (RAFT's padded ones are larger)."""
        height, width = frame.shape[:2]
        if self.method == "raft" and self.raft_padded:
            return height + (-height) % 8, width + (-width) % 8
        return height, width


def raft_network(weights: str | None, device: torch.device) -> torch.nn.Module:
    """RAFT with its weights (a name of ``i3d.video.flow.raft_weights.RAFT_WEIGHTS``, fetched on first use, or a
    converted file), in eval mode on ``device``; one copy per process and device."""
    from i3d.video.flow.raft_weights import resolve_raft_weights

    path = resolve_raft_weights(weights)
    key = (str(path.resolve()), path.stat().st_mtime_ns, str(device))
    if key not in _RAFT_NETWORKS:
        from i3d.video.flow.raft import Raft
        from i3d.video.flow.raft_weights import load_raft

        network = Raft()
        network.load_state_dict(load_raft(path), strict=False)  # all but BatchNorm's step counters: checked
        _RAFT_NETWORKS[key] = network.eval().to(device)
    return _RAFT_NETWORKS[key]


_RAFT_NETWORKS: dict[tuple, torch.nn.Module] = {}


def to_flow_input(field: np.ndarray, crop: int = CROP, bound: float = FLOW_BOUND) -> np.ndarray:
    """Pixels to the network's range: clip to [-20, 20], divide by 20, centre 224 crop."""
    return center_crop(np.clip(field, -bound, bound) / bound, crop).astype(np.float32)


def video_features_encoding(field: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Flow in pixels as video_features feeds its flow I3D (models/transforms.py:158-176, then :146-149):
    clamped to +-20, mapped to round(128 + 255/40 x) (rounded half to even, not clipped: 20 px gives 256),
    then 2u/255 - 1."""
    levels = np.round(128 + 255 / (2 * bound) * np.clip(field, -bound, bound).astype(np.float32))
    return (2 * levels / 255 - 1).astype(np.float32)


def flow_from_frames(
    frames: Iterable[np.ndarray], computer: FlowComputer | None = None, crop: int = CROP, bound: float = FLOW_BOUND
) -> Iterator[np.ndarray]:
    """(crop, crop, 2) float32 flow frames in [-1, 1] of resized uint8 RGB frames, streamed."""
    computer = computer or FlowComputer()
    return computer.fields(frames, bound, crop)


def flow_input_frames(
    path: Path, start_s: float | None = None, end_s: float | None = None, computer: FlowComputer | None = None,
    fps: float = TARGET_FPS, short_side: int = SHORT_SIDE, crop: int = CROP, bound: float = FLOW_BOUND,
) -> Iterator[np.ndarray]:
    """(224, 224, 2) float32 flow frames in [-1, 1] of a video file or frame folder, streamed."""
    return flow_from_frames(rgb_resized_frames(path, start_s, end_s, fps=fps, short_side=short_side), computer,
                            crop, bound)


__all__ = ["FLOW_BOUND", "FlowComputer", "flow_from_frames", "flow_input_frames", "kernels_for",
           "opencv_tvl1", "to_flow_input", "to_grey", "video_features_encoding"]
