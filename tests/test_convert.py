"""Converters: DeepMind's TensorFlow checkpoints (the real index files, with data written here) and the
PyTorch port's state dicts."""

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.factory import resolve_weights
from i3d.networks.inception import InceptionI3d
from i3d.weights.convert import convert_weights
from i3d.weights.tf_checkpoint import read_checkpoint, read_index, torch_name
from i3d.weights.torch_port import convert_torch_port
from tf_bundle import write_checkpoint

FIXTURES = Path(__file__).resolve().parent / "data" / "deepmind_checkpoint_index"
CHECKPOINTS = {"rgb_imagenet": ("RGB", 3, 400), "rgb_scratch": ("RGB", 3, 400), "flow_imagenet": ("Flow", 2, 400),
               "flow_scratch": ("Flow", 2, 400), "rgb_scratch_kin600": ("", 3, 600)}


def _fixture(name: str) -> Path:
    path = FIXTURES / f"{name}.index"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the real DeepMind index files are fixtures of this repository")
    return path


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_every_variable_of_the_real_checkpoints_maps_with_its_shape(name):
    scope, in_channels, classes = CHECKPOINTS[name]
    entries = read_index(_fixture(name))
    expected = {k: tuple(v.shape) for k, v in InceptionI3d(classes, in_channels).state_dict().items()}
    mapped = {}
    for tf_name, entry in entries.items():
        target = torch_name(tf_name)
        if target is None:
            assert tf_name.endswith("/Momentum"), f"{tf_name} is neither a model variable nor an optimizer slot"
            continue
        assert target[0] == scope
        shape = entry.shape
        if target[1].endswith("conv3d.weight"):
            mapped[target[1]] = (shape[4], shape[3], *shape[:3])
        else:  # vectors, stored as (C,) or, in the Kinetics-600 checkpoint, (1, 1, 1, 1, C)
            assert all(d == 1 for d in shape[:-1])
            mapped[target[1]] = shape[-1:]
    assert mapped == expected  # every network tensor, each once, with the right (transposed) shape


