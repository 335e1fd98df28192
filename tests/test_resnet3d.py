"""The ResNet-50 I3D family against its sources' own forward passes, and its converters' refusals.

tests/data/resnet3d/*.json hold what each source's own code computed (tests/data/resnet3d/make_references.py:
PyTorchVideo 0.1.5, MMAction2 1.2.0's ResNet3d and I3DHead, pytorch-resnet3d's converter and network) for
checkpoints whose values are defined by formula (tests/resnet_formula.py). Here each checkpoint is written
again in its source's own file format, converted, built from the converted file alone, and run.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from i3d.errors import I3DError
from i3d.factory import create_model
from i3d.networks.architecture import RESNET_LAYOUTS
from i3d.networks.resnet3d import ResNet3d
from i3d.runtimes.fused import fuse
from i3d.weights.convert import convert_weights
from i3d.weights.registry import REGISTRY
from resnet_formula import clip_input, tensor_values

DATA = Path(__file__).parent / "data" / "resnet3d"
REFERENCES = sorted(p.stem for p in DATA.glob("*.json"))
FORMATS = {"model_state": "pytorchvideo", "state_dict": "mmaction2", "blobs": "caffe2"}
SUFFIX = {"pytorchvideo": ".pyth", "mmaction2": ".pth", "caffe2": ".pkl"}


def reference(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def source_tensors(record: dict) -> dict[str, np.ndarray]:
    return {name: (np.zeros((), np.int64) if name.endswith("num_batches_tracked") else
                   tensor_values(name, tuple(shape))) for name, shape in record["names"]}


def write_py2_pickle(path: Path, obj) -> None:
    """A pickle as Python 2's cPickle wrote Caffe2's: protocol 2, numpy's arrays under ``numpy.core``."""
    data = pickle.dumps(obj, protocol=2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(data)


def write_source_checkpoint(record: dict, folder: Path, stem: str) -> Path:
    """The checkpoint as its source publishes it: .pyth, .pth or .pkl, with the training state beside it."""
    source_format = FORMATS[record["checkpoint_key"]]
    tensors = source_tensors(record)
    path = folder / f"{stem}{SUFFIX[source_format]}"
    if source_format == "pytorchvideo":  # SlowFast's checkpoint: epoch, model_state, optimizer_state, cfg
        torch.save({"epoch": 196, "model_state": OrderedDict((k, torch.from_numpy(v)) for k, v in tensors.items()),
                    "optimizer_state": {}, "cfg": "MODEL:\n  ARCH: i3d\n"}, path)
    elif source_format == "mmaction2":
        torch.save({"meta": {"mmaction_version": "1.0.0", "epoch": 100},
                    "state_dict": OrderedDict((k, torch.from_numpy(v)) for k, v in tensors.items())}, path)
    else:  # video-nonlocal-net: blobs with their momentum, the iteration and the learning rate
        blobs = dict(tensors)
        blobs.update({f"{k}_momentum": np.zeros_like(v) for k, v in tensors.items() if k.endswith("_w")})
        write_py2_pickle(path, {"blobs": {**blobs, "model_iter": 400000, "lr": np.float32(1e-4)}})
    return path


def check_against(record: dict, model: torch.nn.Module, tolerance: float = 1e-5) -> None:
    x = torch.from_numpy(clip_input(record["frames"]))
    with torch.inference_mode():
        logits, features = model(x)[0], model.forward_features(x)[0]
    want, want_features = torch.tensor(record["logits"]), torch.tensor(record["features"])
    assert (logits - want).abs().max() < tolerance, record["source"]
    assert (features - want_features).abs().max() < tolerance * max(1.0, float(want_features.abs().max()))


@pytest.mark.parametrize("name", REFERENCES)
def test_converted_checkpoint_gives_the_sources_logits(name, tmp_path):
    """Write the source's file, convert it (format and layout recognised), build from the file: the source's
    logits and pooled features within 1e-5, in the fused form and the plain one."""
    record = reference(name)
    source = write_source_checkpoint(record, tmp_path, name.replace("r50", "r50_32x2"))
    converted = convert_weights(source, tmp_path / "converted.safetensors")
    assert converted.layout is not None and converted.layout.name == name and converted.num_classes == 400
    model = create_model(tmp_path / "converted.safetensors")
    assert isinstance(model, ResNet3d) and model.layout == RESNET_LAYOUTS[name]
    check_against(record, model)
    check_against(record, fuse(model))  # BatchNorm folded, channels-last


def test_pytorch_resnet3d_files_convert_as_the_caffe2_32x2_network(tmp_path):
    """pytorch-resnet3d's own renaming of the Caffe2 blobs (utils/convert_weights.py: layerN-1.M.convK,
    bnK, downsample.0/1, nl.theta/phi/g/out/bn, fc) converts to the same network and logits."""
    record = reference("caffe2-r50-nl-32x2")
    renamed = {}
    for name, values in source_tensors(record).items():
        suffix = {"w": "weight", "b": "bias", "s": "weight", "rm": "running_mean", "riv": "running_var"}
        if m := re.fullmatch(r"res(\d)_(\d+)_branch2([abc])_(bn_)?(\w+)", name):
            key = f"layer{int(m[1]) - 1}.{m[2]}.{'bn' if m[4] else 'conv'}{'abc'.index(m[3]) + 1}.{suffix[m[5]]}"
        elif m := re.fullmatch(r"res(\d)_(\d+)_branch1_(bn_)?(\w+)", name):
            key = f"layer{int(m[1]) - 1}.{m[2]}.downsample.{1 if m[3] else 0}.{suffix[m[4]]}"
        elif m := re.fullmatch(r"nonlocal_conv(\d)_(\d+)_(theta|phi|g|out|bn)_(\w+)", name):
            key = f"layer{int(m[1]) - 1}.{m[2]}.nl.{m[3]}.{suffix[m[4]]}"
        else:
            key = {"conv1_w": "conv1.weight", "res_conv1_bn_s": "bn1.weight", "res_conv1_bn_b": "bn1.bias",
                   "res_conv1_bn_rm": "bn1.running_mean", "res_conv1_bn_riv": "bn1.running_var",
                   "pred_w": "fc.weight", "pred_b": "fc.bias"}[name]
        renamed[key] = torch.from_numpy(values)
    torch.save(renamed, tmp_path / "i3d_r50_nl_kinetics.pth")
    converted = convert_weights(tmp_path / "i3d_r50_nl_kinetics.pth", tmp_path / "out.safetensors")
    assert converted.layout.name == "caffe2-r50-nl-32x2"
    check_against(record, create_model(tmp_path / "out.safetensors"))


def test_the_registry_names_every_family_member_with_its_recipe():
    family = {n: info for n, info in REGISTRY.items() if info.layout}
    assert {info.layout for info in family.values()} == set(RESNET_LAYOUTS)  # every layout has its weights
    for info in family.values():
        assert info.metrics["source"] and info.preprocessing.fps is None and info.preprocessing.frame_stride >= 1
        transform = info.transforms()
        assert "native rate" in repr(transform)
    mmaction = REGISTRY["i3d_r50_32x2_mmaction2"]
    assert mmaction.files[0].sha256_prefix == "e213c223" and mmaction.preprocessing.frame_stride == 2
    assert REGISTRY["i3d_r50_8x8_pytorchvideo"].preprocessing.frame_stride == 8


def test_recipe_samples_every_stride_th_frame_at_the_native_rate():
    transform = REGISTRY["i3d_r50_8x8_pytorchvideo"].transforms()
    frames = np.zeros((24, 240, 320, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(24, dtype=np.uint8)[:, None, None] * 10
    clip = transform(frames)
    assert clip.shape == (1, 3, 3, 224, 224)  # frames 0, 8 and 16
    assert torch.allclose(clip[0, 0, :, 0, 0], torch.tensor([0.0, 80.0, 160.0]) / 127.5 - 1)


# ---- the network's own contract -------------------------------------------------------------------------

def small_model(layout: str = "caffe2-r50-nl-32x2", **kwargs) -> ResNet3d:
    torch.manual_seed(0)
    return ResNet3d(RESNET_LAYOUTS[layout], **kwargs).eval()


def test_endpoints_shapes_and_partial_networks():
    model = small_model("pytorchvideo-r50")
    x = torch.zeros(1, 3, 8, 112, 112)
    with torch.no_grad():
        taken = model.extract_endpoints(x, ["stem", "res2", "res3", "res4", "res5"])
    assert [tuple(v.shape[1:]) for v in taken.values()] == [(64, 8, 28, 28), (256, 4, 28, 28), (512, 4, 14, 14),
                                                            (1024, 4, 7, 7), (2048, 4, 4, 4)]
    partial = ResNet3d(RESNET_LAYOUTS["pytorchvideo-r50"], final_endpoint="res3")
    assert not hasattr(partial, "res4") and not hasattr(partial, "fc")
    with pytest.raises(ValueError, match="unknown endpoint"):
        ResNet3d(RESNET_LAYOUTS["pytorchvideo-r50"], final_endpoint="Mixed_5c")


def test_fine_tuning_a_new_classifier_trains():
    model = small_model(num_classes=400)
    model.replace_logits(5)
    model.train()
    x = torch.randn(2, 3, 8, 96, 96)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 3]))
    loss.backward()
    assert model.fc.weight.grad is not None and model.stem.conv.weight.grad.abs().sum() > 0


