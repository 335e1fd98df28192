import json

import numpy as np
import pytest
import torch

from i3d.cli.main import main
from i3d.export import ExportOptions, build_export_graph, export, openvino_for_size, run_exported
from i3d.factory import build_model
from i3d.networks.inception import InceptionI3d
from i3d.runtimes.openvino import convolutions_run_in
from i3d.video.inputs import rgb_input_frames
from i3d.video.transforms import to_unit_range
from i3d.weights import LoadedWeights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow_weights(pretrained):
    """A flow network with random weights and non-trivial BatchNorm statistics (no flow weights exist here)."""
    torch.manual_seed(0)
    network = InceptionI3d(400, in_channels=2)
    state = network.state_dict()
    for name, tensor in state.items():
        if name.endswith("running_var"):
            tensor.uniform_(0.5, 2.0)
        elif name.endswith(("running_mean", "bias")):
            tensor.normal_(0, 0.1)
    return LoadedWeights(state, pretrained.labels, "flow", {"name": "random-flow"})


@pytest.fixture(scope="module")
def rgb_onnx(pretrained, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "rgb.onnx"
    return export([pretrained], path, "onnx"), path


@pytest.fixture(scope="module")
def video_clip(sample_video):
    frames = np.stack([f for _, f in zip(range(16), rgb_input_frames(sample_video))])
    return torch.from_numpy(to_unit_range(frames)).permute(3, 0, 1, 2).unsqueeze(0)


def test_onnx_export_reproduces_pytorch_for_any_batch_and_frames(rgb_onnx, pretrained, video_clip):
    result, path = rgb_onnx
    assert result.max_abs_diff < 1e-4  # the export's own check, at 10 and 17 frames
    network = build_model(pretrained)
    for clip in (video_clip, torch.cat([video_clip[:, :, :11], -video_clip[:, :, 5:16]])):
        with torch.no_grad():
            expected = network(clip).numpy()
        actual = run_exported(path, "onnx", [clip])
        assert actual.shape == expected.shape
        assert np.abs(actual - expected).max() < 1e-4


def test_onnx_export_carries_labels_and_input_description(rgb_onnx, pretrained):
    import onnx

    model = onnx.load(str(rgb_onnx[1]), load_external_data=False)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata["labels"]) == pretrained.labels
    assert metadata["i3d_layout"] == "NCTHW" and metadata["i3d_input"] == "float [-1, 1]"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1::2] == [3, 224] and not dims[0].dim_value and not dims[2].dim_value


