"""i3d predict --timeline / --plot / --render: windows against direct computations, the plot, the labelled video."""

import json
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from conftest import write_video
from i3d.cli.main import main
from i3d.predict import Classifier
from i3d.timeline import compute_timeline
from i3d.video.inputs import rgb_input_frames
from i3d.video.transforms import to_unit_range


@pytest.fixture(scope="module")
def classifier(pretrained):
    return Classifier()


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    rng = np.random.default_rng(0)
    import cv2

    base = cv2.resize(rng.integers(0, 256, (9, 12, 3), np.uint8), (96, 72), interpolation=cv2.INTER_CUBIC)
    frames = np.stack([np.roll(base, 2 * i, axis=1) for i in range(60)])
    return write_video(tmp_path_factory.mktemp("timeline") / "pan.mp4", frames, 25)


def test_windows_are_what_the_network_says_of_each_span(classifier, pan):
    timeline = compute_timeline(classifier, pan, window_s=1.0, step_s=0.4)
    assert [(w.start_s, w.end_s) for w in timeline.windows] == [(0.0, 1.0), (0.4, 1.4), (0.8, 1.8), (1.2, 2.2)]
    frames = to_unit_range(np.stack(list(rgb_input_frames(pan))))
    np.testing.assert_allclose(timeline.windows[2].logits, classifier.clip_logits(frames[20:45]), atol=1e-5)
    short = compute_timeline(classifier, pan, window_s=1.0, step_s=0.4, end_s=0.36)  # 9 frames: one window
    assert len(short.windows) == 1 and short.windows[0].end_s == pytest.approx(0.36)


def test_cli_csv_json_and_plot(classifier, pan, tmp_path, capsys):
    plot = tmp_path / "plot.png"
    assert main(["predict", str(pan), "--timeline", "--window", "1", "--step", "0.5", "--plot", str(plot)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("start_s,end_s,label_1,p_1") and len(lines) == 1 + 3
    with Image.open(plot) as image:
        assert image.size == (1200, 540)
    assert main(["predict", str(pan), "--timeline", "--json", "--top-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["window_s"] == 2.56 and len(result["windows"]) == 1 and len(result["windows"][0]["top"]) == 2


def _with_audio(path, frames, fps=25):
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(16000 * len(frames) // fps) / 16000)).astype(np.float32)
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
            container.mux(audio.encode(chunk))
        container.mux(video.encode())
        container.mux(audio.encode())
    return path


def test_render_keeps_rate_size_frames_and_sound(classifier, tmp_path, capsys, pan):
    frames = np.full((30, 120, 160, 3), 200, np.uint8)
    source = _with_audio(tmp_path / "with_sound.mp4", frames)
    output = tmp_path / "out" / "labelled.mp4"
    assert main(["predict", str(source), "--render", str(output)]) == 0
    with av.open(str(output)) as out, av.open(str(source)) as src:
        assert out.streams.video[0].average_rate == src.streams.video[0].average_rate
        assert (out.streams.video[0].width, out.streams.video[0].height) == (160, 120)
        assert len(out.streams.audio) == 1
        decoded = [f.to_ndarray(format="rgb24") for f in out.decode(video=0)]
    assert len(decoded) == 30
    assert decoded[0][5:20, 5:60].mean() < 150 < decoded[0][100:, 100:].mean()  # the label box is drawn
    assert not any(p.name.startswith(".") for p in output.parent.iterdir())


def test_windows_batched_give_each_window_its_own_logits(pan, monkeypatch):
    batched, alone = Classifier(batch_size=3), Classifier(batch_size=1)
    sizes = []
    call = Classifier.batch_logits
    monkeypatch.setattr(Classifier, "batch_logits", lambda self, clips, modality="rgb": sizes.append(len(clips))
                        or call(self, clips, modality))
    together = compute_timeline(batched, pan, window_s=0.6, step_s=0.28)  # 15-frame windows every 7 frames: 7
    assert sizes == [3, 3, 1]
    sizes.clear()
    one_by_one = compute_timeline(alone, pan, window_s=0.6, step_s=0.28)
    assert sizes == [1] * 7
    assert [(w.start_s, w.end_s) for w in together.windows] == [(w.start_s, w.end_s) for w in one_by_one.windows]
    for a, b in zip(together.windows, one_by_one.windows):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-4, rtol=0)  # float32 sums in another order
