"""The flow stream end to end: cross-modal weights, two-stream fusion, saved flow files, `i3d flow`,
`i3d visualize`, and flow/both feature extraction."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_video
from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.factory import resolve_weights
from i3d.features import ExtractionConfig, WindowSpec, extract_features
from i3d.networks.inception import InceptionI3d
from i3d.predict import Classifier
from i3d.visualize import flow_pictures
from i3d.weights import save_weights
from i3d.weights.cross_modal import flow_state_dict_from_rgb


@pytest.fixture(scope="module")
def flow_weights(pretrained, tmp_path_factory):
    """A flow network made from the RGB weights: real numbers, no flow checkpoint needed."""
    path = tmp_path_factory.mktemp("weights") / "flow_init.safetensors"
    save_weights(path, flow_state_dict_from_rgb(pretrained.state_dict), pretrained.labels, "flow",
                 name="flow_init", provenance="test")
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(3)
    rgb = rng.uniform(-1, 1, (12, 224, 224, 3)).astype(np.float32)
    flow = np.clip(rng.normal(0, 0.2, (12, 224, 224, 2)), -1, 1).astype(np.float32)
    np.save(folder / "rgb.npy", rgb)
    np.save(folder / "flow.npy", flow)
    return folder


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    """12 frames, 128x160, of a smooth random texture moving right 1 px a frame (2 px at the 256 short side)."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (128, 200, 3)).astype(np.float32), (0, 0), 2)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    frames = np.stack([texture[:, 30 - t : 190 - t] for t in range(12)])
    return write_video(tmp_path_factory.mktemp("video") / "slide.mp4", frames, 25)