def test_onnx_export_runs_in_openvino(rgb_onnx, pretrained, video_clip):
    from i3d.runtimes.openvino import openvino_core

    # OpenVINO runs in bfloat16 on CPUs that have it unless asked for float32.
    compiled = openvino_core().compile_model(str(rgb_onnx[1]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    actual = compiled(video_clip.numpy())[0]
    with torch.no_grad():
        expected = build_model(pretrained)(video_clip).numpy()
    assert np.abs(actual - expected).max() < 1e-4


def test_joint_graph_with_tensorflow_layout_uint8_input_and_softmax(pretrained, flow_weights, tmp_path):
    options = ExportOptions("joint", "NTHWC", softmax=True, uint8_input=True)
    path = tmp_path / "joint.onnx"
    result = export([pretrained, flow_weights], path, "onnx", options, check_frames=())
    generator = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (2, 12, 224, 224, 3), dtype=torch.uint8, generator=generator)
    flow = torch.rand(2, 12, 224, 224, 2, generator=generator) * 2 - 1
    # The reference: the two plain networks, preprocessing and fusion written out by hand.
    with torch.no_grad():
        rgb_logits = build_model(pretrained)((rgb.permute(0, 4, 1, 2, 3).float() - 127.5) / 127.5)
        flow_logits = build_model(flow_weights)(flow.permute(0, 4, 1, 2, 3))
    expected = torch.softmax(rgb_logits + flow_logits, dim=-1).numpy()
    actual = run_exported(path, "onnx", [rgb, flow])
    assert result.options.input_names == ["rgb", "flow"]
    assert np.abs(actual - expected).max() < 1e-5
    np.testing.assert_allclose(actual.sum(axis=1), 1, atol=1e-5)


def test_pt2_export_loads_with_torch_export_takes_any_frames_and_keeps_labels(pretrained, tmp_path):
    path = tmp_path / "rgb.pt2"
    result = export([pretrained], path, "pt2")
    assert result.max_abs_diff < 1e-4
    files = {"i3d.json": ""}
    module = torch.export.load(str(path), extra_files=files).module()
    assert json.loads(json.loads(files["i3d.json"])["labels"]) == pretrained.labels
    network = build_model(pretrained)
    for frames, batch in ((9, 1), (14, 3)):
        clip = torch.rand(batch, 3, frames, 224, 224) * 2 - 1
        with torch.no_grad():
            assert (module(clip) - network(clip)).abs().max() < 1e-4


def test_flow_graph_refuses_uint8_input():
    with pytest.raises(Exception, match="uint8_input applies to RGB"):
        ExportOptions("flow", uint8_input=True)


def test_streams_need_weights_of_their_modality(pretrained, flow_weights):
    with pytest.raises(Exception, match="the flow input needs flow weights"):
        build_export_graph([pretrained], ExportOptions("flow"))
    with pytest.raises(Exception, match="needs 2 set"):
        build_export_graph([pretrained], ExportOptions("joint"))
    other = LoadedWeights(flow_weights.state_dict, [f"class {i}" for i in range(400)], "flow", {})
    with pytest.raises(Exception, match="different label sets"):
        build_export_graph([pretrained, other], ExportOptions("joint"))


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", "-o", str(tmp_path / "x.onnx"), "--stream", "joint"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["export", "-o", str(tmp_path / "x.onnx"), "--weights", str(tmp_path / "none")]) == 2
    assert "neither a known weights name" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_openvino_ir_fp32_and_int8(pretrained, tmp_path, capsys):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from conftest import numbered_frames, write_video

    fp32 = export([pretrained], tmp_path / "fp32.xml", "openvino", check_frames=(10,))
    assert fp32.max_abs_diff < 1e-4 and (tmp_path / "fp32.bin").is_file()
    rng = np.random.default_rng(0)
    for i in range(2):
        write_video(tmp_path / f"c{i}.mp4", (numbered_frames(12, 240, 320) + rng.integers(0, 40, (12, 240, 320, 3))
                                             ).astype(np.uint8), 25)
    (tmp_path / "calibration.txt").write_text("c0.mp4\nc1.mp4\n")
    assert main(["export", "--format", "openvino", "-o", str(tmp_path / "int8.xml"), "--int8", "--calibration",
                 str(tmp_path / "calibration.txt"), "--no-check"]) == 0
    assert "calibrating int8 on 2 clips" in capsys.readouterr().out
    frames = np.stack(list(rgb_input_frames(tmp_path / "c1.mp4")))
    clip = torch.from_numpy(to_unit_range(frames)).permute(3, 0, 1, 2)[None].contiguous()  # a calibration-like clip
    full, quantised = run_exported(tmp_path / "fp32.xml", "openvino", [clip]), run_exported(
        tmp_path / "int8.xml", "openvino", [clip])
    assert quantised.shape == (1, 400) and np.corrcoef(full[0], quantised[0])[0, 1] > 0.9
    # compiled for a clip size, OpenVINO runs the quantised convolutions in int8 (with T free it ran them in f32)
    runs_in = convolutions_run_in(openvino_for_size(tmp_path / "int8.xml", [tuple(clip.shape[1:])]))
    assert runs_in.get("u8", 0) > sum(runs_in.values()) / 2, runs_in
    assert int(np.argmax(full[0])) in np.argsort(-quantised[0])[:5]
    assert main(["export", "--format", "onnx", "-o", str(tmp_path / "x.onnx"), "--int8"]) == 2
    assert "--int8 needs --format openvino and --calibration" in capsys.readouterr().err
