from fractions import Fraction

import cv2
import numpy as np
import pytest

from conftest import frame_ids, numbered_frames, write_video
from i3d.errors import I3DError
from i3d.video.decode import image_files, iter_video_file, resample_fps
from i3d.video.inputs import load_clip_array, rgb_input_frames
from i3d.video.transforms import center_crop, loop_pad, resize_short_side, to_unit_range


def timed(count, fps, start=0.0):
    return [(start + i / fps, np.full((1, 1, 3), i, np.uint8)) for i in range(count)]


def ids(frames):
    return [int(f[0, 0, 0]) for f in frames]


def test_25_fps_passes_through_unchanged():
    assert ids(resample_fps(timed(50, 25))) == list(range(50))


def test_30_fps_drops_frames_by_timestamp():
    # output k at k/25 s shows source frame floor(k * 30 / 25): 30 frames (1 s) become 25
    assert ids(resample_fps(timed(30, 30))) == [int(k * 30 / 25 + 1e-9) for k in range(25)]


def test_12_5_fps_repeats_each_frame_twice():
    assert ids(resample_fps(timed(10, 12.5))) == [i // 2 for i in range(20)]


def test_start_and_end_cut_by_time():
    got = ids(resample_fps(timed(100, 25), start_s=1.0, end_s=2.0))
    assert got == list(range(25, 50))


def test_variable_frame_rate_follows_timestamps():
    frames = [(0.0, np.zeros((1, 1, 3), np.uint8)), (0.2, np.ones((1, 1, 3), np.uint8))]
    assert ids(resample_fps(frames)) == [0] * 5 + [1] * 5  # last frame held one source interval


def test_resize_short_side_is_bilinear_with_half_pixel_centres():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    resized = resize_short_side(image, 256)
    assert resized.shape == (256, 384, 3)
    # the textbook formula: source coordinate (x + 0.5) * in / out - 0.5, clamped at the borders
    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo
    (y0, y1, wy), (x0, x1, wx) = axis(256, 60), axis(384, 90)
    f = image.astype(np.float64)
    top = f[y0][:, x0] * (1 - wx)[None, :, None] + f[y0][:, x1] * wx[None, :, None]
    bottom = f[y1][:, x0] * (1 - wx)[None, :, None] + f[y1][:, x1] * wx[None, :, None]
    expected = top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]
    assert np.abs(resized.astype(np.float64) - expected).max() <= 1.0  # OpenCV's fixed point rounds uint8


def test_aspect_ratio_of_the_samples():
    assert resize_short_side(np.zeros((272, 640, 3), np.uint8)).shape == (256, 602, 3)
    assert resize_short_side(np.zeros((720, 1280, 3), np.uint8)).shape == (256, 455, 3)
    assert resize_short_side(np.zeros((400, 300, 3), np.uint8)).shape == (341, 256, 3)


def test_center_crop_takes_the_middle():
    image = np.arange(256 * 300).reshape(256, 300)
    crop = center_crop(image, 224)
    assert crop.shape == (224, 224) and crop[0, 0] == image[16, 38]


def test_unit_range_is_exact_at_the_ends():
    np.testing.assert_array_equal(to_unit_range(np.array([0, 255], np.uint8)), [-1.0, 1.0])
    assert to_unit_range(np.array([51], np.uint8))[0] == pytest.approx(51 / 255 * 2 - 1)


def test_loop_pad_repeats_from_the_start():
    clip = np.arange(4)[:, None]
    assert loop_pad(clip, 9)[:, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert loop_pad(np.arange(12), 9).tolist() == list(range(12))


def test_decoded_video_at_30_fps_is_resampled_by_time(tmp_path):
    path = write_video(tmp_path / "v.mp4", numbered_frames(30), Fraction(30))
    frames = list(rgb_input_frames(path))
    assert len(frames) == 25 and frames[0].shape == (224, 224, 3)
    assert frame_ids(frames) == [int(k * 30 / 25 + 1e-9) for k in range(25)]


def test_start_seeks_into_the_video(tmp_path):
    path = write_video(tmp_path / "v.mp4", numbered_frames(30), 25)
    assert frame_ids(rgb_input_frames(path, start_s=0.4, end_s=0.8)) == list(range(10, 20))


def test_image_folder_in_natural_order(tmp_path):
    for i, image in enumerate(numbered_frames(12)):
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), image)
    assert [p.name for p in image_files(tmp_path)][:3] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    assert frame_ids(rgb_input_frames(tmp_path)) == list(range(12))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "empty file"),
        (lambda d: (d / "notes.mp4").write_text("hello") and d / "notes.mp4", "cannot open as a video"),
        (lambda d: (d / "frames").mkdir() or d / "frames", "no image files"),
    ],
)
def test_bad_inputs_raise_one_clear_error(tmp_path, make, message):
    with pytest.raises(I3DError, match=message):
        list(rgb_input_frames(make(tmp_path)))


def test_truncated_video_is_refused(tmp_path, sample_video):
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(sample_video.read_bytes()[: 300_000])
    with pytest.raises(I3DError):
        list(rgb_input_frames(truncated))


def test_audio_only_file_is_refused(tmp_path):
    import av

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10) * 0.1).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        container.mux(stream.encode())
    with pytest.raises(I3DError, match="has no video stream"):
        list(iter_video_file(path))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((5, 224, 224), np.float32), "shape"),
        (np.zeros((2, 5, 224, 224, 3), np.float32), "shape"),
        (np.zeros((5, 224, 224, 3), np.uint8), "dtype"),
        (np.full((5, 224, 224, 3), np.nan, np.float32), "NaN"),
        (np.full((5, 224, 224, 3), 3.0, np.float32), r"expected \[-1, 1\]"),
        (np.zeros((0, 224, 224, 3), np.float32), "no frames"),
    ],
)
def test_bad_arrays_are_refused(tmp_path, array, message):
    np.save(tmp_path / "clip.npy", array)
    with pytest.raises(I3DError, match=message):
        load_clip_array(tmp_path / "clip.npy", channels=3)


def test_deepmind_style_array_is_accepted(tmp_path):
    np.save(tmp_path / "clip.npy", np.zeros((1, 7, 224, 224, 3), np.float32))
    assert load_clip_array(tmp_path / "clip.npy", channels=3).shape == (7, 224, 224, 3)


@pytest.mark.parametrize("pix_fmt, codec", [("yuv420p", "libx264"), ("yuvj420p", "mjpeg"), ("yuv444p", "libx264"),
                                            ("yuv420p10le", "libx265"), ("yuv422p", "libx264")])
def test_decoding_converts_every_frame_as_pyav_s_own_conversion_does(tmp_path, pix_fmt, codec):
    """One colour converter kept for a whole video gives the bytes PyAV's per-frame to_ndarray gives, for
    limited and full range, 4:2:0, 4:2:2, 4:4:4 and 10-bit video."""
    import av

    path = tmp_path / f"v.{'avi' if codec == 'mjpeg' else 'mkv'}"
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as container:
        try:
            stream = container.add_stream(codec, rate=25)
        except (av.error.FFmpegError, ValueError):
            pytest.skip(f"this FFmpeg has no {codec} encoder")
        stream.width, stream.height, stream.pix_fmt = 96, 64, pix_fmt
        for k in range(6):
            image = np.clip(rng.normal(128, 60, (64, 96, 3)) + 10 * k, 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        expected = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert container.streams.video[0].codec_context.pix_fmt == pix_fmt
    decoded = [image for _, image in iter_video_file(path)]
    assert len(decoded) == len(expected) == 6
    for got, want in zip(decoded, expected):
        np.testing.assert_array_equal(got, want)
