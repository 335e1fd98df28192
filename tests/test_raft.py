"""RAFT flow: exact against princeton-vl/RAFT's own code (tests/data/raft_reference.npz, written by
tests/references/raft_flow.py), both published checkpoint layouts, fetching by name, the refusals, and
video_features' two-stream preset against a step-by-step reimplementation of its extractor."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from conftest import write_video
from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.video.flow import FlowComputer, raft_weights
from i3d.video.flow.raft import Raft
from i3d.video.flow.raft_weights import torchvision_names
from resnet_formula import tensor_values
from test_fetch import Server, _blob_sha1

REFERENCE = np.load("tests/data/raft_reference.npz")
# Pixels. 20 refinement steps grow float rounding: 1.4e-5 px from princeton-vl's flow where oneDNN and ATen use
# AVX-512 (as where the reference was made), 9.1e-4 px with both capped at AVX2.
FLOW_TOLERANCE = 2e-3


def _formula_state() -> dict[str, torch.Tensor]:
    """princeton-vl's state dict as its raft-*.pth files hold it: DataParallel names, norm3 twins included."""
    state = {}
    for name, tensor in Raft().state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[f"module.{name}"] = torch.zeros_like(tensor)
            continue
        state[f"module.{name}"] = torch.from_numpy(tensor_values(name, tuple(tensor.shape)))
        if ".downsample.1." in name:
            state[f"module.{name.replace('.downsample.1.', '.norm3.')}"] = state[f"module.{name}"]
    return state


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raft")
    state = _formula_state()
    torch.save(state, folder / "raft-formula.pth")
    plain = {k.removeprefix("module."): v for k, v in state.items() if ".norm3." not in k}
    torch.save(torchvision_names(plain), folder / "raft_large_formula.pth")
    return folder


@pytest.fixture(scope="module")
def converted(checkpoints):
    path = checkpoints / "raft-formula.safetensors"
    assert main(["weights", "convert", str(checkpoints / "raft-formula.pth"), "-o", str(path)]) == 0
    return path


def _flow(computer: FlowComputer, pair: np.ndarray) -> np.ndarray:
    return computer.pairs(pair[:1], pair[1:])[0]


@pytest.mark.parametrize(("pair", "iterations"), [(0, 20), (1, 20), (1, 12)])
def test_raft_matches_princeton_vl_s_own_code_on_real_frames(converted, pair, iterations):
    """Formula weights in princeton-vl's layout, converted by `i3d weights convert`; frames of the sample videos
    at sizes that need padding (an odd split included); its InputPadder, then unpadded, as its demo does."""
    computer = FlowComputer("raft", "cpu", raft_weights=str(converted), raft_iterations=iterations)
    flow = _flow(computer, REFERENCE[f"frames{pair}"])
    expected = REFERENCE[f"princeton{pair}_{iterations}"]
    assert flow.shape == expected.shape and np.abs(expected).mean() > 1.0  # real motion, not zeros
    assert np.abs(flow - expected).max() < FLOW_TOLERANCE


def test_torchvision_s_layout_converts_to_the_same_network(checkpoints, converted, tmp_path):
    path = tmp_path / "ported.safetensors"
    assert main(["weights", "convert", str(checkpoints / "raft_large_formula.pth"), "-o", str(path)]) == 0
    assert raft_weights.load_raft(path).keys() == raft_weights.load_raft(converted).keys()
    for name, tensor in raft_weights.load_raft(path).items():
        assert torch.equal(tensor, raft_weights.load_raft(converted)[name]), name
    flow = _flow(FlowComputer("raft", "cpu", raft_weights=str(path)), REFERENCE["frames0"])
    assert np.abs(flow - REFERENCE["torchvision0_20"]).max() < FLOW_TOLERANCE  # torchvision's raft_large, same weights


def test_the_flow_command_writes_raft_flow_in_the_flow_input_format(converted, tmp_path, capsys):
    frames = np.stack([np.roll(REFERENCE["frames1"][0], 2 * k, axis=1) for k in range(3)])
    video = write_video(tmp_path / "pan.mp4", frames[:, :128, :170], 25)
    out = tmp_path / "flow.npy"
    assert main(["flow", str(video), "-o", str(out), "--method", "raft", "--raft-weights", str(converted),
                 "--raft-iterations", "4"]) == 0
    flow = np.load(out)
    assert flow.shape == (3, 224, 224, 2) and flow.dtype == np.float32 and np.abs(flow).max() <= 1
    assert np.array_equal(flow[-1], flow[-2])  # the last field repeated, as for TV-L1
    assert "(RAFT, 25 fps)" in capsys.readouterr().out