def _data_for_index(index: Path, prefix: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A data file laid out exactly as the real index says (offsets, sizes), filled with known values."""
    entries = read_index(index)
    rng = np.random.default_rng(seed)
    data = bytearray(max(e.offset + e.size for e in entries.values()))
    arrays = {}
    for name, entry in entries.items():
        values = rng.normal(0, 0.05, entry.shape).astype("<f4")
        if "moving_variance" in name:
            values = np.abs(values) + 0.5
        data[entry.offset : entry.offset + entry.size] = values.tobytes()
        arrays[name] = values
    prefix.with_name(prefix.name + ".index").write_bytes(index.read_bytes())
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))
    return arrays


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("I3D_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize("name, registry_name", [("rgb_imagenet", "rgb_imagenet"), ("flow_imagenet", "flow_imagenet")])
def test_a_checkpoint_with_the_real_layout_converts_and_predicts(home, name, registry_name, capsys):
    folder = home / name
    folder.mkdir()
    arrays = _data_for_index(_fixture(name), folder / "model.ckpt")
    assert main(["weights", "convert", str(folder / "model.ckpt.index"), "--name", registry_name]) == 0
    assert f"written to {home / 'home' / 'weights' / registry_name}.safetensors" in capsys.readouterr().out
    loaded = resolve_weights(registry_name)
    scope = "RGB" if name.startswith("rgb") else "Flow"
    w = arrays[f"{scope}/inception_i3d/Mixed_4b/Branch_1/Conv3d_0b_3x3/conv_3d/w"]  # (t, h, w, in, out)
    ours = loaded.state_dict["Mixed_4b.Branch_1.Conv3d_0b_3x3.conv3d.weight"]  # (out, in, t, h, w)
    assert ours[5, 7, 2, 0, 1] == pytest.approx(float(w[2, 0, 1, 7, 5]))
    np.testing.assert_array_equal(loaded.state_dict["Logits.Conv3d_0c_1x1.conv3d.bias"].numpy(),
                                  arrays[f"{scope}/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"])
    np.testing.assert_array_equal(loaded.state_dict["Conv3d_2c_3x3.batch_norm.running_var"].numpy(),
                                  arrays[f"{scope}/inception_i3d/Conv3d_2c_3x3/batch_norm/moving_variance"])
    assert loaded.modality == scope.lower() and loaded.labels[0] == "abseiling"
    channels = 3 if scope == "RGB" else 2
    clip = home / "clip.npy"
    np.save(clip, np.random.default_rng(0).uniform(-1, 1, (9, 224, 224, channels)).astype(np.float32))
    stream = "rgb" if scope == "RGB" else "flow"
    args = ["predict", str(clip), "--stream", stream, "--top-k", "1", "--json"]
    args += ["--weights", registry_name] if stream == "rgb" else ["--flow-weights", registry_name]
    assert main(args) == 0


def test_kinetics600_needs_its_labels(home, tmp_path):
    arrays = {"Conv3d_1a_7x7/conv_3d/w": np.zeros((7, 7, 7, 3, 64), np.float32)}
    prefix = tmp_path / "model.ckpt"
    full = {name.replace("RGB/inception_i3d/", ""): np.zeros(shape, np.float32)
            for name, shape in _tf_shapes(600).items()} | arrays
    write_checkpoint(prefix, full)
    (tmp_path / "labels.txt").write_text("\n".join(f"action {i}" for i in range(600)))
    converted = convert_weights(prefix, name="rgb_scratch_kin600", labels_file=tmp_path / "labels.txt")
    assert resolve_weights("rgb_scratch_kin600").labels[599] == "action 599" and converted.num_classes == 600
    with pytest.raises(I3DError, match="599 labels for a classifier of 600"):
        (tmp_path / "short.txt").write_text("\n".join(f"a{i}" for i in range(599)))
        convert_weights(prefix, name="rgb_scratch_kin600", labels_file=tmp_path / "short.txt")


def _tf_shapes(classes: int = 400, in_channels: int = 3, scope: str = "RGB") -> dict[str, tuple]:
    """DeepMind variable names and TF shapes for this network (the inverse of the converter's map)."""
    reverse = {"conv3d.weight": "conv_3d/w", "conv3d.bias": "conv_3d/b", "batch_norm.bias": "batch_norm/beta",
               "batch_norm.running_mean": "batch_norm/moving_mean",
               "batch_norm.running_var": "batch_norm/moving_variance"}
    shapes = {}
    for name, tensor in InceptionI3d(classes, in_channels).state_dict().items():
        module, _, param = name.rpartition(".")
        module, _, kind = module.rpartition(".")
        module = module.replace("Mixed_5b.Branch_2.Conv3d_0b_3x3", "Mixed_5b.Branch_2.Conv3d_0a_3x3")  # DeepMind's
        tf_name = f"{scope}/inception_i3d/{module.replace('.', '/')}/{reverse[kind + '.' + param]}"
        shape = tuple(tensor.shape)
        shapes[tf_name] = (*shape[2:], shape[1], shape[0]) if len(shape) == 5 else shape
    return shapes


def test_missing_and_extra_variables_are_refused(tmp_path):
    shapes = _tf_shapes()
    arrays = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    del arrays["RGB/inception_i3d/Mixed_5c/Branch_3/Conv3d_0b_1x1/conv_3d/w"]
    write_checkpoint(tmp_path / "missing.ckpt", arrays)
    with pytest.raises(I3DError, match="missing \\['Mixed_5c.Branch_3.Conv3d_0b_1x1.conv3d.weight'\\]"):
        convert_weights(tmp_path / "missing.ckpt", tmp_path / "out.safetensors")
    arrays = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    arrays["RGB/inception_i3d/Mixed_6a/Branch_0/attention/w"] = np.zeros(3, np.float32)
    write_checkpoint(tmp_path / "extra.ckpt", arrays)
    with pytest.raises(I3DError, match="map to nothing in I3D: RGB/inception_i3d/Mixed_6a/Branch_0/attention/w"):
        convert_weights(tmp_path / "extra.ckpt", tmp_path / "out.safetensors")
    both = {k: np.zeros(s, np.float32) for k, s in shapes.items()} | {
        k: np.zeros(s, np.float32) for k, s in _tf_shapes(400, 2, "Flow").items()}
    write_checkpoint(tmp_path / "both.ckpt", both)
    with pytest.raises(I3DError, match="holds the Flow and RGB streams; choose one"):
        convert_weights(tmp_path / "both.ckpt", tmp_path / "out.safetensors")
    assert convert_weights(tmp_path / "both.ckpt", tmp_path / "flow.safetensors", scope="Flow").modality == "flow"
    assert not (tmp_path / "out.safetensors").exists()


def test_truncated_data_and_broken_index_are_one_line_errors(tmp_path):
    arrays = {k: np.zeros(s, np.float32) for k, s in _tf_shapes().items()}
    write_checkpoint(tmp_path / "model.ckpt", arrays)
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(I3DError, match="beyond the end of its shard"):
        read_checkpoint(tmp_path / "model.ckpt")
    (tmp_path / "model.ckpt.index").write_bytes(b"not a table" + struct.pack("<Q", 1))
    with pytest.raises(I3DError, match="not a TensorFlow checkpoint index"):
        read_checkpoint(tmp_path / "model.ckpt")


def _port_state_dict(model: InceptionI3d, gammas: bool) -> dict[str, torch.Tensor]:
    """``model``'s tensors under the PyTorch port's names (b0..b3b, bn, logits), with BatchNorm scales."""
    branches = {"Branch_0.Conv3d_0a_1x1": "b0", "Branch_1.Conv3d_0a_1x1": "b1a", "Branch_1.Conv3d_0b_3x3": "b1b",
                "Branch_2.Conv3d_0a_1x1": "b2a", "Branch_2.Conv3d_0b_3x3": "b2b", "Branch_3.Conv3d_0b_1x1": "b3b"}
    state = {}
    generator = torch.Generator().manual_seed(0)
    for name, tensor in model.state_dict().items():
        port = name.replace("Logits.Conv3d_0c_1x1", "logits").replace("batch_norm", "bn")
        for ours, theirs in branches.items():
            port = port.replace(ours, theirs)
        state[port] = tensor.clone()
        if port.endswith("bn.bias"):
            scale = torch.rand(tensor.shape, generator=generator) + 0.5 if gammas else torch.ones_like(tensor)
            state[port.replace("bias", "weight")] = scale
            state[port.replace("bias", "num_batches_tracked")] = torch.tensor(0)
    return state


def test_pytorch_port_state_dict_with_batchnorm_scales_gives_the_same_network(tmp_path):
    torch.manual_seed(1)
    model = InceptionI3d(157, 2).eval()
    for name, tensor in model.state_dict().items():
        if name.endswith("running_var"):
            tensor.uniform_(0.5, 2)
        elif name.endswith(("running_mean", "bias")):
            tensor.normal_(0, 0.1)
    port = _port_state_dict(model, gammas=True)
    torch.save(port, tmp_path / "flow_charades.pt")
    converted = convert_weights(tmp_path / "flow_charades.pt", tmp_path / "flow_charades.safetensors")
    assert (converted.modality, converted.num_classes) == ("flow", 157) and "class_000" in converted.labels_note
    ours = InceptionI3d(157, 2).eval()
    ours.load_state_dict(resolve_weights(tmp_path / "flow_charades.safetensors").state_dict)
    # The reference: the same network with torch's own BatchNorm3d carrying the port's scales.
    reference = InceptionI3d(157, 2).eval()
    reference.load_state_dict(model.state_dict())
    for module_name, module in list(reference.named_modules()):
        if module.__class__.__name__ == "BatchNormNoScale":
            port_name = next(k for k in port if k.endswith(".bn.bias") and torch.equal(port[k], module.bias))
            norm = torch.nn.BatchNorm3d(len(module.bias), eps=1e-3).eval()
            norm.weight.data, norm.bias.data = port[port_name.replace("bias", "weight")], module.bias.data
            norm.running_mean, norm.running_var = module.running_mean, module.running_var
            parent, _, child = module_name.rpartition(".")
            setattr(reference.get_submodule(parent), child, norm)
    clip = torch.rand(1, 2, 9, 224, 224) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours(clip), reference(clip), atol=1e-4, rtol=1e-4)


def test_pytorch_port_file_that_would_run_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"Conv3d_1a_7x7.conv3d.weight": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(I3DError, match="loads without running code \\(it names (builtins\\.)?print"):
        convert_weights(tmp_path / "evil.pt", tmp_path / "out.safetensors")
    port = _port_state_dict(InceptionI3d(), gammas=False)
    port["logits.conv3d.extra"] = torch.zeros(1)
    assert convert_torch_port({k: v for k, v in port.items() if k != "logits.conv3d.extra"})
    with pytest.raises(I3DError, match="map to nothing"):
        convert_torch_port(port)
