"""The public paths under every runtime installed, the default included: predict, features, FVD's embedder,
evaluate and serve each give what the plain network (``eager``) gives, within 1e-4, on a real video."""

import json

import numpy as np
import pytest

from i3d.evaluate import evaluate
from i3d.features.extract import extract_features
from i3d.fvd.embed import VideoEmbedder
from i3d.predict import Classifier
from i3d.runtimes import choose_runtime
from i3d.runtimes.openvino import openvino_available
from i3d.settings import ExtractionConfig, WindowSpec
from i3d.video.decode import iter_video_file

pytestmark = pytest.mark.slow

# auto, and each runtime it does not already stand for here
RUNTIMES = ["auto", *(r for r in ("fused", "openvino") if r != choose_runtime("auto") and (r != "openvino"
                                                                                       or openvino_available()))]


def test_the_default_runtime_is_the_fastest_installed():
    assert choose_runtime("auto", "fp32", "cpu") == ("openvino" if openvino_available() else "fused")


@pytest.fixture(scope="module")
def eager(pretrained):
    return Classifier(runtime="eager", device="cpu")


@pytest.fixture(scope="module")
def clip(sample_video, tmp_path_factory):
    """The sample's first 1.2 s (30 frames): every path's work in seconds."""
    from conftest import write_video

    frames = np.stack([image for _, (_, image) in zip(range(30), iter_video_file(sample_video))])
    return write_video(tmp_path_factory.mktemp("paths") / "clip.mp4", frames, 25)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_predict(runtime, eager, clip):
    expected = eager.predict(clip)
    got = Classifier(runtime=runtime, device="cpu").predict(clip)
    assert got.runtime == choose_runtime(runtime)
    np.testing.assert_allclose(got.logits, expected.logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_features(runtime, pretrained, clip, tmp_path):
    outputs = {}
    for name in ("eager", runtime):
        config = ExtractionConfig(WindowSpec(16, 16), workers=0, runtime=name, device="cpu", extras=("logits",))
        extract_features([clip], tmp_path / name, config)
        outputs[name] = np.load(tmp_path / name / f"{clip.stem}.npz")
        manifest = json.loads((tmp_path / name / "manifest.jsonl").read_text().splitlines()[0])
        assert manifest["run"]["runtime"] == choose_runtime(name)
    for key in ("features", "logits"):
        np.testing.assert_allclose(outputs[runtime][key], outputs["eager"][key], atol=1e-4, rtol=0)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fvd_embeddings(runtime, pretrained, clip):
    frames = np.stack([image for _, (_, image) in zip(range(30), iter_video_file(clip))])
    videos = np.stack([frames[:15], frames[15:]])
    expected = VideoEmbedder(device="cpu", runtime="eager").embed(videos)
    embedder = VideoEmbedder(device="cpu", runtime=runtime)
    assert embedder.weights["runtime"] == choose_runtime(runtime)
    np.testing.assert_allclose(embedder.embed(videos), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_evaluate(runtime, pretrained, clip, tmp_path):
    (tmp_path / "list.csv").write_text(f"{clip},juggling balls\n")
    reports = {name: evaluate(tmp_path / "list.csv", weights=None, device="cpu", runtime=name)
               for name in ("eager", runtime)}
    assert reports[runtime].runtime == choose_runtime(runtime)
    assert reports[runtime].predictions[0]["top5"] == reports["eager"].predictions[0]["top5"]
    assert reports[runtime].predictions[0]["score"] == pytest.approx(reports["eager"].predictions[0]["score"],
                                                                     abs=1e-4)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_serve(runtime, eager, clip):
    pytest.importorskip("fastapi")
    from i3d.serve.app import ServeConfig, create_app
    from test_serve import Running, _post

    running = Running(create_app(ServeConfig(), Classifier(runtime=runtime, device="cpu")))
    try:
        status, _, answer = _post(running.url, clip, fields={"top_k": "5"})
    finally:
        running.stop()
    assert status == 200, answer
    assert answer["runtime"] == choose_runtime(runtime)
    np.testing.assert_allclose(answer["logits"], eager.predict(clip).logits, atol=1e-4, rtol=0)