@pytest.fixture
def published(checkpoints, tmp_path, monkeypatch):
    """raft-sintel served at its repository path and pinned by the git blob SHA-1 of the file served."""
    monkeypatch.setenv("I3D_HOME", str(tmp_path / "home"))
    data = (checkpoints / "raft-formula.pth").read_bytes()
    remote, trained = raft_weights.RAFT_WEIGHTS["raft-sintel"]
    monkeypatch.setitem(raft_weights.RAFT_WEIGHTS, "raft-sintel",
                        (dataclasses.replace(remote, blob_sha1=_blob_sha1(data)), trained))
    server = Server({remote.path: data})
    monkeypatch.setenv("I3D_WEIGHTS_URL", server.url)
    yield server
    server.close()


def test_raft_weights_are_fetched_by_name_on_first_use_and_verified(published, monkeypatch, tmp_path, capsys):
    with pytest.raises(I3DError, match=r"RAFT weights raft-sintel are not installed; run `i3d weights fetch"):
        FlowComputer("raft", "cpu")  # I3D_OFFLINE=1, as in every test: nothing fetched
    assert published.requests == []
    monkeypatch.delenv("I3D_OFFLINE")
    with pytest.warns(UserWarning, match="fetching them now"):
        computer = FlowComputer("raft", "cpu", raft_iterations=12)
    assert len(published.requests) == 1
    assert np.abs(_flow(computer, REFERENCE["frames1"]) - REFERENCE["princeton1_12"]).max() < FLOW_TOLERANCE
    FlowComputer("raft", "cpu")
    assert len(published.requests) == 1  # installed: not fetched again

    for cached in (tmp_path / "home").rglob("*"):  # a machine that has fetched nothing yet, and a tampered file
        if cached.is_file():
            cached.unlink()
    published.files["models/raft/checkpoints/raft-sintel.pth"] = b"tampered" * 100
    assert main(["weights", "fetch", "raft-sintel", "--quiet"]) == 2
    assert "differs from the pinned" in _one_line(capsys)
    assert not raft_weights.raft_weights_path("raft-sintel").exists()


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_raft_checkpoints_are_one_line_and_write_nothing(checkpoints, tmp_path, capsys):
    state = torch.load(checkpoints / "raft-formula.pth", weights_only=True)
    missing = {k: v for k, v in state.items() if "flow_head.conv2.bias" not in k}
    extra = {**state, "module.update_block.extra.weight": torch.zeros(3)}
    torch.save(missing, tmp_path / "missing.pth")
    torch.save(extra, tmp_path / "extra.pth")
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    for name, message in (("missing", "a RAFT checkpoint that lacks update_block.flow_head.conv2.bias"),
                          ("extra", "has tensors RAFT-large does not have: update_block.extra.weight"),
                          ("other", "a PyTorch file of an unknown layout")):
        out = tmp_path / f"{name}.safetensors"
        assert main(["weights", "convert", str(tmp_path / f"{name}.pth"), "-o", str(out)]) == 2
        assert message in _one_line(capsys) and not out.exists()


def test_raft_and_i3d_weights_cannot_be_taken_for_each_other(converted, pretrained, tmp_path, capsys):
    video = write_video(tmp_path / "v.mp4", np.zeros((4, 64, 64, 3), np.uint8), 25)
    assert main(["predict", str(video), "--weights", str(converted)]) == 2
    assert "RAFT optical-flow weights, not I3D weights: give them with --raft-weights" in _one_line(capsys)
    assert main(["flow", str(video), "-o", str(tmp_path / "f.npy"), "--method", "raft", "--raft-weights",
                 str(pretrained.path)]) == 2
    assert "I3D weights (rgb stream), given as RAFT weights" in _one_line(capsys)
    assert main(["flow", str(video), "-o", str(tmp_path / "f.npy"), "--method", "raft", "--raft-weights",
                 str(converted.with_suffix(".pth"))]) == 2
    assert "convert a RAFT checkpoint first" in _one_line(capsys)
    assert main(["flow", str(video), "-o", str(tmp_path / "f.npy"), "--raft-weights", str(converted)]) == 2
    assert "are for the RAFT flow method, not torch" in _one_line(capsys)
    assert not (tmp_path / "f.npy").exists()


