"""Feature protocols: frame rate by timestamps, size and crops (TenCrop geometry and mirrors), per-frame
windows at both ends, row times, HDF5 kill-safety, presets, and the refusals, each against a direct
computation."""

import json
import signal
import subprocess
import sys
import time

import av
import cv2
import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import frame_ids, numbered_frames, write_video
from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.factory import build_model
from i3d.features import ExtractionConfig, WindowSpec, extract_features
from i3d.features.presets import config_from_preset
from i3d.features.video import DecodedVideo
from i3d.features.windows import per_frame_windows
from i3d.video.transforms import crop_views


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("protocol_videos")
    rng = np.random.default_rng(0)
    textured = cv2.resize(rng.integers(0, 256, (12, 16, 3), np.uint8), (80, 60), interpolation=cv2.INTER_CUBIC)
    pan = np.stack([np.roll(textured, 3 * i, axis=1) for i in range(30)])
    return {"numbered": write_video(folder / "numbered.mp4", numbered_frames(50, 48, 64), 25),
            "pan": write_video(folder / "pan.mp4", pan, 30)}


def test_fps_takes_the_frame_on_screen_at_each_instant(clips):
    video = DecodedVideo(clips["numbered"], WindowSpec(4, 4), ExtractionConfig(WindowSpec(4, 4), fps=10.0,
                                                                               size=200, crop_size=200))
    frames = [w.frames for w in video.windows()]
    ids = frame_ids([f[0] for window in frames for f in window])
    # instant k / 10 s shows source frame floor(k * 25 / 10) (25 fps source, sample and hold)
    assert ids == [int(k * 2.5 + 1e-9) % 32 for k in range(20)]  # levels 8 * i wrap after 32 frames
    assert video.times == pytest.approx([k / 10 for k in range(20)])
    native = DecodedVideo(clips["numbered"], WindowSpec(64, 64), ExtractionConfig(fps=None, size=200, crop_size=200))
    assert frame_ids([f[0] for w in native.windows() for f in w.frames]) == [i % 32 for i in range(50)]
    assert native.times == pytest.approx([k / 25 for k in range(50)])


def test_ten_crops_follow_torchvision_tencrop():
    frame = np.random.default_rng(1).integers(0, 256, (256, 343, 3), np.uint8)
    views = crop_views(frame, 224, "10")
    mirrored = frame[:, ::-1]
    centre_left = int(round((343 - 224) / 2))  # 60: torchvision rounds (59.5 -> 60), the centre crop floors
    expected = [frame[:224, :224], frame[:224, 119:], frame[32:, :224], frame[32:, 119:],
                frame[16:240, centre_left : centre_left + 224],
                mirrored[:224, :224], mirrored[:224, 119:], mirrored[32:, :224], mirrored[32:, 119:],
                mirrored[16:240, centre_left : centre_left + 224]]
    assert views.shape == (10, 224, 224, 3)
    for view, want in zip(views, expected):
        np.testing.assert_array_equal(view, want)
    assert crop_views(frame, 224, "center")[0][0, 0].tolist() == frame[16, 59].tolist()


def test_three_crops_run_along_the_long_side():
    landscape = np.arange(256 * 300).reshape(256, 300, 1)
    portrait = landscape.reshape(300, 256, 1)
    assert [v[0, 0, 0] for v in crop_views(landscape, 224, "3")] == [landscape[16, x, 0] for x in (0, 38, 76)]
    assert [v[0, 0, 0] for v in crop_views(portrait, 224, "3")] == [portrait[y, 16, 0] for y in (0, 38, 76)]


@pytest.mark.parametrize(("count", "width"), [(7, 5), (2, 5), (6, 4), (3, 1)])
def test_per_frame_windows_are_centred_and_repeat_the_ends(count, width):
    frames = iter(np.arange(count).reshape(count, 1))
    windows = list(per_frame_windows(frames, width))
    before, after = (width - 1) // 2, width // 2
    assert len(windows) == count
    for t, window in enumerate(windows):
        wanted = [min(max(i, 0), count - 1) for i in range(t - before, t + after + 1)]
        assert window.frames[:, 0].tolist() == wanted
        assert (window.start, window.end) == (max(0, t - before), min(count, t + after + 1))


