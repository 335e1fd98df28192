"""Shared fixtures: tiny synthetic videos made on the fly, and the real assets the bootstrap fetched."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

# Tests never reach the network, nor spend a minute compiling, by accident: first-use fetching and kernel
# builds are off unless a test turns them on (the fixture below fetches the weights on purpose).
os.environ["I3D_OFFLINE"] = "1"
os.environ["I3D_BUILD_KERNELS"] = "0"


def write_video(path: Path, frames: np.ndarray, fps: float | Fraction, codec: str = "libx264") -> Path:
    """Encode (T, H, W, 3) uint8 frames with x264 at crf 0, so flat colours survive within a level or two."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "0"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def numbered_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i is a flat grey of level 8 * i (mod 256), so decoded frames can be identified."""
    levels = (np.arange(count) * 8 % 256).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_ids(frames: list[np.ndarray]) -> list[int]:
    return [int(round(float(f.mean()) / 8)) for f in frames]


@pytest.fixture(scope="session")
def pretrained():
    """The default weights, installed by `make test`'s bootstrap (`i3d weights fetch`)."""
    from i3d.factory import resolve_weights

    return resolve_weights()


@pytest.fixture(scope="session")
def sample_video() -> Path:
    from i3d.video.samples import fetch_samples, sample_path, samples_dir

    if not (samples_dir() / "bigbuckbunny.mp4").exists():
        fetch_samples()
    return sample_path("bigbuckbunny.mp4")


def _weights_available() -> tuple[bool, str]:
    """Installed, or fetched now; a machine that cannot fetch them skips the tests that need them."""
    from i3d.errors import I3DError
    from i3d.weights.fetch import fetch_weights
    from i3d.weights.registry import DEFAULT_WEIGHTS
    from i3d.weights.store import installed_path

    if installed_path(DEFAULT_WEIGHTS).exists():
        return True, ""
    try:
        fetch_weights(DEFAULT_WEIGHTS)
    except I3DError as error:
        return False, f"the pretrained weights cannot be fetched here ({error})"
    return True, ""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests that use the pretrained weights (their fixture, or a ``slow`` real-weights test) are
    ``needs_weights``: marked before ``-m`` deselects, so `make test-fast` leaves them out."""
    for item in items:
        if "pretrained" in getattr(item, "fixturenames", ()) or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.needs_weights)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Only when a selected test needs the weights are they looked for (and fetched); where they cannot be
    had, those tests are skipped with the reason. A run without such tests touches neither disk nor network."""
    needing = [item for item in session.items if item.get_closest_marker("needs_weights")]
    if needing:
        available, reason = _weights_available()
        if not available:
            for item in needing:
                item.add_marker(pytest.mark.skip(reason=reason))