def test_fused_form_matches_the_plain_network():
    model = small_model()
    x = torch.rand(1, 3, 8, 112, 112) * 2 - 1
    with torch.no_grad():
        assert (model(x) - fuse(model)(x)).abs().max() < 1e-4


# ---- refusals: one line each, nothing written -----------------------------------------------------------

def test_unknown_layout_and_wrong_variant_are_refused(tmp_path):
    torch.save({"state_dict": {"encoder.conv.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(I3DError, match="unknown layout.*encoder.conv.weight"):
        convert_weights(tmp_path / "other.pth", tmp_path / "out.safetensors")
    record = reference("caffe2-r50-nl-32x2")
    source = write_source_checkpoint(record, tmp_path, "i3d_nonlocal_32x2")
    with pytest.raises(I3DError, match="non-local checkpoint.*cannot be converted as caffe2-r50-32x2"):
        convert_weights(source, tmp_path / "out.safetensors", layout="caffe2-r50-32x2")
    with pytest.raises(I3DError, match="non-local checkpoint.*cannot be converted as caffe2-r50-32x2"):
        convert_weights(source, tmp_path / "out.safetensors", name="i3d_r50_32x2_caffe2")  # the entry's layout
    unnamed = source.rename(tmp_path / "model.pkl")
    with pytest.raises(I3DError, match="says neither 32x2 nor 8x8"):
        convert_weights(unnamed, tmp_path / "out.safetensors")
    mm = write_source_checkpoint(reference("mmaction2-r50-nl-dot-product"), tmp_path, "checkpoint")
    with pytest.raises(I3DError, match="give --layout mmaction2-r50-nl-dot-product"):
        convert_weights(mm, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_hostile_and_damaged_pickles_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran code",))

    (tmp_path / "evil_32x2.pkl").write_bytes(pickle.dumps({"blobs": {"conv1_w": Payload()}}, protocol=2))
    with pytest.raises(I3DError, match="refusing pickle: it names __builtin__.print"):
        convert_weights(tmp_path / "evil_32x2.pkl", tmp_path / "out.safetensors")
    record = reference("caffe2-r50-32x2")
    whole = write_source_checkpoint(record, tmp_path, "i3d_baseline_32x2")
    (tmp_path / "cut_32x2.pkl").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(I3DError, match="not a whole Caffe2 pickle"):
        convert_weights(tmp_path / "cut_32x2.pkl", tmp_path / "out.safetensors")
    (tmp_path / "torch_32x2.pth").write_bytes(whole.read_bytes()[:1000])
    with pytest.raises(I3DError, match="loads without running code"):
        convert_weights(tmp_path / "torch_32x2.pth", tmp_path / "out.safetensors")


def test_command_line_refusal_is_one_line(tmp_path):
    (tmp_path / "evil_32x2.pkl").write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    result = subprocess.run([sys.executable, "-m", "i3d.cli.main", "weights", "convert",
                             str(tmp_path / "evil_32x2.pkl"), "-o", str(tmp_path / "out.safetensors")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "refusing pickle: it names os.system" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.safetensors").exists()


# ---- the anomaly-detection protocol ---------------------------------------------------------------------

def install_anomaly_weights(home: Path) -> None:
    """The Caffe2 baseline's blobs (by formula) converted as i3d_r50_anomaly into ``home``."""
    record = reference("caffe2-r50-32x2")
    source = write_source_checkpoint(record, home, "i3d_baseline_32x2_IN_pretrain_400k")
    convert_weights(source, name="i3d_r50_anomaly")


def test_anomaly_preset_gives_the_extractors_own_features(tmp_path, monkeypatch):
    """`anomaly-rtfm` on the frames the extractor read as PNG files, here in a lossless video: its own run()
    computed (2, 10, 2048) with pytorch-resnet3d's network (tests/data/resnet3d/anomaly-rtfm.npy)."""
    sys.path.insert(0, str(DATA))
    from anomaly_frames import anomaly_frames

    from i3d.features.extract import extract_features
    from i3d.features.presets import config_from_preset

    monkeypatch.setenv("I3D_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    install_anomaly_weights(tmp_path / "home")
    video = tmp_path / "video.mkv"
    with av.open(str(video), "w") as container:  # lossless RGB: the decoder gives back the very frames
        stream = container.add_stream("libx264rgb", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.options = 320, 240, "rgb24", {"qp": "0"}
        for frame in anomaly_frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    config = config_from_preset("anomaly-rtfm", runtime="fused", fmt="npy")
    summary = extract_features([video], tmp_path / "out", config)
    assert [row.status for row in summary.rows] == ["done"]
    ours = np.load(tmp_path / "out" / "video.npy")
    want = np.load(DATA / "anomaly-rtfm.npy")
    assert ours.shape == want.shape == (2, 10, 2048)
    assert np.abs(ours - want).max() < 1e-5 * np.abs(want).max()


def test_the_anomaly_presets_say_which_network_gives_which_features():
    from i3d.features.presets import PRESETS

    assert PRESETS["anomaly-rtfm"].settings["weights"] == "i3d_r50_anomaly"
    assert "Not RTFM's features" in PRESETS["tencrop-inception"].description


# ---- every command accepts the family -------------------------------------------------------------------

@pytest.fixture(scope="module")
def family_home(tmp_path_factory):
    """An I3D_HOME holding i3d_r50_32x2_mmaction2, converted from an MMAction2-layout checkpoint."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("I3D_HOME", str(home))
        source = write_source_checkpoint(reference("mmaction2-r50"), home, "i3d_r50_mmaction2")
        convert_weights(source, name="i3d_r50_32x2_mmaction2")
        source.unlink()
    return home


def _i3d(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "I3D_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "i3d.cli.main", *args], capture_output=True, text=True, env=env)


def test_predict_features_export_and_bench_run_the_family(family_home, tmp_path):
    from conftest import write_video

    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "clip.mp4", rng.integers(0, 255, (20, 120, 160, 3), dtype=np.uint8), 25)
    predicted = _i3d(family_home, "predict", str(video), "--weights", "i3d_r50_32x2_mmaction2", "--json")
    assert predicted.returncode == 0, predicted.stderr
    answer = json.loads(predicted.stdout)
    assert answer["frames"] == 10 and len(answer["logits"]) == 400  # every 2nd of 20 frames: the 32x2 recipe
    features = _i3d(family_home, "features", str(video), "-o", str(tmp_path / "features"), "--weights",
                    "i3d_r50_32x2_mmaction2", "--fps", "native", "--clip-len", "16", "--step", "16")
    assert features.returncode == 0, features.stderr
    assert np.load(tmp_path / "features" / "clip.npz")["features"].shape == (2, 2048)  # the last one padded
    exported = _i3d(family_home, "export", "--weights", "i3d_r50_32x2_mmaction2", "-o", str(tmp_path / "r50.onnx"))
    assert exported.returncode == 0 and "max |difference|" in exported.stdout, exported.stderr
    bench = _i3d(family_home, "bench", "--weights", "i3d_r50_32x2_mmaction2", "--frames", "16", "--repeats", "1",
                 "--paths", "default")
    assert bench.returncode == 0 and "i3d_r50_32x2_mmaction2" in bench.stdout, bench.stderr
    refused = _i3d(family_home, "features", str(video), "-o", str(tmp_path / "f2"), "--weights",
                   "i3d_r50_32x2_mmaction2", "--mixed-5c")
    assert refused.returncode != 0 and "ResNet-50 family has none" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_fine_tuning_the_family_writes_a_file_that_builds_the_same_network(family_home, tmp_path, monkeypatch):
    from conftest import write_video
    from i3d.train import TrainConfig, train_stream

    monkeypatch.setenv("I3D_HOME", str(family_home))
    rng = np.random.default_rng(1)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(2):
            write_video(tmp_path / "data" / label / f"v{i}.mp4", rng.integers(0, 255, (12, 64, 80, 3), np.uint8), 25)
    config = TrainConfig(train=str(tmp_path / "data"), val_ratio=0.5, batch_size=1, clip_frames=9, crop=193,
                         log_every=1, workers=0, checkpoint_every=2, steps=2, output=str(tmp_path / "run"),
                         schedule="0:0.01", weights="i3d_r50_32x2_mmaction2", freeze_until="res3")
    result = train_stream(config, say=lambda _: None)
    tuned = create_model(result.final_weights)
    assert isinstance(tuned, ResNet3d) and tuned.layout.name == "mmaction2-r50" and tuned.labels == ["a", "b"]
    start = create_model("i3d_r50_32x2_mmaction2")
    assert torch.equal(tuned.res3[0].conv_a.conv.weight, start.res3[0].conv_a.conv.weight)  # frozen
    assert not torch.equal(tuned.res4[0].conv_a.conv.weight, start.res4[0].conv_a.conv.weight)  # trained


def test_an_mmaction2_entry_is_fetched_checked_against_its_sha256_prefix(tmp_path, monkeypatch):
    """Served from 127.0.0.1 at its published path: a file whose sha256 starts as its name says is
    installed and builds MMAction2's network; any other file is deleted and reported with both hashes."""
    import dataclasses
    import hashlib

    from i3d.weights import registry
    from i3d.weights.fetch import fetch_weights
    from i3d.weights.remote import MIRROR_VARIABLE
    from test_fetch import Server

    monkeypatch.setenv("I3D_HOME", str(tmp_path / "home"))
    record = reference("mmaction2-r50")
    data = write_source_checkpoint(record, tmp_path, "published").read_bytes()
    entry = registry.REGISTRY["i3d_r50_32x2_mmaction2"]
    published = entry.files[0]
    server = Server({published.path: data})
    monkeypatch.setenv(MIRROR_VARIABLE, server.url)
    try:
        with pytest.raises(I3DError, match="does not start with the published e213c223; the download was deleted"):
            fetch_weights(entry.name, quiet=True)  # the real pin: this test's file is not MMAction2's
        ours = hashlib.sha256(data).hexdigest()[:8]
        pinned = dataclasses.replace(entry, files=(dataclasses.replace(published, sha256_prefix=ours),))
        monkeypatch.setitem(registry.REGISTRY, entry.name, pinned)
        path = fetch_weights(entry.name, quiet=True)
    finally:
        server.close()
    model = create_model(entry.name)
    assert path.is_file() and model.layout.name == "mmaction2-r50"
    check_against(record, model)


def test_an_entry_with_no_published_hash_is_not_fetched_and_says_how_to_convert(tmp_path, monkeypatch):
    from i3d.weights.fetch import fetch_weights

    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    with pytest.raises(I3DError, match="i3d_r50_8x8_pytorchvideo is not fetched by i3d: no published hash pins it; "
                                       "download https://dl.fbaipublicfiles.com/pytorchvideo/.*I3D_8x8_R50.pyth"):
        fetch_weights("i3d_r50_8x8_pytorchvideo")
    assert not (tmp_path / "weights").exists() or not list((tmp_path / "weights").iterdir())