def _direct_features(model, clip_uint8: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(clip_uint8.astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)[None]
    with torch.inference_mode():
        return model.forward_features(x)[0].numpy()


def _pyav_frames(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.slow
def test_crops_size_and_per_frame_equal_a_direct_computation(clips, tmp_path, pretrained):
    model = build_model(pretrained)
    config = ExtractionConfig(WindowSpec(10, 10, "drop"), workers=0, fps=None, size=240, crop_size=224,
                              crops="10", extras=("logits",))
    summary = extract_features([clips["pan"]], tmp_path / "crops", config)
    assert summary.failed == 0
    with np.load(tmp_path / "crops" / "pan.npz") as out:
        assert out["features"].shape == (3, 10, 1024) and out["logits"].shape == (3, 10, 400)
        frames = [cv2.resize(f, (320, 240), interpolation=cv2.INTER_LINEAR) for f in _pyav_frames(clips["pan"])]
        views = np.stack([crop_views(f, 224, "10") for f in frames[10:20]])  # window 1, (T, 10, 160, 160, 3)
        for k in (0, 4, 7):
            np.testing.assert_allclose(out["features"][1, k], _direct_features(model, views[:, k]), atol=2e-4)
        np.testing.assert_allclose(out["window_start_s"], [0, 10 / 30, 20 / 30], atol=1e-6)
        np.testing.assert_allclose(out["window_end_s"], [10 / 30, 20 / 30, 30 / 30], atol=1e-6)
    per_frame = ExtractionConfig(workers=0, fps=15.0, per_frame=9, size=200, crop_size=200)
    extract_features([clips["pan"]], tmp_path / "per_frame", per_frame)
    with np.load(tmp_path / "per_frame" / "pan.npz") as out:
        assert out["features"].shape == (15, 1024)
        np.testing.assert_allclose(out["frame_time_s"], np.arange(15) / 15, atol=1e-9)
        sampled = [cv2.resize(f, (267, 200), interpolation=cv2.INTER_LINEAR)[:, 33:233]
                   for f in _pyav_frames(clips["pan"])[::2]]  # 30 -> 15 fps: every other frame
        first = np.stack([sampled[0]] * 4 + sampled[:5])  # frame 0's window: the first frame repeated
        np.testing.assert_allclose(out["features"][0], _direct_features(model, first), atol=2e-4)
        last = np.stack(sampled[10:] + [sampled[-1]] * 4)
        np.testing.assert_allclose(out["features"][-1], _direct_features(model, last), atol=2e-4)
        assert out["window_start_s"][0] == 0 and out["window_end_s"][-1] == pytest.approx(1.0)


@pytest.mark.slow
def test_video_features_preset_reproduces_its_frame_pipeline(tmp_path, pretrained):
    """video_features: OpenCV decoding at the native rate, PIL bilinear to short side 256 with the long side
    floored, crop offset (H - 224) // 2, 2x/255 - 1, 64-frame stacks that need the 65th frame."""
    rng = np.random.default_rng(2)
    base = cv2.resize(rng.integers(0, 256, (10, 13, 3), np.uint8), (130, 100), interpolation=cv2.INTER_CUBIC)
    path = write_video(tmp_path / "v.mp4", np.stack([np.roll(base, 2 * i, axis=0) for i in range(129)]), 24)
    config = config_from_preset("video-features", workers=0, stream="rgb")  # its RGB half (tests/test_raft.py: both)
    assert extract_features([path], tmp_path / "out", config).failed == 0
    capture, frames = cv2.VideoCapture(str(path)), []
    while (read := capture.read())[0]:
        frames.append(np.asarray(Image.fromarray(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB)).resize(
            (int(256 * 130 / 100), 256), Image.BILINEAR)))
    assert len(frames) == 129  # 2 stacks of 64: the second needs frame 129 (index 128), which exists
    model = build_model(pretrained)
    with np.load(tmp_path / "out" / "v.npz") as out:
        assert out["features"].shape == (2, 1024)
        for window in range(2):
            clip = np.stack(frames[64 * window : 64 * (window + 1)])[:, 16:240, (332 - 224) // 2 :][:, :, :224]
            x = torch.from_numpy(2 * clip.astype(np.float32) / 255 - 1).permute(3, 0, 1, 2)[None]
            with torch.inference_mode():
                direct = model.forward_features(x)[0].numpy()
            np.testing.assert_allclose(out["features"][window], direct, atol=1e-4)
    header = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])["run"]
    assert header["preset"] == "video-features" and header["overrides"] == ["stream", "workers"]


def test_presets_set_defaults_that_explicit_settings_override():
    config = config_from_preset("mstcn", fps=10.0)
    assert (config.fps, config.per_frame, config.stream, config.fmt, config.npy_layout) == (10.0, 21, "joint", "npy",
                                                                                           "columns")
    assert config.overrides == ("fps",) and config.preset == "mstcn"
    anomaly = config_from_preset("anomaly-rtfm")
    assert (anomaly.spec.clip_len, anomaly.spec.step, anomaly.crops, anomaly.fps, anomaly.weights) == (
        16, 16, "10-oversample", None, "i3d_r50_anomaly")
    inception = config_from_preset("tencrop-inception")
    assert (inception.crops, inception.weights) == ("10", None)
    with pytest.raises(I3DError, match="unknown --preset 'nope'"):
        config_from_preset("nope")