def _video_features_reimplementation(path, rgb_model, flow_model, raft, stack, iterations):
    """v-iashin/video_features' ExtractI3D.extract, step by step (models/i3d/extract_i3d.py:82-170): OpenCV
    decoding, PIL bilinear to short side 256 (long side floored), an InputPadder from the first frame, RAFT
    between frames t and t+1 of the padded stack, centre crop of the padded flow, clamp, ToUInt8, 2x/255-1."""
    from PIL import Image

    capture, frames = cv2.VideoCapture(str(path)), []
    while (read := capture.read())[0]:
        image = Image.fromarray(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
        short, long = sorted(image.size)
        size = (256, int(256 * long / short)) if image.size[0] < image.size[1] else (int(256 * long / short), 256)
        frames.append(torch.from_numpy(np.array(image.resize(size, Image.BILINEAR))).permute(2, 0, 1).float())
    height, width = frames[0].shape[-2:]
    pad_h, pad_w = (((height // 8) + 1) * 8 - height) % 8, (((width // 8) + 1) * 8 - width) % 8
    padding = [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]

    def crop(tensor):
        top, left = (tensor.shape[-2] - 224) // 2, (tensor.shape[-1] - 224) // 2
        return tensor[..., top:top + 224, left:left + 224]

    out = {"rgb": [], "flow": []}
    for start in range(0, len(frames) - stack, stack):
        rgb_stack = torch.stack(frames[start : start + stack + 1])
        padded = torch.nn.functional.pad(rgb_stack, padding, mode="replicate")
        with torch.inference_mode():
            flow = raft(padded[:-1], padded[1:], iterations)
            flow = (2 * torch.round(128 + 255 / 40 * torch.clamp(crop(flow), -20, 20)) / 255) - 1
            rgb = (2 * crop(rgb_stack[:-1]) / 255) - 1
            out["rgb"].append(rgb_model.forward_features(rgb.permute(1, 0, 2, 3)[None])[0].numpy())
            out["flow"].append(flow_model.forward_features(flow.permute(1, 0, 2, 3)[None])[0].numpy())
    return {k: np.stack(v) for k, v in out.items()}


@pytest.mark.slow
def test_video_features_preset_computes_both_streams_as_its_extractor_does(converted, pretrained, tmp_path):
    """The preset with its stacks shortened to 9 frames and RAFT to 4 iterations (the RAFT network itself is
    held to princeton-vl's at 20 above): a 90x118 video becomes 256x335, padded to 256x336 with the odd
    column on the right, so the flow crop starts one column right of the RGB crop, as in video_features."""
    from i3d.factory import build_model, resolve_weights
    from i3d.features import extract_features
    from i3d.features.presets import config_from_preset
    from i3d.video.flow import raft_network

    rng = np.random.default_rng(5)
    base = cv2.resize(rng.integers(0, 256, (9, 12, 3), np.uint8), (118, 90), interpolation=cv2.INTER_CUBIC)
    video = write_video(tmp_path / "v.mp4", np.stack([np.roll(base, (k, 2 * k), axis=(0, 1)) for k in range(19)]), 25)
    flow_weights = tmp_path / "flow.safetensors"
    assert main(["weights", "flow-from-rgb", "-o", str(flow_weights)]) == 0
    config = config_from_preset("video-features", workers=0, clip_len=9, step=9, flow_weights=str(flow_weights),
                                raft_weights=str(converted), raft_iterations=4)
    assert extract_features([video], tmp_path / "out", config).failed == 0
    expected = _video_features_reimplementation(video, build_model(pretrained),
                                                build_model(resolve_weights(str(flow_weights))),
                                                raft_network(str(converted), torch.device("cpu")), 9, 4)
    with np.load(tmp_path / "out" / "v.npz") as out:
        assert out["rgb"].shape == out["flow"].shape == (2, 1024)  # 19 frames: two stacks of 9 need frame 18
        assert np.array_equal(out["features"], np.concatenate([out["rgb"], out["flow"]], axis=1))
        np.testing.assert_allclose(out["rgb"], expected["rgb"], atol=1e-4)
        np.testing.assert_allclose(out["flow"], expected["flow"], atol=1e-4)
        settings = json.loads(str(out["settings"]))
    assert (settings["flow_method"], settings["flow_encoding"], settings["raft_iterations"]) == (
        "raft", "video-features", 4)


def test_training_takes_the_raft_options_for_its_flow_stream():
    from i3d.train.config import TrainConfig
    from i3d.train.loop import clip_spec

    with pytest.raises(I3DError, match="are for --flow-method raft, not torch"):
        TrainConfig(train="data", raft_iterations=4)
    config = TrainConfig(train="data", stream="flow", flow_method="raft", raft_weights="raft-things", raft_iterations=4)
    spec = clip_spec(config, torch.device("cpu"))
    assert (spec.flow_method, spec.raft_weights, spec.raft_iterations) == ("raft", "raft-things", 4)
