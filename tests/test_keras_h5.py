"""Keras ports' .h5 weights (keras-kinetics-i3d's layer names), written here in Keras's layout with known
values, converted, and checked tensor by tensor and against a direct computation."""

import h5py
import numpy as np
import pytest
import torch

from i3d.cli.main import main
from i3d.factory import resolve_weights
from i3d.networks.inception import InceptionI3d

BLOCK_UNITS = ["0a_1x1", "1a_1x1", "1b_3x3", "2a_1x1", "2b_3x3", "3b_1x1"]
OURS = {"0a_1x1": "Branch_0.Conv3d_0a_1x1", "1a_1x1": "Branch_1.Conv3d_0a_1x1", "1b_3x3": "Branch_1.Conv3d_0b_3x3",
        "2a_1x1": "Branch_2.Conv3d_0a_1x1", "2b_3x3": "Branch_2.Conv3d_0b_3x3", "3b_1x1": "Branch_3.Conv3d_0b_1x1"}


def _keras_units():
    """(keras unit name, our module name) in the order i3d_inception.py builds them."""
    units = [(n, n) for n in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")]
    for block in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c"):
        units += [(f"Conv3d_{block}_{u}", f"Mixed_{block}.{OURS[u]}") for u in BLOCK_UNITS]
    return units


def write_keras_h5(path, model: InceptionI3d, nested_under_model_weights: bool = False):
    """``model``'s tensors as Keras's save_weights writes them: a group per layer, weight_names attributes."""
    state = model.state_dict()
    with h5py.File(path, "w") as file:
        root = file.create_group("model_weights") if nested_under_model_weights else file
        layers = []

        def layer(name, weights):
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{w}:0".encode() for w in weights]
            for weight, array in weights.items():
                group.create_dataset(f"{name}/{weight}:0", data=array)
            layers.append(name.encode())

        for keras, ours in _keras_units():
            kernel = state[f"{ours}.conv3d.weight"].numpy().transpose(2, 3, 4, 1, 0)  # -> (t, h, w, in, out)
            layer(f"{keras}_conv", {"kernel": kernel})
            layer(f"{keras}_bn", {"beta": state[f"{ours}.batch_norm.bias"].numpy(),
                                  "moving_mean": state[f"{ours}.batch_norm.running_mean"].numpy(),
                                  "moving_variance": state[f"{ours}.batch_norm.running_var"].numpy()})
        logits = "Logits.Conv3d_0c_1x1.conv3d"
        layer("Conv3d_6a_1x1_conv", {"kernel": state[f"{logits}.weight"].numpy().transpose(2, 3, 4, 1, 0),
                                     "bias": state[f"{logits}.bias"].numpy()})
        root.attrs["layer_names"] = layers


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(7)
    network = InceptionI3d(400, 3).eval()
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2)
            elif name.endswith(("running_mean", "bias")):
                tensor.normal_(0, 0.1)
    return network


@pytest.mark.parametrize("nested", [False, True])
def test_a_keras_h5_converts_tensor_for_tensor(tmp_path, model, nested, capsys):
    write_keras_h5(tmp_path / "rgb_inception_i3d.h5", model, nested)
    output = tmp_path / "keras.safetensors"
    assert main(["weights", "convert", str(tmp_path / "rgb_inception_i3d.h5"), "-o", str(output)]) == 0
    assert "rgb I3D, 400 classes" in capsys.readouterr().out
    loaded = resolve_weights(output)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict[name], tensor, rtol=0, atol=0, msg=name)
    with h5py.File(tmp_path / "rgb_inception_i3d.h5") as file:  # one value by hand: kernel (t, h, w, in, out)
        root = file["model_weights"] if nested else file
        kernel = root["Conv3d_4b_1b_3x3_conv"]["Conv3d_4b_1b_3x3_conv/kernel:0"][()]
    assert loaded.state_dict["Mixed_4b.Branch_1.Conv3d_0b_3x3.conv3d.weight"][5, 7, 2, 0, 1] == \
        pytest.approx(float(kernel[2, 0, 1, 7, 5]))
    converted = InceptionI3d(400, 3).eval()
    converted.load_state_dict(loaded.state_dict)
    x = torch.rand(1, 3, 9, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=0, atol=0)


def test_unexpected_layer_names_and_shapes_are_refused_naming_the_first(tmp_path, model, capsys):
    path = tmp_path / "odd.h5"
    write_keras_h5(path, model)
    with h5py.File(path, "a") as file:
        group = file.create_group("Conv3d_7z_1x1_conv")
        group.attrs["weight_names"] = [b"Conv3d_7z_1x1_conv/kernel:0"]
        group.create_dataset("Conv3d_7z_1x1_conv/kernel:0", data=np.zeros((1, 1, 1, 2, 2), np.float32))
        names = [n if isinstance(n, bytes) else str(n).encode() for n in file.attrs["layer_names"]]
        file.attrs["layer_names"] = names + [b"Conv3d_7z_1x1_conv"]
    assert main(["weights", "convert", str(path), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "first Conv3d_7z_1x1_conv/kernel" in capsys.readouterr().err
    small = InceptionI3d(10, 3)
    write_keras_h5(tmp_path / "ten.h5", small)
    with h5py.File(tmp_path / "ten.h5", "a") as file:
        del file["Conv3d_2c_3x3_conv"]["Conv3d_2c_3x3_conv/kernel:0"]
        file["Conv3d_2c_3x3_conv"].create_dataset("Conv3d_2c_3x3_conv/kernel:0",
                                                  data=np.zeros((3, 3, 3, 64, 100), np.float32))
    assert main(["weights", "convert", str(tmp_path / "ten.h5"), "-o", str(tmp_path / "y.safetensors")]) == 2
    assert "Conv3d_2c_3x3.conv3d.weight (100, 64, 3, 3, 3) != (192, 64, 3, 3, 3)" in capsys.readouterr().err