@pytest.mark.parametrize(("args", "message"), [
    (["--fps", "0"], "--fps must be a rate above 0"),
    (["--fps", "fast"], "--fps: expected a number or `native`"),
    (["--crop-size", "300"], "--crop-size 300 is larger than the resized frame's short side (size 256)"),
    (["--crop-size", "100"], "crops need at least 193 px"),
    (["--per-frame", "0"], "--per-frame must be at least 1"),
    (["--preset", "nope"], "unknown --preset 'nope'"),
])
def test_bad_settings_are_one_line_before_any_work(tmp_path, capsys, args, message):
    assert main(["features", str(tmp_path / "v.mp4"), "-o", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_list_presets_names_sources(capsys):
    assert main(["features", "--list-presets"]) == 0
    out = capsys.readouterr().out
    for name in ("video-features", "actionformer-thumos", "mstcn", "anomaly-rtfm", "tencrop-inception"):
        assert f"{name}: " in out
    assert "v-iashin/video_features@a2f61b7 models/i3d/extract_i3d.py" in out


def test_mstcn_layout_writes_feature_major_npy(clips, tmp_path, pretrained):
    config = ExtractionConfig(WindowSpec(64, 64), fmt="npy", npy_layout="columns", workers=0, fps=10.0, size=200,
                              crop_size=200, per_frame=3)
    extract_features([clips["numbered"]], tmp_path, config)
    assert np.load(tmp_path / "numbered.npy").shape == (1024, 20)


def test_h5_holds_one_group_per_video_with_times_and_settings(clips, tmp_path, pretrained):
    config = ExtractionConfig(WindowSpec(8, 8), fmt="h5", workers=0, size=200, crop_size=200, extras=("logits",))
    summary = extract_features([clips["numbered"], clips["pan"], tmp_path / "absent.mp4"], tmp_path, config)
    assert summary.failed == 1
    with h5py.File(tmp_path / "features.h5", "r") as file:
        assert sorted(file) == ["numbered", "pan"]
        group = file["numbered"]
        assert group["features"].shape == (7, 1024) and group["logits"].shape == (7, 400)
        np.testing.assert_allclose(group["window_start_s"][:3], [0, 8 / 25, 16 / 25])
        assert json.loads(group.attrs["settings"])["size"] == 200
    again = extract_features([clips["numbered"], clips["pan"]], tmp_path, config)
    assert all(row.reused for row in again.rows)


KILL_SCRIPT = """
import sys
from pathlib import Path
from i3d.features import ExtractionConfig, WindowSpec, extract_features
import i3d.features.h5store as store
store.COMMIT_VIDEOS = 1
videos = sorted(Path(sys.argv[1]).glob("*.mp4"))
extract_features(videos, Path(sys.argv[2]), ExtractionConfig(WindowSpec(8, 8), fmt="h5", workers=0, size=200,
                                                             crop_size=200))
"""


@pytest.mark.slow
def test_a_killed_h5_run_leaves_every_reported_video_readable(tmp_path, pretrained):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(8):
        write_video(folder / f"v{i}.mp4", numbered_frames(16 + i, 48, 64), 25)
    out = tmp_path / "out"
    for delay in (4.0, 6.0, 8.0):
        process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder), str(out)])
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()] if (
            out / "manifest.jsonl").exists() else []
        reported = [line["output"].split(":/")[1] for line in lines if line.get("status") == "done"]
        if (out / "features.h5").exists():
            with h5py.File(out / "features.h5", "r") as file:
                for name in reported:
                    assert file[name]["features"].shape[1] == 1024
                    assert len(file[name]["window_start_s"]) == file[name]["features"].shape[0]
        else:
            assert reported == []
    assert main(["features", str(folder), "-o", str(out), "--format", "h5", "--clip-len", "8", "--step", "8",
                 "--size", "200", "--crop-size", "200", "--workers", "0", "--quiet"]) == 0
    with h5py.File(out / "features.h5", "r") as file:
        assert sorted(file) == [f"v{i}" for i in range(8)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.slow
def test_the_ray_engine_applies_every_protocol_setting_as_the_local_one(clips, tmp_path, pretrained):
    """Frame rate, size, three crops, per-frame rows and one HDF5 file: Ray's actors run the same
    extraction, so the same groups, times and values to float rounding (an actor runs on 1 thread)."""
    pytest.importorskip("ray")
    settings = dict(fps=5.0, size=200, crop_size=200, crops="3", per_frame=9, fmt="h5", extras=("logits",))
    local = extract_features([clips["pan"], clips["numbered"]], tmp_path / "local",
                             ExtractionConfig(workers=0, **settings))
    distributed = extract_features([clips["pan"], clips["numbered"]], tmp_path / "ray", ExtractionConfig(**settings),
                                   engine="ray", ray_workers=2)
    assert local.failed == distributed.failed == 0
    with h5py.File(tmp_path / "local" / "features.h5", "r") as a, h5py.File(tmp_path / "ray" / "features.h5") as b:
        assert sorted(a) == sorted(b) == ["numbered", "pan"]
        for name in a:
            assert sorted(a[name]) == sorted(b[name]) and a[name]["features"].shape[1:] == (3, 1024)
            for key in a[name]:
                first, second = a[name][key][()], b[name][key][()]
                if first.dtype.kind == "f":
                    np.testing.assert_allclose(first, second, atol=2e-4)
                else:
                    np.testing.assert_array_equal(first, second)