def test_cross_modal_flow_network_answers_a_grey_input_as_the_rgb_one_does():
    torch.manual_seed(0)
    rgb = InceptionI3d(num_classes=7).eval()
    flow = InceptionI3d(num_classes=7, in_channels=2).eval()
    flow.load_state_dict(flow_state_dict_from_rgb(rgb.state_dict()))
    grey = torch.rand(1, 1, 9, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = rgb.extract_endpoints(grey.expand(-1, 3, -1, -1, -1), ["Mixed_5c"])["Mixed_5c"]
        actual = flow.extract_endpoints(grey.expand(-1, 2, -1, -1, -1), ["Mixed_5c"])["Mixed_5c"]
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    kernel = rgb.state_dict()["Conv3d_1a_7x7.conv3d.weight"]
    torch.testing.assert_close(flow.state_dict()["Conv3d_1a_7x7.conv3d.weight"][:, 1], kernel.sum(1) / 2)
    for name, tensor in rgb.state_dict().items():
        if name != "Conv3d_1a_7x7.conv3d.weight":
            assert torch.equal(flow.state_dict()[name], tensor), name


def test_flow_from_rgb_command_writes_loadable_flow_weights(tmp_path, pretrained, capsys):
    assert main(["weights", "flow-from-rgb", "-o", str(tmp_path / "f.safetensors")]) in (0, None)
    loaded = resolve_weights(tmp_path / "f.safetensors")
    assert loaded.modality == "flow" and loaded.labels == pretrained.labels
    assert loaded.state_dict["Conv3d_1a_7x7.conv3d.weight"].shape[1] == 2
    assert main(["weights", "flow-from-rgb", str(tmp_path / "f.safetensors"), "-o", str(tmp_path / "g")]) == 2
    assert "cross-modal initialisation starts from RGB" in capsys.readouterr().err


def test_joint_stream_is_the_sum_of_the_rgb_and_flow_logits(clips, flow_weights):
    rgb = Classifier(stream="rgb").predict(clips / "rgb.npy")
    flow = Classifier(stream="flow", flow_weights=flow_weights).predict(clips / "flow.npy")
    joint = Classifier(stream="joint", flow_weights=flow_weights).predict(clips / "rgb.npy", flow=clips / "flow.npy")
    np.testing.assert_allclose(joint.logits, rgb.logits + flow.logits, atol=1e-5)
    assert joint.frames == 12 and joint.labels == rgb.labels


def test_a_saved_flow_file_is_windowed_like_a_computed_one(clips, flow_weights):
    classifier = Classifier(stream="flow", flow_weights=flow_weights)
    flow = np.load(clips / "flow.npy")
    windowed = classifier.predict(clips / "flow.npy", window_frames=5)
    expected = sum(classifier.clip_logits(flow[i : i + 5], "flow") * len(flow[i : i + 5]) for i in (0, 5, 10)) / 12
    np.testing.assert_allclose(windowed.logits, expected, atol=1e-5)
    assert windowed.windows == 3


@pytest.mark.parametrize("shape, message", [
    ((12, 224, 224, 3), r"expected \(1, T, 224, 224, 2\)"),
    ((12, 112, 112, 2), r"shape \(12, 112, 112, 2\)"),
])
def test_a_flow_file_of_the_wrong_shape_is_one_clear_error(clips, flow_weights, tmp_path, capsys, shape, message):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    code = main(["predict", str(clips / "rgb.npy"), "--stream", "joint", "--flow-weights", str(flow_weights),
                 "--flow", str(tmp_path / "bad.npy")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("i3d: error:")
    assert pytest.importorskip("re").search(message, err)


def test_missing_flow_weights_say_how_to_get_them(clips, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    assert main(["predict", str(clips / "flow.npy"), "--stream", "flow"]) == 2
    err = capsys.readouterr().err
    assert "no flow weights installed" in err and "i3d weights fetch flow_imagenet" in err


@pytest.mark.slow
def test_flow_command_saves_what_predict_would_compute(small_video, flow_weights, tmp_path, capsys):
    out = tmp_path / "slide_flow.npy"
    assert main(["flow", str(small_video), "-o", str(out)]) in (0, None)
    flow = np.load(out)
    assert flow.shape == (12, 224, 224, 2) and flow.dtype == np.float32
    assert np.abs(flow).max() <= 1 and np.array_equal(flow[-1], flow[-2])
    inner = flow[:-1, 32:-32, 32:-32] * 20  # pixels, away from the borders the texture enters and leaves by
    assert np.median(inner[..., 0]) == pytest.approx(2.0, abs=0.02)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.02)
    classifier = Classifier(stream="flow", flow_weights=flow_weights)
    computed = classifier.predict(small_video)
    saved = classifier.predict(small_video, flow=out)
    np.testing.assert_allclose(saved.logits, computed.logits, atol=1e-5)


@pytest.mark.slow
def test_visualize_writes_the_animations_and_the_chart(small_video, tmp_path, capsys):
    assert main(["visualize", str(small_video), "-o", str(tmp_path), "--frames", "8", "--top-k", "5"]) in (0, None)
    with Image.open(tmp_path / "rgb_input.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (224, 224)
    with Image.open(tmp_path / "flow_input.gif") as gif:
        assert gif.n_frames == 8
    with Image.open(tmp_path / "top_predictions.png") as chart:
        assert chart.format == "PNG" and chart.size[0] > 200
    assert main(["visualize", str(small_video), "-o", str(tmp_path), "--frames", "1"]) == 2


def test_flow_pictures_follow_the_reference_convention():
    flow = np.array([[[[0.0, 0.0], [0.5, -0.5], [-1.0, 1.0]]]], np.float32)
    pictures = flow_pictures(flow)
    assert pictures.tolist() == [[[[128, 128, 128], [255, 0, 128], [0, 255, 128]]]]
    wheel = flow_pictures(flow, "wheel")
    assert wheel[0, 0, 0].tolist() == [0, 0, 0] and wheel[0, 0, 2].max() == 255


def test_features_of_both_streams_are_the_rgb_and_flow_features_side_by_side(small_video, flow_weights, tmp_path):
    flows = tmp_path / "flows"
    flows.mkdir()
    rng = np.random.default_rng(5)
    np.save(flows / "slide.npy", np.clip(rng.normal(0, 0.2, (12, 224, 224, 2)), -1, 1).astype(np.float32))
    spec = WindowSpec(12, 12, "repeat")
    common = dict(spec=spec, workers=0, extras=("logits",), flow_weights=str(flow_weights), flow_dir=flows)
    outputs = {}
    for stream in ("rgb", "flow", "joint"):
        summary = extract_features([small_video], tmp_path / stream, ExtractionConfig(stream=stream, **common))
        assert summary.failed == 0, summary.rows
        with np.load(tmp_path / stream / "slide.npz") as data:
            outputs[stream] = {key: data[key] for key in ("features", "logits")}
    assert outputs["joint"]["features"].shape == (1, 2048)
    np.testing.assert_allclose(outputs["joint"]["features"][:, :1024], outputs["rgb"]["features"], atol=1e-5)
    np.testing.assert_allclose(outputs["joint"]["features"][:, 1024:], outputs["flow"]["features"], atol=1e-5)
    np.testing.assert_allclose(outputs["joint"]["logits"], outputs["rgb"]["logits"] + outputs["flow"]["logits"],
                               atol=1e-4)


def test_a_saved_flow_of_another_length_fails_that_video_only(small_video, flow_weights, tmp_path):
    flows = tmp_path / "flows"
    flows.mkdir()
    np.save(flows / "slide.npy", np.zeros((7, 224, 224, 2), np.float32))
    config = ExtractionConfig(spec=WindowSpec(12, 12, "repeat"), workers=0, stream="joint",
                              flow_weights=str(flow_weights), flow_dir=flows)
    summary = extract_features([small_video, tmp_path / "absent.mp4"], tmp_path / "out", config)
    assert summary.failed == 2
    assert "fewer frames than the video" in summary.rows[0].error
    with pytest.raises(I3DError, match="stream must be one of rgb, flow, joint"):
        ExtractionConfig(stream="rgb+flow")
    with pytest.raises(I3DError, match="stream must be one of rgb, flow, joint, not 'both'"):
        ExtractionConfig(stream="both")
