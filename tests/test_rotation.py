"""Phone videos: frames are shown as players and ffmpeg show them, with the display matrix applied.

The convention was checked against the ffmpeg command line (its autorotation): a stream whose display
matrix says ``rotation=90`` (ffprobe) is shown as the stored frame turned 90 degrees counter-clockwise,
``np.rot90(frame, 1)``.
"""

import av
import numpy as np
import pytest

from conftest import write_video
from i3d.video.decode import iter_video_file
from i3d.video.inputs import rgb_input_frames


def _content(count: int = 6, height: int = 96, width: int = 64) -> np.ndarray:
    """Upright frames (portrait) with a bright corner block that moves, so every orientation differs."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    frames[:, :, :, 2] = np.linspace(0, 200, width, dtype=np.uint8)[None, None, :]
    for i in range(count):
        frames[i, 8 * i : 8 * i + 16, :24, 0] = 255
    return frames


def _write_rotated(path, upright: np.ndarray, rotation: int):
    """Store each frame turned so that a player applying ``rotation`` shows ``upright``."""
    stored = np.ascontiguousarray(np.rot90(upright, -rotation // 90, axes=(1, 2)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = stored.shape[2], stored.shape[1], "yuv420p"
        stream.options = {"crf": "0"}
        stream.set_display_rotation(rotation)
        for image in stored:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_videos_decode_as_the_same_content_stored_upright(tmp_path, rotation):
    upright = _content()
    plain = [f for _, f in iter_video_file(write_video(tmp_path / "upright.mp4", upright, 25))]
    turned = [f for _, f in iter_video_file(_write_rotated(tmp_path / "phone.mp4", upright, rotation))]
    assert len(turned) == len(plain) and turned[0].shape == plain[0].shape == (96, 64, 3)
    # the same pixels up to x264's 4:2:0 chroma, which is subsampled before the turn in one file, after in the other
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(turned, plain)) < 2.0
    unrotated = np.rot90(turned[0], -rotation // 90)
    assert np.abs(unrotated.astype(int)[: 64, : 64] - plain[0].astype(int)[: 64, : 64]).mean() > 20


def test_the_network_input_of_a_phone_video_is_upright(tmp_path):
    upright = np.repeat(_content(4, 320, 256), 1, axis=0)
    plain = np.stack(list(rgb_input_frames(write_video(tmp_path / "upright.mp4", upright, 25))))
    turned = np.stack(list(rgb_input_frames(_write_rotated(tmp_path / "phone.mp4", upright, -90))))
    assert turned.shape == plain.shape == (4, 224, 224, 3)
    assert np.abs(turned.astype(int) - plain.astype(int)).mean() < 2.0
